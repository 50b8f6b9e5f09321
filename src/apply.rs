//! Applies one embedded migration the way refinery's grouped runner does (its SQL and its
//! history row in one transaction, in refinery's table and format), and adds what refinery
//! cannot: putting back, in that same transaction, what a rollback archived of the tables and
//! columns the migration creates again (see `crate::archive::restore`).

use crate::archive::restore::{self, Restored};
use crate::catalog::sql::split_statements;
use crate::constraints::spelling::conflict_raised_or;
use crate::db::{Query, Session};
use crate::history;
use anyhow::Result;
use refinery::Migration;

/// Applies `migration` and restores its archives in one transaction of `session`, retried when
/// a statement hits lock_timeout; returns what was restored. On any error the transaction is
/// rolled back: the database stays at the previous version, the archives untouched. 008
/// meeting a column under both its old and new name is refused (exit 4).
pub fn apply(session: &mut Session, migration: &Migration) -> Result<Vec<Restored>> {
    apply_around(session, migration, |_| Ok(()), |_| Ok(()))
}

/// [`apply`], with `first` run in the migration's transaction right before its SQL and `then`
/// right after it: work that must commit with it but is no part of its text (its checksum
/// stays the same whatever they do).
pub fn apply_around(
    session: &mut Session,
    migration: &Migration,
    mut first: impl FnMut(&mut postgres::Transaction<'_>) -> Result<()>,
    mut then: impl FnMut(&mut postgres::Transaction<'_>) -> Result<()>,
) -> Result<Vec<Restored>> {
    let sql = migration.sql().unwrap_or_default();
    let what = format!("V{} {}", migration.version(), migration.name());
    let created: Vec<_> = split_statements(sql)
        .iter()
        .flat_map(|s| restore::created_by(s))
        .collect();
    session
        .transaction(&what, |tx| {
            history::ensure_table(tx)?;
            let created = restore::absent(tx, &created)?;
            // Everything that needs no lock of the migration's comes first: from its first
            // statement (008: LOCK TABLE) to the commit the application waits, and every round
            // trip in between counts, more so on a server short of CPU.
            let archived = restore::archived(tx, &created)?;
            history::record_applied(tx, migration)?;
            first(tx)?;
            tx.batch(sql)?;
            let restored = restore::restore(tx, &archived, &what)?;
            then(tx)?;
            Ok(restored)
        })
        .map_err(|e| {
            conflict_raised_or(
                e,
                |e| format!("{what}: {e:#}; nothing was changed"),
                format!(
                    "{what} failed and was rolled back; the database stays at the previous version"
                ),
            )
        })
}
