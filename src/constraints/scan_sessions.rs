//! The sessions a check scans on: the coordinator's own READ ONLY transaction and up to
//! [`sessions_offered`]` - 1` more that import its exported snapshot, so that every count
//! describes the same moment; each takes the next part (biggest first) until none is left.

use crate::catalog::constraints::{Constraint, Kind};
use crate::db::config::Target;
use crate::db::{self, Query};
use anyhow::Result;
use postgres::{Client, Transaction};
use std::collections::BTreeSet;

/// The most sessions a check scans on, whatever the server offers.
const MAX_SESSIONS: i64 = 8;

/// How many sessions scan at once (the one holding the snapshot and the others importing it):
/// as many processes as the server lets one query use beside its own,
/// `max_parallel_workers_per_gather` (within `max_parallel_workers`), at least one. That is the
/// DBA's own statement of how much of the machine one statement may take; PostgreSQL cannot
/// tell a client its cores (docs/design.md §11). The default, 2, is what the scans were tuned
/// on: two sessions on two cores, each scan helped by parallel workers when the other is done.
pub fn sessions_offered(client: &mut (impl Query + ?Sized)) -> Result<usize> {
    let offered: i64 = client
        .row(
            "SELECT least(current_setting('max_parallel_workers_per_gather')::int8,
                          current_setting('max_parallel_workers')::int8)",
            &[],
        )?
        .get(0);
    Ok(offered.clamp(1, MAX_SESSIONS) as usize)
}

/// One part's work on a session's transaction (the check's scan of a table or a foreign key).
pub(super) type RunPart<'r, P, R> = dyn Fn(&P, &mut Transaction<'_>) -> Result<R> + Sync + 'r;

/// A session being opened for the scans, on a thread of its own.
pub(super) type Early = std::thread::JoinHandle<Result<Client>>;

/// Opens the sessions that will import the snapshot (`sessions - 1`), when `constraints` need
/// more than one scan (an estimate before planning: one per table's CHECKs, one per foreign key).
pub(super) fn connect_early(
    target: &Target,
    constraints: &[&'static Constraint],
    sessions: usize,
) -> Vec<Early> {
    let check_tables: BTreeSet<&str> = constraints
        .iter()
        .filter(|c| c.kind() == Kind::Check)
        .map(|c| c.table)
        .collect();
    let foreign_keys = constraints
        .iter()
        .filter(|c| c.kind() == Kind::ForeignKey)
        .count();
    let scans = check_tables.len() + foreign_keys;
    (1..sessions.min(scans))
        .map(|_| open_early(target))
        .collect()
}

/// Opens one more connection to `target` on a thread of its own, while this one goes on. Opened
/// before the transaction that will want it beside: behind a pool of one server connection,
/// one opened while that transaction holds it would wait for it.
pub(super) fn open_early(target: &Target) -> Early {
    let target = target.clone();
    std::thread::spawn(move || db::connect(&target))
}

type Slot<R> = std::sync::Mutex<Option<Result<R>>>;

/// Runs parts, next first, until none is left.
fn drain<P, R>(
    client: &mut Transaction<'_>,
    parts: &[P],
    next: &std::sync::atomic::AtomicUsize,
    slots: &[Slot<R>],
    run: &RunPart<'_, P, R>,
) {
    loop {
        let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if i >= parts.len() {
            break;
        }
        let result = run(&parts[i], client);
        *slots[i].lock().expect("slot") = Some(result);
    }
}

/// Runs parts on the coordinator's own transaction and the `early` connections, which import
/// its snapshot and start with `settings` (the coordinator's), then commits the coordinator's.
///
/// A session that cannot join only makes the check slower: the coordinator takes every part
/// nobody else takes. Through a transaction pooler with no server connection to spare (a pool
/// of one, or one the application fills), a session's BEGIN waits until one of ours ends. So
/// the coordinator ends its transaction as soon as no part is left, before waiting for the
/// others: a session still waiting then gets the server, finds the snapshot gone (an imported
/// snapshot outlives its exporter, one not yet imported does not) and ends, instead of waiting
/// out the pooler's `query_wait_timeout` against a transaction that waits for it.
pub(super) fn run_parallel<P: Sync, R: Send>(
    early: Vec<Early>,
    snapshot: &str,
    settings: &str,
    mut coordinator: postgres::Transaction<'_>,
    parts: &[P],
    run: &RunPart<'_, P, R>,
) -> Result<Vec<Result<R>>> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let slots: Vec<Slot<R>> = parts.iter().map(|_| std::sync::Mutex::new(None)).collect();
    let workers = early.len().min(parts.len().saturating_sub(1));
    std::thread::scope(|scope| -> Result<()> {
        let (next, slots) = (&next, &slots);
        let handles: Vec<_> = early
            .into_iter()
            .take(workers)
            .map(|session| {
                scope.spawn(move || -> Result<()> {
                    let Ok(mut client) = session.join().expect("connecting thread panicked") else {
                        // A server out of connection slots.
                        return Ok(());
                    };
                    let Ok(mut tx) = db::snapshot::read_in(&mut client, snapshot) else {
                        // Too late: the coordinator took the last part and ended.
                        return Ok(());
                    };
                    tx.batch(settings)?;
                    drain(&mut tx, parts, next, slots, run);
                    tx.commit()?;
                    Ok(())
                })
            })
            .collect();
        drain(&mut coordinator, parts, next, slots, run);
        coordinator.commit()?;
        for handle in handles {
            handle.join().expect("scan worker panicked")?;
        }
        Ok(())
    })?;
    Ok(slots
        .into_iter()
        .map(|slot| {
            slot.into_inner()
                .expect("slot")
                .unwrap_or_else(|| Err(anyhow::anyhow!("scan did not run")))
        })
        .collect())
}
