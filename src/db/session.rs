//! The only way ruleiq-db changes a database: a [`Session`].
//!
//! Opening one refuses a standby or a read-only server, takes the migration advisory lock
//! (one migrator at a time) and only then sets `lock_timeout`, so that waiting for our own
//! lock is not cut short. Its transactions are retried when a statement gives up waiting for
//! a table lock: the failed transaction has rolled back, so the application's queries that
//! queued behind our lock request go ahead while we back off. Holding these in a type means a
//! command cannot forget one of them; engines that change anything take `&mut Session`.

use super::config::Target;
use super::lock::{acquire_migration_lock, set_lock_timeout};
use super::replication::refuse_unless_writable;
use super::retry::{retry_on_lock_timeout, RetryPolicy};
use crate::progress::Log;
use anyhow::Result;
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

/// A connection holding the migration lock, with `lock_timeout` set. Dropping it closes the
/// connection, which releases the lock.
pub struct Session {
    /// The session's own connection, with the timeout and retry every worker has too.
    connection: Worker,
    target: Target,
}

impl Session {
    /// Makes `client` (a connection to `target`, as `db::connect` opened it) a changing
    /// session: refuses a server that cannot take writes, waits for the migration lock up to
    /// `safety.lock_wait` (then refuses), and sets lock_timeout.
    pub fn begin(target: Target, mut client: Client, safety: Safety, log: Log) -> Result<Session> {
        refuse_unless_writable(&mut client, &target.to_string())?;
        acquire_migration_lock(&mut client, safety.lock_wait, &log)?;
        Ok(Session {
            connection: Worker::new(client, safety, log)?,
            target,
        })
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
        let mut client = super::connect(&self.target)?;
        super::lift_statement_timeout(&mut client)?;
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
            tx.batch_execute(&format!("SET LOCAL lock_timeout = '{wait}ms'"))?;
            tx.batch_execute(statement)?;
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
