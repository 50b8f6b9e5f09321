//! `rehearse`: the whole repair played on a throwaway PostgreSQL — adopt (for a dump), check,
//! cleanup, migrate, status, the application's queries old and new, rollback, migrate again (and
//! with --with-standby, a streaming standby compared with the primary at the end) — with one
//! combined report. Needs no
//! server: it starts one from the local binaries and removes it afterwards, also after Ctrl-C or
//! an error.
//!
//! Every step is reported as it went: a step after a failure is "not run", and a total whose
//! step did not run is "not run", never a zero. This file plays the sequence of commands; the
//! servers, the loading of SQL, the policy choice, the steps that are not commands and the
//! report are `crate::rehearsal`'s.

use super::{dispatch, Outcome, Settings};
use crate::cli::{
    BaselineArgs, CheckArgs, CleanupArgs, Command, CompatArgs, MigrateArgs, RehearseArgs,
    RollbackArgs,
};
use crate::exit::Code;
use crate::rehearsal::cluster::{self, Servers};
use crate::rehearsal::pooled_rollout::{self, APP_ROLE};
use crate::rehearsal::{application, dump, load, policy, standby, STANDBY_NAME};
use crate::rehearsal::{
    dump_scan::DumpNeeds, measured_steps, named_params, named_params::QuerySpec,
};
use crate::rehearsal::{RehearseReport, Step, StepOutcome};
use crate::report::{Report, Summary};
use crate::sandbox::bouncer::Bouncer;
use anyhow::{Context as _, Result};
use std::io::Write;
use std::path::Path;
use std::time::Instant;

pub fn run(settings: &Settings, args: &RehearseArgs) -> Result<Outcome> {
    let dump = match &args.dump {
        Some(path) => Some(dump::read_dump(path)?),
        None => None,
    };
    if let Some(policy) = &args.policy {
        // A policy that cannot be read fails before a server is started; cleanup parses it.
        std::fs::metadata(policy)
            .with_context(|| format!("cannot read the policy {}", policy.display()))?;
    }
    // Read before a server starts: a queries file that does not parse, and the roles and
    // extensions a dump needs.
    let extras = Extras {
        queries: match &args.queries {
            Some(path) => named_params::read_file(path)?,
            None => Vec::new(),
        },
        needs: match &dump {
            Some(path) => Some(measured_steps::scan_dump(&settings.log, path)?),
            None => None,
        },
    };
    let servers = cluster::start(&settings.log, args.with_standby)?;
    let result = rehearse(settings, &servers, dump.as_deref(), args, &extras);
    cluster::wait_for_the_interrupt_to_finish();
    result
}

/// What rehearse read before starting a server: the dump's needs, the --queries.
struct Extras {
    needs: Option<DumpNeeds>,
    queries: Vec<QuerySpec>,
}

/// The steps of a rehearsal, run one after the other; once one fails the rest are recorded as
/// not run.
struct Steps<'a> {
    settings: &'a Settings,
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
            self.steps.push(Step::not_run(name, line));
            return;
        }
        self.steps
            .push(step(self.settings, name, line, command, expected, accept));
    }

    fn push(&mut self, name: &str, line: &str, run: impl FnOnce() -> Step) {
        if self.failed() {
            self.steps.push(Step::not_run(name, line));
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
    settings: &Settings,
    servers: &Servers,
    dump: Option<&Path>,
    args: &RehearseArgs,
    extras: &Extras,
) -> Result<Outcome> {
    load::create_database(&servers.admin)?;
    let target = &servers.target;
    // A throwaway database: nothing to confirm, and what the steps do to it is not what a
    // failure of rehearse reports.
    let inner = settings.for_throwaway(target.clone());

    let mut steps = Steps {
        settings: &inner,
        steps: Vec::new(),
    };
    let mut roles_created = None;
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
                let loaded = load::fixture(target);
                Step::loaded("load fixture", "fixtures/legacy_dirty.sql", started, loaded)
            });
            "bundled fixture (fixtures/legacy_dirty.sql)".to_string()
        }
        Some(path) => {
            let shown = path.display().to_string();
            if let Some(needs) = &extras.needs {
                steps.push(
                    "prepare dump",
                    "create the dump's roles, check its extensions",
                    || {
                        let (step, created) =
                            measured_steps::prepare_dump(&inner.log, target, needs);
                        roles_created = created;
                        step
                    },
                );
            }
            steps.push("load dump", &format!("psql -f {shown}"), || {
                let started = Instant::now();
                let loaded = load::dump(target, path, &inner.log);
                Step::loaded("load dump", &shown, started, loaded)
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
    let policy = policy::choose_policy(given.as_deref(), dump.is_none(), &needs_decision);
    let policy_path = match policy.source {
        "given" => args.policy.clone(),
        "bundled example" if !steps.failed() => {
            let file = policy::write_example_policy()?;
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
    let mut measured = None;
    steps.push("measure before", "measure the queries at version 7", || {
        let (step, before) = measured_steps::measure_before(&inner.log, target, &extras.queries);
        measured = before;
        step
    });
    // Production's rollout: the application's role behind a transaction pooler, pointed at the
    // compatibility views before 008 (docs/design.md §7.1).
    let app_password = uuid::Uuid::new_v4().simple().to_string();
    let mut bouncer: Option<Bouncer> = None;
    let setup_line = format!("compat --for-role {APP_ROLE}, then PgBouncer (transaction mode)");
    steps.push("pooled rollout", &setup_line, || {
        let started = Instant::now();
        let Some(binary) = pooled_rollout::pgbouncer_binary() else {
            return Step::finished(
                "pooled rollout",
                setup_line.clone(),
                true,
                started,
                "skipped: pgbouncer not found (Debian's pgbouncer package)".into(),
                serde_json::json!({ "skipped": "pgbouncer not found" }),
            );
        };
        if let Err(e) = pooled_rollout::create_app_role(target, &app_password) {
            return Step::loaded("pooled rollout", "the application's role", started, Err(e));
        }
        let pointed = step(
            &inner,
            "pooled rollout",
            &setup_line,
            Command::Compat(CompatArgs {
                for_role: vec![APP_ROLE.to_string()],
                ..Default::default()
            }),
            &[Code::Ok],
            no_exception,
        );
        if pointed.outcome != StepOutcome::Ok {
            return pointed;
        }
        match pooled_rollout::start_bouncer(&binary, target, &app_password) {
            Ok(started_bouncer) => {
                bouncer = Some(started_bouncer);
                pointed
            }
            Err(e) => Step::loaded("pooled rollout", "PgBouncer", started, Err(e)),
        }
    });
    let app_url = bouncer
        .as_ref()
        .map(|b| pooled_rollout::app_url(b, target, &app_password));
    steps.push(
        "pooled application before 008",
        "the application's role through PgBouncer: old and new names",
        || pooled_rollout::step(&inner.log, app_url.as_deref(), false),
    );
    steps.run(
        "migrate",
        "migrate",
        Command::Migrate(MigrateArgs::default()),
        &[Code::Ok],
        no_exception,
    );
    steps.push(
        "pooled application after 008",
        "the application's role through PgBouncer: old and new names",
        || pooled_rollout::step(&inner.log, app_url.as_deref(), true),
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
        || application::step(&inner.log, target),
    );
    let mut after = measured_steps::After::default();
    steps.push("measure after", "measure the queries at version 8", || {
        let (step, found) = measured_steps::measure_after(&inner.log, target, measured.as_ref());
        after = found;
        step
    });
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
    if let Some(standby) = &servers.standby {
        steps.push(
            "standby",
            &format!("compare standby '{STANDBY_NAME}' with the primary"),
            || {
                let (step, checked) = standby::step(&settings.log, target, standby);
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
        server: servers.description.clone(),
        violations_found: number("check", |s| s.violations),
        rows_cleaned: number("cleanup", |s| s.rows),
        violations_left: number("final check", |s| s.violations),
        policy,
        needs_decision,
        steps: steps.steps,
        standby: standby_check,
        roles_created,
        queries: after.queries,
        compat_grants: after.compat_grants,
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

/// Runs one command against the rehearsal database and records how it went.
fn step(
    settings: &Settings,
    name: &str,
    line: &str,
    command: Command,
    expected: &[Code],
    accept: fn(Code, &Summary) -> bool,
) -> Step {
    settings.log.line(&format!("rehearse: {line}"));
    let started = Instant::now();
    let result = dispatch(settings, &command);
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
