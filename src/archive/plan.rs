//! Planning a rollback's archiving, read-only: what each down statement drops ([`classify`]),
//! under which name it would be kept, and what a `--dry-run` shows of it ([`preview`],
//! [`planned_lock`]).

use super::names::{archive_name, qualified, Stamp, SCHEMA};
use super::tokens::{split_actions, tokenize, Cursor, Token};
use crate::catalog::sql::APP_SCHEMA;
use crate::db::{introspect, Query};
use anyhow::{bail, Result};
use postgres::GenericClient;
use serde::Serialize;

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

impl Action {
    /// What archiving this action keeps and where, under the suffix of one rollback step:
    /// `(object, archive)`, as reports name them.
    fn archived_as(&self, suffix: &str) -> Option<(String, String)> {
        match self {
            Action::Run => None,
            Action::MoveTable { table } => {
                Some((table.clone(), qualified(&archive_name(table, suffix))))
            }
            Action::CopyColumn { table, column } => Some((
                format!("{table}.{column}"),
                qualified(&archive_name(&format!("{table}__{column}"), suffix)),
            )),
        }
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
        return match cursor.app_name().filter(|_| cursor.at_end()) {
            Some(table) => Ok(Action::MoveTable { table }),
            None => unsupported("one table of the application's schema per DROP TABLE"),
        };
    }
    if cursor.eat(&["ALTER", "TABLE"]) {
        cursor.eat(&["IF", "EXISTS"]);
        cursor.eat(&["ONLY"]);
        let start = cursor.at;
        let table = cursor.app_name();
        // A name in another schema: what follows the dot is not an action.
        if table.is_none() {
            cursor.at = start;
            cursor.name();
            if cursor.peek() == Some(&Token::Punct('.')) {
                cursor.at += 1;
                cursor.name();
            }
        }
        let actions = split_actions(&tokens[cursor.at..]);
        let drops_column = |action: &[Token]| {
            action.first().map(Token::keyword).as_deref() == Some("DROP")
                && action.get(1).map(Token::keyword).as_deref() != Some("CONSTRAINT")
        };
        if !actions.iter().any(|a| drops_column(a)) {
            return Ok(Action::Run);
        }
        let (Some(table), [action]) = (table, actions.as_slice()) else {
            return unsupported(
                "one column of a table of the application's schema per ALTER TABLE … DROP COLUMN",
            );
        };
        let mut inner = Cursor {
            tokens: action,
            at: 1,
        };
        inner.eat(&["COLUMN"]);
        inner.eat(&["IF", "EXISTS"]);
        return match inner.plain_name_then_end() {
            Some(column) => Ok(Action::CopyColumn { table, column }),
            None => unsupported(
                "one column of a table of the application's schema per ALTER TABLE … DROP COLUMN",
            ),
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

/// Whether no relation has this name in the application's schema or in the archive.
pub(super) fn name_free(client: &mut (impl Query + ?Sized), name: &str) -> Result<bool> {
    Ok(client
        .row(
            "SELECT to_regclass(format('%I.%I', $3::text, $1::text)) IS NULL
                AND to_regclass(format('%I.%I', $2::text, $1::text)) IS NULL",
            &[&name, &SCHEMA, &APP_SCHEMA],
        )?
        .get(0))
}

/// The first suffix under which every one of `bases` gets a free name. Two rollbacks of the
/// same version within one second (or a clock set back) get `_2`, `_3`…
pub(super) fn free_suffix(
    client: &mut (impl Query + ?Sized),
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

/// The names that must be free for archiving this action: a moved table takes its indexes
/// along, renamed with it, so that their names stay free for the table's next life.
pub(super) fn bases(
    client: &mut (impl Query + GenericClient),
    action: &Action,
) -> Result<Vec<String>> {
    Ok(match action {
        Action::Run => Vec::new(),
        Action::MoveTable { table } => {
            let mut bases = vec![table.clone()];
            bases.extend(introspect::indexes_of(client, table)?);
            bases
        }
        Action::CopyColumn { table, column } => vec![format!("{table}__{column}")],
    })
}

pub(super) fn require_table(
    client: &mut (impl Query + GenericClient),
    table: &str,
    version: i32,
) -> Result<()> {
    if !introspect::table_exists(client, table)? {
        bail!(
            "V{version}'s down works on table {table}, which does not exist: the schema does not match the migration history (see `ruleiq-db status`)"
        );
    }
    Ok(())
}

pub(super) fn require_column(
    client: &mut (impl Query + GenericClient),
    table: &str,
    column: &str,
    version: i32,
) -> Result<()> {
    require_table(client, table, version)?;
    if !introspect::column_exists(client, table, column)? {
        bail!(
            "V{version}'s down drops column {table}.{column}, which does not exist: the schema does not match the migration history (see `ruleiq-db status`)"
        );
    }
    Ok(())
}

/// What archiving this action would produce, read-only: for `--dry-run` plans.
pub fn preview(
    client: &mut (impl Query + GenericClient),
    action: &Action,
    version: i32,
    stamp: &Stamp,
) -> Result<Option<Archived>> {
    let table = match action {
        Action::Run => return Ok(None),
        Action::MoveTable { table } => {
            require_table(client, table, version)?;
            table
        }
        Action::CopyColumn { table, column } => {
            require_column(client, table, column, version)?;
            table
        }
    };
    let bases = bases(client, action)?;
    let suffix = free_suffix(client, &bases, version, stamp)?;
    let (object, archive) = action.archived_as(&suffix).expect("not Action::Run");
    Ok(Some(Archived {
        object,
        archive,
        rows: introspect::count_rows(client, table)?,
        version,
    }))
}

/// The lock a down statement takes, as a plan shows it once archiving is part of it: a moved
/// table is only a catalog change; a dropped column is first copied under SHARE.
pub fn planned_lock(lock: &str, action: &Action, archived: &Archived) -> String {
    match action {
        Action::MoveTable { .. } => format!(
            "{lock} (catalog change only: the table is renamed and moved to {}, not dropped)",
            archived.archive
        ),
        _ => format!(
            "SHARE on {} while its {} rows are first copied to {} (reads go on, writes wait); then {lock}",
            archived.object.split('.').next().unwrap_or_default(),
            archived.rows,
            archived.archive
        ),
    }
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
        assert_eq!(classify("DROP TABLE public.users").unwrap(), table("users"));
        assert_eq!(
            classify("ALTER TABLE public.\"evidence_items\" DROP COLUMN ai_metadata").unwrap(),
            Action::CopyColumn {
                table: "evidence_items".into(),
                column: "ai_metadata".into()
            }
        );
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
            "ALTER TABLE other.t DROP CONSTRAINT c",
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
            "DROP TABLE other.users",
            "ALTER TABLE t DROP COLUMN a, DROP COLUMN b",
            "ALTER TABLE other.t DROP COLUMN a",
            "ALTER TABLE public.t DROP COLUMN a, DROP COLUMN b",
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

    /// What rollback will do with each statement of a down migration, database-free: its lock,
    /// what it archives and under which name, and the lock line a `--dry-run` prints for an empty
    /// database whose archive names are free (the rows and a clashing name's `_2` come from
    /// the database).
    fn describe_down(version: i32, stamp: &Stamp) -> String {
        let mut out = String::new();
        for (n, s) in down::statements(version).unwrap().iter().enumerate() {
            let action = classify(&s.sql).unwrap();
            let summary = crate::catalog::sql::summarise_statement(&s.sql);
            out.push_str(&format!("{}. {}\n", n + 1, summary.lines().next().unwrap()));
            out.push_str(&format!("   action: {action:?}\n"));
            let lock = match action.archived_as(&stamp.suffix(version, 1)) {
                Some((object, archive)) => {
                    out.push_str(&format!("   archives: {object} as {archive}\n"));
                    let archived = Archived {
                        object,
                        archive,
                        rows: 0,
                        version,
                    };
                    planned_lock(&s.lock, &action, &archived)
                }
                None => s.lock.clone(),
            };
            out.push_str(&format!("   lock: {lock}\n"));
        }
        out
    }

    #[test]
    fn what_each_down_migration_archives() {
        use chrono::TimeZone;
        let stamp = Stamp::at(
            chrono::Utc
                .with_ymd_and_hms(2026, 11, 25, 10, 15, 0)
                .unwrap(),
        );
        for file in down::file_names() {
            let name = file.split('.').next().unwrap();
            let version: i32 = name[1..].split("__").next().unwrap().parse().unwrap();
            insta::assert_snapshot!(
                format!("down_{name}"),
                describe_down(version, &stamp),
                &format!("migrations/down/{file}, as rollback archives it")
            );
        }
    }
}
