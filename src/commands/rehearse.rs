//! `rehearse`: the whole repair played on a throwaway PostgreSQL — check, cleanup, migrate,
//! status, the application's queries old and new, rollback, migrate again — with one combined report. Needs no server: it starts one
//! from the local binaries and removes it afterwards, also after Ctrl-C or an error.

use super::{dispatch, Context, Outcome};
use crate::cli::{
    BaselineArgs, CheckArgs, CleanupArgs, Command, MigrateArgs, RehearseArgs, RollbackArgs,
};
use crate::exit::Code;
use crate::replication::{self, MaxLag, ReplicaThrottle};
use crate::report::{self, Details, Report};
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

/// The example cleanup policy: production's NOT NULL columns make two rules need a decision
/// (DESIGN.md §3), and a rehearsal takes the example's (documented in the file itself).
const EXAMPLE_POLICY: &str = include_str!("../../fixtures/cleanup-policy.example.yaml");

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
    /// Rows the first check found violating the constraints.
    pub violations_found: u64,
    /// Rows cleanup changed or removed.
    pub rows_cleaned: u64,
    /// Violations left after the repair (0 when it worked).
    pub violations_left: u64,
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

#[derive(Debug, Serialize)]
pub struct Step {
    pub step: String,
    pub command: String,
    pub ok: bool,
    pub exit_code: i32,
    pub duration_ms: u64,
    pub summary: String,
    /// The step's own report (or its error).
    pub report: Value,
}

pub fn run(ctx: &Context, args: &RehearseArgs) -> Result<Outcome> {
    let dump = match &args.dump {
        Some(path) => Some(read_dump(path)?),
        None => None,
    };
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
    let result = rehearse(ctx, &admin, target, standby_target, dump.as_deref(), server);
    result
}

fn rehearse(
    ctx: &Context,
    admin: &crate::config::Target,
    target: crate::config::Target,
    standby: Option<crate::config::Target>,
    dump: Option<&Path>,
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

    let mut steps = Vec::new();
    let source = match dump {
        None => {
            steps.push(step(
                &inner,
                "build version 7",
                "migrate --target 7",
                Command::Migrate(MigrateArgs {
                    target: Some(7),
                    ..MigrateArgs::default()
                }),
                &[Code::Ok],
            ));
            let started = Instant::now();
            let loaded = load_sql(&target, FIXTURE.as_bytes());
            steps.push(loaded_step(
                "load fixture",
                "fixtures/legacy_dirty.sql",
                started,
                loaded,
            ));
            "bundled fixture (fixtures/legacy_dirty.sql)".to_string()
        }
        Some(path) => {
            let started = Instant::now();
            let loaded = std::fs::read(path)
                .map_err(anyhow::Error::from)
                .and_then(|bytes| load_sql(&target, &bytes));
            steps.push(loaded_step(
                "load dump",
                &path.display().to_string(),
                started,
                loaded,
            ));
            steps.push(step(
                &inner,
                "adopt",
                "baseline",
                Command::Baseline(BaselineArgs { version: None }),
                &[Code::Ok],
            ));
            path.display().to_string()
        }
    };
    let policy = tempfile::Builder::new()
        .prefix("ruleiq-db-policy-")
        .suffix(".yaml")
        .tempfile()?;
    std::fs::write(policy.path(), EXAMPLE_POLICY)?;
    let policy_path = Some(policy.path().to_path_buf());
    let plan: Vec<(&str, &str, Command, &[Code])> = vec![
        (
            "check",
            "check-constraints --dry-run",
            Command::CheckConstraints(CheckArgs {
                dry_run: true,
                ..Default::default()
            }),
            &[Code::Ok, Code::Violations],
        ),
        (
            "plan cleanup",
            "cleanup --dry-run --policy fixtures/cleanup-policy.example.yaml",
            Command::Cleanup(CleanupArgs {
                dry_run: true,
                policy: policy_path.clone(),
                ..Default::default()
            }),
            &[Code::Ok],
        ),
        (
            "cleanup",
            "cleanup --policy fixtures/cleanup-policy.example.yaml --yes",
            Command::Cleanup(CleanupArgs {
                policy: policy_path.clone(),
                ..Default::default()
            }),
            &[Code::Ok],
        ),
        (
            "migrate",
            "migrate",
            Command::Migrate(MigrateArgs::default()),
            &[Code::Ok],
        ),
        (
            "status",
            "status",
            Command::Status(Default::default()),
            &[Code::Ok],
        ),
        (
            "rollback",
            "rollback --to 7 --yes",
            Command::Rollback(RollbackArgs {
                to: Some(7),
                ..Default::default()
            }),
            &[Code::Ok],
        ),
        (
            "migrate again",
            "migrate",
            Command::Migrate(MigrateArgs::default()),
            &[Code::Ok],
        ),
        (
            "final check",
            "check-constraints --dry-run",
            Command::CheckConstraints(CheckArgs {
                dry_run: true,
                ..Default::default()
            }),
            &[Code::Ok],
        ),
    ];
    for (name, line, command, expected) in plan {
        if steps.iter().any(|s| !s.ok) {
            break; // later steps would only repeat the failure
        }
        steps.push(step(&inner, name, line, command, expected));
        if name == "status" && steps.iter().all(|s| s.ok) {
            steps.push(application_step(&inner, &target));
        }
    }
    let mut standby_check = None;
    if let Some(standby) = &standby {
        let started = Instant::now();
        let checked = compare_standby(ctx, &target, standby);
        let (ok, summary, report) = match &checked {
            Ok(c) if c.identical => (
                true,
                format!(
                    "the standby replayed everything: {} tables, {} rows, identical",
                    c.tables, c.rows
                ),
                serde_json::to_value(c)?,
            ),
            Ok(c) => (
                false,
                format!("the standby differs: {}", c.differing.join(", ")),
                serde_json::to_value(c)?,
            ),
            Err(e) => (
                false,
                format!("{e:#}"),
                serde_json::json!({ "error": format!("{e:#}") }),
            ),
        };
        steps.push(Step {
            step: "standby".into(),
            command: format!("compare standby '{STANDBY_NAME}' with the primary"),
            ok,
            exit_code: if ok { 0 } else { 1 },
            duration_ms: started.elapsed().as_millis() as u64,
            summary,
            report,
        });
        standby_check = checked.ok();
    }

    let number = |step: &str, key: &str| -> u64 {
        steps
            .iter()
            .find(|s| s.step == step)
            .and_then(|s| s.report[key].as_u64())
            .unwrap_or(0)
    };
    let details = RehearseReport {
        source,
        server,
        violations_found: number("check", "total_violations"),
        rows_cleaned: number("cleanup", "total_rows"),
        violations_left: number("final check", "total_violations"),
        steps,
        standby: standby_check,
    };
    let all_ran = details.steps.len() >= 10 && details.steps.iter().all(|s| s.ok);
    let schema_version = details
        .steps
        .iter()
        .rev()
        .find_map(|s| s.report["schema_version"].as_i64())
        .unwrap_or(0) as i32;
    let code = if all_ran { Code::Ok } else { Code::Error };
    if let Some(failed) = details.steps.iter().find(|s| !s.ok) {
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
            ok: all_ran,
            dry_run: false,
            schema_version,
            details,
        },
        code,
    ))
}

/// Runs one command against the rehearsal database and records how it went.
fn step(ctx: &Context, name: &str, line: &str, command: Command, expected: &[Code]) -> Step {
    ctx.log.line(&format!("rehearse: {line}"));
    let started = Instant::now();
    let result = dispatch(ctx, &command);
    let duration_ms = started.elapsed().as_millis() as u64;
    let (exit, report) = match result {
        Ok(outcome) => (outcome.code, outcome.report.to_value()),
        Err(error) => (
            crate::exit::code_of(&error),
            serde_json::json!({ "error": format!("{error:#}") }),
        ),
    };
    Step {
        step: name.to_string(),
        command: format!("ruleiq-db {line}"),
        ok: expected.contains(&exit),
        exit_code: exit.as_i32(),
        duration_ms,
        summary: summarise(name, &report),
        report,
    }
}

/// Old and new application code after 008: the application's queries with the legacy and the
/// full column names through the compatibility schema, and with the full names against the
/// tables, all returning the same rows.
fn application_step(ctx: &Context, target: &crate::config::Target) -> Step {
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
        ok,
        exit_code: if ok { 0 } else { 1 },
        duration_ms: started.elapsed().as_millis() as u64,
        summary,
        report,
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
        ok,
        exit_code: if ok { 0 } else { 1 },
        duration_ms: started.elapsed().as_millis() as u64,
        summary,
        report,
    }
}

/// One line a person reads for each step.
fn summarise(step: &str, report: &Value) -> String {
    if let Some(error) = report["error"].as_str() {
        return error.lines().next().unwrap_or(error).to_string();
    }
    let n = |key: &str| report[key].as_u64().unwrap_or(0);
    let count = |key: &str| report[key].as_array().map_or(0, Vec::len);
    match report["command"].as_str().unwrap_or(step) {
        "check-constraints" => {
            let broken = report["constraints"].as_array().map_or(0, |c| {
                c.iter()
                    .filter(|c| c["violations"].as_u64() > Some(0))
                    .count()
            });
            match n("total_violations") {
                0 => format!("no row violates the {} constraints", count("constraints")),
                total => format!("{total} violating rows across {broken} constraints"),
            }
        }
        "cleanup" if report["dry_run"] == true => format!("would change {} rows", n("total_rows")),
        "cleanup" => format!(
            "changed {} rows, run {}",
            n("total_rows"),
            report["run_id"].as_str().unwrap_or("?")
        ),
        "migrate" => format!(
            "version {} → {}, {} applied, {} constraints validated",
            n("from_version"),
            n("to_version"),
            count("applied"),
            count("validated")
        ),
        "status" => format!(
            "version {}, {} drift items",
            n("schema_version"),
            count("drift")
        ),
        "rollback" => format!(
            "version {} → {}, {} archives",
            n("from_version"),
            n("to_version"),
            count("archived")
        ),
        "baseline" => format!("adopted at version {}", n("detected_version")),
        other => other.to_string(),
    }
}

/// Waits until the standby has replayed everything, then compares every table on both servers.
fn compare_standby(
    ctx: &Context,
    primary: &crate::config::Target,
    standby: &crate::config::Target,
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
fn load_sql(target: &crate::config::Target, sql: &[u8]) -> Result<()> {
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

fn install_interrupt_handler() {
    // Ctrl-C must not leave a server running in a temporary directory.
    let _ = ctrlc::set_handler(|| {
        let _ = writeln!(
            std::io::stderr(),
            "ruleiq-db: interrupted; stopping the throwaway PostgreSQL"
        );
        stop_cluster();
        std::process::exit(130);
    });
}

impl Details for RehearseReport {
    fn write_table(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(out, "source: {}\nserver: {}", self.source, self.server)?;
        let mut t = report::table(&["step", "command", "outcome", "time", "summary"]);
        for s in &self.steps {
            t.add_row(vec![
                s.step.clone(),
                s.command.clone(),
                if s.ok {
                    "ok".to_string()
                } else {
                    format!("FAILED (exit {})", s.exit_code)
                },
                format!("{} ms", s.duration_ms),
                s.summary.clone(),
            ]);
        }
        writeln!(out, "{t}")?;
        writeln!(
            out,
            "violations found: {}, rows cleaned: {}, violations left: {}",
            self.violations_found, self.rows_cleaned, self.violations_left
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

#[cfg(test)]
mod tests {
    use super::dump_problem;

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
