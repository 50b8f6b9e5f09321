//! Archiving what a rollback would drop, into schema ruleiq_archive.
//!
//! The down migrations say what the earlier schema lacks (`DROP TABLE t`, `ALTER TABLE t DROP
//! COLUMN c`); this module makes sure no data goes with it. Before such a statement runs, the
//! rollback engine asks [`classify`] what it drops: a table is renamed and moved into
//! ruleiq_archive instead of dropped; a column is first copied there (primary key and column).
//! Before anything changes, [`dependents`] finds the user's views and functions that would be
//! stranded; when a later migration creates the table or column again, [`restore`] puts the
//! archived rows or values back.

pub mod dependents;
pub mod restore;

use crate::catalog::sql::{quote_ident, quote_literal};
use crate::catalog::PRIMARY_KEY;
use anyhow::{bail, Context, Result};
use postgres::GenericClient;
use serde::Serialize;

/// The schema that holds archived tables and columns.
pub const SCHEMA: &str = "ruleiq_archive";

/// How every archive's comment begins; [`restore`] reads the rest (what it holds, and when).
const COMMENT_PREFIX: &str = "ruleiq-db rollback of ";

/// PostgreSQL's identifier limit (NAMEDATALEN - 1): longer names are silently truncated.
const MAX_IDENTIFIER: usize = 63;

/// What a down statement does to data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing that holds data (an index, a constraint, a rename): run it as written.
    Run,
    /// `DROP TABLE t`: move the table to the archive instead.
    MoveTable { table: String },
    /// `ALTER TABLE t DROP COLUMN c`: copy the column to the archive, then run it.
    CopyColumn { table: String, column: String },
}

/// One archive made (or, in a plan, to be made).
#[derive(Debug, Clone, Serialize)]
pub struct Archived {
    /// `table` or `table.column`.
    pub object: String,
    /// Schema-qualified name of the archive table.
    pub archive: String,
    pub rows: i64,
    /// The migration whose down would have dropped it.
    pub version: i32,
}

/// When a rollback runs, as archive names spell it: `20261125t101500z`. Lower case, so that
/// the archive's name needs no quoting in hand-written SQL.
#[derive(Debug, Clone)]
pub struct Stamp(String);

impl Stamp {
    pub fn now() -> Stamp {
        Stamp::at(chrono::Utc::now())
    }

    pub fn at(time: chrono::DateTime<chrono::Utc>) -> Stamp {
        Stamp(time.format("%Y%m%dt%H%M%Sz").to_string())
    }

    fn suffix(&self, version: i32, attempt: u32) -> String {
        let repeat = if attempt > 1 {
            format!("_{attempt}")
        } else {
            String::new()
        };
        format!("__v{version}_{}{repeat}", self.0)
    }
}

/// Decides what a down statement drops. A statement that drops data in a form this engine cannot
/// archive (several objects at once, a schema-qualified name, TRUNCATE, DELETE) is an error, so
/// that a down file can never lose data by being written differently.
pub fn classify(statement: &str) -> Result<Action> {
    let tokens = tokenize(statement);
    let unsupported = |why: &str| -> Result<Action> {
        bail!(
            "cannot archive what this down statement drops ({why}), so it is not run: {statement}"
        )
    };
    let mut cursor = Cursor {
        tokens: &tokens,
        at: 0,
    };
    if cursor.eat(&["DROP", "TABLE"]) {
        cursor.eat(&["IF", "EXISTS"]);
        return match cursor.plain_name_then_end() {
            Some(table) => Ok(Action::MoveTable { table }),
            None => unsupported("one unqualified table per DROP TABLE"),
        };
    }
    if cursor.eat(&["ALTER", "TABLE"]) {
        cursor.eat(&["IF", "EXISTS"]);
        cursor.eat(&["ONLY"]);
        let table = cursor.name();
        let qualified = cursor.peek() == Some(&Token::Punct('.'));
        if qualified {
            cursor.at += 1;
            cursor.name();
        }
        let actions = split_actions(&tokens[cursor.at..]);
        let drops_column = |action: &[Token]| {
            action.first().map(Token::keyword).as_deref() == Some("DROP")
                && action.get(1).map(Token::keyword).as_deref() != Some("CONSTRAINT")
        };
        if !actions.iter().any(|a| drops_column(a)) {
            return Ok(Action::Run);
        }
        let (Some(table), false, [action]) = (table, qualified, actions.as_slice()) else {
            return unsupported("one unqualified column per ALTER TABLE … DROP COLUMN");
        };
        let mut inner = Cursor {
            tokens: action,
            at: 1,
        };
        inner.eat(&["COLUMN"]);
        inner.eat(&["IF", "EXISTS"]);
        return match inner.plain_name_then_end() {
            Some(column) => Ok(Action::CopyColumn { table, column }),
            None => unsupported("one unqualified column per ALTER TABLE … DROP COLUMN"),
        };
    }
    if cursor.eat(&["DROP", "SCHEMA"]) {
        // Without CASCADE, PostgreSQL drops a schema only when it is empty (the compatibility
        // schema once its views are gone), so no row can go with it.
        cursor.eat(&["IF", "EXISTS"]);
        return match (cursor.name(), &tokens[cursor.at..]) {
            (Some(_), []) => Ok(Action::Run),
            (Some(_), [t]) if t.keyword() == "RESTRICT" => Ok(Action::Run),
            _ => unsupported("only one empty schema, without CASCADE"),
        };
    }
    let first = cursor.keyword(0);
    if matches!(first.as_str(), "TRUNCATE" | "DELETE")
        || (first == "DROP" && cursor.keyword(1) == "OWNED")
    {
        return unsupported("it removes rows");
    }
    Ok(Action::Run)
}

/// Reads tokens from the front.
struct Cursor<'a> {
    tokens: &'a [Token],
    at: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn keyword(&self, ahead: usize) -> String {
        self.tokens
            .get(self.at + ahead)
            .map(Token::keyword)
            .unwrap_or_default()
    }

    /// Consumes these keywords when they come next.
    fn eat(&mut self, keywords: &[&str]) -> bool {
        let all = keywords
            .iter()
            .enumerate()
            .all(|(k, w)| self.keyword(k) == *w);
        if all {
            self.at += keywords.len();
        }
        all
    }

    fn name(&mut self) -> Option<String> {
        let name = self.peek().and_then(Token::name)?;
        self.at += 1;
        Some(name)
    }

    /// A name followed by nothing but `CASCADE` or `RESTRICT`.
    fn plain_name_then_end(&mut self) -> Option<String> {
        let name = self.name()?;
        match &self.tokens[self.at..] {
            [] => Some(name),
            [t] if matches!(t.keyword().as_str(), "CASCADE" | "RESTRICT") => Some(name),
            _ => None,
        }
    }
}

/// The actions of an ALTER TABLE: the tokens between top-level commas.
fn split_actions(tokens: &[Token]) -> Vec<&[Token]> {
    let mut actions = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, token) in tokens.iter().enumerate() {
        match token {
            Token::Punct('(') => depth += 1,
            Token::Punct(')') => depth -= 1,
            Token::Punct(',') if depth == 0 => {
                actions.push(&tokens[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    actions.push(&tokens[start..]);
    actions
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// A bare word, as PostgreSQL folds it (lower case).
    Word(String),
    /// A double-quoted identifier, exactly as written.
    Quoted(String),
    Punct(char),
}

impl Token {
    fn keyword(&self) -> String {
        match self {
            Token::Word(w) => w.to_ascii_uppercase(),
            _ => String::new(),
        }
    }

    fn name(&self) -> Option<String> {
        match self {
            Token::Word(w) => Some(w.to_ascii_lowercase()),
            Token::Quoted(q) => Some(q.clone()),
            Token::Punct(_) => None,
        }
    }
}

fn tokenize(sql: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_whitespace() {
            continue;
        }
        if c == '"' {
            let mut name = String::new();
            while let Some(d) = chars.next() {
                if d == '"' {
                    if chars.peek() == Some(&'"') {
                        chars.next();
                        name.push('"');
                        continue;
                    }
                    break;
                }
                name.push(d);
            }
            tokens.push(Token::Quoted(name));
        } else if c.is_alphanumeric() || c == '_' {
            let mut word = c.to_string();
            while let Some(&d) = chars.peek() {
                if d.is_alphanumeric() || d == '_' || d == '$' {
                    word.push(d);
                    chars.next();
                } else {
                    break;
                }
            }
            tokens.push(Token::Word(word));
        } else {
            tokens.push(Token::Punct(c));
        }
    }
    tokens
}

/// `base` + `suffix`, shortening `base` so the whole stays within PostgreSQL's identifier limit
/// (a silently truncated name would not be the one we report).
fn archive_name(base: &str, suffix: &str) -> String {
    let room = MAX_IDENTIFIER.saturating_sub(suffix.len());
    let mut cut = base.len().min(room);
    while !base.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{suffix}", &base[..cut])
}

/// Whether no relation has this name in the application's schema or in the archive.
fn name_free(client: &mut impl GenericClient, name: &str) -> Result<bool> {
    Ok(client
        .query_one(
            "SELECT to_regclass(format('%I.%I', current_schema(), $1::text)) IS NULL
                AND to_regclass(format('%I.%I', $2::text, $1::text)) IS NULL",
            &[&name, &SCHEMA],
        )?
        .get(0))
}

/// The first suffix under which every one of `bases` gets a free name. Two rollbacks of the
/// same version within one second (or a clock set back) get `_2`, `_3`…
fn free_suffix(
    client: &mut impl GenericClient,
    bases: &[String],
    version: i32,
    stamp: &Stamp,
) -> Result<String> {
    for attempt in 1..1000 {
        let suffix = stamp.suffix(version, attempt);
        let mut free = true;
        for base in bases {
            if !name_free(client, &archive_name(base, &suffix))? {
                free = false;
                break;
            }
        }
        if free {
            return Ok(suffix);
        }
    }
    bail!(
        "no free archive name for {} in schema {SCHEMA}",
        bases.join(", ")
    )
}

fn table_exists(client: &mut impl GenericClient, table: &str) -> Result<bool> {
    Ok(client
        .query_one("SELECT to_regclass(quote_ident($1)) IS NOT NULL", &[&table])?
        .get(0))
}

fn count_rows(client: &mut impl GenericClient, table: &str) -> Result<i64> {
    Ok(client
        .query_one(&format!("SELECT count(*) FROM {}", quote_ident(table)), &[])?
        .get(0))
}

/// The indexes of a table (primary key and unique constraints included): they move with it and
/// are renamed with it, so that the names stay free for the table's next life in the schema.
fn indexes_of(client: &mut impl GenericClient, table: &str) -> Result<Vec<String>> {
    let rows = client.query(
        "SELECT c.relname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
          WHERE i.indrelid = to_regclass(quote_ident($1)) ORDER BY 1",
        &[&table],
    )?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

fn require_table(client: &mut impl GenericClient, table: &str, version: i32) -> Result<()> {
    if !table_exists(client, table)? {
        bail!(
            "V{version}'s down works on table {table}, which does not exist: the schema does not match the migration history (see `ruleiq-db status`)"
        );
    }
    Ok(())
}

fn require_column(
    client: &mut impl GenericClient,
    table: &str,
    column: &str,
    version: i32,
) -> Result<()> {
    require_table(client, table, version)?;
    let present: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(quote_ident($1))
                 AND attname = $2 AND attnum > 0 AND NOT attisdropped)",
            &[&table, &column],
        )?
        .get(0);
    if !present {
        bail!(
            "V{version}'s down drops column {table}.{column}, which does not exist: the schema does not match the migration history (see `ruleiq-db status`)"
        );
    }
    Ok(())
}

/// What archiving this action would produce, read-only: for `--dry-run` plans.
pub fn preview(
    client: &mut impl GenericClient,
    action: &Action,
    version: i32,
    stamp: &Stamp,
) -> Result<Option<Archived>> {
    match action {
        Action::Run => Ok(None),
        Action::MoveTable { table } => {
            require_table(client, table, version)?;
            let mut bases = vec![table.clone()];
            bases.extend(indexes_of(client, table)?);
            let suffix = free_suffix(client, &bases, version, stamp)?;
            Ok(Some(Archived {
                object: table.clone(),
                archive: qualified(&archive_name(table, &suffix)),
                rows: count_rows(client, table)?,
                version,
            }))
        }
        Action::CopyColumn { table, column } => {
            require_column(client, table, column, version)?;
            let base = format!("{table}__{column}");
            let suffix = free_suffix(client, std::slice::from_ref(&base), version, stamp)?;
            Ok(Some(Archived {
                object: format!("{table}.{column}"),
                archive: qualified(&archive_name(&base, &suffix)),
                rows: count_rows(client, table)?,
                version,
            }))
        }
    }
}

/// Runs one down statement inside the caller's transaction, archiving first what it would drop.
/// `what` names the step in the archive's comment (e.g. `V3 core_tables`).
pub fn run_statement(
    tx: &mut impl GenericClient,
    statement: &str,
    version: i32,
    what: &str,
    stamp: &Stamp,
) -> Result<Option<Archived>> {
    let action = classify(statement)?;
    let archived = match &action {
        Action::Run => {
            tx.batch_execute(statement)?;
            return Ok(None);
        }
        Action::MoveTable { table } => move_table(tx, table, version, what, stamp)?,
        Action::CopyColumn { table, column } => {
            let archived = copy_column(tx, table, column, version, what, stamp)?;
            tx.batch_execute(statement)?;
            archived
        }
    };
    Ok(Some(archived))
}

fn ensure_schema(tx: &mut impl GenericClient) -> Result<()> {
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {}",
        quote_ident(SCHEMA)
    ))
    .with_context(|| format!("creating schema {SCHEMA}"))
}

/// Moves a table into the archive instead of dropping it: rename it and its indexes in place
/// (the new names are free in both schemas), then move it. Its foreign keys are dropped: an
/// archive is a snapshot, and a live reference would let `ON DELETE CASCADE` from the
/// application's tables delete archived rows, or block the application's deletes.
fn move_table(
    tx: &mut impl GenericClient,
    table: &str,
    version: i32,
    what: &str,
    stamp: &Stamp,
) -> Result<Archived> {
    require_table(tx, table, version)?;
    refuse_inbound_references(tx, table, version)?;
    ensure_schema(tx)?;
    let indexes = indexes_of(tx, table)?;
    let mut bases = vec![table.to_string()];
    bases.extend(indexes.iter().cloned());
    let suffix = free_suffix(tx, &bases, version, stamp)?;
    let archive = archive_name(table, &suffix);

    let foreign_keys = tx.query(
        "SELECT conname::text FROM pg_constraint
          WHERE conrelid = to_regclass(quote_ident($1)) AND contype = 'f' ORDER BY 1",
        &[&table],
    )?;
    for fk in &foreign_keys {
        let name: String = fk.get(0);
        tx.batch_execute(&format!(
            "ALTER TABLE {} DROP CONSTRAINT {}",
            quote_ident(table),
            quote_ident(&name)
        ))?;
    }
    for index in &indexes {
        // Renaming a constraint's index renames the constraint too.
        tx.batch_execute(&format!(
            "ALTER INDEX {} RENAME TO {}",
            quote_ident(index),
            quote_ident(&archive_name(index, &suffix))
        ))?;
    }
    tx.batch_execute(&format!(
        "ALTER TABLE {} RENAME TO {}; ALTER TABLE {} SET SCHEMA {}",
        quote_ident(table),
        quote_ident(&archive),
        quote_ident(&archive),
        quote_ident(SCHEMA),
    ))
    .with_context(|| format!("archiving table {table} as {}", qualified(&archive)))?;
    detach_enum_columns(tx, &archive)?;
    // Counted after the move: the rename's ACCESS EXCLUSIVE lock means no row can arrive later.
    let rows: i64 = tx
        .query_one(
            &format!("SELECT count(*) FROM {}", qualified(&archive)),
            &[],
        )?
        .get(0);
    tx.batch_execute(&format!(
        "COMMENT ON TABLE {} IS {}",
        qualified(&archive),
        quote_literal(&format!(
            "{COMMENT_PREFIX}{what} at {}: table {table}, {rows} rows",
            stamp.0
        )),
    ))?;
    Ok(Archived {
        object: table.to_string(),
        archive: qualified(&archive),
        rows,
        version,
    })
}

/// Turns the archived table's enum columns into text. An enum type belongs to the live schema
/// and its down migration drops it (003's `conversationstatus`, 004's `integrationstatus`); an
/// archive that still used it would stop that DROP TYPE. Text keeps every label exactly, and a
/// restore casts it back to whatever type the re-created column has.
fn detach_enum_columns(tx: &mut impl GenericClient, archive: &str) -> Result<()> {
    let columns = tx.query(
        "SELECT a.attname::text FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
          WHERE a.attrelid = format('%I.%I', $1::text, $2::text)::regclass
            AND a.attnum > 0 AND NOT a.attisdropped AND t.typtype = 'e'
          ORDER BY a.attnum",
        &[&SCHEMA, &archive],
    )?;
    for column in &columns {
        let column: String = column.get(0);
        tx.batch_execute(&format!(
            "ALTER TABLE {} ALTER COLUMN {col} TYPE text USING {col}::text",
            qualified(archive),
            col = quote_ident(&column)
        ))
        .with_context(|| format!("archiving enum column {archive}.{column} as text"))?;
    }
    Ok(())
}

/// DROP TABLE without CASCADE fails when another table references this one; moving it would
/// not, and would leave the other table pointing into the archive. Refuse the same way.
fn refuse_inbound_references(tx: &mut impl GenericClient, table: &str, version: i32) -> Result<()> {
    let rows = tx.query(
        "SELECT conrelid::regclass::text, conname::text FROM pg_constraint
          WHERE confrelid = to_regclass(quote_ident($1)) AND conrelid <> confrelid AND contype = 'f'
          ORDER BY 1, 2",
        &[&table],
    )?;
    if rows.is_empty() {
        return Ok(());
    }
    let referrers: Vec<String> = rows
        .iter()
        .map(|r| format!("{} ({})", r.get::<_, String>(0), r.get::<_, String>(1)))
        .collect();
    bail!(
        "V{version}'s down would move table {table} to the archive, but {} still reference it: moved, they would point into the archive, and ruleiq-db never changes foreign keys it did not create. Nothing was changed by this step; `ruleiq-db rollback --to {version}` stops above it",
        referrers.join(", ")
    )
}

/// Copies the primary key and the column into the archive, before the column is dropped.
fn copy_column(
    tx: &mut impl GenericClient,
    table: &str,
    column: &str,
    version: i32,
    what: &str,
    stamp: &Stamp,
) -> Result<Archived> {
    require_column(tx, table, column, version)?;
    ensure_schema(tx)?;
    let base = format!("{table}__{column}");
    let suffix = free_suffix(tx, std::slice::from_ref(&base), version, stamp)?;
    let archive = qualified(&archive_name(&base, &suffix));
    // SHARE blocks writes (not reads) from before the copy's snapshot until the column is
    // dropped, so no value written in between can be lost.
    tx.batch_execute(&format!("LOCK TABLE {} IN SHARE MODE", quote_ident(table)))?;
    let rows = tx
        .execute(
            &format!(
                "CREATE TABLE {archive} AS SELECT {}, {} FROM {}",
                quote_ident(PRIMARY_KEY),
                quote_ident(column),
                quote_ident(table)
            ),
            &[],
        )
        .with_context(|| format!("copying {table}.{column} to {archive}"))?;
    tx.batch_execute(&format!(
        "COMMENT ON TABLE {archive} IS {}",
        quote_literal(&format!(
            "{COMMENT_PREFIX}{what} at {}: column {table}.{column} by {PRIMARY_KEY}, {rows} rows",
            stamp.0
        ))
    ))?;
    Ok(Archived {
        object: format!("{table}.{column}"),
        archive,
        rows: rows as i64,
        version,
    })
}

fn qualified(name: &str) -> String {
    format!("{}.{}", quote_ident(SCHEMA), quote_ident(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{down, migrations};

    fn table(name: &str) -> Action {
        Action::MoveTable { table: name.into() }
    }

    #[test]
    fn recognises_what_drops_data() {
        assert_eq!(classify("DROP TABLE users").unwrap(), table("users"));
        assert_eq!(
            classify("drop table if exists \"Odd\"\"Name\" cascade").unwrap(),
            table("Odd\"Name")
        );
        assert_eq!(
            classify("ALTER TABLE Evidence_Items DROP COLUMN ai_metadata").unwrap(),
            Action::CopyColumn {
                table: "evidence_items".into(),
                column: "ai_metadata".into()
            }
        );
        assert_eq!(
            classify("ALTER TABLE ONLY t DROP IF EXISTS c RESTRICT").unwrap(),
            Action::CopyColumn {
                table: "t".into(),
                column: "c".into()
            }
        );
        for harmless in [
            "ALTER TABLE t DROP CONSTRAINT IF EXISTS c",
            "ALTER TABLE t ALTER COLUMN c DROP DEFAULT",
            "ALTER TABLE public.t DROP CONSTRAINT c",
            "ALTER TABLE t ADD CONSTRAINT c CHECK (a IN (1, 2))",
            "ALTER TABLE t RENAME COLUMN a TO b",
            "DROP INDEX IF EXISTS i",
            "DROP VIEW IF EXISTS \"ruleiq_compat\".\"business_profiles\"",
            "DROP SCHEMA IF EXISTS \"ruleiq_compat\"",
            "drop schema ruleiq_compat restrict",
            "DO $x$ BEGIN ALTER TABLE t RENAME COLUMN a TO b; END $x$",
        ] {
            assert_eq!(classify(harmless).unwrap(), Action::Run, "{harmless}");
        }
    }

    #[test]
    fn refuses_drops_it_cannot_archive() {
        for lossy in [
            "DROP TABLE a, b",
            "DROP TABLE public.users",
            "ALTER TABLE t DROP COLUMN a, DROP COLUMN b",
            "ALTER TABLE public.t DROP COLUMN a",
            "ALTER TABLE t DROP CONSTRAINT c, DROP COLUMN a",
            "ALTER TABLE t ALTER COLUMN a DROP DEFAULT, DROP b",
            "TRUNCATE users",
            "DELETE FROM users",
            "DROP SCHEMA public CASCADE",
            "DROP SCHEMA IF EXISTS ruleiq_compat CASCADE",
            "DROP SCHEMA a, b",
        ] {
            let error = match classify(lossy) {
                Err(e) => e.to_string(),
                Ok(action) => panic!("{lossy} classified as {action:?}"),
            };
            assert!(error.contains("cannot archive"), "{lossy}: {error}");
        }
    }

    #[test]
    fn every_down_statement_is_archivable_and_every_drop_is_archived() {
        for m in migrations::all() {
            for s in down::statements(m.version()).unwrap() {
                let action = classify(&s.sql).unwrap();
                let upper = s.sql.to_ascii_uppercase();
                if upper.starts_with("DROP TABLE") || upper.contains("DROP COLUMN") {
                    assert_ne!(action, Action::Run, "{}", s.sql);
                }
            }
        }
    }

    #[test]
    fn archive_names_fit_postgres_and_keep_their_suffix() {
        use chrono::TimeZone;
        let stamp = Stamp::at(
            chrono::Utc
                .with_ymd_and_hms(2026, 11, 25, 10, 15, 0)
                .unwrap(),
        );
        let suffix = stamp.suffix(3, 1);
        assert_eq!(suffix, "__v3_20261125t101500z");
        assert_eq!(archive_name("users", &suffix), "users__v3_20261125t101500z");
        assert_eq!(stamp.suffix(5, 2), "__v5_20261125t101500z_2");
        let long = archive_name(&"x".repeat(80), &suffix);
        assert_eq!(long.len(), MAX_IDENTIFIER);
        assert!(long.ends_with(&suffix));
    }
}
