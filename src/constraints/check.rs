//! Finds the rows that break catalog constraints: the one implementation behind `migrate`'s
//! preflight, `check-constraints` and `cleanup`.
//!
//! One pass per table: all of a table's CHECK constraints are evaluated in a single scan (over
//! only the rows that can violate, where an index the database has narrows it and that reads
//! less: `indexed.rs`), each foreign key by one anti-join. Only violating rows travel to us,
//! streamed, and we keep just a count and the ten smallest primary keys per constraint, so
//! memory stays flat whatever the table size and the sample costs no second scan. Scans run
//! concurrently on as many sessions as the server offers one query
//! (`scan_sessions::sessions_offered`), sharing one exported snapshot so every count describes
//! the same moment, and PostgreSQL's parallel workers may help with each (see `SCAN_SETTINGS`,
//! and [`runs_serially`] for the one exception).

use super::indexed::{self, Narrowing};
use super::live::{self, LiveSince};
pub use super::presence::{constraint_presence, constraint_states, ConstraintState, Presence};
use super::scan_cost::{ScanCost, TimedScans};
use super::scan_progress::{self, ScanProgress};
use super::scan_sessions::{connect_early, run_parallel, sessions_offered};
pub use super::spelling::DatabaseSpelling;
use crate::catalog::constraints::{self as catalog, Constraint, Kind};
use crate::catalog::sql::{qualified, quote_ident};
use crate::catalog::PRIMARY_KEY;
use crate::db::config::Target;
use crate::db::introspect::{self, TableSizes};
use crate::db::{query, Param, Query};
use crate::progress::Log;
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use postgres::{Client, IsolationLevel, Transaction};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// How many sample primary keys a finding keeps.
pub const SAMPLE_SIZE: usize = 10;

/// What the check found for one constraint; serialises with the report's keys.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub name: &'static str,
    pub table: &'static str,
    pub kind: Kind,
    pub violations: u64,
    /// Violating rows created or updated after the last completed cleanup run, or within the
    /// live window (see `live.rs`): the application still writes them.
    pub live_violations: u64,
    /// The smallest violating primary keys, at most ten, ascending.
    pub sample: Vec<String>,
    pub state: ConstraintState,
    /// False when the table does not exist yet (nothing to check).
    pub checked: bool,
}

impl Finding {
    pub fn constraint(&self) -> &'static Constraint {
        crate::catalog::constraints::find(self.name).expect("findings come from the catalog")
    }
}

/// One scan: a table's CHECK constraints together, or one foreign key. After the key and the
/// flags, one column says whether the row is live (`live`: whether that column reads the bound
/// cutoff `$1`), and a last one, when a progress bar is drawn (`returns_blocks`), in which
/// block the row lies.
pub(super) struct Scan {
    pub(super) constraints: Vec<&'static Constraint>,
    pub(super) sql: String,
    pub(super) live: bool,
    returns_blocks: bool,
    /// For a table's CHECKs: the rows an index narrows the scan to, when that reads less than
    /// the plain scan (see `indexed.rs`).
    pub(super) narrowed: Option<Narrowing>,
    /// For a table's CHECKs that an index could narrow: the share of pages it would read,
    /// whether or not that pays.
    pub(super) narrowable_share: Option<f64>,
}

/// `with_blocks`: whether the scans return each violating row's block, for a progress bar.
/// Only when one is drawn: turning a `ctid` into its block number goes through text, and at 52,000
/// violating rows leaving it out took the check from 0.68 s to 0.65 s (docs/performance.md).
pub(super) fn plan_scans(
    constraints: &[&'static Constraint],
    spelling: &DatabaseSpelling,
    with_blocks: bool,
) -> Vec<Scan> {
    let mut by_table: Vec<(&'static str, Vec<&'static Constraint>)> = Vec::new();
    let mut scans = Vec::new();
    for c in constraints
        .iter()
        .copied()
        .filter(|c| spelling.has_table(c.table))
    {
        match c.kind() {
            Kind::ForeignKey => {
                if c.parent().is_some_and(|parent| !spelling.has_table(parent)) {
                    continue;
                }
                scans.push(foreign_key_scan(c, spelling, with_blocks));
            }
            Kind::Check => match by_table.iter_mut().find(|(t, _)| *t == c.table) {
                Some((_, list)) => list.push(c),
                None => by_table.push((c.table, vec![c])),
            },
        }
    }
    for (table, checks) in by_table {
        scans.push(checks_scan(table, checks, spelling, with_blocks));
    }
    scans
}

/// The key of a violating row, as every scan returns it first.
fn key_column() -> String {
    format!("t.{}::text", quote_ident(PRIMARY_KEY))
}

/// The block column after the others, when a progress bar is drawn.
fn block_column(with_blocks: bool) -> String {
    if with_blocks {
        format!(", {}", scan_progress::block_column("t"))
    } else {
        String::new()
    }
}

/// Whether a row of `table` was written after the cutoff `$1`, when the table can tell.
fn live_column(table: &str, spelling: &DatabaseSpelling) -> Option<String> {
    live::written_after(table, spelling, "t", "$1::timestamptz")
}

/// [`live_column`] for a row an anti-join keeps, read by the row's location in a subquery.
///
/// Whatever a join's output names of the child row, the scan under the join decodes from every
/// row it reads, not only from those the join keeps. The time columns come last in the
/// application's tables, so the flag made the anti-join decode every child row whole, where
/// the join itself needs one early column. Looked up by `ctid` (a TID scan, same snapshot,
/// above the join), it decodes only the violating rows. Server CPU of the anti-join alone,
/// serial, medians of five (docs/performance.md): assessment_sessions 590 → 540 ms and
/// generated_policies 380 → 340 ms at 2M evidence rows; 2,380 → 2,270 ms at 10M.
fn live_column_of_kept_row(table: &str, spelling: &DatabaseSpelling) -> Option<String> {
    live::written_after(table, spelling, "w", "$1::timestamptz").map(|written| {
        format!(
            "(SELECT {written} FROM {} AS w WHERE w.ctid = t.ctid)",
            qualified(table)
        )
    })
}

/// One foreign key's anti-join.
fn foreign_key_scan(
    c: &'static Constraint,
    spelling: &DatabaseSpelling,
    with_blocks: bool,
) -> Scan {
    let is_live = live_column_of_kept_row(c.table, spelling);
    Scan {
        constraints: vec![c],
        sql: format!(
            "SELECT {}, {}{} FROM {} AS t WHERE {}",
            key_column(),
            is_live.as_deref().unwrap_or("false"),
            block_column(with_blocks),
            qualified(c.table),
            c.violation_condition(spelling, "t")
        ),
        live: is_live.is_some(),
        returns_blocks: with_blocks,
        narrowed: None,
        narrowable_share: None,
    }
}

/// One pass over `table` evaluating `checks` (its CHECKs) together, a flag per constraint.
fn checks_scan(
    table: &'static str,
    checks: Vec<&'static Constraint>,
    spelling: &DatabaseSpelling,
    with_blocks: bool,
) -> Scan {
    let conditions: Vec<String> = checks
        .iter()
        .map(|c| c.violation_condition(spelling, "t"))
        .collect();
    let flags: Vec<String> = conditions
        .iter()
        .map(|cond| format!("coalesce({cond}, false)"))
        .collect();
    let is_live = live_column(table, spelling);
    let condition = conditions
        .iter()
        .map(|c| format!("({c})"))
        .collect::<Vec<_>>()
        .join(" OR ");
    Scan {
        constraints: checks,
        live: is_live.is_some(),
        returns_blocks: with_blocks,
        narrowed: None,
        narrowable_share: None,
        sql: format!(
            "SELECT {}, {}, {}{} FROM {} AS t WHERE ({condition})",
            key_column(),
            flags.join(", "),
            is_live.as_deref().unwrap_or("false"),
            block_column(with_blocks),
            qualified(table),
        ),
    }
}

/// Narrows each table's CHECK scan through an index where that reads less (see `indexed.rs`):
/// all of its CHECKs together, or, when together they lead to too many pages, those an index
/// narrows to few pages by themselves in scans of their own, the rest in one sequential pass
/// ([`indexed::Narrowings::reading`]). A table nothing narrows stays one sequential pass
/// evaluating all its CHECKs at once.
pub(super) fn narrow_scans(
    client: &mut (impl Query + ?Sized),
    scans: Vec<Scan>,
    spelling: &DatabaseSpelling,
) -> Result<Vec<Scan>> {
    let mut narrowed = Vec::with_capacity(scans.len());
    for mut scan in scans {
        let Some(first) = scan.constraints.first().copied() else {
            continue;
        };
        if first.kind() != Kind::Check {
            narrowed.push(scan);
            continue;
        }
        let found = indexed::narrowings(client, first.table, &scan.constraints, spelling)?;
        let with_blocks = scan.returns_blocks;
        match found.reading() {
            indexed::Reading::Together(n) => {
                scan.narrowable_share = Some(n.share);
                scan.narrowed = Some(n);
                narrowed.push(scan);
            }
            indexed::Reading::Pass => {
                scan.narrowable_share = found.together.as_ref().map(|n| n.share);
                narrowed.push(scan);
            }
            indexed::Reading::Apart(apart) => {
                let rest: Vec<usize> = (0..scan.constraints.len())
                    .filter(|i| !apart.iter().any(|(a, _)| a == i))
                    .collect();
                for (i, n) in apart {
                    let mut own = checks_scan(
                        first.table,
                        vec![scan.constraints[i]],
                        spelling,
                        with_blocks,
                    );
                    own.narrowable_share = Some(n.share);
                    own.narrowed = Some(n);
                    narrowed.push(own);
                }
                if !rest.is_empty() {
                    let checks = rest.iter().map(|&i| scan.constraints[i]).collect();
                    let mut pass = checks_scan(first.table, checks, spelling, with_blocks);
                    // Where an index could narrow the pass's one constraint, what it would read.
                    pass.narrowable_share = match rest.as_slice() {
                        [only] => found.each[*only].as_ref().map(|n| n.share),
                        _ => None,
                    };
                    narrowed.push(pass);
                }
            }
        }
    }
    Ok(narrowed)
}

impl Scan {
    /// The scan as an estimate reports it, at `ms`: sampled (`cost.rs`) or as the check ran it.
    pub(super) fn reported(&self, ms: u64) -> ScanCost {
        ScanCost {
            table: self.constraints[0].table,
            constraints: self.constraints.iter().map(|c| c.name).collect(),
            path: if self.narrowed.is_some() {
                "index"
            } else {
                "sequential"
            },
            index_page_share: self.narrowable_share.map(|s| (s * 1000.0).round() / 1000.0),
            ms,
        }
    }

    /// The bytes a scan reads: its table, and for a foreign key the parent it hashes too.
    fn cost(&self, sizes: &TableSizes) -> i64 {
        let size = |t: &str| sizes.bytes(t);
        if let (Some(n), Some(c)) = (&self.narrowed, self.constraints.first()) {
            return (size(c.table) as f64 * n.share) as i64;
        }
        self.constraints
            .iter()
            .map(|c| c.tables_read().map(size).sum::<i64>())
            .max()
            .unwrap_or(0)
    }
}

/// Counts and samples of one constraint while its scan streams.
#[derive(Default)]
struct Tally {
    count: u64,
    live: u64,
    smallest: BTreeSet<String>,
}

impl Tally {
    fn add(&mut self, key: &str) {
        self.count += 1;
        if self.smallest.len() < SAMPLE_SIZE {
            self.smallest.insert(key.to_string());
        } else if self
            .smallest
            .last()
            .is_some_and(|largest| key < largest.as_str())
        {
            self.smallest.insert(key.to_string());
            self.smallest.pop_last();
        }
    }
}

/// A scan and what it reads, for the order and the progress bar.
struct Part<'a> {
    scan: &'a Scan,
    cost: i64,
    /// The blocks of the table whose rows it returns.
    blocks: i64,
    /// Without parallel workers (see [`runs_serially`]).
    serial: bool,
}

/// Whether a scan runs without PostgreSQL's parallel workers: a narrowed one (a bitmap heap
/// scan) while the other parts give the other session at least half as much to read.
///
/// A parallel bitmap heap scan hands its pages out one at a time under a shared lock and
/// barely scales: alone it took as long as the serial scan with two to three times the CPU.
/// Beside the foreign keys' anti-joins on the other session, that CPU came out of theirs: with
/// the block column off as well (`plan_scans`), the whole check took 0.58 s against 0.70 s
/// (medians of twelve alternations, 2M evidence_items, docs/performance.md). Where little
/// runs beside it (`migrate`'s preflight: the evidence scan and business_profiles'), the
/// workers are what keeps a second core busy, and under the application's load they win it a
/// bigger share of the machine: serial there, `migrate` took 4.9 s against 4.4 s (medians of
/// six).
fn runs_serially(part_cost: i64, narrowed: bool, all_parts_cost: i64) -> bool {
    narrowed && (all_parts_cost - part_cost).saturating_mul(2) >= part_cost
}

impl Part<'_> {
    /// Runs the scan, moving `bar` along its cost as its rows pass the table's blocks.
    fn run(
        &self,
        client: &mut Transaction<'_>,
        live_since: &DateTime<Utc>,
        bar: &indicatif::ProgressBar,
    ) -> Result<(Vec<Tally>, Duration)> {
        let started = Instant::now();
        let total = self.cost.max(0) as u64;
        let mut shown = 0u64;
        let mut passed = ScanProgress::new(self.blocks);
        let result = run_scan(client, self, live_since, &mut |block| {
            let now = (passed.seen(block) * total as f64) as u64;
            if now > shown {
                bar.inc(now - shown);
                shown = now;
            }
        });
        bar.inc(total.saturating_sub(shown));
        Ok((result?, started.elapsed()))
    }
}

/// While a part runs serially, and after.
const SERIAL_SETTINGS: &str = "SET LOCAL max_parallel_workers_per_gather = 0";
const UNSERIAL_SETTINGS: &str = "SET LOCAL max_parallel_workers_per_gather TO DEFAULT";

fn run_scan(
    client: &mut Transaction<'_>,
    part: &Part<'_>,
    live_since: &DateTime<Utc>,
    progress: &mut dyn FnMut(i64),
) -> Result<Vec<Tally>> {
    let (scan, serial) = (part.scan, part.serial);
    let mut tallies: Vec<Tally> = scan.constraints.iter().map(|_| Tally::default()).collect();
    let mut params: Vec<&dyn Param> = if scan.live {
        vec![live_since]
    } else {
        Vec::new()
    };
    let sql = match &scan.narrowed {
        Some(n) => {
            params.push(&n.values);
            format!("{} AND {}", scan.sql, n.condition("t", params.len()))
        }
        None => scan.sql.clone(),
    };
    if let Some(narrowed) = &scan.narrowed {
        narrowed.enter(client)?;
    }
    if serial {
        client.batch(SERIAL_SETTINGS)?;
    }
    let mut rows = query::stream(client, sql.as_str(), &params)
        .with_context(|| format!("checking {}", names(&scan.constraints)))?;
    use postgres::fallible_iterator::FallibleIterator;
    let foreign_key = scan.constraints.len() == 1 && scan.constraints[0].kind() == Kind::ForeignKey;
    let live_column = scan.constraints.len() + usize::from(!foreign_key);
    while let Some(row) = rows.next()? {
        let key: String = row.get(0);
        let live: bool = row.get(live_column);
        if scan.returns_blocks {
            progress(row.get(live_column + 1));
        }
        for (i, tally) in tallies.iter_mut().enumerate() {
            if foreign_key || row.get::<_, bool>(i + 1) {
                tally.add(&key);
                tally.live += u64::from(live);
            }
        }
    }
    drop(rows);
    if scan.narrowed.is_some() {
        client.batch(indexed::UNNARROWED_SETTINGS)?;
    }
    if serial {
        client.batch(UNSERIAL_SETTINGS)?;
    }
    Ok(tallies)
}

fn names(constraints: &[&'static Constraint]) -> String {
    constraints
        .iter()
        .map(|c| c.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Planner settings for the check's scans, for their transaction only.
///
/// `parallel_tuple_cost = 0` lets PostgreSQL's parallel workers share a big table's scan (within
/// the server's own max_parallel_workers_per_gather). A scan sends only violating rows to the
/// leader, a few, but the planner cannot know that and, charging parallel_tuple_cost for the
/// rows it guesses, keeps the scan serial. Cheaper than splitting the table into TID ranges
/// ourselves: those read through shared buffers without the bulk-read ring and synchronized
/// scans, and cost 40–60 % more per page.
///
/// `jit = off`: a scan's plan costs more than jit_above_cost from about a million rows on, and
/// each worker then compiles its expressions, about 80 ms each (and over a second once the cost
/// passes jit_optimize_above_cost), for simple comparisons that run no faster compiled.
const SCAN_SETTINGS: &str = "SET LOCAL parallel_tuple_cost = 0; SET LOCAL jit = off";

/// Checks `constraints` against every row, counting live violations within the default
/// window. Reads only: runs in READ ONLY transactions and takes no lock stronger than ACCESS
/// SHARE.
pub fn check(
    target: &Target,
    client: &mut Client,
    constraints: &[&'static Constraint],
    log: &Log,
) -> Result<Vec<Finding>> {
    Ok(check_live(target, client, constraints, log, live::DEFAULT_WINDOW)?.findings)
}

/// What a check found, from when on rows counted as live, and how its scans went.
pub struct Checked {
    pub findings: Vec<Finding>,
    pub live_since: LiveSince,
    pub timed: TimedScans,
}

/// [`check`], with the live window given.
pub fn check_live(
    target: &Target,
    client: &mut Client,
    constraints: &[&'static Constraint],
    log: &Log,
    window: std::time::Duration,
) -> Result<Checked> {
    // The other sessions connect while this one plans: a connection costs a backend's start.
    let sessions = sessions_offered(client)?;
    let early = connect_early(target, constraints, sessions);
    let mut tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()?;
    let live_since = LiveSince::resolve(&mut tx, window)?;
    let tables = catalog::tables_read(constraints.iter().copied());
    let spelling = DatabaseSpelling::read(&mut tx, &tables)?;
    let states = constraint_states(&mut tx)?;
    let scans = narrow_scans(
        &mut tx,
        plan_scans(constraints, &spelling, log.bars),
        &spelling,
    )?;
    let sizes = introspect::table_sizes(&mut tx, &tables)?;
    let all_parts_cost: i64 = scans.iter().map(|scan| scan.cost(&sizes).max(0)).sum();
    // Biggest first: the sessions share the work, and a large scan started last would leave
    // the other idle while it finishes. A scan that runs serially goes first of all: it cannot
    // spread over the cores, so it runs while the other sessions' parallel scans fill the rest,
    // rather than alone on one core at the end. On the default data (the narrowed evidence
    // scan first) the check took 0.76 s against 0.85 s (medians of six, docs/performance.md).
    let mut parts: Vec<Part> = scans
        .iter()
        .map(|scan| {
            let cost = scan.cost(&sizes);
            Part {
                scan,
                cost,
                blocks: scan.constraints.first().map_or(1, |c| sizes.pages(c.table)),
                serial: runs_serially(cost, scan.narrowed.is_some(), all_parts_cost),
            }
        })
        .collect();
    parts.sort_by_key(|part| (!part.serial, std::cmp::Reverse(part.cost)));
    tx.batch(SCAN_SETTINGS)?;
    let bar = log.bytes_bar(all_parts_cost as u64, "checking constraints");
    let results: Vec<Result<(Vec<Tally>, Duration)>> = if parts.len() <= 1 {
        let results = parts
            .iter()
            .map(|part| part.run(&mut tx, &live_since.since, &bar))
            .collect();
        tx.commit()?;
        results
    } else {
        let snapshot: String = tx.row("SELECT pg_export_snapshot()", &[])?.get(0);
        let since = &live_since.since;
        let run = |part: &Part<'_>, tx: &mut Transaction<'_>| part.run(tx, since, &bar);
        run_parallel(early, &snapshot, SCAN_SETTINGS, tx, &parts, &run)?
    };
    bar.finish_and_clear();

    let mut tallies: HashMap<&'static str, Tally> = HashMap::new();
    let mut timed = Vec::with_capacity(parts.len());
    let mut busy = Duration::ZERO;
    for (part, result) in parts.iter().zip(results) {
        let (part_tallies, took) = result?;
        timed.push(part.scan.reported(took.as_millis() as u64));
        busy += took;
        for (c, tally) in part.scan.constraints.iter().zip(part_tallies) {
            tallies.insert(c.name, tally);
        }
    }
    let findings = constraints
        .iter()
        .map(|c| {
            let tally = tallies.remove(c.name);
            Finding {
                name: c.name,
                table: c.table,
                kind: c.kind(),
                checked: tally.is_some(),
                violations: tally.as_ref().map_or(0, |t| t.count),
                live_violations: tally.as_ref().map_or(0, |t| t.live),
                sample: tally.map_or_else(Vec::new, |t| t.smallest.into_iter().collect()),
                state: states
                    .get(c.name)
                    .copied()
                    .unwrap_or(ConstraintState::Absent),
            }
        })
        .collect();
    Ok(Checked {
        findings,
        live_since,
        timed: TimedScans {
            scans: timed,
            sessions,
            bytes: all_parts_cost,
            busy,
        },
    })
}

/// The total of violations over findings.
pub fn total_violations(findings: &[Finding]) -> u64 {
    findings.iter().map(|f| f.violations).sum()
}

/// The total of live violations over findings.
pub fn total_live_violations(findings: &[Finding]) -> u64 {
    findings.iter().map(|f| f.live_violations).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_narrowed_scan_runs_serially_only_beside_enough_other_work() {
        // The check at 2M evidence_items: the narrowed evidence scan and 0.7 GB of others.
        assert!(runs_serially(1_000, true, 1_726));
        // migrate's preflight: the evidence scan and business_profiles' alone.
        assert!(!runs_serially(1_000, true, 1_078));
        // Only a narrowed scan.
        assert!(!runs_serially(300, false, 1_726));
    }

    #[test]
    fn tally_keeps_the_ten_smallest_keys_in_order() {
        let mut tally = Tally::default();
        for i in (0..100).rev() {
            tally.add(&format!("{i:03}"));
        }
        assert_eq!(tally.count, 100);
        let kept: Vec<String> = tally.smallest.into_iter().collect();
        assert_eq!(kept, (0..10).map(|i| format!("{i:03}")).collect::<Vec<_>>());
    }
}
