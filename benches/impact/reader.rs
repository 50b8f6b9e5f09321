//! The application's long-running reader: a report that opens a REPEATABLE READ transaction,
//! reads evidence_items, and keeps the transaction open while it works on what it read (idle
//! in transaction), over and over. It holds ACCESS SHARE on evidence_items most of the time, so
//! a DDL lock request (008's `LOCK TABLE … ACCESS EXCLUSIVE`) queues behind it, and the
//! application's statements queue behind that request for as long as it waits: what
//! `--lock-timeout` bounds. Each transaction is shorter than the blocker look's moment (1 s),
//! as an ordinary report's is, so `migrate` does not wait for it before asking for its locks.

use crate::workload::{Event, Op};
use anyhow::Result;
use postgres::Client;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The reader's events carry this connection number: they are not one of the workers' paced
/// loops, so the pace calibration and the gap measure leave them out.
pub const READER: usize = usize::MAX;

/// How long each transaction stays open after its read.
pub const IDLE: Duration = Duration::from_millis(500);

/// The pause between two transactions.
pub const PAUSE: Duration = Duration::from_millis(250);

/// What the report reads: enough rows to be a real read, little enough to leave the CPU to
/// the rest of the workload.
const READ: &str = "SELECT count(*) FROM (SELECT 1 FROM evidence_items LIMIT 10000) AS s";

/// Runs the reader until `stop`, recording its statements (the read with its BEGIN, and the
/// COMMIT) as the workers record theirs.
pub fn run(mut client: Client, origin: Instant, stop: Arc<AtomicBool>) -> Result<Vec<Event>> {
    let read = client.prepare(READ)?;
    let mut events = Vec::new();
    let mut timed = |client: &mut Client, op: Op, work: &dyn Fn(&mut Client) -> Result<()>| {
        let start = origin.elapsed();
        let result = work(client);
        events.push(Event {
            connection: READER,
            op,
            start,
            end: origin.elapsed(),
            error: result.as_ref().err().map(|e| format!("{e:#}")),
        });
        result.is_ok()
    };
    while !stop.load(Ordering::SeqCst) {
        let opened = timed(&mut client, Op::ReadReport, &|c| {
            c.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ")?;
            c.query_one(&read, &[])?;
            Ok(())
        });
        if opened {
            std::thread::sleep(IDLE);
            timed(&mut client, Op::CommitReport, &|c| {
                c.batch_execute("COMMIT")?;
                Ok(())
            });
        } else {
            let _ = client.batch_execute("ROLLBACK");
        }
        std::thread::sleep(PAUSE);
    }
    Ok(events)
}
