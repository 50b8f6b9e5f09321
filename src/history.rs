//! The migration history (refinery's table) compared with the embedded migrations.

use crate::catalog::{self, history_table, migrations, HISTORY_SCHEMA, HISTORY_TABLE};
use crate::db;
use crate::db::Query;
use anyhow::{Context, Result};
use postgres::Client;
use serde::Serialize;

/// One row of the history table.
#[derive(Debug, Clone)]
pub struct Applied {
    pub version: i32,
    pub name: String,
    pub applied_on: String,
    pub checksum: String,
}

/// How an embedded or recorded migration stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Applied,
    Pending,
    /// Recorded with another name or checksum: the migration was edited after it ran.
    Divergent,
    /// Recorded, but this build does not know it.
    Missing,
}

#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub version: i32,
    pub name: String,
    pub state: State,
    pub applied_on: Option<String>,
}

/// Reads the history; an absent table is an empty history.
pub fn read(client: &mut impl Query) -> Result<Vec<Applied>> {
    if !crate::db::introspect::table_exists_in(client, HISTORY_SCHEMA, HISTORY_TABLE)? {
        return Ok(Vec::new());
    }
    let rows = client.rows(
        &format!("SELECT version, coalesce(name, ''), coalesce(applied_on, ''), coalesce(checksum, '') FROM {} ORDER BY version", history_table()),
        &[],
    )?;
    Ok(rows
        .iter()
        .map(|r| Applied {
            version: r.get(0),
            name: r.get(1),
            applied_on: r.get(2),
            checksum: r.get(3),
        })
        .collect())
}

/// Every version, embedded or recorded, with its state.
pub fn compare(applied: &[Applied]) -> Vec<Entry> {
    let embedded = migrations::all();
    let mut entries: Vec<Entry> = embedded
        .iter()
        .map(|m| {
            let recorded = applied.iter().find(|a| a.version == m.version());
            let state = match recorded {
                None => State::Pending,
                Some(a) if a.name == m.name() && migrations::checksum_matches(m, &a.checksum) => {
                    State::Applied
                }
                Some(_) => State::Divergent,
            };
            Entry {
                version: m.version(),
                name: m.name().to_string(),
                state,
                applied_on: recorded.map(|a| a.applied_on.clone()),
            }
        })
        .collect();
    for a in applied {
        if !embedded.iter().any(|m| m.version() == a.version) {
            entries.push(Entry {
                version: a.version,
                name: a.name.clone(),
                state: State::Missing,
                applied_on: Some(a.applied_on.clone()),
            });
        }
    }
    entries.sort_by_key(|e| e.version);
    entries
}

/// The highest recorded version, 0 for none.
pub fn current_version(applied: &[Applied]) -> i32 {
    applied.iter().map(|a| a.version).max().unwrap_or(0)
}

/// Refuses (exit 4) a history this build cannot trust: an edited or unknown migration.
pub fn verify(applied: &[Applied]) -> Result<()> {
    let problems: Vec<String> = compare(applied)
        .into_iter()
        .filter_map(|e| match e.state {
            State::Divergent => Some(format!(
                "V{} {} differs from the migration that was applied on {} (edited after it ran)",
                e.version,
                e.name,
                e.applied_on.unwrap_or_default()
            )),
            State::Missing => Some(format!(
                "V{} {} is recorded in {HISTORY_TABLE} but unknown to this ruleiq-db (a newer build applied it?)",
                e.version, e.name
            )),
            _ => None,
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        crate::refusal::Refusal::EditedHistory(format!(
            "the migration history cannot be trusted:\n  {}\nnothing was changed; restore the original migration files or use the ruleiq-db build that applied them",
            problems.join("\n  ")
        ))
        .fail()
    }
}

/// Refuses to migrate a database that already has ruleIQ tables but no history: it was built
/// by another tool and must be adopted with `baseline` first.
pub fn refuse_unadopted(client: &mut Client, applied: &[Applied]) -> Result<()> {
    if !applied.is_empty() {
        return Ok(());
    }
    let mut present = Vec::new();
    for table in catalog::TABLES {
        if db::table_exists(client, table)? {
            present.push(*table);
        }
    }
    if present.is_empty() {
        return Ok(());
    }
    crate::refusal::Refusal::NotAdopted(format!(
        "this database already has ruleIQ tables ({}{}) but no ruleiq-db history: it was built by another tool. Run `ruleiq-db baseline` to adopt it, then migrate",
        present.iter().take(3).copied().collect::<Vec<_>>().join(", "),
        if present.len() > 3 { ", …" } else { "" }
    ))
    .fail()
}

/// Creates refinery's history table when it is missing, with refinery's own definition, so that
/// refinery and `read` see it as theirs.
pub fn ensure_table(client: &mut impl Query) -> Result<()> {
    // Asked first, so that a role without the right hears which grant it needs rather than
    // PostgreSQL's "permission denied for schema public".
    let row = client.row(
        "SELECT to_regclass(format('%I.%I', $1::text, $2::text)) IS NOT NULL, has_schema_privilege($1, 'CREATE'), current_user::text",
        &[&HISTORY_SCHEMA, &HISTORY_TABLE],
    )?;
    let (exists, may_create, role): (bool, bool, String) = (row.get(0), row.get(1), row.get(2));
    if !exists && !may_create {
        anyhow::bail!(
            "the role cannot create the history table {HISTORY_TABLE}: GRANT CREATE ON SCHEMA {HISTORY_SCHEMA} TO {role}"
        );
    }
    create_table(client)
}

/// Creates refinery's history table when it is missing, with refinery's own definition, without
/// asking about the role's rights first.
pub fn create_table(client: &mut impl Query) -> Result<()> {
    client.batch(&format!(
        "CREATE TABLE IF NOT EXISTS {} (version int4 PRIMARY KEY, name VARCHAR(255), applied_on VARCHAR(255), checksum VARCHAR(255))",
        history_table()
    ))?;
    Ok(())
}

/// Records a migration as applied, as refinery does: its name, the time in RFC 3339 (refinery
/// parses it whenever it reads the history) and its checksum, so that `verify` accepts it.
pub fn record_applied(client: &mut impl Query, migration: &refinery::Migration) -> Result<()> {
    client.exec(
        &insert_sql(),
        &[
            &migration.version(),
            &migration.name(),
            &applied_now(),
            &migration.checksum().to_string(),
        ],
    )?;
    Ok(())
}

/// Records every one of `migrations` as applied, with one timestamp, in the caller's
/// transaction: `baseline` adopting a database another tool built.
pub fn record_adopted(client: &mut impl Query, migrations: &[refinery::Migration]) -> Result<()> {
    let applied_on = applied_now();
    let insert = insert_sql();
    for m in migrations {
        client
            .exec(
                &insert,
                &[
                    &m.version(),
                    &m.name(),
                    &applied_on,
                    &m.checksum().to_string(),
                ],
            )
            .with_context(|| format!("recording V{} {}", m.version(), m.name()))?;
    }
    Ok(())
}

fn insert_sql() -> String {
    format!(
        "INSERT INTO {} (version, name, applied_on, checksum) VALUES ($1, $2, $3, $4)",
        history_table()
    )
}

/// Now, as refinery writes applied_on: RFC 3339, which it parses whenever it reads the history.
fn applied_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
