//! Applies one embedded migration the way refinery's grouped runner does (its SQL and its
//! history row in one transaction, in refinery's table and format), and adds what refinery
//! cannot: putting back, in that same transaction, what a rollback archived of the tables and
//! columns the migration creates again (see `crate::archive::restore`).

use crate::archive::restore::{self, Restored};
use crate::catalog::sql::split_statements;
use crate::history;
use anyhow::Result;
use postgres::Client;
use refinery::Migration;

/// Applies `migration` and restores its archives in one transaction; returns what was restored.
/// On any error the transaction is rolled back: the database stays at the previous version, the
/// archives untouched.
pub fn apply(client: &mut Client, migration: &Migration) -> Result<Vec<Restored>> {
    let sql = migration.sql().unwrap_or_default();
    let label = format!("V{} {}", migration.version(), migration.name());
    let created: Vec<_> = split_statements(sql)
        .iter()
        .flat_map(|s| restore::created_by(s))
        .collect();
    let mut tx = client.transaction()?;
    history::ensure_table(&mut tx)?;
    let created = restore::absent(&mut tx, &created)?;
    tx.batch_execute(sql)?;
    let restored = restore::restore(&mut tx, &created, &label)?;
    history::record_applied(&mut tx, migration)?;
    tx.commit()?;
    Ok(restored)
}
