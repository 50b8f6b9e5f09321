//! A big table's repair on several sessions at once.
//!
//! The keys a real run collected for a table (its key table, see `statements.rs`) are split in
//! key order into contiguous shares, one per session: the run's own session keeps the first,
//! and each other share is copied into a key table of a worker session's own (a temporary
//! table is seen by its session only) and dropped from the session's. Each session then walks
//! its share in batches as one session walks the whole table. Shares are disjoint and every
//! session locks its rows in key order, so the sessions never wait on one another, and each
//! holds at most one batch's row locks at a time, as before.
//!
//! Why: a repair's cost is PostgreSQL writing each row (the new version, an entry in each of
//! the table's indexes, the audit record), one process per statement. On two cores, two halves
//! of 20,000 rows written at once took 2.1 s against 3.2 s for one UPDATE of them all
//! (docs/performance.md). As many sessions as the check scans on (`sessions_offered`: the
//! server's max_parallel_workers_per_gather, the DBA's own bound on what one statement may
//! take), and a share only when it holds at least two batches.

use super::batches::{without_jit, Batching};
use super::plan::TablePlan;
use crate::constraints::sessions_offered;
use crate::db::session::{Retrying, Worker};
use crate::db::{Query, Session};
use anyhow::{Context, Result};

/// Keys copied to another session at a time: memory stays flat however many keys there are.
const CHUNK: i64 = 10_000;

/// How many sessions repair a table of `keys` keys in batches of `batch`, at most `offered`:
/// each gets at least two batches, else the sessions' start costs more than it saves.
fn sessions_for(keys: i64, batch: i64, offered: usize) -> usize {
    let per_session = (2 * batch).max(1);
    usize::try_from(keys / per_session)
        .unwrap_or(usize::MAX)
        .clamp(1, offered.max(1))
}

/// How the rows of each table (`rows`, in the order tables are repaired) would be written:
/// (rows one after another once shared, the most sessions on one table). For a dry run's
/// estimate: the shares follow the keys a run collects, one per row it repairs.
pub fn in_sequence(
    client: &mut (impl Query + ?Sized),
    rows: &[u64],
    batching: &Batching,
) -> Result<(u64, usize)> {
    let offered = sessions_offered(client)?;
    let mut sequence = 0;
    let mut most = 1;
    for &n in rows {
        let sessions = sessions_for(i64::try_from(n).unwrap_or(i64::MAX), batching.size, offered);
        sequence += n.div_ceil(sessions as u64);
        most = most.max(sessions);
    }
    Ok((sequence, most))
}

/// Opens the sessions that repair shares of `plan`'s keys beside `session`, each holding its
/// share in a key table of its own, and drops those shares from the session's key table. None
/// when the keys are too few; fewer when the server has no connection to spare (said on
/// stderr: the session keeps the shares nobody took).
pub fn hand_out(
    session: &mut Session,
    plan: &TablePlan,
    batching: &Batching,
) -> Result<Vec<Worker>> {
    let offered = sessions_offered(session.client())?;
    let keys: i64 = session.client().row(&plan.count_keys_sql(), &[])?.get(0);
    let wanted = sessions_for(keys, batching.size, offered);
    if wanted < 2 {
        return Ok(Vec::new());
    }
    // Where each share after the session's own begins.
    let mut starts: Vec<String> = Vec::new();
    for share in 1..wanted {
        let at = keys * share as i64 / wanted as i64;
        if let Some(row) = session.client().row_opt(&plan.key_at_sql(), &[&at])? {
            starts.push(row.get(0));
        }
    }
    let mut workers = Vec::new();
    for (i, start) in starts.iter().enumerate() {
        let mut worker = match session.worker() {
            Ok(worker) => worker,
            Err(e) => {
                session.log().line(&format!(
                    "{}: repairing on {} session(s), not {wanted}: no more connections ({e:#})",
                    plan.table,
                    workers.len() + 1
                ));
                break;
            }
        };
        copy_share(session, &mut worker, plan, start, starts.get(i + 1)).with_context(|| {
            format!(
                "handing a share of {}'s keys to another session",
                plan.table
            )
        })?;
        workers.push(worker);
    }
    if let Some(first) = starts.first().filter(|_| !workers.is_empty()) {
        let end = starts.get(workers.len());
        session
            .client()
            .exec(&plan.drop_keys_between_sql(), &[first, &end])?;
    }
    Ok(workers)
}

/// Copies the keys from `start` to `end` (exclusive; None: to the last) from `session`'s key
/// table into a new key table on `worker`, chunk by chunk, and indexes it as the run's own.
fn copy_share(
    session: &mut Session,
    worker: &mut Worker,
    plan: &TablePlan,
    start: &String,
    end: Option<&String>,
) -> Result<()> {
    without_jit(worker.client())?;
    worker.client().batch(&plan.create_keys_table_sql())?;
    let mut after: Option<String> = None;
    loop {
        let keys: Vec<String> = session
            .client()
            .rows(&plan.keys_between_sql(), &[start, &end, &after, &CHUNK])?
            .iter()
            .map(|row| row.get(0))
            .collect();
        let Some(last) = keys.last().cloned() else {
            break;
        };
        worker.client().exec(&plan.insert_keys_sql(), &[&keys])?;
        if (keys.len() as i64) < CHUNK {
            break;
        }
        after = Some(last);
    }
    worker.client().batch(&plan.index_keys_table_sql())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_gets_a_session_per_two_batches_up_to_what_the_server_offers() {
        // The benchmark's evidence_items: 40,000 keys, batches of 5,000, two sessions offered.
        assert_eq!(sessions_for(40_000, 5_000, 2), 2);
        // Its business_profiles: 4,000 keys, under two batches.
        assert_eq!(sessions_for(4_000, 5_000, 2), 1);
        assert_eq!(sessions_for(19_999, 5_000, 2), 1);
        assert_eq!(sessions_for(20_000, 5_000, 2), 2);
        assert_eq!(sessions_for(1_000_000, 5_000, 8), 8);
        assert_eq!(sessions_for(0, 5_000, 2), 1);
        assert_eq!(sessions_for(100, 0, 0), 1);
    }
}
