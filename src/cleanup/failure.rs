//! A run that fails after its first batch has committed changes: never an unreported partial
//! change (docs/design.md §2). The report names every table already changed (from the audit, which
//! each batch writes in the same statement as its changes, so it holds exactly what
//! committed), the run id and the exact command that undoes it.

use super::audit;
use anyhow::Result;
use postgres::Client;
use serde::Serialize;
use uuid::Uuid;

/// A table a failed run had already changed, and how many of its rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangedTable {
    pub table: String,
    pub rows: u64,
}

/// What a failed run left behind.
#[derive(Debug, Clone)]
pub struct Accounted {
    pub changed_tables: Vec<ChangedTable>,
    /// Set when the audit could not be read: the tables listed are those the run had started
    /// on, which may or may not hold changes.
    pub uncertain: Option<String>,
}

/// The command that undoes run `run_id`.
pub fn undo_command(run_id: Uuid) -> String {
    format!("ruleiq-db cleanup --undo {run_id} --yes")
}

/// Reads what run `run_id` changed and marks it interrupted, on `client` if it still works,
/// else on a fresh connection from `reconnect`. When neither can read the audit, falls back
/// to `started`, the tables the run had begun to change.
pub fn account(
    client: &mut Client,
    reconnect: impl FnOnce() -> Result<Client>,
    run_id: Uuid,
    started: &[&str],
) -> Accounted {
    let read = |c: &mut Client| -> Result<Vec<ChangedTable>> {
        let tables = audit::changed_tables(c, run_id)?;
        audit::mark_interrupted(c, run_id)?;
        Ok(tables
            .into_iter()
            .map(|(table, rows)| ChangedTable {
                table,
                rows: rows as u64,
            })
            .collect())
    };
    let first = if client.is_closed() {
        Err(anyhow::anyhow!("the connection is closed"))
    } else {
        read(client)
    };
    let result = first.or_else(|_| reconnect().and_then(|mut fresh| read(&mut fresh)));
    match result {
        Ok(changed_tables) => Accounted {
            changed_tables,
            uncertain: None,
        },
        Err(e) => Accounted {
            changed_tables: started
                .iter()
                .map(|t| ChangedTable {
                    table: t.to_string(),
                    rows: 0,
                })
                .collect(),
            uncertain: Some(format!(
                "the audit could not be read ({e:#}); the tables listed are those the run had started on, their row counts unknown"
            )),
        },
    }
}
