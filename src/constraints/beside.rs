//! Timing a sample while a scan of ours runs on another session: how a VALIDATE fares beside
//! another table's, which `migrate` runs at the same time (`validate.rs`). Where the
//! application leaves few cores idle, the two share what it leaves: business_profiles'
//! VALIDATEs took 1.3–3.7 times what their samples, timed alone, said, evidence_items' about
//! what theirs said (docs/performance.md). Where cores are idle, the two do not slow each other,
//! and a sample timed beside the other scan says so too.

use crate::db::{Param, Query};
use anyhow::Result;
use postgres::{Client, Transaction};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

/// How long the competing scan runs before `work` starts: a local round trip and the
/// statement's start on the server.
const HEAD_START: Duration = Duration::from_millis(2);

/// How long `work` waits for the competing scan to start. A direct connection's BEGIN takes a
/// round trip; through a transaction pooler with no server connection to spare (a pool of one,
/// which `work`'s own transaction holds) it cannot start until that transaction ends, and
/// `work` is timed alone instead.
const START_WAIT: Duration = Duration::from_millis(500);

/// A statement the other session runs, with what it binds, under the `SET LOCAL` settings its
/// samples run with (one process, as a VALIDATE runs).
pub struct Competitor<'a> {
    pub settings: &'a str,
    pub sql: &'a str,
    pub params: Vec<&'a dyn Param>,
}

/// Runs `work` on `tx` while `other` runs `competitor` over and over, in a read-only
/// transaction it rolls back, from just before `work` starts until it ends; then commits `tx`.
/// Returns what `work` returned, and whether the competing scan ran throughout: when it could
/// not start in [`START_WAIT`], or failed, `work`'s time was taken alone.
///
/// `tx` ends before the competing session is waited for: behind a pool of one, that session's
/// BEGIN is still queued for the server connection `tx` holds, and gets it only then.
pub fn while_scanning<R>(
    other: &mut Client,
    competitor: Competitor<'_>,
    mut tx: Transaction<'_>,
    work: impl FnOnce(&mut Transaction<'_>) -> Result<R>,
) -> Result<(R, bool)> {
    let stop = AtomicBool::new(false);
    let (started, began) = mpsc::channel();
    std::thread::scope(|scope| {
        let stop = &stop;
        let competing = scope.spawn(move || -> Result<()> {
            let mut tx = other.build_transaction().read_only(true).start()?;
            tx.batch(competitor.settings)?;
            let _ = started.send(());
            while !stop.load(Ordering::SeqCst) {
                tx.row(competitor.sql, &competitor.params)?;
            }
            tx.rollback()?;
            Ok(())
        });
        let racing = began.recv_timeout(START_WAIT).is_ok();
        if racing {
            std::thread::sleep(HEAD_START);
        } else {
            // Should it start later, it stops at once.
            stop.store(true, Ordering::SeqCst);
        }
        let result = work(&mut tx);
        stop.store(true, Ordering::SeqCst);
        let ended = tx.commit();
        let ran = competing.join().expect("competing scan panicked").is_ok();
        let result = result?;
        ended?;
        Ok((result, racing && ran))
    })
}
