//! The migration advisory lock (one migrator at a time) and the session's `lock_timeout`.

use super::query::Query;
use crate::progress::Log;
use crate::refusal::Refusal;
use anyhow::{Context, Result};
use postgres::Client;
use std::time::{Duration, Instant};

/// The advisory lock key every ruleiq-db takes before changing anything ("ruleiq" in ASCII).
pub const MIGRATION_LOCK_KEY: i64 = 0x7275_6c65_6971;

/// Takes the migration advisory lock, waiting up to `wait`. While it waits it says so once on
/// stderr, naming the process that holds it. Released by [`release_migration_lock`] (and, should
/// that never run, when the connection closes).
pub fn acquire_migration_lock(client: &mut Client, wait: Duration, log: &Log) -> Result<()> {
    let started = Instant::now();
    let mut announced = false;
    loop {
        super::interrupt::check()?;
        let got: bool = client
            .row("SELECT pg_try_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])?
            .get(0);
        if got {
            if announced {
                log.line(&format!(
                    "got the migration lock after {:.1}s",
                    started.elapsed().as_secs_f64()
                ));
            }
            return Ok(());
        }
        if !announced {
            log.line(&format!(
                "waiting for another ruleiq-db ({}) that holds the migration lock (up to {}s)",
                lock_holder(client).unwrap_or_else(|| "unknown process".into()),
                wait.as_secs()
            ));
            announced = true;
        }
        if started.elapsed() >= wait {
            return Err(Refusal::LockBusy(format!(
                "another ruleiq-db ({}) still holds the migration lock after {}s; try again when it has finished, or raise --lock-wait",
                lock_holder(client).unwrap_or_else(|| "unknown process".into()),
                wait.as_secs()
            ))
            .into());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Who holds the migration lock of this database (an advisory lock is the database's own: a
/// holder in another database is no one to wait for, or to terminate).
const HOLDERS: &str = "SELECT l.pid, coalesce(a.application_name, ''),
        coalesce(a.client_addr::text, 'local'), coalesce(a.state, ''),
        coalesce(extract(epoch FROM now() - a.state_change), 0)::float8
   FROM pg_catalog.pg_locks l
   LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
  WHERE l.locktype = 'advisory' AND l.granted
    AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
    AND ((l.classid::bigint << 32) | l.objid::bigint) = $1";

/// A session holding the migration lock.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LockHolder {
    pub pid: i32,
    pub application_name: String,
    pub client_addr: String,
    pub state: String,
    /// Seconds in its current state.
    pub state_age_s: f64,
}

impl LockHolder {
    pub fn describe(&self) -> String {
        super::who::session_label(self.pid, &self.application_name, Some(&self.client_addr))
    }
}

/// Every session of this database holding the migration lock.
pub fn lock_holders(client: &mut Client) -> Result<Vec<LockHolder>> {
    Ok(client
        .rows(HOLDERS, &[&MIGRATION_LOCK_KEY])?
        .iter()
        .map(|row| LockHolder {
            pid: row.get(0),
            application_name: row.get(1),
            client_addr: row.get(2),
            state: row.get(3),
            state_age_s: row.get(4),
        })
        .collect())
}

/// Holders of the migration lock that are not running ruleiq-db: a lock stranded on a backend
/// (behind a transaction-mode pooler, the backend the application now uses), which nobody will
/// release until that backend ends. `status` names them.
pub fn stranded_lock_holders(client: &mut Client) -> Result<Vec<LockHolder>> {
    Ok(lock_holders(client)?
        .into_iter()
        .filter(|h| h.application_name != "ruleiq-db")
        .collect())
}

fn lock_holder(client: &mut Client) -> Option<String> {
    let holders = lock_holders(client).ok()?;
    holders.first().map(LockHolder::describe)
}

/// Releases the migration lock, checking that it was ours to release: `false` means the lock
/// was not held by this session, so another session has it stranded or it was never taken.
pub fn release_migration_lock(client: &mut Client) -> Result<()> {
    let released: bool = client
        .row("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .context("releasing the migration lock")?
        .get(0);
    if released {
        return Ok(());
    }
    anyhow::bail!(
        "releasing the migration lock: this session did not hold it{}",
        match lock_holder(client) {
            Some(holder) =>
                format!(" ({holder} does: a stranded lock if it is not running ruleiq-db)"),
            None => String::new(),
        }
    )
}

/// Sets the session's `lock_timeout`. Called after the advisory lock is held, so waiting for
/// our own lock is not cut short.
pub fn set_lock_timeout(client: &mut Client, timeout: Duration) -> Result<()> {
    let millis = timeout.as_millis().max(1);
    client
        .batch(&format!("SET lock_timeout = '{millis}ms'"))
        .context("setting lock_timeout")
}
