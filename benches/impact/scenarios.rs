//! The measurements, each ruleiq-db run beside the plain-SQL work a DBA would compare it with.

use crate::child::{self, ChildRun};
use crate::dataset::{count_pass, Scale, CHECKED_TABLES};
use crate::foretold::{self, Foretold};
use crate::machine::{self, busy_percent, CpuTimes};
use crate::options::Options;
use crate::server::Server;
use crate::timeline::Timeline;
use crate::workload::{felt, Felt, OwnLockWait, Sample, Workload};
use anyhow::{Context, Result};
use postgres::Client;
use ruleiq_db::catalog::constraints::{Rule, CATALOG};
use ruleiq_db::catalog::renames::{legacy_name, RENAMES};
use ruleiq_db::catalog::sql::{qualified, quote_ident, quote_literal};
use ruleiq_db::cleanup::fixes::{self, Fix};
use ruleiq_db::cleanup::policy::{Action, Policy, RulePolicy};
use ruleiq_db::cleanup::policy_file;
use ruleiq_db::constraints::check::DatabaseSpelling;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Context, no longer a target: the check against plain count(*) passes.
pub const CHECK_RATIO_TARGET: f64 = 1.3;
/// Target: the check costs at most this much of the SQL a DBA would type by hand.
pub const HANDWRITTEN_RATIO_TARGET: f64 = 0.7;
/// Target: cleanup costs at most this many bare UPDATEs.
pub const CLEANUP_RATIO_TARGET: f64 = 1.5;
/// Target: during `migrate` the application's longest statement is at most this much longer
/// than in the control run (the same workload, no migration).
pub const STALL_OVER_CONTROL_MS: f64 = 50.0;
/// Target: `migrate` takes at most this many times the naive migration's duration, both
/// measured with headroom (the workload at `--headroom-rate`): under a saturating workload the
/// naive migration locks the application out and has the cores to itself, which ruleiq-db, by
/// design, does not (docs/performance.md).
pub const MIGRATE_DURATION_RATIO_TARGET: f64 = 1.5;
/// Target: any ruleiq-db process, whatever the scale (10M evidence rows included).
pub const MEMORY_TARGET_MIB: f64 = 32.0;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

#[derive(Debug, Serialize)]
pub struct CheckResult {
    /// The same count(*) forced to read the heap (sequential scans): PostgreSQL answers a plain
    /// count(*) from the smallest index when the visibility map allows, which the check cannot.
    pub seq_scan_baseline_ms: Vec<f64>,
    pub seq_scan_baseline_median_ms: f64,
    pub ratio_to_seq_scan: f64,
    /// `check-constraints --dry-run`, each run.
    pub runs_ms: Vec<f64>,
    /// One `SELECT count(*)` over each checked table, each run right before a check.
    pub count_baseline_ms: Vec<f64>,
    pub median_ms: f64,
    pub baseline_median_ms: f64,
    pub ratio: f64,
    pub target_ratio: f64,
    pub met: bool,
    pub peak_rss_mib: f64,
    pub exit_code: i32,
    pub violations_found: BTreeMap<String, u64>,
    pub violations_expected: BTreeMap<String, u64>,
    pub violations_match: bool,
    /// The SQL a DBA would type into psql (see [`handwritten_statements`]), each run right
    /// before a check.
    pub handwritten_ms: Vec<f64>,
    pub handwritten_median_ms: f64,
    pub ratio_to_handwritten: f64,
    pub handwritten_target_ratio: f64,
    pub handwritten_met: bool,
    /// Whether the hand-written counts, in parallel and serially (the floor), equal the planted
    /// violations too.
    pub handwritten_match: bool,
    /// The longest single table's sequential scan (count(*) forced to read the heap), the
    /// limit a check that scans the tables side by side can approach: median of the runs.
    pub longest_table: String,
    pub longest_table_scan_ms: Vec<f64>,
    pub longest_table_scan_median_ms: f64,
    pub ratio_to_longest_table: f64,
    /// The hand-written statements run serially (no parallel workers, no JIT), each right before
    /// a check: the CPU time PostgreSQL's own evaluation of the conditions takes.
    pub handwritten_serial_ms: Vec<f64>,
    /// The median of those, spread evenly over the machine's CPUs: the least a check that reads
    /// and evaluates what the hand-written SQL does can take here, with no overhead at all. The
    /// CPUs are this machine's, as the other CPU readings are (`machine.rs`): a `--database-url`
    /// server elsewhere has its own.
    pub even_spread_ms: f64,
    pub logical_cpus: usize,
    /// [`even_spread_ms`](Self::even_spread_ms) ÷ the hand-written SQL: the best ratio such a
    /// check can reach on this machine.
    pub even_spread_ratio_to_handwritten: f64,
    /// The check's own estimate against its run.
    pub foretold: Foretold,
}

/// What a DBA would type to count the violations: one `SELECT count(*) FILTER (WHERE …)` per
/// table over its CHECKs, one anti-join count per foreign key.
fn handwritten_statements(client: &mut Client) -> Result<Vec<(Vec<&'static str>, String)>> {
    let tables: Vec<&str> = CATALOG
        .iter()
        .flat_map(|c| match c.rule {
            Rule::ForeignKey { parent, .. } => vec![c.table, parent],
            _ => vec![c.table],
        })
        .collect();
    let spelling = DatabaseSpelling::read(client, &tables)?;
    let mut checks: Vec<(&str, Vec<&'static str>, Vec<String>)> = Vec::new();
    let mut statements = Vec::new();
    for c in CATALOG {
        let condition = c.violation_condition(&spelling, "t");
        match c.rule {
            Rule::ForeignKey { .. } => statements.push((
                vec![c.name],
                format!(
                    "SELECT count(*) FROM {} AS t WHERE {condition}",
                    qualified(c.table)
                ),
            )),
            _ => match checks.iter_mut().find(|(t, _, _)| *t == c.table) {
                Some((_, names, conditions)) => {
                    names.push(c.name);
                    conditions.push(condition);
                }
                None => checks.push((c.table, vec![c.name], vec![condition])),
            },
        }
    }
    for (table, names, conditions) in checks {
        let counts: Vec<String> = conditions
            .iter()
            .map(|cond| format!("count(*) FILTER (WHERE {cond})"))
            .collect();
        statements.push((
            names,
            format!(
                "SELECT {} FROM {} AS t",
                counts.join(", "),
                qualified(table)
            ),
        ));
    }
    Ok(statements)
}

/// Runs the hand-written statements one after another on one connection.
fn handwritten_pass(
    client: &mut Client,
    statements: &[(Vec<&'static str>, String)],
) -> Result<(Duration, BTreeMap<String, u64>)> {
    let started = Instant::now();
    let mut counts = BTreeMap::new();
    for (names, sql) in statements {
        let row = client
            .query_one(sql.as_str(), &[])
            .with_context(|| sql.clone())?;
        for (i, name) in names.iter().enumerate() {
            counts.insert(name.to_string(), row.get::<_, i64>(i) as u64);
        }
    }
    Ok((started.elapsed(), counts))
}

/// `check-constraints --dry-run` against count(*), back to back, warm cache for both (each runs
/// once untimed first), median of `repetitions`.
pub fn check(server: &Server, db: &str, scale: &Scale, repetitions: usize) -> Result<CheckResult> {
    let url = server.url(db);
    let mut client = server.connect(db)?;
    let mut heap = server.connect(db)?;
    heap.batch_execute(
        "SET enable_indexonlyscan = off; SET enable_indexscan = off; SET enable_bitmapscan = off",
    )?;
    let mut serial = server.connect(db)?;
    // Without JIT too, as the check's own scans run (`SCAN_SETTINGS` in constraints/check.rs).
    serial.batch_execute("SET max_parallel_workers_per_gather = 0; SET jit = off")?;
    count_pass(&mut client)?;
    count_pass(&mut heap)?;
    let statements = handwritten_statements(&mut client)?;
    let (_, handwritten_counts) = handwritten_pass(&mut client, &statements)?;
    let warm = child::run(&url, &["check-constraints", "--dry-run"])?;
    let mut handwritten = Vec::new();
    let mut handwritten_serial = Vec::new();
    let mut serial_counts = BTreeMap::new();
    let mut seq_scan = Vec::new();
    let mut runs = Vec::new();
    let mut baseline = Vec::new();
    let mut longest = Vec::new();
    let mut longest_table = String::new();
    let mut peak = warm.peak_rss_kib;
    let mut last = warm;
    for _ in 0..repetitions {
        baseline.push(ms(count_pass(&mut client)?));
        seq_scan.push(ms(count_pass(&mut heap)?));
        let (table, scan) = longest_table_scan(&mut heap)?;
        longest.push(scan);
        longest_table = table;
        let (took, counts) = handwritten_pass(&mut serial, &statements)?;
        handwritten_serial.push(ms(took));
        serial_counts = counts;
        handwritten.push(ms(handwritten_pass(&mut client, &statements)?.0));
        let run = child::run(&url, &["check-constraints", "--dry-run"])?;
        runs.push(ms(run.wall));
        peak = peak.max(run.peak_rss_kib);
        last = run;
    }
    let found: BTreeMap<String, u64> = last
        .report()
        .and_then(|r| r.get("constraints").cloned())
        .and_then(|c| c.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|c| {
            Some((
                c.get("name")?.as_str()?.to_string(),
                c.get("violations")?.as_u64()?,
            ))
        })
        .collect();
    let expected: BTreeMap<String, u64> = scale
        .expected_violations()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let median_ms = median(&runs);
    let baseline_median_ms = median(&baseline);
    let ratio = median_ms / baseline_median_ms;
    let seq_scan_baseline_median_ms = median(&seq_scan);
    let handwritten_median_ms = median(&handwritten);
    let ratio_to_handwritten = median_ms / handwritten_median_ms;
    let longest_table_scan_median_ms = median(&longest);
    let logical_cpus = machine::logical_cpus().max(1);
    let even_spread_ms = median(&handwritten_serial) / logical_cpus as f64;
    let foretold = Foretold::new(
        "check-constraints --dry-run".into(),
        "warm",
        foretold::total_ms(last.report().as_ref()),
        ms(last.wall),
    );
    Ok(CheckResult {
        longest_table,
        longest_table_scan_ms: longest,
        longest_table_scan_median_ms,
        ratio_to_longest_table: median_ms / longest_table_scan_median_ms,
        handwritten_serial_ms: handwritten_serial,
        even_spread_ms,
        logical_cpus,
        even_spread_ratio_to_handwritten: even_spread_ms / handwritten_median_ms,
        foretold,
        handwritten_ms: handwritten,
        handwritten_median_ms,
        ratio_to_handwritten,
        handwritten_target_ratio: HANDWRITTEN_RATIO_TARGET,
        handwritten_met: ratio_to_handwritten <= HANDWRITTEN_RATIO_TARGET,
        // The floor counts the same violations as the hand-written SQL, or it measures other work.
        handwritten_match: handwritten_counts == expected && serial_counts == expected,
        ratio_to_seq_scan: median_ms / seq_scan_baseline_median_ms,
        seq_scan_baseline_ms: seq_scan,
        seq_scan_baseline_median_ms,
        runs_ms: runs,
        count_baseline_ms: baseline,
        median_ms,
        baseline_median_ms,
        ratio,
        target_ratio: CHECK_RATIO_TARGET,
        met: ratio <= CHECK_RATIO_TARGET,
        peak_rss_mib: peak as f64 / 1024.0,
        exit_code: last.code,
        violations_match: found == expected,
        violations_found: found,
        violations_expected: expected,
    })
}

/// The slowest of the checked tables' sequential scans, each timed on its own (`heap` reads
/// heaps only).
fn longest_table_scan(heap: &mut Client) -> Result<(String, f64)> {
    let mut longest = (String::new(), 0.0);
    for table in CHECKED_TABLES {
        let started = Instant::now();
        heap.query_one(&format!("SELECT count(*) FROM {}", qualified(table)), &[])?;
        let took = ms(started.elapsed());
        if took > longest.1 {
            longest = (table.to_string(), took);
        }
    }
    Ok(longest)
}

#[derive(Debug, Serialize)]
pub struct CleanupResult {
    /// "measured", or "unavailable" when this build's cleanup fails.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Median of `runs_ms`.
    pub wall_ms: Option<f64>,
    pub runs_ms: Vec<f64>,
    pub rows: Option<u64>,
    pub peak_rss_mib: Option<f64>,
    pub exit_code: i32,
    /// The same repairs as plain UPDATEs in one transaction, without audit: median.
    pub bare_update_ms: f64,
    pub bare_runs_ms: Vec<f64>,
    pub bare_rows: u64,
    pub ratio: Option<f64>,
    pub target_ratio: f64,
    pub met: Option<bool>,
    /// `cleanup --dry-run`'s estimate against the cleanup that followed, per repetition.
    pub foretold: Vec<Foretold>,
}

/// Databases for one repetition of the cleanup comparison, made from the dirty data.
pub struct CleanupCopies<'a> {
    pub cleanup: &'a str,
    pub bare: &'a str,
}

/// The cleanup policy the benchmark decides with. Production's employee_count and
/// generated_policies.business_profil are NOT NULL, so the built-in set_null cannot repair them
/// (cleanup asks for a decision): an unknown head count becomes 1, a policy generated for a
/// profile that does not exist is removed (the audit keeps it whole). The other four rules are
/// the built-in ones.
pub const CLEANUP_POLICY: &str = "\
constraints:
  chk_employee_count_positive:
    action: default
    value: 1
  fk_generated_policy_business_profile: delete
";

/// [`CLEANUP_POLICY`] as cleanup reads it: the built-in policy with its overrides.
fn cleanup_policy() -> Result<Policy> {
    let overrides = policy_file::parse(CLEANUP_POLICY)
        .map_err(|e| anyhow::anyhow!("the benchmark's cleanup policy: {e}"))?;
    Ok(Policy::with_overrides("benchmark".into(), overrides))
}

/// `cleanup --yes --policy` on one copy of the dirty data, the bare UPDATEs on another, per
/// repetition; both copies warmed by a count pass first. Each bare copy is left clean.
pub fn cleanup(server: &Server, copies: &[CleanupCopies]) -> Result<CleanupResult> {
    let policy = cleanup_policy()?;
    let mut policy_file = tempfile::Builder::new()
        .prefix("impact-cleanup-policy-")
        .suffix(".yaml")
        .tempfile()
        .context("creating the cleanup policy file")?;
    std::io::Write::write_all(&mut policy_file, CLEANUP_POLICY.as_bytes())
        .context("writing the cleanup policy file")?;
    let policy_path = policy_file
        .path()
        .to_str()
        .context("the temporary directory's path is not UTF-8")?
        .to_string();
    let mut runs = Vec::new();
    let mut bare_runs = Vec::new();
    let mut bare_rows = 0;
    let mut foretold = Vec::new();
    for copy in copies {
        count_pass(&mut server.connect(copy.cleanup)?)?;
        count_pass(&mut server.connect(copy.bare)?)?;
        let url = server.url(copy.cleanup);
        let dry = child::run(&url, &["cleanup", "--dry-run", "--policy", &policy_path])?;
        let run = child::run(&url, &["--yes", "cleanup", "--policy", &policy_path])?;
        foretold.push(Foretold::new(
            "cleanup".into(),
            "warm",
            foretold::total_ms(dry.report().as_ref()),
            ms(run.wall),
        ));
        runs.push(run);
        let (bare, rows) = bare_update(&mut server.connect(copy.bare)?, &policy)?;
        bare_runs.push(ms(bare));
        bare_rows = rows;
    }
    let rows_of = |run: &ChildRun| {
        run.report()
            .and_then(|r| r.get("total_rows").and_then(|v| v.as_u64()))
    };
    let failed = runs
        .iter()
        .find(|run| run.code != 0 || rows_of(run).is_none());
    let bare_ms = median(&bare_runs);
    let walls: Vec<f64> = runs.iter().map(|run| ms(run.wall)).collect();
    let wall_ms = failed.is_none().then(|| median(&walls));
    let ratio = wall_ms.map(|wall| wall / bare_ms);
    let last = runs.last().context("no cleanup run")?;
    Ok(CleanupResult {
        status: if failed.is_none() {
            "measured"
        } else {
            "unavailable"
        },
        reason: failed.map(unavailable_reason),
        wall_ms,
        runs_ms: if failed.is_none() { walls } else { Vec::new() },
        rows: rows_of(last),
        peak_rss_mib: failed
            .is_none()
            .then(|| runs.iter().map(ChildRun::peak_rss_mib).fold(0.0, f64::max)),
        exit_code: failed.unwrap_or(last).code,
        bare_update_ms: bare_ms,
        bare_runs_ms: bare_runs,
        bare_rows,
        ratio,
        target_ratio: CLEANUP_RATIO_TARGET,
        met: ratio.map(|r| r <= CLEANUP_RATIO_TARGET),
        foretold,
    })
}

fn unavailable_reason(run: &ChildRun) -> String {
    format!(
        "ruleiq-db cleanup exited {}: {}",
        run.code,
        run.last_error_line()
    )
}

/// The order the tool repairs a table in (cleanup's plan): removals first, then the rules that
/// write values (map, default, set_null), then the approval workflow, which judges their result.
fn bare_rank(rule: &RulePolicy) -> u8 {
    match (rule.action, rule.constraint.rule) {
        (Action::Delete, _) => 0,
        (_, Rule::OneOf { .. } | Rule::Positive { .. }) => 1,
        (_, Rule::RequiredWhen { .. }) => 2,
        (_, Rule::ForeignKey { .. }) => 3,
    }
}

/// One plain statement per rule of `policy`, touching exactly the rows that break its
/// constraint and writing what cleanup writes (the same SQL expressions, from the library): an
/// UPDATE, or a DELETE for a `delete` rule.
fn bare_statements(client: &mut Client, policy: &Policy) -> Result<Vec<String>> {
    let tables: Vec<&str> = CATALOG.iter().map(|c| c.table).collect();
    let spelling = DatabaseSpelling::read(client, &tables)?;
    let mut rules: Vec<&RulePolicy> = policy.rules.iter().collect();
    rules.sort_by_key(|r| (r.constraint.table, bare_rank(r)));
    let mut statements = Vec::new();
    for rule in rules {
        let c = rule.constraint;
        let actual = |column: &str| {
            spelling
                .actual_name(c.table, column)
                .with_context(|| format!("{}.{column} is missing", c.table))
        };
        let table = quote_ident(c.table);
        let violating = c.violation_condition(&spelling, "t");
        let spelled = |column: &str| {
            actual(column).map_or_else(|_| "NULL".to_string(), |a| format!("t.{}", quote_ident(&a)))
        };
        match fixes::fix(rule, &spelled, &Literals) {
            Fix::Leave => {}
            Fix::Delete => statements.push(format!("DELETE FROM {table} AS t WHERE {violating}")),
            Fix::Update(writes) => {
                let set = writes
                    .iter()
                    .map(|(column, value)| {
                        Ok(format!("{} = {value}", quote_ident(&actual(column)?)))
                    })
                    .collect::<Result<Vec<_>>>()?
                    .join(", ");
                statements.push(format!("UPDATE {table} AS t SET {set} WHERE {violating}"));
            }
        }
    }
    Ok(statements)
}

/// The baseline is the SQL a DBA would type: the policy's values written in as literals (the
/// tool itself binds them as parameters).
struct Literals;

impl fixes::Bind for Literals {
    fn value(&self, _column: &str, text: &str) -> String {
        quote_literal(text)
    }
    fn key(&self, text: &str) -> String {
        quote_literal(text)
    }
}

/// Every catalog constraint repaired by plain statements of exactly its violating rows, in one
/// transaction, without audit: the floor a cleanup with audit and undo is compared against.
fn bare_update(client: &mut Client, policy: &Policy) -> Result<(Duration, u64)> {
    let statements = bare_statements(client, policy)?;
    let started = Instant::now();
    let mut tx = client.transaction()?;
    let mut rows = 0;
    for sql in &statements {
        rows += tx.execute(sql.as_str(), &[]).with_context(|| sql.clone())?;
    }
    tx.commit()?;
    Ok((started.elapsed(), rows))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Migrator {
    /// `ruleiq-db migrate` 7 -> 8.
    RuleiqDb,
    /// One transaction: the renames and every ADD CONSTRAINT validating at once.
    Naive,
    /// No migration at all: the workload alone for as long as ruleiq-db took, to tell the
    /// stalls the application has anyway from those a migration adds.
    Control,
}

#[derive(Debug, Serialize)]
pub struct MigrationRun {
    pub migrator: Migrator,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub migration_ms: f64,
    pub peak_rss_mib: Option<f64>,
    /// The workload while the migration ran.
    pub during: Felt,
    /// The workload in the second before: what normal looks like on this machine.
    pub before: Felt,
    /// Failed statements over the whole workload run (before, during, after).
    pub failed_whole_run: usize,
    /// Catalog constraints present and validated afterwards.
    pub constraints_valid: i64,
    /// Statements per second per connection the workload kept (0: as fast as it could).
    pub rate: u32,
    /// How busy the machine's CPUs were with the workload alone, in the second before the
    /// migration (or its dry run), in percent: whether the server had headroom at all.
    pub cpu_busy_before: Option<f64>,
    /// How busy they were while the migration ran.
    pub cpu_busy_during: Option<f64>,
    /// What the application felt every 50 ms, from a second before the migration to a second
    /// after.
    pub timeline: Timeline,
    /// For a ruleiq-db run asked to: `migrate --dry-run`'s estimate against what happened.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub foretold: Vec<Foretold>,
}

/// How one migration run is set up.
pub struct RunSetup<'a> {
    pub migrator: Migrator,
    /// The workload's statements per second per connection (0: as fast as each can go).
    pub rate: u32,
    /// For the control: how long the workload runs alone.
    pub control: Duration,
    /// For ruleiq-db: run `migrate --dry-run` first, beside the workload as a DBA would, and
    /// hold its estimate against what happens; the words say how warm the server was.
    pub estimate: Option<&'a str>,
}

/// Several runs of one migrator, each on a fresh copy: the worst of them is what counts, since
/// a lock conflict with the workload is a matter of timing.
#[derive(Debug, Serialize)]
pub struct MigrationSeries {
    pub migrator: Migrator,
    pub ok: bool,
    pub longest_stall_ms: f64,
    /// The longest a workload backend was seen waiting for a lock the migration held or asked
    /// for first, in any run.
    pub longest_lock_wait_ms: f64,
    /// The longest it waited for a lock of the application's own sessions, in any run.
    pub own_lock_wait: Option<OwnLockWait>,
    /// The worst run's p99.
    pub p99_ms: f64,
    /// The median run's p99 with no migration running (the second before).
    pub quiet_p99_ms: f64,
    /// Failed statements over all runs.
    pub failed: usize,
    /// The median duration of the runs that migrated: a run that failed (the naive
    /// migration's deadlock) rolled back early and migrated nothing, so its shorter time is no
    /// migration's duration. Over every run when none completed.
    pub migration_median_ms: f64,
    /// How many runs completed, of `runs`.
    pub completed: usize,
    pub peak_rss_mib: Option<f64>,
    pub constraints_valid_min: i64,
    pub runs: Vec<MigrationRun>,
}

impl MigrationSeries {
    pub fn of(migrator: Migrator, runs: Vec<MigrationRun>) -> MigrationSeries {
        let worst = |f: fn(&MigrationRun) -> f64| runs.iter().map(f).fold(0.0, f64::max);
        let quiet: Vec<f64> = runs.iter().map(|r| r.before.p99_ms).collect();
        let completed: Vec<f64> = runs
            .iter()
            .filter(|r| r.ok)
            .map(|r| r.migration_ms)
            .collect();
        let durations: Vec<f64> = if completed.is_empty() {
            runs.iter().map(|r| r.migration_ms).collect()
        } else {
            completed.clone()
        };
        MigrationSeries {
            migrator,
            own_lock_wait: runs
                .iter()
                .filter_map(|r| r.during.own_lock_wait.as_ref())
                .max_by(|a, b| a.ms.total_cmp(&b.ms))
                .cloned(),
            ok: runs.iter().all(|r| r.ok),
            longest_stall_ms: worst(|r| r.during.longest_stall_ms),
            longest_lock_wait_ms: worst(|r| r.during.longest_lock_wait_ms),
            p99_ms: worst(|r| r.during.p99_ms),
            quiet_p99_ms: median(&quiet),
            failed: runs.iter().map(|r| r.failed_whole_run).sum(),
            migration_median_ms: median(&durations),
            completed: completed.len(),
            peak_rss_mib: runs.iter().filter_map(|r| r.peak_rss_mib).reduce(f64::max),
            constraints_valid_min: runs.iter().map(|r| r.constraints_valid).min().unwrap_or(0),
            runs,
        }
    }

    /// The first error of a failed run, if any.
    pub fn error(&self) -> Option<&str> {
        self.runs.iter().find_map(|r| r.error.as_deref())
    }
}

/// Runs a migration of `db` while the workload runs: workload, one second, (the dry run,)
/// migration, one second, stop. `Control` waits `setup.control` instead of migrating.
pub fn migration(
    server: &Server,
    db: &str,
    sample: &Sample,
    options: &Options,
    setup: &RunSetup,
) -> Result<MigrationRun> {
    let mut client = server.connect(db)?;
    count_pass(&mut client)?;
    let workload = Workload::start(
        server,
        db,
        sample,
        options.connections,
        setup.rate,
        options.reader,
    )?;
    // The workload alone: its connections settle for a quarter of a second, then the CPUs'
    // time is read over the rest of the second before the migration (or its dry run).
    std::thread::sleep(Duration::from_millis(250));
    let settled = CpuTimes::now();
    std::thread::sleep(Duration::from_millis(750));
    let cpu_busy_before = busy_percent(settled, CpuTimes::now());
    let url = server.url(db);
    let dry_run = match (setup.migrator, setup.estimate) {
        (Migrator::RuleiqDb, Some(_)) => Some(child::run(&url, &["migrate", "--dry-run"])?),
        _ => None,
    };
    if setup
        .estimate
        .is_some_and(|conditions| conditions != "warm")
    {
        // The dry run read every table in full: cold again for the run it foretells.
        server.drop_page_cache()?;
    }
    let from = workload.now();
    let cpu_from = CpuTimes::now();
    let outcome = match setup.migrator {
        Migrator::RuleiqDb => {
            let mut args: Vec<&str> = options.migrate_flags.iter().map(String::as_str).collect();
            args.push("migrate");
            child::run(&url, &args)
        }
        .map(|run| {
            let ok = run.code == 0;
            Outcome {
                ok,
                error: (!ok).then(|| format!("exit {}: {}", run.code, run.last_error_line())),
                peak_rss_mib: Some(run.peak_rss_mib()),
                report: run.report(),
            }
        }),
        Migrator::Naive => Ok(match naive_migration(&mut server.connect(db)?) {
            Ok(()) => Outcome::default_ok(),
            Err(e) => Outcome {
                error: Some(format!("{e:#}")),
                ..Outcome::default_ok()
            },
        }),
        Migrator::Control => {
            std::thread::sleep(setup.control);
            Ok(Outcome::default_ok())
        }
    };
    let to = workload.now();
    let cpu_busy_during = busy_percent(cpu_from, CpuTimes::now());
    std::thread::sleep(Duration::from_secs(1));
    let end = workload.now();
    let mut recorded = workload.stop()?;
    recorded.calibrate(from);
    let outcome = outcome?;
    let constraints_valid: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_constraint WHERE convalidated AND conname = ANY($1)",
            &[&CATALOG.iter().map(|c| c.name).collect::<Vec<_>>()],
        )?
        .get(0);
    let migration_ms = ms(to - from);
    let foretold = match (&dry_run, setup.estimate) {
        (Some(dry), Some(conditions)) => foretold::migrate(
            dry.report().as_ref(),
            outcome.report.as_ref(),
            migration_ms,
            conditions,
        ),
        _ => Vec::new(),
    };
    Ok(MigrationRun {
        migrator: setup.migrator,
        ok: outcome.ok && outcome.error.is_none(),
        error: outcome.error,
        migration_ms,
        peak_rss_mib: outcome.peak_rss_mib,
        during: felt(&recorded, from, to),
        before: felt(&recorded, Duration::ZERO, from),
        failed_whole_run: felt(&recorded, Duration::ZERO, end).failed,
        constraints_valid,
        rate: setup.rate,
        cpu_busy_before,
        cpu_busy_during,
        timeline: Timeline::of(&recorded, from, to, end, Duration::from_secs(1)),
        foretold,
    })
}

/// How a migration ended.
struct Outcome {
    ok: bool,
    error: Option<String>,
    peak_rss_mib: Option<f64>,
    /// ruleiq-db's JSON report.
    report: Option<serde_json::Value>,
}

impl Outcome {
    fn default_ok() -> Outcome {
        Outcome {
            ok: true,
            error: None,
            peak_rss_mib: None,
            report: None,
        }
    }
}

/// 008 as a plain migration tool runs it: one transaction, the 17 renames, the foreign keys
/// production already has adopted (renamed to the catalog's names: they are valid already), and
/// each CHECK added and validated on the spot (no NOT VALID), statement by statement, every lock
/// held until the commit.
fn naive_migration(client: &mut Client) -> Result<()> {
    let mut statements: Vec<String> = RENAMES
        .iter()
        .map(|r| {
            format!(
                "ALTER TABLE {} RENAME COLUMN {} TO {}",
                quote_ident(r.table),
                quote_ident(r.legacy),
                quote_ident(r.current)
            )
        })
        .collect();
    for c in CATALOG {
        let sql = match c.rule {
            Rule::ForeignKey { column, .. } => {
                // PostgreSQL's own name for the key on the legacy column, as Alembic left it.
                let legacy = legacy_name(c.table, column).unwrap_or(column);
                format!(
                    "ALTER TABLE {} RENAME CONSTRAINT {} TO {}",
                    quote_ident(c.table),
                    quote_ident(&format!("{}_{legacy}_fkey", c.table)),
                    quote_ident(c.name)
                )
            }
            _ => {
                let sql = c.add_not_valid_sql();
                sql.strip_suffix(" NOT VALID")
                    .with_context(|| format!("unexpected shape of {}: {sql}", c.name))?
                    .to_string()
            }
        };
        statements.push(sql);
    }
    let mut tx = client.transaction()?;
    for sql in &statements {
        tx.batch_execute(sql).with_context(|| sql.clone())?;
    }
    tx.commit()?;
    Ok(())
}
