//! Connections and the safety mechanics every changing command shares: the advisory lock (one
//! migrator at a time), `lock_timeout` (short waits for table locks) and retry with backoff
//! when a statement hits it.

use crate::config::Target;
use crate::exit::Refused;
use crate::progress::Log;
use anyhow::{Context, Result};
use postgres::error::SqlState;
use postgres::Client;
use std::time::{Duration, Instant};

/// The advisory lock key every ruleiq-db takes before changing anything ("ruleiq" in ASCII).
pub const MIGRATION_LOCK_KEY: i64 = 0x7275_6c65_6971;

/// Opens a connection, with an error that names the server but never the password.
pub fn connect(target: &Target) -> Result<Client> {
    let connector = target.tls.connector()?;
    let mut client = target.config.connect(connector).map_err(|e| {
        anyhow::anyhow!("cannot connect to {target}: {}", describe_connect_error(&e))
    })?;
    // So that looking for blockers never names one of this process's own connections.
    crate::health::blockers::remember_own_session(&mut client);
    keep_compat_views_out_of_sight(&mut client)?;
    Ok(client)
}

/// ruleiq-db works on the tables, never through the compatibility views (see
/// `catalog::compat::search_path_without`), whatever search_path the connection came with.
fn keep_compat_views_out_of_sight(client: &mut Client) -> Result<()> {
    let path: String = client
        .query_one("SELECT current_setting('search_path')", &[])?
        .get(0);
    if let Some(path) = crate::catalog::compat::search_path_without(&path) {
        client
            .execute("SELECT set_config('search_path', $1, false)", &[&path])
            .context("setting search_path")?;
    }
    Ok(())
}

fn describe_connect_error(error: &postgres::Error) -> String {
    // The Display of a connection error ends in its cause; keep one line.
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text.replace('\n', " ")
}

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
            return Err(Refused(format!(
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

/// Lifts a `statement_timeout` that the server configuration, the database or the role sets
/// (`ALTER DATABASE … SET statement_timeout`): it is meant for the application's queries, and
/// would cancel a VALIDATE or a scan of a big table half-way. Table lock waits stay bounded by
/// `lock_timeout`. One set in the connection options (`options=-c statement_timeout=…`,
/// `PGOPTIONS`) is the operator's own choice for this run and is kept.
///
/// Returns what to say on stderr, if anything.
pub fn lift_statement_timeout(client: &mut Client) -> Result<Option<String>> {
    let row = client
        .query_one(
            "SELECT setting, unit, source FROM pg_settings WHERE name = 'statement_timeout'",
            &[],
        )
        .context("reading statement_timeout")?;
    let setting: String = row.get(0);
    let unit: Option<String> = row.get(1);
    let source: String = row.get(2);
    if setting == "0" {
        return Ok(None);
    }
    let value = format!("{setting}{}", unit.unwrap_or_default());
    if source == "client" {
        return Ok(Some(format!(
            "statement_timeout = {value} from the connection options is kept: a longer statement (a VALIDATE, a scan of a big table) will be cancelled"
        )));
    }
    client
        .batch_execute("SET statement_timeout = 0")
        .context("lifting statement_timeout for this session")?;
    Ok(Some(format!(
        "statement_timeout = {value} (set for the {}) is lifted for ruleiq-db's own sessions: its scans and VALIDATE may take longer than that",
        setting_origin(&source)
    )))
}

fn setting_origin(source: &str) -> &str {
    match source {
        "database" => "database",
        "user" => "role",
        "database user" => "role in this database",
        "configuration file" => "server, in its configuration file",
        other => other,
    }
}

/// Whether an error (anywhere in its chain) is a table lock wait given up on: PostgreSQL's
/// lock_not_available (55P03), or a statement cancelled by statement_timeout (57014), which is
/// how a wait ends when statement_timeout is the shorter of the two.
pub fn is_lock_timeout(error: &anyhow::Error) -> bool {
    sql_state(error).is_some_and(|code| *code == SqlState::LOCK_NOT_AVAILABLE)
        || is_statement_timeout(error)
}

/// Whether an error is a statement cancelled by statement_timeout (57014 carries other
/// cancellations too: a user's request, pg_cancel_backend; only the message tells them apart).
pub fn is_statement_timeout(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<postgres::Error>()
            .and_then(postgres::Error::as_db_error)
            .is_some_and(|db| {
                *db.code() == SqlState::QUERY_CANCELED && db.message().contains("statement timeout")
            })
    })
}

/// The SQLSTATE of the first PostgreSQL error in the chain.
pub fn sql_state(error: &anyhow::Error) -> Option<&SqlState> {
    error.chain().find_map(|cause| {
        cause
            .downcast_ref::<postgres::Error>()
            .and_then(|e| e.code())
    })
}

/// How to retry a transaction that hit `lock_timeout`.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
}

impl RetryPolicy {
    pub fn new(attempts: u32) -> RetryPolicy {
        RetryPolicy {
            attempts: attempts.max(1),
            first_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// Runs `work` (one whole transaction) and, when it fails on lock_timeout, waits and runs it
/// again. The failed transaction has already rolled back, so the application's queries that
/// queued behind our lock request go ahead while we wait; that is why we give up the lock
/// request quickly and retry rather than wait long.
pub fn retry_on_lock_timeout<T>(
    what: &str,
    policy: RetryPolicy,
    log: &Log,
    mut work: impl FnMut() -> Result<T>,
) -> Result<T> {
    let mut backoff = policy.first_backoff;
    for attempt in 1..=policy.attempts {
        match work() {
            Err(error) if is_lock_timeout(&error) && attempt < policy.attempts => {
                log.line(&format!(
                    "{what}: a table lock was not granted in time (lock_timeout or statement_timeout, attempt {attempt}/{}); rolled back, retrying in {} ms",
                    policy.attempts,
                    backoff.as_millis()
                ));
                std::thread::sleep(backoff + jitter(backoff));
                backoff = (backoff * 2).min(policy.max_backoff);
            }
            Err(error) if is_statement_timeout(&error) => {
                return Err(error.context(format!(
                    "{what}: cancelled by statement_timeout on each of {} attempts, waiting for a table lock or running longer than statement_timeout allows",
                    policy.attempts
                )));
            }
            Err(error) if is_lock_timeout(&error) => {
                return Err(error.context(format!(
                    "{what}: gave up after {} attempts to get a table lock; a long transaction is holding it (see pg_stat_activity), retry when it ends or raise --lock-retries",
                    policy.attempts
                )));
            }
            other => return other,
        }
    }
    unreachable!("the loop returns on its last attempt")
}

/// Up to a quarter of `base`, so that two waiting migrators do not retry in lockstep.
fn jitter(base: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()))
        ^ u64::from(std::process::id());
    let quarter = (base.as_millis() as u64 / 4).max(1);
    Duration::from_millis(nanos % quarter)
}

/// Whether a table exists in the current schema.
pub fn table_exists(client: &mut Client, table: &str) -> Result<bool> {
    Ok(client
        .query_one("SELECT to_regclass(quote_ident($1)) IS NOT NULL", &[&table])?
        .get(0))
}

/// The columns of a table in the current schema (empty when the table is absent).
pub fn columns_of(client: &mut Client, table: &str) -> Result<Vec<String>> {
    let rows = client.query(
        "SELECT attname::text FROM pg_attribute
          WHERE attrelid = to_regclass(quote_ident($1)) AND attnum > 0 AND NOT attisdropped
          ORDER BY attnum",
        &[&table],
    )?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Refuses (exit 4) when a table has both the legacy and the full name of a renamed column:
/// neither 008 nor its down can decide which one holds the data. `doing` names what cannot go
/// on, `again` what to run once a person has decided.
pub fn refuse_rename_conflicts(client: &mut Client, doing: &str, again: &str) -> Result<()> {
    let mut conflicts = Vec::new();
    for r in crate::catalog::renames::RENAMES {
        let columns = columns_of(client, r.table)?;
        if columns.iter().any(|c| c == r.legacy) && columns.iter().any(|c| c == r.current) {
            conflicts.push(format!("{}: both {} and {}", r.table, r.legacy, r.current));
        }
    }
    if conflicts.is_empty() {
        return Ok(());
    }
    crate::exit::refuse(format!(
        "rename conflict, {doing}: {}. 008 renames each truncated column to its full name (its rollback renames it back) and never chooses which of two columns holds the application's data, so it stops here; nothing was changed. `ruleiq-db status` lists the conflict; {again} once a single name is left",
        conflicts.join("; ")
    ))
}
