//! How long the scans of `migrate`, `check-constraints` and `cleanup` should take, for a DBA
//! planning a window (docs/design.md §11). A scan's cost is mostly evaluating its expression on
//! every row (or hashing a foreign key's parent), not reading pages, so each scan's own
//! statement is timed on a sample of about 1 % of its table's pages and scaled up
//! (`constraints::cost`). The check's scans are shared among its sessions; each VALIDATE runs
//! alone, on one process, as PostgreSQL validates.

use crate::catalog::constraints::Constraint;
use crate::constraints::cost::{self, CheckCost, ScanCost, TimedScans};
use crate::db::config::Target;
use crate::db::introspect;
use anyhow::Result;
use postgres::Client;
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Default, Serialize)]
pub struct Estimate {
    /// Everything below added up, in milliseconds.
    pub total_ms: u64,
    /// What the numbers rest on, in words.
    pub basis: String,
    /// The table bytes the check's scans read over their times added up (sampled, or as a dry
    /// run that ran the check timed them), in MB/s: how fast this server gets through these
    /// rows; null when there was nothing to read.
    pub scan_rate_mb_s: Option<f64>,
    /// `migrate`: the preflight (the check of every catalog constraint); null when it does not
    /// run (008 not pending).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preflight_ms: Option<u64>,
    /// `check-constraints`: the check's scans; `cleanup`: the recount after the batches (the
    /// same check, of every catalog constraint).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check_ms: Option<u64>,
    /// `cleanup`: finding, previewing and proving the repairs (as the dry run timed them) and
    /// the batches' writes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repair_ms: Option<u64>,
    /// The check's scans, each on the path it takes.
    pub scans: Vec<ScanCost>,
    /// The sessions the check's scans share.
    pub sessions: usize,
    pub validate: Vec<StepEstimate>,
    /// What the samples took, server-side: the estimate's own cost.
    pub sampling_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct StepEstimate {
    pub constraint: &'static str,
    /// Timed beside a scan of the biggest table, as it will run (`constraints::cost`).
    #[serde(skip)]
    pub beside: bool,
    /// Bytes the VALIDATE reads (the table, and for a foreign key its parent too).
    pub bytes: i64,
    pub ms: u64,
}

/// What the work is, for the words of the basis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// `migrate`: the preflight when 008 is pending, then the VALIDATEs.
    Migrate { preflight: bool },
    /// `check-constraints`: the check, then the VALIDATE of what is NOT VALID and clean.
    Check,
    /// `cleanup`: the check, the preview and the writes.
    Cleanup,
}

/// A repaired row's write, its audit row and its share of the batch's statements, in
/// milliseconds: what the benchmark's cleanup runs take beyond the look and the recount this
/// estimate times (51,000 rows of production's shape on two cores; docs/performance.md). At
/// 0.12, taken from the writes alone, the estimates came out at 0.62–0.71 of the runs on both
/// data sets: the batches' own reads and proofs count too. The same writes took 0.14–0.19 ms a
/// row on the two hosts the benchmark has run on (0.19 and 0.17 on the slower, 0.14 on the
/// faster, both data sets): 0.16 lands each of those runs within 0.86–1.13, where 0.21, the
/// slower host's alone, put the faster one's at 1.29–1.41. A dry run writes nothing, so this
/// is the one number the estimate does not measure on the server, and its basis says so.
const WRITE_MS_PER_ROW: f64 = 0.16;

/// What a cleanup dry run knows of the repair it previews.
#[derive(Debug, Clone, Copy)]
pub struct Repair {
    /// Finding, previewing and proving the repairs, as the dry run timed them.
    pub look: Duration,
    /// Rows the run would write.
    pub rows: u64,
    /// The same rows as the sessions write them one after another: a table with enough rows
    /// is shared among several sessions at once (cleanup/shares.rs), each writing its share.
    pub rows_in_sequence: u64,
    /// The most sessions one table is written on.
    pub sessions: usize,
}

/// Estimates `work`: the check of `checked` (none for `migrate` without the preflight; for
/// `cleanup`, its recount), the VALIDATE of each of `validate`, and for `cleanup` (`repair`) the
/// look as the dry run timed it and the writes of its rows. `beside`: where a second
/// connection can be opened, to time the VALIDATEs of other tables beside a scan of the biggest,
/// as they will run (`constraints::cost::validate_costs`).
pub fn estimate(
    client: &mut Client,
    beside: Option<&Target>,
    work: Work,
    checked: &[&'static Constraint],
    validate: &[&'static Constraint],
    repair: Option<Repair>,
) -> Result<Estimate> {
    let check: Option<CheckCost> = if checked.is_empty() {
        None
    } else {
        Some(cost::check_cost(client, checked)?)
    };
    let page_bytes = introspect::block_size(client)? as f64;
    let round_trip = cost::round_trip(client)?;
    let rt_ms = round_trip.as_secs_f64() * 1000.0;
    let mut sampling = check.as_ref().map_or(Duration::ZERO, |c| c.sampled);
    let mut sampled_pages = check.as_ref().map_or(0.0, |c| c.sampled_pages);
    let mut pages = check.as_ref().map_or(0.0, |c| c.pages);
    let mut steps = Vec::new();
    for (c, measured) in validate
        .iter()
        .zip(cost::validate_costs(client, beside, validate)?)
    {
        let Some(measured) = measured else {
            continue;
        };
        sampling += measured.took;
        sampled_pages += measured.sampled_pages;
        pages += measured.pages;
        steps.push(StepEstimate {
            constraint: c.name,
            beside: measured.beside,
            bytes: (measured.pages * page_bytes) as i64,
            ms: measured.full_ms() + rt_ms.ceil() as u64,
        });
    }
    let check_ms = check.as_ref().map(|c| c.total_ms);
    let repair_ms = repair.map(|r| {
        (r.look.as_secs_f64() * 1000.0 + r.rows_in_sequence as f64 * WRITE_MS_PER_ROW).ceil() as u64
    });
    let total_ms =
        check_ms.unwrap_or(0) + repair_ms.unwrap_or(0) + steps.iter().map(|s| s.ms).sum::<u64>();
    let serial_ms: f64 = check
        .as_ref()
        .map_or(0.0, |c| c.scans.iter().map(|s| s.ms as f64).sum());
    let scan_rate_mb_s = check
        .as_ref()
        .and_then(|c| scan_rate(c.pages * page_bytes, serial_ms / 1000.0));
    let sessions = check.as_ref().map_or(1, |c| c.sessions);
    let basis = basis(
        work,
        check.as_ref(),
        &steps,
        rt_ms,
        sampled_pages,
        pages,
        repair,
    );
    Ok(Estimate {
        total_ms,
        basis,
        scan_rate_mb_s,
        preflight_ms: match work {
            Work::Migrate { preflight: true } => Some(check_ms.unwrap_or(0)),
            _ => None,
        },
        check_ms: match work {
            Work::Migrate { .. } => None,
            _ => check_ms,
        },
        repair_ms,
        scans: check.map(|c| c.scans).unwrap_or_default(),
        sessions,
        validate: steps,
        sampling_ms: (sampling.as_secs_f64() * 1000.0 * 10.0).round() / 10.0,
    })
}

/// The words of the estimate's basis.
fn basis(
    work: Work,
    check: Option<&CheckCost>,
    steps: &[StepEstimate],
    rt_ms: f64,
    sampled_pages: f64,
    pages: f64,
    repair: Option<Repair>,
) -> String {
    if pages <= 0.0 && repair.is_none() {
        return format!(
            "table sizes (pg_relation_size): nothing to scan{}, so each statement costs one round trip ({rt_ms:.1} ms)",
            match work {
                Work::Migrate { preflight: false } if steps.is_empty() =>
                    ": no preflight, and every catalog constraint is valid or not due",
                _ => " (the tables are empty or absent)",
            }
        );
    }
    let mut parts = Vec::new();
    if pages > 0.0 {
        parts.push(format!(
            "each scan's own statement (the table's CHECK expressions, or the foreign key's \
             anti-join) timed by the server (EXPLAIN ANALYZE) on a sample of {sampled_pages:.0} of \
             the {pages:.0} pages it reads (table sizes from pg_relation_size) and scaled up, so \
             the time evaluating the expressions and hashing the keys is counted, not only reading"
        ));
    }
    if let Some(c) = check {
        let indexed = c.scans.iter().filter(|s| s.path == "index").count();
        let whose = match work {
            Work::Cleanup => "the recount's (after the batches, every catalog constraint)",
            Work::Migrate { .. } => "the preflight's",
            Work::Check => "the check's",
        };
        parts.push(format!(
            "{whose} {} scans ({indexed} through an index, at the share of pages a sample finds \
             it reads) shared among {} sessions (the server's max_parallel_workers_per_gather) \
             and no faster than the longest, plus a round trip ({rt_ms:.1} ms) each",
            c.scans.len(),
            c.sessions
        ));
    }
    if !steps.is_empty() {
        parts.push(
            "each VALIDATE on one process, one after another, as PostgreSQL validates".to_string(),
        );
    }
    let timed_beside = steps.iter().filter(|s| s.beside).count();
    if timed_beside > 0 {
        let (which, as_it) = match timed_beside {
            1 => (
                "the VALIDATE of a table other than the biggest".to_string(),
                "it",
            ),
            n => (
                format!("the {n} VALIDATEs of tables other than the biggest"),
                "they",
            ),
        };
        parts.push(format!(
            "{which} timed while a scan of the biggest ran on a second connection, as {as_it} \
             will run beside its VALIDATE"
        ));
    }
    if let Some(r) = repair {
        let shared = if r.sessions > 1 {
            format!(
                ", a big table's rows shared among up to {} sessions writing at once (as {} rows \
                 one after another)",
                r.sessions, r.rows_in_sequence
            )
        } else {
            String::new()
        };
        parts.push(format!(
            "finding, previewing and proving the repairs as this dry run timed them ({:.0} ms: \
             a real run does the same first), and {} rows written at {WRITE_MS_PER_ROW} ms \
             each{shared} (the benchmark's cleanup runs: a dry run writes nothing, so the writes \
             are not timed here)",
            r.look.as_secs_f64() * 1000.0,
            r.rows
        ));
    }
    parts.push(if steps.is_empty() {
        "with the tables in memory; a table read from disk, or a busy server, takes longer"
            .to_string()
    } else {
        // Measured in the benchmark's last two full runs (docs/performance.md): the biggest
        // table's VALIDATEs took 0.4–1.4 times their estimates; a small table's, beside them
        // under the application's load, 0.5–5.6 (a step of 40–230 ms, whose first VALIDATE
        // starts as the biggest's does).
        "with the tables in memory; a table read from disk, or a server busier than during this \
         dry run, takes longer, and a small table's VALIDATE, beside the biggest's on a busy \
         server, has taken from half to five and a half times its estimate"
            .to_string()
    });
    parts.join("; ")
}

/// `bytes` read in `seconds` of scanning, in MB/s to a tenth; None when there was nothing to
/// read or no time to read it in.
fn scan_rate(bytes: f64, seconds: f64) -> Option<f64> {
    (bytes > 0.0 && seconds > 0.0).then(|| (bytes / seconds / 1_000_000.0 * 10.0).round() / 10.0)
}

impl Estimate {
    /// `check-constraints --dry-run`'s estimate of a real run: the check ran in full, so it is
    /// put at what it took, its scans at what each took (sampling them too only made the dry run
    /// slower, by up to a tenth); the VALIDATE of each constraint that is NOT VALID and clean is
    /// estimated as ever.
    pub fn of_check(
        client: &mut Client,
        beside: Option<&Target>,
        took: Duration,
        timed: &TimedScans,
        validate: &[&'static Constraint],
    ) -> Result<Estimate> {
        let mut found = estimate(client, beside, Work::Check, &[], validate, None)?;
        let ms = took.as_millis() as u64;
        found.check_ms = Some(ms);
        found.total_ms += ms;
        found.take_scans(timed);
        let timed = format!(
            "the check at {ms} ms, as this dry run timed it in full (a real run repeats it)"
        );
        found.basis = if validate.is_empty() {
            timed
        } else {
            format!("{timed}; {}", found.basis)
        };
        Ok(found)
    }

    /// Puts the check (`migrate`'s preflight) at what it took in this dry run, which ran it in
    /// full, and its scans at what each took: a real run repeats it, and its time, with the
    /// connections, the planning and the machine's load of the moment, is better than any
    /// sample's. A dry run that knows it will run the preflight samples none of its scans
    /// (`migrate::plan::look_ahead`); one that sampled them says what the samples said.
    pub fn check_timed(&mut self, took: Duration, timed: &TimedScans) {
        let ms = took.as_millis() as u64;
        let sampled = match (&mut self.preflight_ms, &mut self.check_ms) {
            (Some(slot), _) | (None, Some(slot)) => std::mem::replace(slot, ms),
            (None, None) => return,
        };
        self.total_ms = self.total_ms - sampled + ms;
        let what = if self.preflight_ms.is_some() {
            "preflight"
        } else {
            "check"
        };
        let samples = if self.scans.is_empty() {
            String::new()
        } else {
            format!(" (the samples said {sampled} ms)")
        };
        self.basis = format!(
            "{}; the {what} at {ms} ms, as this dry run timed it in full{samples}, each of its \
             scans at what it took beside the others",
            self.basis
        );
        self.take_scans(timed);
    }

    /// The check's scans as they went, and the rate they read at.
    fn take_scans(&mut self, timed: &TimedScans) {
        self.scans = timed.scans.clone();
        self.sessions = timed.sessions.max(1);
        self.scan_rate_mb_s = scan_rate(timed.bytes as f64, timed.busy.as_secs_f64());
    }

    /// The line of the human table: the total, its parts, and what it rests on.
    pub fn line(&self) -> String {
        let mut parts = Vec::new();
        if let Some(ms) = self.preflight_ms {
            parts.push(format!("preflight {ms} ms"));
        }
        if let Some(ms) = self.check_ms {
            let what = if self.repair_ms.is_some() {
                "recount"
            } else {
                "check"
            };
            parts.push(format!(
                "{what} {ms} ms over {} scans on {} sessions",
                self.scans.len(),
                self.sessions
            ));
        }
        if let Some(ms) = self.repair_ms {
            parts.push(format!("finding and repairing the rows {ms} ms"));
        }
        let steps: Vec<String> = self
            .validate
            .iter()
            .map(|s| format!("{} {} ms", s.constraint, s.ms))
            .collect();
        if !steps.is_empty() || self.preflight_ms.is_some() {
            parts.push(format!(
                "VALIDATE: {}",
                if steps.is_empty() {
                    "none".to_string()
                } else {
                    steps.join(", ")
                }
            ));
        }
        let parts = if parts.is_empty() {
            String::new()
        } else {
            format!(" ({})", parts.join("; "))
        };
        format!(
            "estimated duration: {} ms{parts}. Based on {}.",
            self.total_ms, self.basis
        )
    }
}
