//! Deciding what to put back, read-only: what a migration's statements create again
//! ([`created_by`], [`absent`]), which archive holds it (the newest whose comment says so), and
//! for a `--dry-run`, how many rows would return ([`planned`]).

use super::super::names::{qualified, COMMENT_PREFIX, SCHEMA};
use super::super::tokens::{split_actions, tokenize, Cursor, Token};
use crate::catalog::PRIMARY_KEY;
use crate::db::{introspect, Query};
use anyhow::Result;
use postgres::GenericClient;
use serde::Serialize;

/// Something a migration statement creates that an archive may hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    Table { table: String },
    Column { table: String, column: String },
}

impl Created {
    /// As archives and reports name it: `table` or `table.column`.
    pub fn object(&self) -> String {
        match self {
            Created::Table { table } => table.clone(),
            Created::Column { table, column } => format!("{table}.{column}"),
        }
    }
}

/// What a statement creates: the table of a `CREATE TABLE`, the columns of an
/// `ALTER TABLE … ADD [COLUMN]`. Names qualified with another schema than the application's are
/// left out: the archive only ever holds objects of the application's own schema.
pub fn created_by(statement: &str) -> Vec<Created> {
    let tokens = tokenize(statement);
    let mut cursor = Cursor {
        tokens: &tokens,
        at: 0,
    };
    let unqualified_name = |cursor: &mut Cursor| -> Option<String> {
        let name = cursor.app_name()?;
        (cursor.peek() != Some(&Token::Punct('.'))).then_some(name)
    };
    if cursor.eat(&["CREATE"]) {
        cursor.eat(&["UNLOGGED"]);
        if !cursor.eat(&["TABLE"]) {
            return Vec::new();
        }
        cursor.eat(&["IF", "NOT", "EXISTS"]);
        return unqualified_name(&mut cursor)
            .map(|table| vec![Created::Table { table }])
            .unwrap_or_default();
    }
    if !cursor.eat(&["ALTER", "TABLE"]) {
        return Vec::new();
    }
    cursor.eat(&["IF", "EXISTS"]);
    cursor.eat(&["ONLY"]);
    let Some(table) = unqualified_name(&mut cursor) else {
        return Vec::new();
    };
    split_actions(&tokens[cursor.at..])
        .into_iter()
        .filter_map(|action| {
            let mut inner = Cursor {
                tokens: action,
                at: 0,
            };
            if !inner.eat(&["ADD"]) {
                return None;
            }
            let explicit = inner.eat(&["COLUMN"]);
            let constraint = matches!(
                inner.keyword(0).as_str(),
                "CONSTRAINT" | "PRIMARY" | "UNIQUE" | "CHECK" | "FOREIGN" | "EXCLUDE"
            );
            if !explicit && constraint {
                return None;
            }
            inner.eat(&["IF", "NOT", "EXISTS"]);
            inner.name().map(|column| Created::Column {
                table: table.clone(),
                column,
            })
        })
        .collect()
}

/// Those of `created` that do not exist yet: a `CREATE TABLE IF NOT EXISTS` that finds its table
/// creates nothing, and rows must never be put back into a table that already holds its own.
pub fn absent(
    client: &mut (impl Query + GenericClient),
    created: &[Created],
) -> Result<Vec<Created>> {
    let mut out = Vec::new();
    for c in created {
        let (table, column) = match c {
            Created::Table { table } => (table, None),
            Created::Column { table, column } => (table, Some(column)),
        };
        let exists = match column {
            None => introspect::table_exists(client, table)?,
            Some(column) => introspect::column_exists(client, table, column)?,
        };
        if !exists && !out.contains(c) {
            out.push(c.clone());
        }
    }
    Ok(out)
}

/// An archive as its comment describes it.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    /// The archive table's name in [`SCHEMA`].
    pub(super) name: String,
    pub(super) holds: Created,
    /// When the rollback ran, as the comment spells it (`20261125T101500Z`).
    pub(super) stamp: String,
    /// 1, or N for a name that needed the suffix `_N`.
    pub(super) attempt: u32,
    pub(super) columns: Vec<String>,
    pub(super) comment: String,
}

impl Entry {
    fn newness(&self) -> (String, u32) {
        (self.stamp.to_ascii_lowercase(), self.attempt)
    }
}

/// Reads an archive's comment (`ruleiq-db rollback of V3 core_tables at 20261125T101500Z: table
/// evidence_items, 12 rows` or `…: column evidence_items.ai_metadata by id, 12 rows`). An archive
/// without such a comment (already restored, or not made by a rollback) is not a candidate.
fn parse(name: &str, comment: &str, columns: &[String]) -> Option<Entry> {
    let rest = comment.strip_prefix(COMMENT_PREFIX)?;
    let (head, held) = rest.split_once(": ")?;
    let (_, stamp) = head.rsplit_once(" at ")?;
    let (what, _rows) = held.rsplit_once(", ")?;
    let holds = if let Some(table) = what.strip_prefix("table ") {
        Created::Table {
            table: table.to_string(),
        }
    } else {
        let (table_column, _) = what.strip_prefix("column ")?.rsplit_once(" by ")?;
        // The archive holds the key and the column: its other column's name says where the
        // table's name ends, whatever characters either contains.
        let column = match columns {
            [a, b] if a == PRIMARY_KEY => b,
            [a, b] if b == PRIMARY_KEY => a,
            _ => return None,
        };
        let table = table_column.strip_suffix(&format!(".{column}"))?;
        Created::Column {
            table: table.to_string(),
            column: column.clone(),
        }
    };
    let lower = name.to_ascii_lowercase();
    let stamp_lower = stamp.to_ascii_lowercase();
    let attempt = lower
        .rfind(&stamp_lower)
        .and_then(|at| {
            let tail = &lower[at + stamp_lower.len()..];
            if tail.is_empty() {
                Some(1)
            } else {
                tail.strip_prefix('_')?.parse().ok()
            }
        })
        .unwrap_or(1);
    Some(Entry {
        name: name.to_string(),
        holds,
        stamp: stamp.to_string(),
        attempt,
        columns: columns.to_vec(),
        comment: comment.to_string(),
    })
}

pub(super) fn archives(client: &mut (impl Query + ?Sized)) -> Result<Vec<Entry>> {
    let rows = client.rows(
        "SELECT c.relname::text, coalesce(obj_description(c.oid, 'pg_class'), ''),
                array(SELECT a.attname::text FROM pg_attribute a
                       WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                       ORDER BY a.attnum)
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')",
        &[&SCHEMA],
    )?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            parse(
                &r.get::<_, String>(0),
                &r.get::<_, String>(1),
                &r.get::<_, Vec<String>>(2),
            )
        })
        .collect())
}

/// The newest archive of this object: a later rollback's copy supersedes an earlier one.
pub(super) fn newest<'a>(entries: &'a [Entry], created: &Created) -> Option<&'a Entry> {
    entries
        .iter()
        .filter(|e| &e.holds == created)
        .max_by_key(|e| e.newness())
}

/// A restore that applying a migration would make, read-only: for `--dry-run` and for deciding
/// whether the preflight can judge the rows before the migrations that restore values run.
#[derive(Debug, Clone, Serialize)]
pub struct Planned {
    pub version: i32,
    pub object: String,
    pub archive: String,
    /// Rows the archive holds.
    pub rows: i64,
}

/// What applying these migrations, in order, would put back: each object they create that has
/// an archive, from its newest archive.
pub fn planned(
    client: &mut (impl Query + GenericClient),
    migrations: &[refinery::Migration],
) -> Result<Vec<Planned>> {
    let entries = archives(client)?;
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let mut out: Vec<Planned> = Vec::new();
    for m in migrations {
        for statement in crate::catalog::sql::split_statements(m.sql().unwrap_or_default()) {
            for c in created_by(&statement) {
                let Some(entry) = newest(&entries, &c) else {
                    continue;
                };
                if out.iter().any(|p| p.object == c.object()) {
                    continue;
                }
                let archive = qualified(&entry.name);
                let rows = introspect::count_rows_in(client, SCHEMA, &entry.name)?;
                out.push(Planned {
                    version: m.version(),
                    object: c.object(),
                    archive,
                    rows,
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str) -> Created {
        Created::Table { table: name.into() }
    }

    fn column(t: &str, c: &str) -> Created {
        Created::Column {
            table: t.into(),
            column: c.into(),
        }
    }

    #[test]
    fn finds_what_a_statement_creates() {
        assert_eq!(
            created_by("CREATE TABLE users (id UUID PRIMARY KEY)"),
            vec![table("users")]
        );
        assert_eq!(
            created_by("CREATE TABLE public.users (id UUID PRIMARY KEY)"),
            vec![table("users")]
        );
        assert_eq!(
            created_by("ALTER TABLE public.\"evidence_items\" ADD COLUMN ai_metadata JSONB"),
            vec![column("evidence_items", "ai_metadata")]
        );
        assert_eq!(
            created_by("create table if not exists \"Odd\" (id int)"),
            vec![table("Odd")]
        );
        assert_eq!(
            created_by("ALTER TABLE evidence_items ADD COLUMN ai_metadata JSONB"),
            vec![column("evidence_items", "ai_metadata")]
        );
        assert_eq!(
            created_by(
                "ALTER TABLE ONLY t ADD a int, ADD CONSTRAINT c CHECK (a > 0), ADD COLUMN IF NOT EXISTS b text DEFAULT 'x', ALTER COLUMN b DROP DEFAULT"
            ),
            vec![column("t", "a"), column("t", "b")]
        );
        for nothing in [
            "CREATE INDEX i ON t (a)",
            "CREATE TABLE other.t (id int)",
            "ALTER TABLE other.t ADD COLUMN a int",
            "ALTER TABLE t ADD PRIMARY KEY (id)",
            "ALTER TABLE t ADD FOREIGN KEY (a) REFERENCES u (id)",
            "ALTER TABLE t RENAME COLUMN a TO b",
            "CREATE EXTENSION IF NOT EXISTS pg_trgm",
            "DO $$ BEGIN ALTER TABLE t ADD COLUMN a int; END $$",
        ] {
            assert_eq!(created_by(nothing), vec![], "{nothing}");
        }
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn reads_the_comments_rollback_writes_and_picks_the_newest() {
        let t = parse(
            "evidence_items__v3_20261125T101500Z",
            "ruleiq-db rollback of V3 core_tables at 20261125T101500Z: table evidence_items, 12 rows",
            &strings(&["id", "status"]),
        )
        .unwrap();
        assert_eq!(t.holds, table("evidence_items"));
        assert_eq!(t.attempt, 1);
        let c = parse(
            "evidence_items__ai_metadata__v7_20261125T101500Z_2",
            "ruleiq-db rollback of V7 add_evidence_metadata at 20261125T101500Z: column evidence_items.ai_metadata by id, 3 rows",
            &strings(&["id", "ai_metadata"]),
        )
        .unwrap();
        assert_eq!(c.holds, column("evidence_items", "ai_metadata"));
        assert_eq!(c.attempt, 2);
        assert!(parse(
            "x",
            "restored into evidence_items by ruleiq-db migrate V3 core_tables at 20261126T000000Z; was: ruleiq-db rollback of …",
            &strings(&["id"])
        )
        .is_none());

        let later = parse(
            "evidence_items__v3_20261126T090000Z",
            "ruleiq-db rollback of V3 core_tables at 20261126T090000Z: table evidence_items, 1 rows",
            &strings(&["id"]),
        )
        .unwrap();
        let entries = vec![t.clone(), later, c.clone()];
        assert_eq!(
            newest(&entries, &table("evidence_items")).unwrap().name,
            "evidence_items__v3_20261126T090000Z"
        );
        let first_try = Entry {
            name: "evidence_items__ai_metadata__v7_20261125T101500Z".into(),
            attempt: 1,
            ..c.clone()
        };
        let entries = vec![first_try, c];
        assert_eq!(
            newest(&entries, &column("evidence_items", "ai_metadata"))
                .unwrap()
                .attempt,
            2
        );
        assert!(newest(&entries, &table("users")).is_none());
    }
}
