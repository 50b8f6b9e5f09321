//! What the check's scans and each VALIDATE cost on this server and these data, measured
//! rather than assumed: each scan's own statement (the table's CHECK expressions, or the foreign
//! key's anti-join) runs over a sample of the table's pages (`sample.rs`), timed by the server
//! (EXPLAIN ANALYZE), and the time is scaled up to the whole table. Reading pages is the lesser
//! part of a CHECK's cost when the data is in memory; evaluating the expression on every row,
//! or hashing the parent's keys, is the greater, and the sample pays both.

use super::check::{narrow_scans, plan_scans, Scan};
use super::sample::{self, Sample};
pub use super::scan_cost::{ScanCost, TimedScans};
use super::scan_sessions::{open_early, sessions_offered, Early};
use super::spelling::DatabaseSpelling;
use crate::catalog::constraints::{self as catalog, Constraint, Kind};
use crate::catalog::sql::qualified;
use crate::db::config::Target;
use crate::db::introspect::{self, TableSizes};
use crate::db::{Param, Query};
use anyhow::{bail, Result};
use chrono::{DateTime, Utc};
use postgres::Client;
use serde::Serialize;
use std::time::Duration;

/// Settings while samples run: one process per statement (the time scales to a serial scan),
/// no JIT (the check turns it off too), a foreign key's anti-join by hash, as it runs on the
/// whole table (a sampled parent has no index to loop over), and sequential scans that start
/// where the last one left off (PostgreSQL's default, which a VALIDATE's sample moves on by:
/// see [`SampledScan::from_scan_start`]).
const SAMPLE_SETTINGS: &str = "SET LOCAL max_parallel_workers_per_gather = 0; SET LOCAL jit = off;
     SET LOCAL enable_nestloop = off; SET LOCAL enable_mergejoin = off;
     SET LOCAL synchronize_seqscans = on";

/// What checking a set of constraints costs.
#[derive(Debug, Clone, Serialize)]
pub struct CheckCost {
    pub scans: Vec<ScanCost>,
    /// The sessions the scans share (see `scan_sessions::sessions_offered`).
    pub sessions: usize,
    /// The scans shared among the sessions, plus a round trip each: the expected wall time.
    pub total_ms: u64,
    /// What the samples themselves took, server-side.
    #[serde(skip)]
    pub sampled: Duration,
    /// The pages the samples read, against the pages the work reads.
    #[serde(skip)]
    pub sampled_pages: f64,
    #[serde(skip)]
    pub pages: f64,
}

/// A serial time measured on a sample, and the pages behind it.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    /// The whole scan's time, scaled up from the sample's.
    pub full: Duration,
    /// What the sample took.
    pub took: Duration,
    /// The pages the sample read, and those the whole scan reads.
    pub sampled_pages: f64,
    pub pages: f64,
    /// Timed while a scan of the biggest table ran on another session ([`super::beside`]), as
    /// its VALIDATE will run.
    pub beside: bool,
}

impl Measured {
    pub fn full_ms(&self) -> u64 {
        (self.full.as_secs_f64() * 1000.0).ceil() as u64
    }
}

/// A scan's statement over a sample of its table, long enough to meet the server's load
/// (`Sample::timed_of_pages`), in one of two ways:
///
/// - [`SampledScan::of`], the check's scans and a foreign key's anti-join (whose parent is read
///   at the same share): one run of contiguous pages from the middle of each table, a TID range
///   scan. It has no bulk-read ring: the run kept reads its pages from shared buffers,
///   cache-cold, so on idle cores it costs more a row than a scan that reads through a ring
///   (up to twice, the later the column a rule reads).
/// - [`SampledScan::from_scan_start`], a CHECK's VALIDATE: a run of pages from where the
///   table's sequential scans start now, read through the same ring as the VALIDATE reads
///   through. On an idle copy of the mature data its estimates came out at 1.0–1.08 of what
///   the VALIDATEs took, where the middle run's came out at 1.3–2.3 (docs/performance.md, the
///   tried table).
struct SampledScan {
    /// `SELECT count(*)` of the scan's statement within the sample's pages.
    sql: String,
    /// The pages of the whole scan (a foreign key's parent's too).
    pages: f64,
    reading: Reading,
}

/// Which pages a sample reads.
enum Reading {
    /// Those between fixed TIDs, `fraction` of the scan's: the live cutoff (when the scan counts
    /// live rows), then the TID bounds, as bound.
    Range {
        since: Option<DateTime<Utc>>,
        bounds: Vec<String>,
        fraction: f64,
    },
    /// `run` pages of `table` (qualified) from where its scans start: the bounds are found
    /// before each run, and its time scaled by the pages it read.
    FromScanStart { table: String, run: i64 },
}

/// One timed run of a sample.
struct Run {
    /// The whole scan at the run's pace.
    full: Duration,
    took: Duration,
    pages_read: f64,
}

impl SampledScan {
    fn of(
        constraints: &[&'static Constraint],
        sql: &str,
        live: bool,
        sizes: &TableSizes,
    ) -> Result<SampledScan> {
        let first = constraints[0];
        let own = Sample::timed_of_pages(sizes.pages(first.table) as f64);
        let parent = first
            .parent()
            .map(|table| Sample::of_pages(sizes.pages(table) as f64));
        let fraction = parent.map_or(own.fraction(), |p| own.fraction().max(p.fraction()));
        let since = live.then(Utc::now);
        let mut bounds = Vec::new();
        let (from, to) = own.middle_run(fraction);
        bounds.extend([from, to]);
        let first_range = since.map_or(1, |_| 2);
        let sql = within(sql, first.table, "t", first_range)?;
        let sql = match (first.parent(), parent) {
            (Some(table), Some(p)) => {
                let (from, to) = p.middle_run(fraction);
                bounds.extend([from, to]);
                within(&sql, table, "parent", first_range + 2)?
            }
            _ => sql,
        };
        Ok(SampledScan {
            sql: format!("SELECT count(*) FROM ({sql}) AS s"),
            pages: own.pages + parent.map_or(0.0, |p| p.pages),
            reading: Reading::Range {
                since,
                bounds,
                fraction,
            },
        })
    }

    /// `constraint`'s violation condition over a run from the middle of its table (and of a
    /// foreign key's parent).
    fn middle_run(
        constraint: &'static Constraint,
        spelling: &DatabaseSpelling,
        sizes: &TableSizes,
    ) -> Result<SampledScan> {
        let sql = format!(
            "SELECT 1 FROM {} AS t WHERE {}",
            qualified(constraint.table),
            constraint.violation_condition(spelling, "t")
        );
        SampledScan::of(&[constraint], &sql, false, sizes)
    }

    /// A CHECK's VALIDATE sampled as it runs: its condition over a share of the table's pages
    /// ([`sample::run_from_scan_start`]), as many as [`SampledScan::of`] reads from the middle,
    /// read by a sequential scan through the same ring as the VALIDATE reads through. It starts
    /// where the table's scans start now, which a run moves on by the pages it read: each run
    /// leaves the last pages of its ring in shared buffers, and a page found there costs about
    /// half as much again as one copied into the ring, so runs that read the same pages over and
    /// over would come out slower and slower.
    fn from_scan_start(
        constraint: &'static Constraint,
        spelling: &DatabaseSpelling,
        sizes: &TableSizes,
    ) -> SampledScan {
        let table = qualified(constraint.table);
        let own = Sample::timed_of_pages(sizes.pages(constraint.table) as f64);
        SampledScan {
            sql: sample::run_from_scan_start(
                &table,
                &constraint.violation_condition(spelling, "t"),
            ),
            pages: own.pages,
            reading: Reading::FromScanStart {
                run: own.run_pages(own.fraction()),
                table,
            },
        }
    }

    /// What the statement binds, for a range (a run from the scan start finds its own).
    fn params(&self) -> Vec<&dyn Param> {
        let mut params: Vec<&dyn Param> = Vec::new();
        if let Reading::Range { since, bounds, .. } = &self.reading {
            if let Some(since) = since {
                params.push(since);
            }
            params.extend(bounds.iter().map(|b| b as &dyn Param));
        }
        params
    }

    /// One run, as the server timed it.
    fn run(&self, client: &mut (impl Query + ?Sized)) -> Result<Run> {
        match &self.reading {
            Reading::Range { fraction, .. } => {
                let took = sample::execution_time(client, &self.sql, &self.params())?;
                Ok(Run {
                    full: took.div_f64(*fraction),
                    took,
                    pages_read: self.pages * fraction,
                })
            }
            Reading::FromScanStart { table, run } => {
                let start = sample::scan_start(client, table)?.unwrap_or(0);
                let (stop_from, stop_before) = sample::stop_window(start, *run, self.pages as i64);
                let ran = sample::execution(client, &self.sql, &[&stop_from, &stop_before])?;
                // Scaled by the pages it read: another scan of the table can move where this
                // one starts after the start was read.
                let share = (ran.pages / self.pages).min(1.0);
                Ok(Run {
                    full: if share > 0.0 {
                        ran.time.div_f64(share)
                    } else {
                        ran.time
                    },
                    took: ran.time,
                    pages_read: ran.pages,
                })
            }
        }
    }

    /// Twice, the faster counting: on a shared machine one run can lose its core for a while,
    /// and the first pays the sample's pages into memory, which the whole scan, reading in
    /// order with read-ahead, pays for less.
    fn measure(&self, client: &mut (impl Query + ?Sized)) -> Result<Measured> {
        self.measure_after(client, 0)
    }

    /// [`SampledScan::measure`] after `settling` untimed runs (a run from the scan start only: a
    /// range's pages, read again, would come from shared buffers), which count in what the
    /// sample took and read but not in its estimate.
    fn measure_after(
        &self,
        client: &mut (impl Query + ?Sized),
        settling: usize,
    ) -> Result<Measured> {
        let settling = match self.reading {
            Reading::FromScanStart { .. } => settling,
            Reading::Range { .. } => 0,
        };
        let (mut took, mut sampled_pages) = (Duration::ZERO, 0.0);
        for _ in 0..settling {
            let run = self.run(client)?;
            took += run.took;
            sampled_pages += run.pages_read;
        }
        let first_run = self.run(client)?;
        let second_run = self.run(client)?;
        Ok(Measured {
            full: first_run.full.min(second_run.full),
            took: took + first_run.took + second_run.took,
            sampled_pages: sampled_pages + first_run.pages_read + second_run.pages_read,
            pages: self.pages,
            beside: false,
        })
    }
}

/// `sql` with the table read as `alias` limited to the TID range in parameters `$first` and
/// `$first + 1`: `FROM table AS alias WHERE …` becomes `FROM table AS alias WHERE (range) AND …`
/// (the scans' conditions are parenthesised or chains of AND).
fn within(sql: &str, table: &str, alias: &str, first: usize) -> Result<String> {
    let from = format!("FROM {} AS {alias} WHERE ", qualified(table));
    if sql.matches(&from).count() != 1 {
        bail!("cannot sample {table} in: {sql}");
    }
    Ok(sql.replacen(
        &from,
        &format!("{from}{} AND ", sample::tid_range(alias, first)),
        1,
    ))
}

/// What checking `constraints` costs: each scan sampled on the path the check would take, and
/// the scans shared among the sessions the check runs on. Reads only.
pub fn check_cost(client: &mut Client, constraints: &[&'static Constraint]) -> Result<CheckCost> {
    let sessions = sessions_offered(client)?;
    let mut tx = client.build_transaction().read_only(true).start()?;
    let tables = catalog::tables_read(constraints.iter().copied());
    let spelling = DatabaseSpelling::read(&mut tx, &tables)?;
    let scans: Vec<Scan> = narrow_scans(
        &mut tx,
        plan_scans(constraints, &spelling, false),
        &spelling,
    )?;
    let sizes = introspect::table_sizes(&mut tx, &tables)?;
    tx.batch(SAMPLE_SETTINGS)?;
    let mut costs = Vec::new();
    let (mut sampled, mut sampled_pages, mut pages) = (Duration::ZERO, 0.0, 0.0);
    for scan in &scans {
        // The sequential pass is what the sample times; a narrowed scan reads its share of it.
        let measured =
            SampledScan::of(&scan.constraints, &scan.sql, scan.live, &sizes)?.measure(&mut tx)?;
        let share = scan.narrowed.as_ref().map_or(1.0, |n| n.share);
        sampled += measured.took;
        sampled_pages += measured.sampled_pages;
        pages += measured.pages;
        costs.push(scan.reported((measured.full.as_secs_f64() * 1000.0 * share).ceil() as u64));
    }
    tx.commit()?;
    let round_trip = round_trip(client)?;
    let serial: f64 = costs.iter().map(|c| c.ms as f64).sum();
    let longest = costs.iter().map(|c| c.ms).max().unwrap_or(0) as f64;
    // The sessions share the scans, but no scan is split between them: the longest runs on one
    // session, and its parallel workers take cores from the other sessions' scans. On the
    // benchmark's mature data (two cores, 1M evidence rows), the evidence scan took 0.67 s of
    // its 0.9 s serial time beside the foreign keys' anti-joins, and the whole check no less
    // than that scan's serial time measured on a warm sample.
    let wall = (serial / sessions.max(1) as f64).max(longest);
    let total_ms = (wall + round_trip.as_secs_f64() * 1000.0 * (costs.len() as f64 + 1.0)).ceil();
    Ok(CheckCost {
        scans: costs,
        sessions,
        total_ms: total_ms as u64,
        sampled,
        sampled_pages,
        pages,
    })
}

/// What the VALIDATE of each of `constraints` costs: its own condition over every row of the
/// table (for a foreign key, the anti-join against the parent), on one process, as PostgreSQL
/// validates. None for one whose table (or parent) does not exist yet. One read-only
/// transaction, one spelling and one size read for them all.
///
/// `migrate` validates different tables at the same time (`validate.rs`): the biggest table's
/// VALIDATEs run alone for most of their time, every other table's beside them. So with
/// `beside` (the target, for a second connection), every other table's sample is timed while
/// the biggest table's runs there ([`super::beside`]); without it, when the connection cannot
/// be had, or when the competing scan cannot run, alone.
pub fn validate_costs(
    client: &mut Client,
    beside: Option<&Target>,
    constraints: &[&'static Constraint],
) -> Result<Vec<Option<Measured>>> {
    if constraints.is_empty() {
        return Ok(Vec::new());
    }
    let tables = catalog::tables_read(constraints.iter().copied());
    // More than one table to validate: a competing scan may be wanted (`biggest_table` decides,
    // after the sizes are read in the transaction the connection must not wait behind).
    let second = beside
        .filter(|_| constraints.iter().any(|c| c.table != constraints[0].table))
        .map(open_early);
    if let Some(early) = &second {
        wait_until_open(early);
    }
    let mut tx = client.build_transaction().read_only(true).start()?;
    let spelling = DatabaseSpelling::read(&mut tx, &tables)?;
    let sizes = introspect::table_sizes(&mut tx, &tables)?;
    tx.batch(SAMPLE_SETTINGS)?;
    let scans: Vec<Option<SampledScan>> = constraints
        .iter()
        .map(|&constraint| {
            if !constraint.tables_read().all(|t| spelling.has_table(t)) {
                return Ok(None);
            }
            Ok(Some(match constraint.kind() {
                Kind::Check => SampledScan::from_scan_start(constraint, &spelling, &sizes),
                Kind::ForeignKey => SampledScan::middle_run(constraint, &spelling, &sizes)?,
            }))
        })
        .collect::<Result<_>>()?;
    let biggest = biggest_table(constraints, &scans, &sizes);
    // Each present table's sample by its place in `constraints`: the biggest's (or, with one
    // table, all) timed alone, the others' beside it.
    let (others, alone): (Vec<Indexed>, Vec<Indexed>) = scans
        .iter()
        .enumerate()
        .filter_map(|(i, scan)| Some((i, scan.as_ref()?)))
        .partition(|(i, _)| biggest.is_some_and(|table| constraints[*i].table != table));
    let mut measured: Vec<Option<Measured>> = vec![None; constraints.len()];
    for (n, (i, scan)) in alone.iter().enumerate() {
        let settling = if n == 0 { SETTLING_RUNS } else { 0 };
        measured[*i] = Some(scan.measure_after(&mut tx, settling)?);
    }
    // Nothing runs beside the biggest's VALIDATE when there are no others: the second connection
    // is not used then.
    //
    // It runs one statement over and over, bound once: a run from the middle of the biggest
    // table (its own samples find their pages anew before each run).
    let competitor = alone
        .iter()
        .find(|(i, _)| Some(constraints[*i].table) == biggest)
        .map(|(i, _)| SampledScan::middle_run(constraints[*i], &spelling, &sizes))
        .transpose()?;
    let second = match competitor {
        Some(_) if !others.is_empty() => second.and_then(|early| early.join().ok()?.ok()),
        _ => None,
    };
    match (second, competitor) {
        (Some(mut other), Some(competitor)) => {
            let (timed, raced) = super::beside::while_scanning(
                &mut other,
                super::beside::Competitor {
                    settings: SAMPLE_SETTINGS,
                    sql: &competitor.sql,
                    params: competitor.params(),
                },
                tx,
                |tx| {
                    others
                        .iter()
                        .map(|(i, scan)| Ok((*i, scan.measure(tx)?)))
                        .collect::<Result<Vec<_>>>()
                },
            )?;
            for (i, m) in timed {
                measured[i] = Some(Measured { beside: raced, ..m });
            }
        }
        _ => {
            for (i, scan) in others {
                measured[i] = Some(scan.measure(&mut tx)?);
            }
            tx.commit()?;
        }
    }
    Ok(measured)
}

/// Untimed runs of the biggest table's first VALIDATE sample before the timed ones. In the
/// benchmark, under the application's load, a dry run's first two or three sample runs ran
/// slower than the runs after them: 12–15 ms against 7–10 ms for 1,678 evidence pages, each run
/// on pages no run had read before, in three dry runs of six runs each; a 400 ms pause before
/// them did not change that. The cause is not established. chk_evidence_status, timed
/// first, came out at 1.2–2.6 times its VALIDATE in every dry run of a full run (the wait for
/// the second connection, below, did not remove it); with two runs read before it, 0.83–0.99
/// in seven of the eight dry runs of the next (docs/performance.md). Two runs, about 2 % of the
/// table's pages, cover that stretch at 2M rows, and more than cover it on a bigger table, whose
/// runs take longer.
const SETTLING_RUNS: usize = 2;

/// How long the samples wait, at most, for the early connection to be made, before the
/// transaction they run in begins. A backend starting takes tens of milliseconds of a core, as
/// long as a sample runs: on a server the application keeps busy, the first sample timed beside
/// it came out slower than the others of the same table in 14 of 16 dry runs in the benchmark.
/// Waited for before the transaction, it can get a transaction pool's only server connection;
/// a session pool with none to spare gives it none while this session lasts, and the samples go
/// on without it.
const EARLY_START_WAIT: Duration = Duration::from_millis(200);

/// Waits up to [`EARLY_START_WAIT`] for `early` to be made.
fn wait_until_open(early: &Early) {
    let waited = std::time::Instant::now();
    while !early.is_finished() && waited.elapsed() < EARLY_START_WAIT {
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A sample and the place of its constraint in the list being estimated.
type Indexed<'s> = (usize, &'s SampledScan);

/// The table whose VALIDATEs read the most (a foreign key's parent counted too): the one
/// `validate.rs` spends longest on. None when only one table is validated: nothing runs
/// beside it.
fn biggest_table(
    constraints: &[&'static Constraint],
    scans: &[Option<SampledScan>],
    sizes: &TableSizes,
) -> Option<&'static str> {
    let mut tables: Vec<(&'static str, i64)> = Vec::new();
    for (c, _) in constraints.iter().zip(scans).filter(|(_, s)| s.is_some()) {
        let bytes: i64 = c.tables_read().map(|t| sizes.bytes(t)).sum();
        match tables.iter_mut().find(|(t, _)| *t == c.table) {
            Some((_, total)) => *total += bytes,
            None => tables.push((c.table, bytes)),
        }
    }
    if tables.len() < 2 {
        return None;
    }
    tables
        .into_iter()
        .max_by_key(|(_, bytes)| *bytes)
        .map(|(t, _)| t)
}

/// The fastest of three `SELECT 1`: what any statement costs before it reads a page.
pub fn round_trip(client: &mut (impl Query + ?Sized)) -> Result<Duration> {
    let mut best = Duration::MAX;
    for _ in 0..3 {
        let started = std::time::Instant::now();
        client.row("SELECT 1", &[])?;
        best = best.min(started.elapsed());
    }
    Ok(best)
}
