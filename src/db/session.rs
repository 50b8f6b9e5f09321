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
//! session-mode pooler hands it on. Holding these in a type means a command cannot forget one
//! of them; engines that change anything take `&mut Session`.

use super::config::Target;
use super::lock::{acquire_migration_lock, release_migration_lock, set_lock_timeout};
use super::query::Query;
use super::replication::refuse_unless_writable;
use super::retry::{retry_on_lock_timeout, RetryPolicy};
use crate::progress::Log;
use anyhow::{Context, Result};
use postgres::{Client, Transaction};
use std::time::Duration;

/// The bounds a session keeps (from --lock-wait, --lock-timeout, --lock-retries).
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
        let mut session = Session {
            connection: Worker {
                client,
                safety,
                log,
                lock_scope: Vec::new(),
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
        Worker::new(client, self.safety(), self.log().clone())
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Runs `work` knowing the tables it takes strong locks on (a migration's `LOCK TABLE`):
    /// each of its attempts first waits (up to the longest backoff) while a long transaction
    /// holds one of them, rather than queue behind it with the application queued behind us.
    /// Work after it, failed or not, waits for nobody again.
    pub fn locking<T>(
        &mut self,
        tables: Vec<String>,
        work: impl FnOnce(&mut Session) -> Result<T>,
    ) -> Result<T> {
        self.connection.lock_scope = tables;
        let result = work(self);
        self.connection.lock_scope = Vec::new();
        result
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
    /// [`Session::locking`]).
    lock_scope: Vec<String>,
}

impl Worker {
    fn new(mut client: Client, safety: Safety, log: Log) -> Result<Worker> {
        set_lock_timeout(&mut client, safety.lock_timeout)?;
        Ok(Worker {
            client,
            safety,
            log,
            lock_scope: Vec::new(),
        })
    }
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
}
