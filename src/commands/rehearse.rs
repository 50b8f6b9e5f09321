//! `rehearse`: the whole repair played on a throwaway PostgreSQL — adopt (for a dump), check,
//! cleanup, migrate, status, the application's queries old and new, rollback, migrate again (and
//! with --with-standby, a streaming standby compared with the primary at the end) — with one
//! combined report. Needs no
//! server: it starts one from the local binaries and removes it afterwards, also after Ctrl-C or
//! an error.
//!
//! Every step is reported as it went: a step after a failure is "not run", and a total whose
//! step did not run is "not run", never a zero.

use super::{dispatch, Context, Outcome};
use crate::cli::{
    BaselineArgs, CheckArgs, CleanupArgs, Command, MigrateArgs, RehearseArgs, RollbackArgs,
};
use crate::db::replication::{self, MaxLag, ReplicaThrottle};
use crate::exit::Code;
use crate::report::{self, Details, Report, Summary};
use crate::sandbox::{self, Cluster, ClusterOptions};
use anyhow::{bail, Context as _, Result};
use serde::Serialize;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Instant;

/// The bundled dirty legacy fixture (loaded on top of migrations 001-007).
const FIXTURE: &str = include_str!("../../fixtures/legacy_dirty.sql");

/// The bundled example cleanup policy, which decides what production's NOT NULL columns need.
const EXAMPLE_POLICY: &str = include_str!("../../fixtures/cleanup-policy.example.yaml");
const EXAMPLE_POLICY_NAME: &str = "fixtures/cleanup-policy.example.yaml";

/// The rehearsal's cluster, reachable from the Ctrl-C handler.
static CLUSTER: Mutex<Option<Cluster>> = Mutex::new(None);
/// Its standby, with --with-standby.
static STANDBY: Mutex<Option<Cluster>> = Mutex::new(None);

/// The application name of the rehearsal's standby.
const STANDBY_NAME: &str = "ruleiq_rehearsal_standby";

const DATABASE: &str = "ruleiq_rehearsal";

#[derive(Debug, Serialize)]
pub struct RehearseReport {
    /// `bundled fixture` or the dump's path.
    pub source: String,
    pub server: String,
    pub steps: Vec<Step>,
    /// The cleanup policy the rehearsal used, and why.
    pub policy: PolicyChoice,
    /// Decisions the dry run of cleanup said the built-in policy cannot make.
    pub needs_decision: Vec<Value>,
    /// Rows the first check found violating the constraints (null: the check did not run).
    pub violations_found: Option<u64>,
    /// Rows cleanup changed or removed (null: cleanup did not run or failed).
    pub rows_cleaned: Option<u64>,
    /// Violations left after the repair (null: the final check did not run).
    pub violations_left: Option<u64>,
    /// With --with-standby: whether the standby ended with exactly the primary's data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub standby: Option<StandbyCheck>,
}
/// The standby compared with the primary at the end of the rehearsal.
#[derive(Debug, Serialize)]
pub struct StandbyCheck {
    pub name: String,
    /// How long it took the standby to replay everything after the last step.
    pub replica_wait_ms: u64,
    /// Tables compared (row count and a digest of every row), on both servers.
    pub tables: usize,
    pub rows: i64,
    /// Whether every table holds the same rows on both.
    pub identical: bool,
    /// Tables whose rows differ, or that exist on one server only.
    pub differing: Vec<String>,
}

/// Which cleanup policy the rehearsal runs with.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyChoice {
    /// `given` (--policy), `bundled example`, or `built-in`.
    pub source: &'static str,
    /// The file, for `given` and `bundled example`.
    pub file: Option<String>,
    /// Why this one, in a sentence.
    pub reason: String,
}

/// How a step went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepOutcome {
    Ok,
    Failed,
    /// An earlier step failed: this one never ran.
    NotRun,
}

#[derive(Debug, Serialize)]
pub struct Step {
    pub step: String,
    pub command: String,
    pub outcome: StepOutcome,
    pub ok: bool,
    /// Null when the step did not run.
    pub exit_code: Option<i32>,
    pub duration_ms: u64,
    pub summary: String,
    /// The step's own report (or its error); null when it did not run.
    pub report: Value,
    /// What rehearse reads of the report: the numbers it totals.
    #[serde(skip)]
    pub read: Summary,
}

impl Step {
    fn ran(&self) -> bool {
        self.outcome != StepOutcome::NotRun
    }
}

pub fn run(ctx: &Context, args: &RehearseArgs) -> Result<Outcome> {
    let dump = match &args.dump {
        Some(path) => Some(read_dump(path)?),
        None => None,
    };
    if let Some(policy) = &args.policy {
        // A policy that cannot be read fails before a server is started; cleanup parses it.
        std::fs::metadata(policy)
            .with_context(|| format!("cannot read the policy {}", policy.display()))?;
    }
    install_interrupt_handler();
    ctx.log.line("starting a throwaway PostgreSQL cluster");
    let cluster = Cluster::start(&ClusterOptions::default())?;
    let target = cluster.target(DATABASE)?;
    let admin = cluster.target("postgres")?;
    let server = format!(
        "PostgreSQL on 127.0.0.1:{} (removed afterwards)",
        cluster.port()
    );
    ctx.log.line(&format!(
        "started {server}, files in {}",
        cluster.root_path().display()
    ));
    let standby = if args.with_standby {
        ctx.log
            .line("starting a streaming standby of it (pg_basebackup -R)");
        match cluster.start_standby(STANDBY_NAME) {
            Ok(standby) => Some(standby),
            Err(e) => {
                drop(cluster);
                return Err(e.context("starting the rehearsal's standby"));
            }
        }
    } else {
        None
    };
    let standby_target = match &standby {
        Some(s) => Some(s.target(DATABASE)?),
        None => None,
    };
    let server = match &standby {
        Some(s) => format!(
            "{server}, standby '{STANDBY_NAME}' on 127.0.0.1:{}",
            s.port()
        ),
        None => server,
    };
    *CLUSTER.lock().expect("cluster lock") = Some(cluster);
    *STANDBY.lock().expect("cluster lock") = standby;
    // Stops the cluster however this function is left, a panic included.
    let _stop = StopOnDrop;
    let result = rehearse(
        ctx,
        &admin,
        target,
        standby_target,
        dump.as_deref(),
        args,
        server,
    );
    wait_for_the_interrupt_to_finish();
    result
}

/// The steps of a rehearsal, run one after the other; once one fails the rest are recorded as
/// not run.
struct Steps<'a> {
    ctx: &'a Context,
    steps: Vec<Step>,
}

impl Steps<'_> {
    fn failed(&self) -> bool {
        self.steps.iter().any(|s| s.outcome == StepOutcome::Failed)
    }

    /// Runs `command` unless an earlier step failed; `expected` are the exit codes that count
    /// as success, `accept` may accept a refusal by its report (cleanup's needs_decision).
    fn run(
        &mut self,
        name: &str,
        line: &str,
        command: Command,
        expected: &[Code],
        accept: fn(Code, &Summary) -> bool,
    ) {
        if self.failed() {
            self.steps.push(not_run(name, line));
            return;
        }
        self.steps
            .push(step(self.ctx, name, line, command, expected, accept));
    }

    fn push(&mut self, name: &str, line: &str, run: impl FnOnce() -> Step) {
        if self.failed() {
            self.steps.push(not_run(name, line));
        } else {
            self.steps.push(run());
        }
    }

    fn get(&self, name: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.step == name)
    }
}

fn no_exception(_: Code, _: &Summary) -> bool {
    false
}

/// A dry run of cleanup that refuses because rules need decisions did its job: it found them.
fn needs_decisions(code: Code, summary: &Summary) -> bool {
    code == Code::Refused && !summary.needs_decision.is_empty()
}

fn rehearse(
    ctx: &Context,
    admin: &crate::db::config::Target,
    target: crate::db::config::Target,
    standby: Option<crate::db::config::Target>,
    dump: Option<&Path>,
    args: &RehearseArgs,
    server: String,
) -> Result<Outcome> {
    let mut admin_client = crate::db::connect(admin)?;
    admin_client.batch_execute(&format!("CREATE DATABASE {DATABASE}"))?;
    let mut inner = ctx.clone();
    inner.target_override = Some(target.clone());
    inner.global.yes = true; // a throwaway database: nothing to confirm
    inner.global.output = None;
    // What the steps do to the throwaway database is not what a failure of rehearse reports.
    inner.journal = crate::journal::Journal::default();

    let mut steps = Steps {
        ctx: &inner,
        steps: Vec::new(),
    };
    let source = match dump {
        None => {
            steps.run(
                "build version 7",
                "migrate --target 7",
                Command::Migrate(MigrateArgs {
                    target: Some(7),
                    ..MigrateArgs::default()
                }),
                &[Code::Ok],
                no_exception,
            );
            steps.push("load fixture", "psql -f fixtures/legacy_dirty.sql", || {
                let started = Instant::now();
                let loaded = load_sql(&target, FIXTURE.as_bytes());
                loaded_step("load fixture", "fixtures/legacy_dirty.sql", started, loaded)
            });
            "bundled fixture (fixtures/legacy_dirty.sql)".to_string()
        }
        Some(path) => {
            let shown = path.display().to_string();
            steps.push("load dump", &format!("psql -f {shown}"), || {
                let started = Instant::now();
                let loaded = std::fs::read(path)
                    .map_err(anyhow::Error::from)
                    .and_then(|bytes| load_sql(&target, &bytes));
                loaded_step("load dump", &shown, started, loaded)
            });
            let line = if args.accept_drift {
                "baseline --accept-drift"
            } else {
                "baseline"
            };
            steps.run(
                "adopt",
                line,
                Command::Baseline(BaselineArgs {
                    version: None,
                    accept_drift: args.accept_drift,
                }),
                &[Code::Ok],
                no_exception,
            );
            shown
        }
    };
    let check = || {
        Command::CheckConstraints(CheckArgs {
            dry_run: true,
            ..Default::default()
        })
    };
    steps.run(
        "check",
        "check-constraints --dry-run",
        check(),
        &[Code::Ok, Code::Violations],
        no_exception,
    );

    let given = args.policy.as_ref().map(|p| p.display().to_string());
    let plan_line = match &given {
        Some(file) => format!("cleanup --dry-run --policy {file}"),
        None => "cleanup --dry-run".to_string(),
    };
    steps.run(
        "plan cleanup",
        &plan_line,
        Command::Cleanup(CleanupArgs {
            dry_run: true,
            policy: args.policy.clone(),
            ..Default::default()
        }),
        &[Code::Ok],
        needs_decisions,
    );
    let needs_decision = steps
        .get("plan cleanup")
        .map(|s| s.read.needs_decision.clone())
        .unwrap_or_default();
    // The example policy lives in the binary; cleanup reads a file.
    let mut example_file = None;
    let policy = choose_policy(given.as_deref(), dump.is_none(), &needs_decision);
    let policy_path = match policy.source {
        "given" => args.policy.clone(),
        "bundled example" if !steps.failed() => {
            let file = write_example_policy()?;
            let path = file.path().to_path_buf();
            example_file = Some(file);
            Some(path)
        }
        _ => None,
    };
    if !steps.failed() && (!needs_decision.is_empty() || policy.source == "bundled example") {
        let _ = writeln!(std::io::stderr(), "ruleiq-db: rehearse: {}", policy.reason);
    }
    let cleanup_line = match &policy.file {
        Some(file) => format!("cleanup --yes --policy {file}"),
        None => "cleanup --yes".to_string(),
    };
    steps.run(
        "cleanup",
        &cleanup_line,
        Command::Cleanup(CleanupArgs {
            policy: policy_path,
            ..Default::default()
        }),
        &[Code::Ok],
        no_exception,
    );
    drop(example_file);
    steps.run(
        "migrate",
        "migrate",
        Command::Migrate(MigrateArgs::default()),
        &[Code::Ok],
        no_exception,
    );
    steps.run(
        "status",
        "status",
        Command::Status(Default::default()),
        &[Code::Ok],
        no_exception,
    );
    steps.push(
        "application queries",
        "the application's queries, legacy and full names",
        || application_step(&inner, &target),
    );
    steps.run(
        "rollback",
        "rollback --to 7 --yes",
        Command::Rollback(RollbackArgs {
            to: Some(7),
            ..Default::default()
        }),
        &[Code::Ok],
        no_exception,
    );
    steps.run(
        "migrate again",
        "migrate",
        Command::Migrate(MigrateArgs::default()),
        &[Code::Ok],
        no_exception,
    );
    steps.run(
        "final check",
        "check-constraints --dry-run",
        check(),
        &[Code::Ok],
        no_exception,
    );
    let mut standby_check = None;
    if let Some(standby) = &standby {
        steps.push(
            "standby",
            &format!("compare standby '{STANDBY_NAME}' with the primary"),
            || {
                let (step, checked) = standby_step(ctx, &target, standby);
                standby_check = checked;
                step
            },
        );
    }

    let number = |step: &str, read: fn(&Summary) -> Option<u64>| -> Option<u64> {
        steps
            .get(step)
            .filter(|s| s.outcome == StepOutcome::Ok)
            .and_then(|s| read(&s.read))
    };
    let details = RehearseReport {
        source,
        server,
        violations_found: number("check", |s| s.violations),
        rows_cleaned: number("cleanup", |s| s.rows),
        violations_left: number("final check", |s| s.violations),
        policy,
        needs_decision,
        steps: steps.steps,
        standby: standby_check,
    };
    let all_ok = details.steps.iter().all(|s| s.ok);
    let schema_version = details
        .steps
        .iter()
        .rev()
        .find_map(|s| s.read.schema_version)
        .unwrap_or(0);
    let code = if all_ok { Code::Ok } else { Code::Error };
    if let Some(failed) = details
        .steps
        .iter()
        .find(|s| s.outcome == StepOutcome::Failed)
    {
        let _ = writeln!(
            std::io::stderr(),
            "ruleiq-db: rehearse stopped at `{}`: {}",
            failed.command,
            failed.summary
        );
    }
    Ok(Outcome::new(
        Report {
            command: "rehearse",
            ok: all_ok,
            dry_run: false,
            schema_version,
            details,
        },
        code,
    ))
}

/// Which policy the real cleanup runs with: the one given; else, when the dry run found rules
/// needing decisions or the source is the bundled fixture (production's shape, whose NOT NULL
/// columns need decisions the built-in policy does not make), the bundled example; else the
/// built-in policy.
fn choose_policy(given: Option<&str>, bundled: bool, needs_decision: &[Value]) -> PolicyChoice {
    if let Some(file) = given {
        return PolicyChoice {
            source: "given",
            file: Some(file.to_string()),
            reason: format!("cleanup runs with the policy given, {file}"),
        };
    }
    let why = if !needs_decision.is_empty() {
        format!(
            "cleanup needs {} decision(s) the built-in policy does not make",
            needs_decision.len()
        )
    } else if bundled {
        "the bundled fixture has production's NOT NULL columns, where the built-in policy cannot write NULL".to_string()
    } else {
        return PolicyChoice {
            source: "built-in",
            file: None,
            reason: "cleanup runs with the built-in policy (no --policy given, no decision needed)"
                .into(),
        };
    };
    PolicyChoice {
        source: "bundled example",
        file: Some(EXAMPLE_POLICY_NAME.into()),
        reason: format!(
            "{why}; no --policy given, so the rehearsal continues with the bundled example policy {EXAMPLE_POLICY_NAME}. Production needs your own decisions: `ruleiq-db cleanup --dry-run --policy FILE`"
        ),
    }
}

fn write_example_policy() -> Result<tempfile::NamedTempFile> {
    let mut file = tempfile::Builder::new()
        .prefix("cleanup-policy.example.")
        .suffix(".yaml")
        .tempfile()
        .context("writing the bundled example policy to a temporary file")?;
    file.write_all(EXAMPLE_POLICY.as_bytes())?;
    file.flush()?;
    Ok(file)
}

/// Runs one command against the rehearsal database and records how it went.
fn step(
    ctx: &Context,
    name: &str,
    line: &str,
    command: Command,
    expected: &[Code],
    accept: fn(Code, &Summary) -> bool,
) -> Step {
    ctx.log.line(&format!("rehearse: {line}"));
    let started = Instant::now();
    let result = dispatch(ctx, &command);
    let duration_ms = started.elapsed().as_millis() as u64;
    let (exit, report, read) = match result {
        Ok(outcome) => (
            outcome.code,
            outcome.report.to_value(),
            outcome.report.summary(),
        ),
        Err(error) => (
            crate::refusal::code_of(&error),
            serde_json::json!({ "error": format!("{error:#}") }),
            Summary::of_error(&format!("{error:#}")),
        ),
    };
    let ok = expected.contains(&exit) || accept(exit, &read);
    Step {
        step: name.to_string(),
        command: format!("ruleiq-db {line}"),
        outcome: if ok {
            StepOutcome::Ok
        } else {
            StepOutcome::Failed
        },
        ok,
        exit_code: Some(exit.as_i32()),
        duration_ms,
        summary: read.line.clone(),
        report,
        read,
    }
}

/// Old and new application code after 008: the application's queries with the legacy and the
/// full column names through the compatibility schema, and with the full names against the
/// tables, all returning the same rows.
fn application_step(ctx: &Context, target: &crate::db::config::Target) -> Step {
    let line = format!(
        "the application's queries, legacy and full names, with search_path={}",
        crate::catalog::compat::SEARCH_PATH
    );
    ctx.log.line(&format!("rehearse: {line}"));
    let started = Instant::now();
    let (ok, summary, report) = match crate::app_queries::run_all(target) {
        Ok(runs) => {
            let failed: Vec<String> = runs
                .iter()
                .filter_map(|r| {
                    r.problem
                        .as_ref()
                        .map(|p| format!("{} ({:?}, {}): {p}", r.query, r.names, r.search_path))
                })
                .collect();
            let summary = if failed.is_empty() {
                format!(
                    "{} runs of the 3 queries (old names and new), same rows every time",
                    runs.len()
                )
            } else {
                format!(
                    "{} of {} runs failed: {}",
                    failed.len(),
                    runs.len(),
                    failed.join("; ")
                )
            };
            (
                failed.is_empty(),
                summary,
                serde_json::json!({ "command": "application queries", "runs": runs }),
            )
        }
        Err(e) => (
            false,
            format!("{e:#}"),
            serde_json::json!({ "error": format!("{e:#}") }),
        ),
    };
    Step {
        step: "application queries".into(),
        command: line,
        outcome: if ok {
            StepOutcome::Ok
        } else {
            StepOutcome::Failed
        },
        ok,
        exit_code: Some(if ok { 0 } else { 1 }),
        duration_ms: started.elapsed().as_millis() as u64,
        summary,
        report,
        read: Summary::default(),
    }
}

/// The standby step: waits for replay, compares, and says how it went.
fn standby_step(
    ctx: &Context,
    primary: &crate::db::config::Target,
    standby: &crate::db::config::Target,
) -> (Step, Option<StandbyCheck>) {
    let started = Instant::now();
    let checked = compare_standby(ctx, primary, standby);
    let (ok, summary, report) = match &checked {
        Ok(c) if c.identical => (
            true,
            format!(
                "the standby replayed everything: {} tables, {} rows, identical",
                c.tables, c.rows
            ),
            serde_json::to_value(c).unwrap_or(Value::Null),
        ),
        Ok(c) => (
            false,
            format!("the standby differs: {}", c.differing.join(", ")),
            serde_json::to_value(c).unwrap_or(Value::Null),
        ),
        Err(e) => (
            false,
            format!("{e:#}"),
            serde_json::json!({ "error": format!("{e:#}") }),
        ),
    };
    let step = Step {
        step: "standby".into(),
        command: format!("compare standby '{STANDBY_NAME}' with the primary"),
        outcome: if ok {
            StepOutcome::Ok
        } else {
            StepOutcome::Failed
        },
        ok,
        exit_code: Some(if ok { 0 } else { 1 }),
        duration_ms: started.elapsed().as_millis() as u64,
        summary,
        report,
        read: Summary::default(),
    };
    (step, checked.ok())
}

/// Waits until the standby has replayed everything, then compares every table on both servers.
fn compare_standby(
    ctx: &Context,
    primary: &crate::db::config::Target,
    standby: &crate::db::config::Target,
) -> Result<StandbyCheck> {
    let mut on_primary = crate::db::connect(primary)?;
    let mut wait = ReplicaThrottle::new(
        MaxLag::Time(std::time::Duration::ZERO),
        std::time::Duration::from_secs(120),
    );
    let waited = wait.wait_for_replay(&mut on_primary, &ctx.log, "the rehearsal")?;
    let expected = replication::fingerprint(&mut on_primary)?;
    let actual = replication::fingerprint(&mut crate::db::connect(standby)?)?;
    let mut differing: Vec<String> = expected
        .iter()
        .filter(|(table, digest)| actual.get(*table) != Some(digest))
        .map(|(table, _)| table.clone())
        .collect();
    differing.extend(
        actual
            .keys()
            .filter(|t| !expected.contains_key(*t))
            .cloned(),
    );
    Ok(StandbyCheck {
        name: STANDBY_NAME.into(),
        replica_wait_ms: waited.as_millis() as u64,
        tables: expected.len(),
        rows: expected.values().map(|(rows, _)| rows).sum(),
        identical: differing.is_empty(),
        differing,
    })
}

fn not_run(name: &str, line: &str) -> Step {
    let command = if line.starts_with("psql ") {
        line.to_string()
    } else {
        format!("ruleiq-db {line}")
    };
    Step {
        step: name.to_string(),
        command,
        outcome: StepOutcome::NotRun,
        ok: false,
        exit_code: None,
        duration_ms: 0,
        summary: "not run (an earlier step failed)".into(),
        report: Value::Null,
        read: Summary::default(),
    }
}

fn loaded_step(name: &str, what: &str, started: Instant, result: Result<()>) -> Step {
    let (ok, summary, report) = match result {
        Ok(()) => (
            true,
            format!("loaded {what}"),
            serde_json::json!({ "loaded": what }),
        ),
        Err(e) => (
            false,
            format!("{e:#}"),
            serde_json::json!({ "error": format!("{e:#}") }),
        ),
    };
    Step {
        step: name.to_string(),
        command: format!("psql -f {what}"),
        outcome: if ok {
            StepOutcome::Ok
        } else {
            StepOutcome::Failed
        },
        ok,
        exit_code: Some(if ok { 0 } else { 1 }),
        duration_ms: started.elapsed().as_millis() as u64,
        summary,
        report,
        read: Summary::default(),
    }
}

/// Checks a dump up front so a bad file fails before a server is started: it must be a
/// non-empty plain-SQL file, not an archive or a compressed one (which psql would reject, or
/// worse, partly load).
fn read_dump(path: &Path) -> Result<PathBuf> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read the dump {}", path.display()))?;
    if meta.is_dir() {
        bail!(
            "the dump {} is a directory (a directory-format pg_dump?); rehearse needs plain SQL: convert it with `pg_restore -f dump.sql {}`",
            path.display(),
            path.display()
        );
    }
    if !meta.is_file() {
        bail!("the dump {} is not a file", path.display());
    }
    let mut head = Vec::with_capacity(HEAD_BYTES);
    std::fs::File::open(path)
        .and_then(|f| {
            std::io::Read::read_to_end(&mut std::io::Read::take(f, HEAD_BYTES as u64), &mut head)
        })
        .with_context(|| format!("cannot read the dump {}", path.display()))?;
    if let Some(problem) = dump_problem(&head) {
        bail!("the dump {} {problem}", path.display());
    }
    Ok(path.to_path_buf())
}

/// How much of a dump is looked at: enough for every signature below (tar's sits at 257).
const HEAD_BYTES: usize = 4096;

/// What makes a dump unusable, judged from its first bytes; None for plausible plain SQL.
fn dump_problem(head: &[u8]) -> Option<String> {
    const PLAIN: &str = "rehearse needs a plain-SQL dump: take it with `pg_dump -Fp`";
    let compressed = [
        (&[0x1f, 0x8b][..], "gzip", "gunzip"),
        (&[0x28, 0xb5, 0x2f, 0xfd][..], "zstd", "zstd -d"),
        (&[0x04, 0x22, 0x4d, 0x18][..], "lz4", "lz4 -d"),
        (&b"BZh"[..], "bzip2", "bunzip2"),
        (&[0xfd, b'7', b'z', b'X', b'Z', 0x00][..], "xz", "unxz"),
    ];
    if head.iter().all(u8::is_ascii_whitespace) {
        return Some("is empty: it holds no SQL".to_string());
    }
    if head.starts_with(b"PGDMP") {
        return Some(format!(
            "is a custom-format pg_dump archive, not SQL; {PLAIN}, or convert it with `pg_restore -f - FILE > dump.sql`"
        ));
    }
    if let Some((_, kind, tool)) = compressed
        .iter()
        .find(|(magic, _, _)| head.starts_with(magic))
    {
        return Some(format!(
            "is {kind}-compressed; decompress it first (`{tool}`) and pass the plain SQL"
        ));
    }
    if head.get(257..262) == Some(&b"ustar"[..]) {
        return Some(format!(
            "is a tar archive (a tar-format pg_dump?), not SQL; {PLAIN}, or convert it with `pg_restore -f - FILE > dump.sql`"
        ));
    }
    if head.contains(&0) || std::str::from_utf8(head).is_err_and(|e| e.error_len().is_some()) {
        return Some(format!("is binary, not SQL text; {PLAIN}"));
    }
    None
}

/// Loads plain SQL (a pg_dump may hold COPY … FROM stdin blocks) with psql, stopping at the
/// first error.
fn load_sql(target: &crate::db::config::Target, sql: &[u8]) -> Result<()> {
    let psql = sandbox::find_bindir()?.join("psql");
    let password = target
        .config
        .get_password()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .unwrap_or_default();
    let port = target
        .config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let mut child = std::process::Command::new(&psql)
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            "postgres",
            "-d",
            DATABASE,
        ])
        .env("PGPASSWORD", password)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {}", psql.display()))?;
    child.stdin.take().expect("piped stdin").write_all(sql)?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "loading SQL failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

struct StopOnDrop;

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        stop_cluster();
    }
}

fn stop_cluster() {
    if let Ok(mut guard) = STANDBY.lock() {
        if let Some(mut standby) = guard.take() {
            standby.stop();
        }
    }
    if let Ok(mut guard) = CLUSTER.lock() {
        if let Some(mut cluster) = guard.take() {
            cluster.stop();
        }
    }
}

/// Set first thing by the Ctrl-C handler.
static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// After Ctrl-C the handler stops the server and ends the process with 130; the rehearsal's
/// own thread, whose connection that stop just cut, must not end it first with an error.
fn wait_for_the_interrupt_to_finish() {
    if INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
        loop {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

fn install_interrupt_handler() {
    // Ctrl-C must not leave a server running in a temporary directory.
    let _ = ctrlc::set_handler(|| {
        INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = writeln!(
            std::io::stderr(),
            "ruleiq-db: interrupted; stopping the throwaway PostgreSQL"
        );
        stop_cluster();
        std::process::exit(130);
    });
}

impl Details for RehearseReport {
    fn summary(&self, _dry_run: bool, _schema_version: i32) -> report::Summary {
        report::Summary::line("rehearse")
    }

    fn write_table(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(out, "source: {}\nserver: {}", self.source, self.server)?;
        let mut t = report::table(&["step", "command", "outcome", "time", "summary"]);
        for s in &self.steps {
            t.add_row(vec![
                s.step.clone(),
                s.command.clone(),
                match (s.outcome, s.exit_code) {
                    (StepOutcome::Ok, _) => "ok".to_string(),
                    (StepOutcome::Failed, Some(code)) => format!("FAILED (exit {code})"),
                    (StepOutcome::Failed, None) => "FAILED".to_string(),
                    (StepOutcome::NotRun, _) => "not run".to_string(),
                },
                if s.ran() {
                    format!("{} ms", s.duration_ms)
                } else {
                    "-".to_string()
                },
                s.summary.clone(),
            ]);
        }
        writeln!(out, "{t}")?;
        if !self.needs_decision.is_empty() {
            writeln!(
                out,
                "cleanup needs {} decision(s) the built-in policy does not make:",
                self.needs_decision.len()
            )?;
            for d in &self.needs_decision {
                writeln!(out, "  - {}", decision_line(d))?;
            }
        }
        writeln!(out, "policy: {}", self.policy.reason)?;
        let total = |value: Option<u64>, step: &str| match value {
            Some(n) => n.to_string(),
            None => match self.steps.iter().find(|s| s.step == step) {
                Some(s) if s.outcome == StepOutcome::Failed => "failed".to_string(),
                _ => "not run".to_string(),
            },
        };
        writeln!(
            out,
            "violations found: {}, rows cleaned: {}, violations left: {}",
            total(self.violations_found, "check"),
            total(self.rows_cleaned, "cleanup"),
            total(self.violations_left, "final check")
        )?;
        if let Some(s) = &self.standby {
            writeln!(
                out,
                "standby '{}': {} after replaying everything ({} tables, {} rows compared with the primary)",
                s.name,
                if s.identical {
                    "identical to the primary".to_string()
                } else {
                    format!("DIFFERS in {}", s.differing.join(", "))
                },
                s.tables,
                s.rows
            )?;
        }
        Ok(())
    }
}

/// One decision cleanup needs, on one line: constraint, where, why, the options.
fn decision_line(d: &Value) -> String {
    let text = |key: &str| d[key].as_str().unwrap_or("?").to_string();
    let options = match &d["options"] {
        Value::Array(list) => list
            .iter()
            .map(|o| o.as_str().map_or_else(|| o.to_string(), str::to_string))
            .collect::<Vec<_>>()
            .join(", "),
        Value::Null => String::new(),
        other => other
            .as_str()
            .map_or_else(|| other.to_string(), str::to_string),
    };
    let mut line = format!(
        "{} on {}.{}: {}",
        text("constraint"),
        text("table"),
        text("column"),
        text("reason")
    );
    if !options.is_empty() {
        line.push_str(&format!(" (options: {options})"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_policy_is_chosen_only_without_one_given() {
        let decision = serde_json::json!({"constraint": "chk_employee_count_positive"});
        let given = choose_policy(Some("mine.yaml"), true, std::slice::from_ref(&decision));
        assert_eq!(
            (given.source, given.file.as_deref()),
            ("given", Some("mine.yaml"))
        );
        let example = choose_policy(None, false, &[decision]);
        assert_eq!(example.source, "bundled example");
        assert!(
            example.reason.contains("needs 1 decision(s)"),
            "{}",
            example.reason
        );
        assert!(example.reason.contains(EXAMPLE_POLICY_NAME));
        assert_eq!(choose_policy(None, true, &[]).source, "bundled example");
        assert_eq!(choose_policy(None, false, &[]).source, "built-in");
    }

    #[test]
    fn a_decision_is_one_line() {
        let d = serde_json::json!({
            "constraint": "fk_generated_policy_business_profile",
            "table": "generated_policies",
            "column": "business_profil",
            "reason": "the column is NOT NULL: the dangling link cannot be cleared",
            "options": ["delete", "skip"],
        });
        let line = decision_line(&d);
        assert_eq!(
            line,
            "fk_generated_policy_business_profile on generated_policies.business_profil: the column is NOT NULL: the dangling link cannot be cleared (options: delete, skip)"
        );
        assert!(!line.contains('\n'));
    }

    #[test]
    fn plain_sql_passes_and_archives_do_not() {
        assert_eq!(
            dump_problem(b"-- PostgreSQL database dump\nSET x = 1;\n"),
            None
        );
        assert!(dump_problem(b"").unwrap().contains("empty"));
        assert!(dump_problem(b" \n\t").unwrap().contains("empty"));
        assert!(dump_problem(b"PGDMP\x01\x0e")
            .unwrap()
            .contains("pg_restore -f -"));
        assert!(dump_problem(&[0x1f, 0x8b, 8, 0]).unwrap().contains("gzip"));
        assert!(dump_problem(&[0x28, 0xb5, 0x2f, 0xfd, 1])
            .unwrap()
            .contains("zstd"));
        assert!(dump_problem(&[0x04, 0x22, 0x4d, 0x18])
            .unwrap()
            .contains("lz4"));
        assert!(dump_problem(b"BZh91AY&SY").unwrap().contains("bzip2"));
        let mut tar = vec![b'a'; 512];
        tar[257..262].copy_from_slice(b"ustar");
        assert!(dump_problem(&tar).unwrap().contains("tar"));
        // A multi-byte character cut at the end of the head is still text.
        assert_eq!(dump_problem(&"SELECT é".as_bytes()[..8]), None);
    }
}
