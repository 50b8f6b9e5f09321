//! Running a phase of a table's repair in batches.
//!
//! Each batch is one statement, so one transaction: it locks a slice of rows by primary key
//! (keyset: after the last key of the previous batch), changes them and writes their audit
//! records, and commits. A killed run therefore leaves only whole, audited batches, and the
//! next run picks up the rows still violating. The batch size adapts so that a batch, and the
//! row locks it holds, lasts about half a second.

use crate::db::session::Retrying;
use crate::db::{self, Param, Query};
use anyhow::{Context, Result};
use indicatif::ProgressBar;
use postgres::Client;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Cleanup runs few rows per statement through large expressions, whose cost estimates cross
/// the JIT thresholds: compiling took about 150 ms of a 780 ms batch of 5000 rows, for
/// nothing. Only this session is affected — and so never through a pooler, where a session
/// setting could stay on a backend the application gets next (a run there pays the
/// compilation instead); a Session resets it when it ends.
pub fn without_jit(client: &mut Client) -> Result<()> {
    if !db::query::pooled() {
        client.batch("SET jit = off")?;
    }
    Ok(())
}

/// Forces a fixed batch size (tests use tiny batches to interrupt a run between them).
pub const BATCH_SIZE_ENV: &str = "RULEIQ_CLEANUP_BATCH_SIZE";

const FIRST_SIZE: i64 = 5000;
const MIN_SIZE: i64 = 100;
const MAX_SIZE: i64 = 50_000;
/// How long a batch should hold its row locks; well under the second the application may wait.
const TARGET: Duration = Duration::from_millis(500);

/// How many rows the next batch takes.
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    pub size: i64,
    adaptive: bool,
}

impl Batching {
    pub fn from_env() -> Result<Batching> {
        match std::env::var(BATCH_SIZE_ENV) {
            Ok(text) => {
                let size: i64 =
                    text.parse().ok().filter(|n| *n > 0).with_context(|| {
                        format!("{BATCH_SIZE_ENV}={text} is not a positive number")
                    })?;
                Ok(Batching {
                    size,
                    adaptive: false,
                })
            }
            Err(_) => Ok(Batching {
                size: FIRST_SIZE,
                adaptive: true,
            }),
        }
    }

    /// The batch size for each of `sessions` writing the same table at once: they share the
    /// server, so each starts with its share of a batch, and adapts from there, rather than
    /// all holding a whole batch's row locks for longer at first. A forced size stays.
    pub fn shared_by(self, sessions: usize) -> Batching {
        if !self.adaptive || sessions <= 1 {
            return self;
        }
        Batching {
            size: (self.size / sessions as i64).max(MIN_SIZE),
            adaptive: true,
        }
    }

    /// Halves after a slow batch, doubles after a quick full one.
    pub fn adapt(&mut self, took: Duration, full: bool) {
        if !self.adaptive {
            return;
        }
        if took > TARGET * 2 {
            self.size = (self.size / 2).max(MIN_SIZE);
        } else if full && took < TARGET / 2 {
            self.size = (self.size * 2).min(MAX_SIZE);
        }
    }
}

/// What a phase did: rows audited, and per rule (rows that broke it, rows reached through an
/// earlier stage); how many batches, and the longest (how long row locks were held at most).
#[derive(Debug, Clone, Default)]
pub struct PhaseTotals {
    pub audited: u64,
    pub batches: u64,
    pub longest: Duration,
    pub per_rule: Vec<(u64, u64)>,
}

impl PhaseTotals {
    /// Adds what another session did in the same phase of the same table.
    pub fn merge(&mut self, other: PhaseTotals) {
        self.audited += other.audited;
        self.batches += other.batches;
        self.longest = self.longest.max(other.longest);
        for (mine, theirs) in self.per_rule.iter_mut().zip(other.per_rule) {
            mine.0 += theirs.0;
            mine.1 += theirs.1;
        }
    }
}

/// Off a terminal there is no bar: a line this often says how far a long phase is.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// What every batch of a run shares: the run its audit records belong to and the batch size
/// (adapted as batches go). The pause while a standby lags too far behind is the session's.
pub struct Pacing<'a> {
    pub run_id: Uuid,
    pub batching: &'a mut Batching,
    /// Set when another session working on the same table failed: this one stops before its
    /// next batch (its committed batches stay, audited, as a killed run's do).
    pub stop: Option<&'a AtomicBool>,
}

impl Pacing<'_> {
    fn stopped(&self) -> bool {
        self.stop.is_some_and(|stop| stop.load(Ordering::SeqCst))
    }
}

/// One phase of a table's repair: a batch statement from statements.rs (parameters run id,
/// last key, size, and the policy's `values` when it reads them), the number of rules it
/// reports on, and `what` it is for log lines and errors.
pub struct Phase<'a> {
    pub sql: &'a str,
    pub values: Option<&'a Vec<String>>,
    pub rules: usize,
    pub what: &'a str,
}

/// Runs `phase` until no violating row is left after the last key (of the keys `connection`'s
/// own key table holds). Before each batch, the connection waits while a standby lags too far
/// behind ([`crate::db::Session::pace`]).
pub fn run_phase(
    connection: &mut impl Retrying,
    phase: &Phase<'_>,
    pacing: &mut Pacing<'_>,
    bar: &ProgressBar,
) -> Result<PhaseTotals> {
    let Phase {
        sql,
        values,
        rules,
        what,
    } = *phase;
    let run_id = pacing.run_id;
    let log = connection.log().clone();
    let mut totals = PhaseTotals {
        per_rule: vec![(0, 0); rules],
        ..Default::default()
    };
    let mut last: Option<String> = None;
    let mut last_said = Instant::now();
    loop {
        if pacing.stopped() {
            break;
        }
        connection.pace()?;
        let started = Instant::now();
        let size = pacing.batching.size;
        let row = connection
            .retried(what, |client| {
                let mut params: Vec<&dyn Param> = vec![&run_id, &last, &size];
                if let Some(values) = values {
                    params.push(values);
                }
                client.row(sql, &params).map_err(anyhow::Error::from)
            })
            .map_err(|e| explain_rejection(e, what))?;
        let picked: i64 = row.get(0);
        let audited: i64 = row.get(2);
        totals.audited += audited as u64;
        totals.batches += 1;
        for (i, slot) in totals.per_rule.iter_mut().enumerate() {
            slot.0 += row.get::<_, i64>(3 + 2 * i) as u64;
            slot.1 += row.get::<_, i64>(4 + 2 * i) as u64;
        }
        let took = started.elapsed();
        totals.longest = totals.longest.max(took);
        bar.inc(audited as u64);
        if !log.bars && last_said.elapsed() >= PROGRESS_EVERY {
            log.line(&format!(
                "{what}: {} rows so far, {} batches",
                totals.audited, totals.batches
            ));
            last_said = Instant::now();
        }
        if picked < size {
            break;
        }
        last = row.get(1);
        pacing.batching.adapt(took, true);
    }
    Ok(totals)
}

/// Runs `phases` one after another on `connection`, each with [`run_phase`]. On an error, sets
/// the pacing's stop flag first, so that the sessions working beside this one on the same table
/// stop before their next batch.
pub fn run_phases(
    connection: &mut impl Retrying,
    phases: &[Phase<'_>],
    pacing: &mut Pacing<'_>,
    bar: &ProgressBar,
) -> Result<Vec<PhaseTotals>> {
    let mut totals = Vec::with_capacity(phases.len());
    for phase in phases {
        match run_phase(connection, phase, pacing, bar) {
            Ok(phase_totals) => totals.push(phase_totals),
            Err(e) => {
                if let Some(stop) = pacing.stop {
                    stop.store(true, Ordering::SeqCst);
                }
                return Err(e);
            }
        }
    }
    Ok(totals)
}

/// A batch PostgreSQL refused because the repaired row still breaks a constraint it enforces
/// (one the policy skips, under a NOT VALID constraint) or a delete that a referencing row
/// blocks: say so rather than just relay the SQL error.
fn explain_rejection(error: anyhow::Error, what: &str) -> anyhow::Error {
    use postgres::error::SqlState;
    let hint = match db::sql_state(&error) {
        Some(code) if *code == SqlState::CHECK_VIOLATION => Some(
            "a repaired row still breaks a CHECK constraint the database enforces; cover that constraint in the policy instead of skipping it",
        ),
        Some(code) if *code == SqlState::FOREIGN_KEY_VIOLATION => {
            Some("a row the policy deletes or re-links is still referenced; use set_null, or repair the referencing rows first")
        }
        _ => None,
    };
    match hint {
        Some(hint) => error.context(format!("{what}: {hint}; this batch was rolled back")),
        None => error.context(format!("{what}: the batch failed and was rolled back")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_size_follows_the_time_a_batch_takes() {
        let mut b = Batching {
            size: 4000,
            adaptive: true,
        };
        b.adapt(Duration::from_secs(2), true);
        assert_eq!(b.size, 2000);
        b.adapt(Duration::from_millis(10), true);
        assert_eq!(b.size, 4000);
        b.adapt(Duration::from_millis(10), false);
        assert_eq!(b.size, 4000, "a partial batch says nothing about speed");
        let mut fixed = Batching {
            size: 7,
            adaptive: false,
        };
        fixed.adapt(Duration::from_secs(5), true);
        assert_eq!(fixed.size, 7);
        assert_eq!(fixed.shared_by(2).size, 7, "a forced size stays");
        assert_eq!(b.shared_by(2).size, 2000);
        assert_eq!(b.shared_by(1).size, 4000);
        assert_eq!(b.shared_by(1000).size, MIN_SIZE);
    }
}
