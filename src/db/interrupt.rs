//! Ctrl-C and SIGTERM: the run stops the way a failure does, not by dying mid-statement.
//!
//! The handler cancels the statement each of our connections is running (PostgreSQL's cancel
//! request, which also reaches a backend behind a pooler), so the command unwinds through its
//! ordinary error path: a transaction in flight rolls back, the session releases the migration
//! lock explicitly and resets what it set, and the run prints one report that says it was
//! interrupted (exit 130). A second signal, or a run that has not unwound after a grace
//! period, ends the process at once; the server then ends our backends itself when their
//! connections close.

use super::tls::TlsMode;
use postgres::CancelToken;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once};
use std::time::Duration;

static REQUESTED: AtomicBool = AtomicBool::new(false);
static INSTALL: Once = Once::new();
static TOKENS: Mutex<Vec<(CancelToken, TlsMode)>> = Mutex::new(Vec::new());
/// Through a pooler: the server backends our latest transactions ran on, with
/// the start of each transaction (`pg_backend_pid()`, `now()`), newest last.
static POOLED_TRANSACTIONS: Mutex<Vec<(i32, String)>> = Mutex::new(Vec::new());
type Canceller = Box<dyn Fn(&[(i32, String)]) + Send>;
static POOLED_CANCELLER: Mutex<Option<Canceller>> = Mutex::new(None);
type Hook = Box<dyn Fn() + Send>;
static HOOKS: Mutex<Vec<Hook>> = Mutex::new(Vec::new());

/// How long the run has to unwind after the signal before the process ends regardless.
const GRACE: Duration = Duration::from_secs(15);

/// Whether Ctrl-C or SIGTERM was received. Loops that wait (for a lock, between retries,
/// between batches) stop when it is.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// The error a waiting loop returns once [`requested`].
pub fn error() -> anyhow::Error {
    anyhow::anyhow!("interrupted (Ctrl-C or SIGTERM)")
}

/// Fails once [`requested`]: a loop that waits calls it each time round.
pub fn check() -> anyhow::Result<()> {
    if requested() {
        return Err(error());
    }
    Ok(())
}

/// Installs the handler (once per process).
pub fn install() {
    INSTALL.call_once(|| {
        let _ = ctrlc::set_handler(on_signal);
    });
}

/// Remembers how to cancel what `client` is running.
pub fn watch(client: &postgres::Client, tls: &TlsMode) {
    install();
    if let Ok(mut tokens) = TOKENS.lock() {
        tokens.push((client.cancel_token(), tls.clone()));
    }
}

/// Remembers that a transaction of ours started on backend `pid` at `started` (through a
/// pooler, see [`on_pooled_signal`]).
pub fn pooled_transaction(pid: i32, started: String) {
    if let Ok(mut list) = POOLED_TRANSACTIONS.lock() {
        // Each statement of a transaction reports it again: a long loop of them (a dry run's
        // competing scan, `constraints/beside.rs`) must not push the others' out.
        if list.iter().any(|(p, s)| *p == pid && *s == started) {
            return;
        }
        if list.len() >= 64 {
            list.remove(0);
        }
        list.push((pid, started));
    }
}

/// How to cancel our statements through a pooler, in either mode: PgBouncer (before 1.19)
/// drops a cancel request whose sender half-closes its socket, as the client library does, so
/// a statement there is cancelled with `pg_cancel_backend` from a fresh connection instead —
/// only while its backend still runs the very transaction we started there (pid and start
/// time), never one the pooler has since handed to the application.
pub fn on_pooled_signal(cancel: impl Fn(&[(i32, String)]) + Send + 'static) {
    if let Ok(mut slot) = POOLED_CANCELLER.lock() {
        *slot = Some(Box::new(cancel));
    }
}

/// Runs `hook` on a signal, after the running statements are cancelled (the throwaway
/// cluster of `rehearse` stops itself this way).
pub fn on_signal_run(hook: impl Fn() + Send + 'static) {
    install();
    if let Ok(mut hooks) = HOOKS.lock() {
        hooks.push(Box::new(hook));
    }
}

fn on_signal() {
    if REQUESTED.swap(true, Ordering::SeqCst) {
        let _ = writeln!(
            std::io::stderr(),
            "ruleiq-db: interrupted again; exiting now"
        );
        std::process::exit(130);
    }
    let _ = writeln!(
        std::io::stderr(),
        "ruleiq-db: interrupted; cancelling the running statement and stopping cleanly (again to exit at once)"
    );
    // The grace period starts now, and the cancels run on a thread of their own: one that
    // cannot get through (through a pooler with no server connection to spare, the fresh
    // connection that cancels waits for the one our statement holds) must neither hold off the
    // deadline nor keep a second signal from ending the process at once.
    std::thread::spawn(|| {
        std::thread::sleep(GRACE);
        let _ = writeln!(
            std::io::stderr(),
            "ruleiq-db: still not stopped {}s after the interrupt; exiting",
            GRACE.as_secs()
        );
        std::process::exit(130);
    });
    std::thread::spawn(cancel_everything);
}

/// Cancels what every connection of ours runs, then runs the hooks.
fn cancel_everything() {
    let tokens: Vec<(CancelToken, TlsMode)> = TOKENS.lock().map(|t| t.clone()).unwrap_or_default();
    for (token, tls) in tokens {
        if let Ok(connector) = tls.connector() {
            // A backend that is idle, or gone, ignores a cancel request.
            let _ = token.cancel_query(connector);
        }
    }
    let pooled: Vec<(i32, String)> = POOLED_TRANSACTIONS
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default();
    if !pooled.is_empty() {
        if let Ok(slot) = POOLED_CANCELLER.lock() {
            if let Some(cancel) = slot.as_ref() {
                cancel(&pooled);
            }
        }
    }
    if let Ok(hooks) = HOOKS.lock() {
        for hook in hooks.iter() {
            hook();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transaction_reported_by_each_of_its_statements_is_remembered_once() {
        pooled_transaction(-7, "the main session's".into());
        for _ in 0..200 {
            pooled_transaction(-8, "a loop of statements".into());
        }
        let list = POOLED_TRANSACTIONS.lock().unwrap().clone();
        let count = |pid: i32| list.iter().filter(|(p, _)| *p == pid).count();
        assert_eq!(count(-7), 1, "pushed out by the loop: {list:?}");
        assert_eq!(count(-8), 1, "{list:?}");
    }
}
