//! The migration advisory lock (one migrator at a time) and the session's `lock_timeout`.

use crate::progress::Log;
use crate::refusal::Refusal;
use anyhow::{Context, Result};
use postgres::Client;
use std::time::{Duration, Instant};

/// The advisory lock key every ruleiq-db takes before changing anything ("ruleiq" in ASCII).
pub const MIGRATION_LOCK_KEY: i64 = 0x7275_6c65_6971;

/// Takes the migration advisory lock, waiting up to `wait`. While it waits it says so once on
/// stderr, naming the process that holds it. Released when the connection closes.
pub fn acquire_migration_lock(client: &mut Client, wait: Duration, log: &Log) -> Result<()> {
    let started = Instant::now();
    let mut announced = false;
    loop {
        let got: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])?
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

fn lock_holder(client: &mut Client) -> Option<String> {
    let row = client
        .query_opt(
            "SELECT l.pid, coalesce(a.application_name, ''), coalesce(a.client_addr::text, 'local')
               FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
              WHERE l.locktype = 'advisory' AND l.granted
                AND ((l.classid::bigint << 32) | l.objid::bigint) = $1
              LIMIT 1",
            &[&MIGRATION_LOCK_KEY],
        )
        .ok()??;
    let pid: i32 = row.get(0);
    let app: String = row.get(1);
    let addr: String = row.get(2);
    Some(format!("pid {pid}, {app} from {addr}"))
}

/// Sets the session's `lock_timeout`. Called after the advisory lock is held, so waiting for
/// our own lock is not cut short.
pub fn set_lock_timeout(client: &mut Client, timeout: Duration) -> Result<()> {
    let millis = timeout.as_millis().max(1);
    client
        .batch_execute(&format!("SET lock_timeout = '{millis}ms'"))
        .context("setting lock_timeout")
}
