//! Putting back what a rollback archived. When a migration creates again a table or a column that
//! a rollback moved or copied into ruleiq_archive, the newest such archive's rows (or values) go
//! back inside the migration's own transaction, so a round trip 8 → 6 → 8 loses nothing; then the
//! archive is dropped, so that a later round trip can never bring stale data back a second time.
//!
//! Migrations run in version order and a table is created before whatever references it, so
//! restoring at the end of each migration, in the order its statements create things, puts
//! parents back before their children.

use super::{qualified, split_actions, tokenize, Cursor, Token, COMMENT_PREFIX, SCHEMA};
use crate::catalog::sql::{quote_ident, quote_literal};
use crate::catalog::PRIMARY_KEY;
use anyhow::{Context, Result};
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

/// One archive put back.
#[derive(Debug, Clone, Serialize)]
pub struct Restored {
    /// `table` or `table.column`.
    pub object: String,
    /// Schema-qualified name of the archive the rows or values came from.
    pub archive: String,
    /// Rows inserted (a table) or updated (a column).
    pub rows: i64,
    /// False when the archive was kept, marked as restored in its comment: it held columns the
    /// new table lacks, or something of the user's depends on it.
    pub archive_dropped: bool,
}

/// What a statement creates: the table of a `CREATE TABLE`, the columns of an
/// `ALTER TABLE … ADD [COLUMN]`. Schema-qualified names are left out: the archive only ever
/// holds objects of the application's own schema, named without one.
pub fn created_by(statement: &str) -> Vec<Created> {
    let tokens = tokenize(statement);
    let mut cursor = Cursor {
        tokens: &tokens,
        at: 0,
    };
    let unqualified_name = |cursor: &mut Cursor| -> Option<String> {
        let name = cursor.name()?;
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
pub fn absent(client: &mut impl GenericClient, created: &[Created]) -> Result<Vec<Created>> {
    let mut out = Vec::new();
    for c in created {
        let (table, column) = match c {
            Created::Table { table } => (table, None),
            Created::Column { table, column } => (table, Some(column)),
        };
        let exists: bool = client
            .query_one(
                "SELECT CASE WHEN $2::text IS NULL THEN to_regclass(quote_ident($1)) IS NOT NULL
                        ELSE EXISTS (SELECT 1 FROM pg_attribute
                                      WHERE attrelid = to_regclass(quote_ident($1))
                                        AND attname = $2 AND attnum > 0 AND NOT attisdropped) END",
                &[table, &column],
            )?
            .get(0);
        if !exists && !out.contains(c) {
            out.push(c.clone());
        }
    }
    Ok(out)
}

/// An archive as its comment describes it.
#[derive(Debug, Clone)]
struct Entry {
    /// The archive table's name in [`SCHEMA`].
    name: String,
    holds: Created,
    /// When the rollback ran, as the comment spells it (`20261125T101500Z`).
    stamp: String,
    /// 1, or N for a name that needed the suffix `_N`.
    attempt: u32,
    columns: Vec<String>,
    comment: String,
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

fn archives(client: &mut impl GenericClient) -> Result<Vec<Entry>> {
    let rows = client.query(
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
fn newest<'a>(entries: &'a [Entry], created: &Created) -> Option<&'a Entry> {
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
    client: &mut impl GenericClient,
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
                let rows: i64 = client
                    .query_one(&format!("SELECT count(*) FROM {archive}"), &[])?
                    .get(0);
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

/// Puts back, in the caller's transaction and in the given order, the newest archive of each of
/// `created` (what the migration `label` has just created; see [`absent`]).
///
/// A column's values are written by one UPDATE while the migration's `ADD COLUMN` still holds
/// its ACCESS EXCLUSIVE lock, so the application waits for it; that is the price of the values
/// and the column appearing together.
pub fn restore(
    tx: &mut impl GenericClient,
    created: &[Created],
    label: &str,
) -> Result<Vec<Restored>> {
    let entries = archives(tx)?;
    let mut restored = Vec::new();
    for c in created {
        let Some(entry) = newest(&entries, c) else {
            continue;
        };
        let archive = qualified(&entry.name);
        let (rows, left_behind) = match c {
            Created::Table { table } => restore_table(tx, table, entry)?,
            Created::Column { table, column } => {
                (restore_column(tx, table, column, entry)?, Vec::new())
            }
        };
        let dropped = left_behind.is_empty() && drop_archive(tx, &archive)?;
        if !dropped {
            mark_restored(tx, entry, &c.object(), label, &left_behind)?;
        }
        restored.push(Restored {
            object: c.object(),
            archive,
            rows,
            archive_dropped: dropped,
        });
    }
    Ok(restored)
}

/// INSERT … SELECT of the columns both have, by name. Returns the rows inserted and the
/// archive's columns the table lacks (kept in the archive).
fn restore_table(
    tx: &mut impl GenericClient,
    table: &str,
    entry: &Entry,
) -> Result<(i64, Vec<String>)> {
    // An archived enum column holds text (the archive detaches it from the live type): it is
    // cast back to the re-created column's enum. Other columns go back as they are, so that a
    // value that no longer fits is an error, never silently cut.
    let live: Vec<(String, bool)> = tx
        .query(
            "SELECT attname::text, attgenerated <> '' FROM pg_attribute
              WHERE attrelid = to_regclass(quote_ident($1)) AND attnum > 0 AND NOT attisdropped
              ORDER BY attnum",
            &[&table],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let enum_types: Vec<(String, String)> = tx
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
               JOIN pg_type t ON t.oid = a.atttypid
              WHERE a.attrelid = to_regclass(quote_ident($1)) AND a.attnum > 0
                AND NOT a.attisdropped AND t.typtype = 'e'",
            &[&table],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let common: Vec<&String> = live
        .iter()
        .filter(|(name, generated)| !generated && entry.columns.contains(name))
        .map(|(name, _)| name)
        .collect();
    let left_behind: Vec<String> = entry
        .columns
        .iter()
        .filter(|c| !live.iter().any(|(name, _)| name == *c))
        .cloned()
        .collect();
    if common.is_empty() {
        return Ok((0, entry.columns.clone()));
    }
    let list = common
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ");
    let values = common
        .iter()
        .map(|c| match enum_types.iter().find(|(name, _)| name == *c) {
            Some((_, enum_type)) => format!("{}::{enum_type}", quote_ident(c)),
            None => quote_ident(c),
        })
        .collect::<Vec<_>>()
        .join(", ");
    let archive = qualified(&entry.name);
    // OVERRIDING SYSTEM VALUE: an identity column gets its archived value back, not a new one.
    let rows = tx
        .execute(
            &format!(
                "INSERT INTO {} ({list}) OVERRIDING SYSTEM VALUE SELECT {values} FROM {archive}",
                quote_ident(table)
            ),
            &[],
        )
        .with_context(|| format!("putting the rows of {archive} back into table {table}"))?;
    for column in &common {
        // A serial or identity column's sequence starts again at 1 in the new table: move it
        // past the restored keys so that the next insert does not collide.
        let sequence: Option<String> = tx
            .query_one(
                "SELECT pg_get_serial_sequence(quote_ident($1), $2)",
                &[&table, column],
            )?
            .get(0);
        if let Some(sequence) = sequence {
            tx.query(
                &format!(
                    "SELECT setval({}::regclass, max({c})::bigint) FROM {t} HAVING max({c}) IS NOT NULL",
                    quote_literal(&sequence),
                    c = quote_ident(column),
                    t = quote_ident(table)
                ),
                &[],
            )?;
        }
    }
    Ok((rows as i64, left_behind))
}

/// UPDATE t SET c = archive.c by primary key. Rows deleted since the rollback have nothing to
/// receive their value; rows inserted since keep what the migration gave them.
fn restore_column(
    tx: &mut impl GenericClient,
    table: &str,
    column: &str,
    entry: &Entry,
) -> Result<i64> {
    let archive = qualified(&entry.name);
    let rows = tx
        .execute(
            &format!(
                "UPDATE {t} SET {c} = a.{c} FROM {archive} AS a WHERE {t}.{k} = a.{k}",
                t = quote_ident(table),
                c = quote_ident(column),
                k = quote_ident(PRIMARY_KEY),
            ),
            &[],
        )
        .with_context(|| format!("putting the values of {archive} back into {table}.{column}"))?;
    Ok(rows as i64)
}

/// Drops an archive whose every value is back. Something of the user's that depends on it (a
/// view made on the archive) keeps it: the drop is undone, not the migration.
fn drop_archive(tx: &mut impl GenericClient, archive: &str) -> Result<bool> {
    let mut savepoint = tx.transaction()?;
    match savepoint.batch_execute(&format!("DROP TABLE {archive}")) {
        Ok(()) => {
            savepoint.commit()?;
            Ok(true)
        }
        Err(_) => {
            savepoint.rollback()?;
            Ok(false)
        }
    }
}

/// Rewrites a kept archive's comment so it no longer reads as a rollback's: it is not a
/// candidate for any later restore.
fn mark_restored(
    tx: &mut impl GenericClient,
    entry: &Entry,
    object: &str,
    label: &str,
    left_behind: &[String],
) -> Result<()> {
    let at = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let kept = if left_behind.is_empty() {
        String::new()
    } else {
        format!(
            "; columns the new table lacks, kept here only: {}",
            left_behind.join(", ")
        )
    };
    tx.batch_execute(&format!(
        "COMMENT ON TABLE {} IS {}",
        qualified(&entry.name),
        quote_literal(&format!(
            "restored into {object} by ruleiq-db migrate {label} at {at}{kept}; was: {}",
            entry.comment
        ))
    ))?;
    Ok(())
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
            "CREATE TABLE public.t (id int)",
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
