//! Telling a lock wait given up on from other errors, and retrying a whole transaction when
//! that happens.

use crate::db::Query;
use crate::progress::Log;
use crate::units;
use anyhow::Result;
use postgres::error::SqlState;
use postgres::Client;
use std::time::{Duration, Instant};

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
            // Short and capped at a second: with a short lock_timeout the retries are how a
            // lock is got, and a transaction in the way (a report, a batch job) usually ends
            // within a second or two; a long backoff only made migrate sit idle after it had.
            first_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
        }
    }
}

/// Runs `work` (one whole transaction) on `client` and, when it fails on lock_timeout, waits
/// and runs it again. The failed transaction has already rolled back, so the application's
/// queries that queued behind our lock request go ahead while we wait; that is why we give up
/// the lock request quickly and retry rather than wait long.
///
/// `tables`: the tables the work takes strong locks on, when the caller knows them (008's
/// `LOCK TABLE`). Then an attempt waits while a long transaction holds one of them (the first
/// up to the longest backoff, later ones up to their backoff): such an attempt could only
/// queue, make the application queue behind it for `lock_timeout`, and give up.
pub fn retry_on_lock_timeout<T>(
    what: &str,
    policy: RetryPolicy,
    log: &Log,
    client: &mut Client,
    tables: &[String],
    mut work: impl FnMut(&mut Client) -> Result<T>,
) -> Result<T> {
    let mut backoff = policy.first_backoff;
    if !tables.is_empty() {
        wait_until_free(client, tables, policy.max_backoff);
    }
    for attempt in 1..=policy.attempts {
        super::interrupt::check()?;
        match work(client) {
            Err(error) if is_lock_timeout(&error) && attempt < policy.attempts => {
                log.line(&format!(
                    "{what}: a table lock was not granted in time (lock_timeout or statement_timeout, attempt {attempt}/{}); rolled back, retrying within {} ms",
                    policy.attempts,
                    backoff.as_millis()
                ));
                let wait = backoff + jitter(backoff);
                if tables.is_empty() {
                    wait_for_a_chance(client, wait);
                } else {
                    // At least a moment, so that a holder too young to count yet shows.
                    std::thread::sleep(POLL);
                    wait_until_free(client, tables, wait.saturating_sub(POLL));
                }
                backoff = (backoff * 2).min(policy.max_backoff);
            }
            Err(error) if is_statement_timeout(&error) => {
                return Err(error.context(format!(
                    "{what}: cancelled by statement_timeout every time ({}), waiting for a table lock or running longer than statement_timeout allows",
                    units::count(policy.attempts.into(), "attempt", "attempts")
                )));
            }
            Err(error) if is_lock_timeout(&error) => {
                return Err(error.context(format!(
                    "{what}: gave up after {} to get a table lock; a long transaction is holding it (see pg_stat_activity), retry when it ends or raise --lock-retries",
                    units::count(policy.attempts.into(), "attempt", "attempts")
                )));
            }
            other => return other,
        }
    }
    unreachable!("the loop returns on its last attempt")
}

/// How often a waiting retry looks whether a transaction in the way has ended.
const POLL: Duration = Duration::from_millis(20);

/// Waits `backoff` before the next attempt, or less: when the transactions that held table
/// locks in this database for a while when the attempt gave up (a report idle in transaction,
/// a batch job) have all ended, the lock one of them was holding is most likely free now, and
/// the rest of the backoff would only give the next long transaction time to take it first.
/// Short statements come and go and are not waited for; going again while one of the long
/// ones is still open would only make the application queue behind another lock request that
/// gives up. When the holders cannot be read (a role that may not see other users'
/// transactions), the whole backoff.
pub fn wait_for_a_chance(client: &mut Client, backoff: Duration) {
    let started = Instant::now();
    let freed = match long_lock_holders(client, None) {
        Ok(first) if !first.is_empty() => wait_while(client, None, backoff, |now| {
            first.iter().any(|holder| now.contains(holder))
        }),
        _ => false,
    };
    if !freed {
        std::thread::sleep(backoff.saturating_sub(started.elapsed()));
    }
}

/// Waits, up to `cap`, until no long transaction (see [`long_lock_holders`]) holds a lock on
/// one of `tables`. Returns at once when none does or when the holders cannot be read.
pub fn wait_until_free(client: &mut Client, tables: &[String], cap: Duration) {
    wait_while(client, Some(tables), cap, |now| !now.is_empty());
}

/// Looks every [`POLL`], up to `cap`, at the long transactions holding a lock (on one of
/// `tables`, or on any table), for as long as `in_the_way` says they are. True once they are
/// not; false when `cap` ran out or the holders cannot be read.
fn wait_while(
    client: &mut Client,
    tables: Option<&[String]>,
    cap: Duration,
    in_the_way: impl Fn(&[(i32, f64)]) -> bool,
) -> bool {
    let deadline = Instant::now() + cap;
    while let Ok(now) = long_lock_holders(client, tables) {
        if !in_the_way(&now) {
            return true;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        std::thread::sleep(left.min(POLL));
    }
    false
}

/// Other sessions (not this process's own) whose transaction in this database began more
/// than 50 ms ago and holds a lock on a table (one of `tables`, when given): pid and
/// transaction start.
fn long_lock_holders(client: &mut Client, tables: Option<&[String]>) -> Result<Vec<(i32, f64)>> {
    let (own_pids, _) = super::own_sessions::all();
    let rows = client.rows(
        "SELECT a.pid, extract(epoch FROM a.xact_start)::float8
           FROM pg_stat_activity AS a
          WHERE a.datname = current_database()
            AND a.pid <> pg_backend_pid()
            AND NOT (a.pid = ANY($1))
            AND a.xact_start < clock_timestamp() - interval '50 milliseconds'
            AND EXISTS (SELECT 1 FROM pg_locks AS l
                         WHERE l.pid = a.pid AND l.granted AND l.locktype = 'relation'
                           AND ($2::text[] IS NULL
                                OR l.relation = ANY (SELECT to_regclass(format('%I.%I', 'public', t))
                                                       FROM unnest($2::text[]) AS t)))",
        &[&own_pids, &tables],
    )?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
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
