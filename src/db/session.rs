//! The only way ruleiq-db changes a database: a [`Session`].
//!
//! Opening one refuses a connection through a transaction-mode pooler (where the lock and the
//! settings would land on the application's backends), a standby or a read-only server, takes
//! the migration advisory lock
//! (one migrator at a time) and only then sets `lock_timeout`, so that waiting for our own
//! lock is not cut short. Its transactions are retried when a statement gives up waiting for
//! a table lock: the failed transaction has rolled back, so the application's queries that
//! queued behind our lock request go ahead while we back off. Closing it (or dropping it, on
//! an error or an interrupt) releases the lock explicitly, checks that it was released, and
//! resets the settings it made, so nothing of ours stays on the connection even where a
//! session-mode pooler hands it on. Before the work that takes table locks, [`Session::locking`]
//! waits for the sessions that would make those locks wait (docs/design.md §9), and long data
//! work paces itself for the standbys through [`Session::pace`]: the session owns the throttle.
//! Holding these in a type means a command cannot forget one of them; engines that change
//! anything take `&mut Session`.

use super::blockers::{self, Scope};
use super::config::Target;
use super::lock::{acquire_migration_lock, release_migration_lock, set_lock_timeout};
use super::query::Query;
use super::replication::{refuse_unless_writable, MaxLag, ReplicaThrottle};
use super::retry::{retry_on_lock_timeout, RetryPolicy};
use crate::progress::Log;
use anyhow::{Context, Result};
use postgres::{Client, Transaction};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The bounds a session keeps: the whole envelope of a changing command (--lock-wait,
/// --lock-timeout, --validate-lock-timeout, --lock-retries, --blocker-age, --ignore-blockers,
/// --max-replica-lag, --max-replica-wait).
#[derive(Debug, Clone, Copy)]
pub struct Safety {
    /// How long to wait for another ruleiq-db's migration lock before refusing.
    pub lock_wait: Duration,
    /// How long one statement may queue for a table lock (and so hold the application up
    /// behind it) before it gives up and its transaction is retried.
    pub lock_timeout: Duration,
    /// How long a statement whose lock no application query conflicts with (VALIDATE's SHARE
    /// UPDATE EXCLUSIVE) may wait: nothing queues behind it but other DDL and vacuum.
    pub patient_lock_timeout: Duration,
    pub retry: RetryPolicy,
    /// A transaction open longer than this is a blocker wherever it holds its locks.
    pub blocker_age: Duration,
    /// Go ahead despite blockers, naming them; lock_timeout and the retries bound the wait.
    pub ignore_blockers: bool,
    /// How far behind a standby may fall before long data work pauses.
    pub max_replica_lag: MaxLag,
    /// How long to wait for lagging standbys before refusing.
    pub max_replica_wait: Duration,
}

impl Safety {
    /// The limits a blocker look uses: a real run waits up to --lock-wait for blockers to go.
    pub fn blocker_limits(&self) -> blockers::Limits {
        blockers::Limits {
            blocker_age: self.blocker_age,
            wait: self.lock_wait,
        }
    }
}

/// A connection holding the migration lock, with `lock_timeout` set. [`Session::close`] (or
/// dropping it) releases the lock and resets the settings.
pub struct Session {
    /// The session's own connection, with the timeout and retry every worker has too.
    connection: Worker,
    target: Target,
    released: bool,
}

/// What went wrong releasing a session dropped without [`Session::close`] (an error path):
/// the command's failure names it, so a stranded lock is never silent.
static RELEASE_FAILURES: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Failures to release the migration lock that no `close` reported, taken once.
pub fn take_release_failures() -> Vec<String> {
    RELEASE_FAILURES
        .lock()
        .map(|mut f| std::mem::take(&mut *f))
        .unwrap_or_default()
}

impl Session {
    /// Makes `client` (a connection to `target`, as `db::connect` opened it) a changing
    /// session: refuses a server that cannot take writes, waits for the migration lock up to
    /// `safety.lock_wait` (then refuses), and sets lock_timeout.
    pub fn begin(target: Target, mut client: Client, safety: Safety, log: Log) -> Result<Session> {
        super::pooler::refuse_if_pooled(&target)?;
        refuse_unless_writable(&mut client, &target.to_string())?;
        acquire_migration_lock(&mut client, safety.lock_wait, &log)?;
        let throttle = ReplicaThrottle::new(safety.max_replica_lag, safety.max_replica_wait);
        let mut session = Session {
            connection: Worker {
                client,
                safety,
                log,
                lock_scope: Vec::new(),
                throttle: Arc::new(Mutex::new(throttle)),
            },
            target,
            released: false,
        };
        set_lock_timeout(&mut session.connection.client, safety.lock_timeout)?;
        Ok(session)
    }

    /// Ends the session: releases the migration lock (an error when this session turns out not
    /// to hold it) and resets the session's settings.
    pub fn close(mut self) -> Result<()> {
        self.release()
    }

    fn release(&mut self) -> Result<()> {
        if self.released {
            return Ok(());
        }
        self.released = true;
        let client = &mut self.connection.client;
        if client.is_closed() {
            // The server ended the connection, and with it the lock.
            return Ok(());
        }
        let released = release_migration_lock(client);
        client
            .batch(RESET_SESSION)
            .context("resetting the session's settings")?;
        released
    }

    /// Runs `work` in one transaction, committed when it returns `Ok`. When a statement hits
    /// lock_timeout the transaction is rolled back and `work` runs again after a backoff, up
    /// to the retry budget; `what` names the work in those log lines and in the final error.
    pub fn transaction<T>(
        &mut self,
        what: &str,
        mut work: impl FnMut(&mut Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        self.connection.retried(what, |client| {
            let mut tx = client.transaction()?;
            let value = work(&mut tx)?;
            tx.commit()?;
            Ok(value)
        })
    }

    /// Runs `work` with the same retry, for work that manages its transactions itself (one
    /// that must run statements outside a transaction block, or commit in two steps). `work`
    /// must leave no transaction open when it fails, so that a retry starts clean.
    pub fn retried<T>(
        &mut self,
        what: &str,
        work: impl FnMut(&mut Client) -> Result<T>,
    ) -> Result<T> {
        self.connection.retried(what, work)
    }

    /// The connection, for reading what the work needs. Reads take no table locks that the
    /// application would queue behind beyond ACCESS SHARE.
    pub fn client(&mut self) -> &mut Client {
        &mut self.connection.client
    }

    /// Another connection for work that runs alongside this session under its lock (validating
    /// another table's constraints): statement_timeout lifted as on every connection, the same
    /// lock_timeout and retry. It takes no migration lock of its own: this session holds it.
    pub fn worker(&self) -> Result<Worker> {
        let client = super::connect(&self.target)?;
        let mut worker = Worker {
            client,
            safety: self.safety(),
            log: self.log().clone(),
            lock_scope: Vec::new(),
            throttle: Arc::clone(&self.connection.throttle),
        };
        set_lock_timeout(&mut worker.client, worker.safety.lock_timeout)?;
        Ok(worker)
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Runs `work`, which takes the table locks `scope` says, once no session would make those
    /// locks wait (docs/design.md §9): waits for such sessions to go, up to --lock-wait, then
    /// refuses naming them, nothing changed; with --ignore-blockers names them and goes ahead.
    /// Called after the migration lock is held ([`Session::begin`]) and before the first table
    /// lock, and after any prompt: who blocks now is what matters.
    pub fn locking<T>(
        &mut self,
        scope: &Scope,
        work: impl FnOnce(&mut Session) -> Result<T>,
    ) -> Result<T> {
        self.wait_for_blockers(scope)?;
        work(self)
    }

    /// As [`Session::locking`], for DDL whose lock request the application's queries queue
    /// behind (a migration's `LOCK TABLE`): besides, each attempt of the work's transactions
    /// first waits (up to the longest backoff) while a long transaction holds one of `scope`'s
    /// tables, rather than queue behind it with the application queued behind us. Work after
    /// it, failed or not, waits for nobody again.
    pub fn locking_for_ddl<T>(
        &mut self,
        scope: &Scope,
        work: impl FnOnce(&mut Session) -> Result<T>,
    ) -> Result<T> {
        self.wait_for_blockers(scope)?;
        self.connection.lock_scope = scope.tables.clone();
        let result = work(self);
        self.connection.lock_scope = Vec::new();
        result
    }

    fn wait_for_blockers(&mut self, scope: &Scope) -> Result<()> {
        let safety = self.safety();
        let limits = safety.blocker_limits();
        let Worker { client, log, .. } = &mut self.connection;
        if safety.ignore_blockers {
            for b in blockers::find(client, scope, &limits)? {
                log.line(&format!(
                    "--ignore-blockers: going ahead despite {}",
                    b.describe()
                ));
            }
            return Ok(());
        }
        blockers::wait_until_clear(client, scope, &limits, log)
    }

    /// Called before each batch of long data work (and before each step that cannot pause
    /// inside): returns when no standby is further behind than --max-replica-lag, waiting while
    /// one is; refuses once the wait passes --max-replica-wait. Stops the work when Ctrl-C or
    /// SIGTERM came between two batches.
    pub fn pace(&mut self) -> Result<()> {
        Retrying::pace(&mut self.connection)
    }

    /// Everything this session (and its workers) waited for the standbys so far.
    pub fn replica_waited(&self) -> Duration {
        lock_throttle(&self.connection.throttle).waited
    }

    pub fn log(&self) -> &Log {
        &self.connection.log
    }

    pub fn safety(&self) -> Safety {
        self.connection.safety
    }

    pub fn retry_policy(&self) -> RetryPolicy {
        self.connection.safety.retry
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Err(error) = self.release() {
            let message = format!("{error:#}");
            self.log().line(&message);
            if let Ok(mut failures) = RELEASE_FAILURES.lock() {
                failures.push(message);
            }
        }
    }
}

/// Every session setting ruleiq-db made (lock_timeout, statement_timeout, search_path, jit, …)
/// back to what the connection started with.
const RESET_SESSION: &str = "RESET ALL";

/// A connection working under the migration lock with lock_timeout set and the retry: the
/// session's own, or one beside it that [`Session::worker`] opened.
pub struct Worker {
    client: Client,
    safety: Safety,
    log: Log,
    /// The tables the coming work takes strong locks on, when known (see
    /// [`Session::locking_for_ddl`]).
    lock_scope: Vec<String>,
    /// The session's replica throttle, shared with its workers: one standby wait at a time,
    /// each counted once in what the report says was waited.
    throttle: Arc<Mutex<ReplicaThrottle>>,
}

impl Worker {
    fn wait_for_replay(&mut self, what: &str) -> Result<Duration> {
        lock_throttle(&self.throttle).wait_for_replay(&mut self.client, &self.log, what)
    }
}

/// The throttle, also when a worker panicked holding it (its measurements stay usable).
fn lock_throttle(throttle: &Mutex<ReplicaThrottle>) -> std::sync::MutexGuard<'_, ReplicaThrottle> {
    throttle
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Drop for Worker {
    fn drop(&mut self) {
        if !self.client.is_closed() {
            // Best effort: a worker holds no lock, and its backend ends with the connection.
            let _ = self.client.batch(RESET_SESSION);
        }
    }
}

/// Retried work on a connection that keeps the safety rules: a [`Session`] or one of its
/// [`Worker`]s. Engines that spread work over several connections take this.
pub trait Retrying {
    /// Runs `work` (which leaves no transaction open when it fails); when a statement hits
    /// lock_timeout, runs it again after a backoff, up to the retry budget.
    fn retried<T>(&mut self, what: &str, work: impl FnMut(&mut Client) -> Result<T>) -> Result<T>;

    /// The connection, for reading.
    fn client(&mut self) -> &mut Client;

    fn safety(&self) -> Safety;

    /// Waits until every standby has replayed everything the primary has written so far
    /// (`what` names that work on stderr); returns how long it waited. Refuses once the wait
    /// passes --max-replica-wait. The session and its workers wait one at a time.
    fn wait_for_replay(&mut self, what: &str) -> Result<Duration>;

    /// Before each batch of long data work: see [`Session::pace`]. The session and its
    /// workers share one throttle.
    fn pace(&mut self) -> Result<()>;

    fn log(&self) -> &Log;

    /// Runs `statement` alone in a transaction of its own that may wait up to
    /// `patient_lock_timeout` for its lock, retried like any other work. Only for a statement
    /// whose lock no application query conflicts with (VALIDATE CONSTRAINT): the application
    /// does not queue behind it, and a wait longer than deadlock_timeout gets an autovacuum
    /// that holds the table cancelled, where a short wait would only retry until it ends.
    fn run_patiently(&mut self, what: &str, statement: &str) -> Result<()> {
        let wait = self.safety().patient_lock_timeout.as_millis().max(1);
        self.retried(what, |client| {
            let mut tx = client.transaction()?;
            tx.batch(&format!("SET LOCAL lock_timeout = '{wait}ms'"))?;
            tx.batch(statement)?;
            tx.commit()?;
            Ok(())
        })
    }
}

impl Retrying for Session {
    fn retried<T>(&mut self, what: &str, work: impl FnMut(&mut Client) -> Result<T>) -> Result<T> {
        Session::retried(self, what, work)
    }

    fn client(&mut self) -> &mut Client {
        Session::client(self)
    }

    fn safety(&self) -> Safety {
        Session::safety(self)
    }

    fn wait_for_replay(&mut self, what: &str) -> Result<Duration> {
        self.connection.wait_for_replay(what)
    }

    fn pace(&mut self) -> Result<()> {
        Session::pace(self)
    }

    fn log(&self) -> &Log {
        Session::log(self)
    }
}

impl Retrying for Worker {
    fn retried<T>(&mut self, what: &str, work: impl FnMut(&mut Client) -> Result<T>) -> Result<T> {
        retry_on_lock_timeout(
            what,
            self.safety.retry,
            &self.log,
            &mut self.client,
            &self.lock_scope,
            work,
        )
    }

    fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    fn safety(&self) -> Safety {
        self.safety
    }

    fn wait_for_replay(&mut self, what: &str) -> Result<Duration> {
        Worker::wait_for_replay(self, what)
    }

    fn pace(&mut self) -> Result<()> {
        lock_throttle(&self.throttle).between_batches(&mut self.client, &self.log)
    }

    fn log(&self) -> &Log {
        &self.log
    }
}
