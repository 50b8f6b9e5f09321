//! The results: one value, printed as a table, written as JSON and as the markdown block of
//! docs/performance.md's latest results. An unmet target is shown as such, never left out.

use crate::dataset::{Built, Scale};
use crate::foretold::{Foretold, ESTIMATE_BAND};
use crate::machine::Machine;
use crate::scenarios::{
    CheckResult, CleanupResult, MigrationRun, MigrationSeries, CHECK_RATIO_TARGET,
    CLEANUP_RATIO_TARGET, HANDWRITTEN_RATIO_TARGET, MEMORY_TARGET_MIB,
    MIGRATE_DURATION_RATIO_TARGET, STALL_OVER_CONTROL_MS,
};
use anyhow::{Context, Result};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;

#[derive(Debug, Serialize)]
pub struct Settings {
    pub scale: f64,
    pub repetitions: usize,
    pub connections: usize,
    pub rate_per_connection: u32,
    /// The workload's pace for the duration verdict: headroom left on the server.
    pub headroom_rate_per_connection: u32,
    /// The pace of the context runs where most of the CPUs stay idle (0: none ran).
    pub idle_rate_per_connection: u32,
    /// Whether the GIN indexes keep PostgreSQL's default pending list (`fastupdate`).
    pub gin_fastupdate: bool,
    /// Whether the long-running reader (reader.rs) ran beside the workload.
    pub long_running_reader: bool,
    /// Flags `ruleiq-db migrate` ran with (none: a DBA's plain `migrate`).
    pub migrate_flags: Vec<String>,
    pub server: &'static str,
}

#[derive(Debug, Serialize)]
pub struct Migrations {
    pub ruleiq_db: MigrationSeries,
    pub naive: MigrationSeries,
    /// The workload alone, no migration, as long as each ruleiq-db run.
    pub control: MigrationSeries,
    pub target_stall_ms: f64,
    pub met: bool,
}

#[derive(Debug, Serialize)]
pub struct Memory {
    pub check_mib: f64,
    pub cleanup_mib: Option<f64>,
    pub migrate_mib: Option<f64>,
    pub target_mib: f64,
    pub met: bool,
}

/// `migrate` against the naive migration with the workload at a pace the server can keep:
/// the duration verdict (issue 17's option b). One more ruleiq-db run after a cold start
/// holds its estimate against what a cold server does.
#[derive(Debug, Serialize)]
pub struct Headroom {
    pub rate_per_connection: u32,
    pub ruleiq_db: MigrationSeries,
    pub naive: MigrationSeries,
    pub ratio: f64,
    /// Whether the ratio meets the duration target; None for the context pair (`--idle-rate`),
    /// which no verdict reads.
    pub met: Option<bool>,
    pub cold: Option<MigrationRun>,
    /// How busy the CPUs were with the workload alone at this pace (the median of the warm
    /// runs' seconds before their migrations), in percent: how much headroom there was.
    pub workload_cpu_busy: Option<f64>,
}

impl Headroom {
    /// The naive migration's median, and how busy the workload alone kept the CPUs.
    fn baseline(&self) -> String {
        format!(
            "naive: {}{}",
            median_of_completed(&self.naive),
            self.workload_cpu_busy
                .map_or_else(String::new, |busy| format!(
                    "; the workload alone kept the CPUs {busy:.0} % busy"
                ))
        )
    }

    /// The pair at `rate_per_connection`; `judged` when it carries the duration verdict.
    pub fn new(
        rate_per_connection: u32,
        ruleiq_db: MigrationSeries,
        naive: MigrationSeries,
        cold: Option<MigrationRun>,
        judged: bool,
    ) -> Headroom {
        let ratio = ruleiq_db.migration_median_ms / naive.migration_median_ms.max(1.0);
        let before: Vec<f64> = ruleiq_db
            .runs
            .iter()
            .chain(&naive.runs)
            .filter_map(|r| r.cpu_busy_before)
            .collect();
        Headroom {
            workload_cpu_busy: (!before.is_empty()).then(|| crate::scenarios::median(&before)),
            rate_per_connection,
            met: judged.then_some(ruleiq_db.ok && ratio <= MIGRATE_DURATION_RATIO_TARGET),
            ratio,
            ruleiq_db,
            naive,
            cold,
        }
    }
}

/// Everything measured on one data set.
#[derive(Debug, Serialize)]
pub struct DataSet {
    /// Which distribution of values (dataset.rs).
    pub distribution: String,
    /// What that distribution is, in words.
    pub described: String,
    pub rows: Scale,
    pub dataset: Built,
    pub check: CheckResult,
    pub cleanup: CleanupResult,
    /// Under the saturating workload: the stall and failed-statement verdicts.
    pub migrate: Migrations,
    pub headroom: Headroom,
    /// Context: the same pair at a pace that leaves most of the CPUs idle (`--idle-rate`).
    pub idle: Option<Headroom>,
    pub memory: Memory,
}

#[derive(Debug, Serialize)]
pub struct Results {
    pub machine: Machine,
    pub settings: Settings,
    pub data_sets: Vec<DataSet>,
    /// The latency picture, relative to the repository.
    pub picture: Option<String>,
    pub total_seconds: f64,
}

impl Migrations {
    pub fn new(
        ruleiq_db: MigrationSeries,
        naive: MigrationSeries,
        control: MigrationSeries,
    ) -> Migrations {
        let target_stall_ms = control.longest_stall_ms + STALL_OVER_CONTROL_MS;
        let met =
            ruleiq_db.ok && ruleiq_db.longest_stall_ms <= target_stall_ms && ruleiq_db.failed == 0;
        Migrations {
            ruleiq_db,
            naive,
            control,
            target_stall_ms,
            met,
        }
    }
}

impl Memory {
    pub fn new(check: &CheckResult, cleanup: &CleanupResult, migrate: &MigrationSeries) -> Memory {
        let measured = [
            Some(check.peak_rss_mib),
            cleanup.peak_rss_mib,
            migrate.peak_rss_mib,
        ];
        Memory {
            check_mib: check.peak_rss_mib,
            cleanup_mib: cleanup.peak_rss_mib,
            migrate_mib: migrate.peak_rss_mib,
            target_mib: MEMORY_TARGET_MIB,
            met: measured.iter().flatten().all(|m| *m <= MEMORY_TARGET_MIB),
        }
    }
}

/// The application's longest wait for its own sessions' locks, with the lock's kind.
fn own_lock_wait(series: &crate::scenarios::MigrationSeries) -> String {
    series
        .own_lock_wait
        .as_ref()
        .map_or_else(|| "none".into(), ToString::to_string)
}

fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "NOT MET",
        None => "not measured",
    }
}

fn mib(value: Option<f64>) -> String {
    value.map_or_else(|| "unavailable".into(), |v| format!("{v:.1} MiB"))
}

fn secs(ms: f64) -> String {
    format!("{:.2} s", ms / 1000.0)
}

impl DataSet {
    /// The estimates the summary judges: the check's, the first cleanup's, the median warm
    /// migration's (preflight, each VALIDATE, total) and the cold one's.
    fn estimates(&self) -> Vec<&Foretold> {
        let mut rows = vec![&self.check.foretold];
        rows.extend(self.cleanup.foretold.first());
        let mut warm: Vec<&MigrationRun> = self
            .headroom
            .ruleiq_db
            .runs
            .iter()
            .filter(|r| !r.foretold.is_empty())
            .collect();
        warm.sort_by(|a, b| a.migration_ms.total_cmp(&b.migration_ms));
        if let Some(median) = warm.get(warm.len() / 2) {
            rows.extend(&median.foretold);
        }
        if let Some(cold) = &self.headroom.cold {
            rows.extend(&cold.foretold);
        }
        rows
    }

    /// The rows of the summary: measure, ruleiq-db, baseline, target, verdict.
    fn summary(&self) -> Vec<[String; 5]> {
        let c = &self.check;
        let cl = &self.cleanup;
        let (r, n, none) = (
            &self.migrate.ruleiq_db,
            &self.migrate.naive,
            &self.migrate.control,
        );
        let h = &self.headroom;
        let stall_met = r.ok && r.longest_stall_ms <= self.migrate.target_stall_ms;
        let runs = r.runs.len();
        let estimates = self.estimates();
        let judged: Vec<&&Foretold> = estimates.iter().filter(|f| f.met.is_some()).collect();
        let within = judged.iter().filter(|f| f.met == Some(true)).count();
        let worst = judged
            .iter()
            .filter_map(|f| f.ratio)
            .max_by(|a, b| (a.ln().abs()).total_cmp(&b.ln().abs()));
        let mut rows = vec![
            [
                "check-constraints --dry-run ÷ hand-written SQL".into(),
                secs(c.median_ms),
                secs(c.handwritten_median_ms),
                format!("ratio <= {HANDWRITTEN_RATIO_TARGET}"),
                format!(
                    "{} (ratio {:.2})",
                    verdict(Some(c.handwritten_met)),
                    c.ratio_to_handwritten
                ),
            ],
            [
                format!(
                    "check-constraints --dry-run ÷ the longest table's seq scan ({})",
                    c.longest_table
                ),
                secs(c.median_ms),
                secs(c.longest_table_scan_median_ms),
                "(the limit to approach)".into(),
                format!("ratio {:.2}", c.ratio_to_longest_table),
            ],
            [
                format!(
                    "check-constraints --dry-run ÷ the hand-written SQL's work spread evenly over {} CPUs",
                    c.logical_cpus
                ),
                secs(c.median_ms),
                secs(c.even_spread_ms),
                format!(
                    "(the floor for reading what the hand-written SQL reads: {:.2} of the hand-written SQL)",
                    c.even_spread_ratio_to_handwritten
                ),
                format!("ratio {:.2}", c.median_ms / c.even_spread_ms),
            ],
            [
                "check-constraints --dry-run ÷ count(*) as seq scans".into(),
                secs(c.median_ms),
                secs(c.seq_scan_baseline_median_ms),
                format!(
                    "(context; count(*) ratio {:.2}, was <= {CHECK_RATIO_TARGET})",
                    c.ratio
                ),
                format!("ratio {:.2}", c.ratio_to_seq_scan),
            ],
            [
                "cleanup ÷ bare UPDATE … WHERE (check) IS FALSE".into(),
                cl.wall_ms.map_or_else(
                    || format!("unavailable: {}", cl.reason.clone().unwrap_or_default()),
                    secs,
                ),
                format!("{} ({} rows)", secs(cl.bare_update_ms), cl.bare_rows),
                format!("ratio <= {CLEANUP_RATIO_TARGET}"),
                match cl.ratio {
                    Some(ratio) => format!("{} (ratio {ratio:.2})", verdict(cl.met)),
                    None => verdict(None).into(),
                },
            ],
            [
                format!("migrate 7→8 under load: longest stall (worst of {runs})"),
                format!("{:.0} ms", r.longest_stall_ms),
                format!(
                    "naive: {:.0} ms; no migration: {:.0} ms",
                    n.longest_stall_ms, none.longest_stall_ms
                ),
                format!(
                    "<= {:.0} ms (no migration + {STALL_OVER_CONTROL_MS})",
                    self.migrate.target_stall_ms
                ),
                format!(
                    "{} (no migration: {:.0} ms)",
                    verdict(Some(stall_met)),
                    none.longest_stall_ms
                ),
            ],
            [
                format!("migrate 7→8 under load: longest lock wait (worst of {runs})"),
                format!("{:.0} ms", r.longest_lock_wait_ms),
                format!(
                    "naive: {:.0} ms; no migration: {:.0} ms",
                    n.longest_lock_wait_ms, none.longest_lock_wait_ms
                ),
                "(what the migration's locks cost)".into(),
                "-".into(),
            ],
            [
                format!(
                    "migrate 7→8 under load: longest wait for the application's own locks (worst of {runs})"
                ),
                own_lock_wait(r),
                format!(
                    "naive: {}; no migration: {}",
                    own_lock_wait(n),
                    own_lock_wait(none)
                ),
                "(context: its own sessions' locks, e.g. a table's extension lock held by one of its connections the busy CPUs left waiting)".into(),
                "-".into(),
            ],
            [
                format!("migrate 7→8 under load: p99 latency (worst of {runs})"),
                format!("{:.1} ms", r.p99_ms),
                format!(
                    "naive: {:.1} ms; no migration: {:.1} ms",
                    n.p99_ms, none.p99_ms
                ),
                format!("(quiet p99 {:.1} ms)", r.quiet_p99_ms),
                "-".into(),
            ],
            [
                format!("migrate 7→8 under load: failed statements (all {runs})"),
                r.failed.to_string(),
                format!("naive: {}; no migration: {}", n.failed, none.failed),
                "0".into(),
                verdict(Some(r.failed == 0)).into(),
            ],
            [
                format!(
                    "migrate 7→8 with headroom ({}/s per connection): duration (median) ÷ naive",
                    h.rate_per_connection
                ),
                secs(h.ruleiq_db.migration_median_ms),
                h.baseline(),
                format!("ratio <= {MIGRATE_DURATION_RATIO_TARGET}"),
                if h.ruleiq_db.ok {
                    format!(
                        "{} (ratio {:.2}); {} of {} constraints valid",
                        verdict(h.met),
                        h.ratio,
                        h.ruleiq_db.constraints_valid_min,
                        ruleiq_db::catalog::constraints::CATALOG.len()
                    )
                } else {
                    format!("FAILED: {}", h.ruleiq_db.error().unwrap_or_default())
                },
            ],
        ];
        if let Some(i) = &self.idle {
            rows.push([
                format!(
                    "migrate 7→8 at {}/s per connection: duration (median) ÷ naive",
                    i.rate_per_connection
                ),
                secs(i.ruleiq_db.migration_median_ms),
                i.baseline(),
                "(context: the duration where the server has headroom to spare)".into(),
                if i.ruleiq_db.ok {
                    format!("ratio {:.2}", i.ratio)
                } else {
                    format!("FAILED: {}", i.ruleiq_db.error().unwrap_or_default())
                },
            ]);
        }
        rows.extend([
            [
                "migrate 7→8 under load: duration (median) ÷ naive".into(),
                secs(r.migration_median_ms),
                format!("naive: {}", median_of_completed(n)),
                "(context: the naive migration locks the application out)".into(),
                if r.ok {
                    format!(
                        "ratio {:.2}",
                        r.migration_median_ms / n.migration_median_ms.max(1.0)
                    )
                } else {
                    format!("FAILED: {}", r.error().unwrap_or_default())
                },
            ],
            [
                "estimates ÷ what happened (check, cleanup, migrate's steps; warm and cold)".into(),
                format!("{within} of {} within the band", judged.len()),
                worst.map_or_else(|| "-".into(), |w| format!("worst {w:.2}")),
                format!("{} to {}", ESTIMATE_BAND.0, ESTIMATE_BAND.1),
                verdict((!judged.is_empty()).then_some(within == judged.len())).into(),
            ],
        ]);
        for (what, value) in [
            ("check-constraints", Some(self.memory.check_mib)),
            ("cleanup", self.memory.cleanup_mib),
            ("migrate", self.memory.migrate_mib),
        ] {
            rows.push([
                format!("peak RSS: {what}"),
                mib(value),
                "-".into(),
                format!("<= {MEMORY_TARGET_MIB} MiB"),
                verdict(value.map(|v| v <= MEMORY_TARGET_MIB)).into(),
            ]);
        }
        rows
    }

    fn print(&self) {
        println!("data set: {} ({})", self.distribution, self.described);
        let mut table =
            ruleiq_db::report::table(&["measure", "ruleiq-db", "baseline", "target", "verdict"]);
        for row in self.summary() {
            table.add_row(row.to_vec());
        }
        println!("{table}");
        let mut estimates = ruleiq_db::report::table(&[
            "estimate of",
            "conditions",
            "estimate",
            "actual",
            "estimate ÷ actual",
        ]);
        for row in estimate_rows(&self.estimates()) {
            estimates.add_row(row.to_vec());
        }
        println!("{estimates}");
        if !self.check.handwritten_match {
            println!(
                "WARNING: the hand-written SQL counted differently from the planted violations {:?}",
                self.check.violations_expected
            );
        }
        if !self.check.violations_match {
            println!(
                "WARNING: check-constraints found {:?}, the generator planted {:?}",
                self.check.violations_found, self.check.violations_expected
            );
        }
    }

    fn markdown(&self, settings: &Settings, out: &mut String) {
        let s = &self.rows;
        let _ = writeln!(
            out,
            "\n### Data set \"{}\": {}\n\nScale {}: {} business_profiles, {} assessment_sessions, {} evidence_items, {} generated_policies, {} users; 1 % of rows violating each constraint; {:.0} MiB, built in {:.0} s.\n",
            self.distribution,
            self.described,
            settings.scale,
            s.business_profiles,
            s.assessment_sessions,
            s.evidence_items,
            s.generated_policies,
            s.users,
            self.dataset.database_bytes as f64 / 1024.0 / 1024.0,
            self.dataset.seconds,
        );
        let _ = writeln!(out, "| measure | ruleiq-db | baseline | target | verdict |");
        let _ = writeln!(out, "|---|---|---|---|---|");
        for row in self.summary() {
            let _ = writeln!(out, "| {} |", row.join(" | ").replace('\n', " "));
        }
        let c = &self.check;
        let _ = writeln!(
            out,
            "\nCheck runs: {} ms; hand-written SQL runs: {} ms, serially: {} ms; the longest table's seq scan: {} ms; count(*) as sequential scans: {} ms (median of {}). Violations found {}.",
            join(&c.runs_ms),
            join(&c.handwritten_ms),
            join(&c.handwritten_serial_ms),
            join(&c.longest_table_scan_ms),
            join(&c.seq_scan_baseline_ms),
            c.runs_ms.len(),
            if c.violations_match {
                "equal the planted ones"
            } else {
                "DIFFER from the planted ones"
            }
        );
        let _ = writeln!(
            out,
            "\nEstimates against what happened (band {} to {}):\n",
            ESTIMATE_BAND.0, ESTIMATE_BAND.1
        );
        let _ = writeln!(
            out,
            "| estimate of | conditions | estimate | actual | estimate ÷ actual |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|");
        for row in estimate_rows(&self.estimates()) {
            let _ = writeln!(out, "| {} |", row.join(" | "));
        }
        let _ = writeln!(
            out,
            "\nEvery migration run (the workload's statements that overlapped the migration):\n"
        );
        let _ = writeln!(
            out,
            "| migrator | workload | duration | statements | p50 | p99 | longest (statement) | longest lock wait: the migration's (the application's own) | failed | CPUs busy: workload alone, then during | errors |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|");
        let m = &self.migrate;
        let h = &self.headroom;
        for run in m
            .ruleiq_db
            .runs
            .iter()
            .chain(&m.control.runs)
            .chain(&m.naive.runs)
            .chain(&h.ruleiq_db.runs)
            .chain(&h.naive.runs)
            .chain(&h.cold)
            .chain(
                self.idle
                    .iter()
                    .flat_map(|i| i.ruleiq_db.runs.iter().chain(&i.naive.runs)),
            )
        {
            let _ = writeln!(
                out,
                "| {} | {} | {:.2} s{} | {} | {:.1} ms | {:.1} ms | {:.0} ms ({}) | {:.0} ms{} | {} | {} | {} |",
                match run.migrator {
                    crate::scenarios::Migrator::RuleiqDb => "ruleiq-db",
                    crate::scenarios::Migrator::Naive => "naive",
                    crate::scenarios::Migrator::Control => "none (control)",
                },
                match run.rate {
                    0 => "saturating".to_string(),
                    rate => format!("{rate}/s each"),
                } + if h.cold.as_ref().is_some_and(|c| std::ptr::eq(c, run)) { ", cold start" } else { "" },
                run.migration_ms / 1000.0,
                if run.ok { "" } else { ", FAILED" },
                run.during.statements,
                run.during.p50_ms,
                run.during.p99_ms,
                run.during.longest_stall_ms,
                run.during
                    .longest_stall_op
                    .map_or_else(|| "-".to_string(), |op| format!("{op:?}")),
                run.during.longest_lock_wait_ms,
                run.during
                    .own_lock_wait
                    .as_ref()
                    .map_or_else(String::new, |own| format!(" ({own})")),
                run.failed_whole_run,
                match (run.cpu_busy_before, run.cpu_busy_during) {
                    (Some(before), Some(during)) => format!("{before:.0} % → {during:.0} %"),
                    _ => "-".to_string(),
                },
                if run.during.errors.is_empty() {
                    "-".to_string()
                } else {
                    run.during.errors.join("; ")
                }
            );
        }
    }
}

/// An estimate's row: what, conditions, estimate, actual, ratio and verdict.
fn estimate_rows(estimates: &[&Foretold]) -> Vec<[String; 5]> {
    estimates
        .iter()
        .map(|f| {
            [
                f.what.clone(),
                f.conditions.clone(),
                f.estimate_ms
                    .map_or_else(|| "none given".into(), |e| format!("{e:.0} ms")),
                format!("{:.0} ms", f.actual_ms),
                f.ratio
                    .map_or_else(|| "-".into(), |r| format!("{r:.2} ({})", verdict(f.met))),
            ]
        })
        .collect()
}

impl Results {
    pub fn print(&self) {
        for data_set in &self.data_sets {
            data_set.print();
        }
    }

    pub fn write_json(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, serde_json::to_string_pretty(self)? + "\n")
            .with_context(|| format!("writing {}", path.display()))
    }

    /// The generated block of docs/performance.md's latest results.
    pub fn markdown(&self) -> String {
        let m = &self.machine;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Measured {} on {} logical CPUs ({}), {:.1} GiB RAM, Linux {}, load average {:.2} at the start; {}.",
            m.date_utc, m.logical_cpus, m.cpu_model, m.memory_gib, m.kernel, m.load_average_at_start, m.postgres
        );
        let _ = writeln!(
            out,
            "\nWorkload: {} connections, {} during the stall and failed-statement runs, {} statements/s each during the duration runs{}{}. Server: {}. Whole run: {:.0} s.",
            self.settings.connections,
            match self.settings.rate_per_connection {
                0 => "each as fast as it can go".to_string(),
                rate => format!("{rate} statements/s each"),
            } + if self.settings.gin_fastupdate {
                ""
            } else {
                ", GIN indexes with fastupdate off"
            } + &if self.settings.migrate_flags.is_empty() {
                String::new()
            } else {
                format!("; ruleiq-db migrate ran with {}", self.settings.migrate_flags.join(" "))
            },
            self.settings.headroom_rate_per_connection,
            match self.settings.idle_rate_per_connection {
                0 => String::new(),
                rate => format!(" (and, as context, {rate}/s each, where most of the CPUs stay idle)"),
            },
            if self.settings.long_running_reader {
                ", plus a long-running reader (a REPEATABLE READ report on evidence_items, idle in transaction 500 ms of every 750 ms)"
            } else {
                ""
            },
            self.settings.server,
            self.total_seconds
        );
        if let Some(picture) = &self.picture {
            let _ = writeln!(
                out,
                "\n![How long the application's slowest statement in flight had been waiting, every 50 ms during migrate, for ruleiq-db, the naive migration and no migration]({picture})"
            );
        }
        for data_set in &self.data_sets {
            data_set.markdown(&self.settings, &mut out);
        }
        out
    }

    pub fn write_markdown(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, self.markdown()).with_context(|| format!("writing {}", path.display()))
    }
}

fn join(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| format!("{v:.0}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub const BEGIN_MARKER: &str =
    "<!-- impact:begin (generated by `cargo bench --bench impact -- --write-docs`) -->";
pub const END_MARKER: &str = "<!-- impact:end -->";

/// Replaces the generated block of the write-up, keeping the prose around it.
pub fn update_docs(path: &Path, block: &str) -> Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let (before, rest) = text
        .split_once(BEGIN_MARKER)
        .with_context(|| format!("{} has no line {BEGIN_MARKER}", path.display()))?;
    let (_, after) = rest
        .split_once(END_MARKER)
        .with_context(|| format!("{} has no line {END_MARKER}", path.display()))?;
    let updated = format!("{before}{BEGIN_MARKER}\n{block}{END_MARKER}{after}");
    std::fs::write(path, updated).with_context(|| format!("writing {}", path.display()))
}

/// A series' median duration, saying when it leaves out runs that failed (they migrated
/// nothing; see `MigrationSeries::migration_median_ms`).
fn median_of_completed(series: &MigrationSeries) -> String {
    let total = series.runs.len();
    if series.completed == 0 {
        format!("{} (no run completed)", secs(series.migration_median_ms))
    } else if series.completed == total {
        secs(series.migration_median_ms)
    } else {
        format!(
            "{} (the {} of {} runs that completed)",
            secs(series.migration_median_ms),
            series.completed,
            total
        )
    }
}
