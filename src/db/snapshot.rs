//! Sharing one moment between sessions: a transaction exports its snapshot, and read-only
//! transactions on other connections import it, so that what they read together describes the
//! same instant (the checker's scan sessions, cleanup's preview reader).

use anyhow::Result;
use postgres::{Client, IsolationLevel, Transaction};

/// Starts a READ ONLY, REPEATABLE READ transaction on `client` that sees exactly what the
/// exporting transaction (`pg_export_snapshot()`, still open) sees.
pub fn read_in<'a>(client: &'a mut Client, snapshot: &str) -> Result<Transaction<'a>> {
    let mut tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()?;
    // A snapshot id is hex digits and dashes; anything else could only be a quote.
    super::query::opening(
        &mut tx,
        &format!("SET TRANSACTION SNAPSHOT '{}'", snapshot.replace('\'', "")),
    )?;
    Ok(tx)
}
