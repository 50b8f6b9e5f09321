//! `cleanup`: repair the rows that break the catalog constraints, by policy (docs/design.md §3),
//! every change audited in schema `ruleiq_audit` and undoable with `--undo RUN_ID`.
//!
//! Order of work, so that nothing changes before everything that can fail early has: the
//! policy is read and checked (exit 1 naming file and line), the server found writable, the
//! migration lock taken, the tables planned, the plan's reads and values proven, the tables
//! previewed (the preview runs every expression the batches will), the rules that need a
//! decision listed (exit 4), the plan's writes proven (exit 4), then the confirmation (exit 4
//! without --yes off a terminal), then the batches. A failure after the first batch reports
//! what changed and how to undo it (cleanup/failure.rs).

use super::{Outcome, Settings};
use crate::cleanup::batches::Batching;
use crate::cleanup::decisions;
use crate::cleanup::failure;
use crate::cleanup::policy::Policy;
use crate::cleanup::policy_file;
use crate::cleanup::report::{
    preview_notes, preview_rules, Applied, CleanupReport, DryRun, Failed, Preview, Undecided,
    Undone,
};
use crate::cleanup::run::{self, Looked, Stopped};
use crate::cleanup::shares;
use crate::cleanup::undo_run;
use crate::cli::CleanupArgs;
use crate::db::blockers::{self, Blocker, Scope, Takes};
use crate::db::config::Target;
use crate::db::Session;
use crate::exit::Code;
use crate::health::estimate;
use crate::history;
use crate::refusal::code_of;
use crate::refusal::Refusal;
use crate::report::{Failure, Report};
use crate::units::rows;
use anyhow::{anyhow, Result};
use postgres::Client;
use std::io::Write;
use uuid::Uuid;

pub fn run(settings: &Settings, args: &CleanupArgs) -> Result<Outcome> {
    if let Some(run_id) = &args.undo {
        return run_undo(settings, run_id);
    }
    let policy = match &args.policy {
        Some(path) => policy_file::load(path)?,
        None => Policy::builtin(),
    };
    let batching = Batching::from_env()?;
    let (target, mut client) = settings.connect()?;
    run::without_jit(&mut client)?;
    if args.dry_run {
        let started = std::time::Instant::now();
        let (looked, preview, schema_version) = match look(settings, &mut client, &policy, None)? {
            Ok(looked) => looked,
            Err(stop) => return Ok(stop),
        };
        let looking = started.elapsed();
        let limits = settings.safety.blocker_limits();
        let blockers = blockers::find(&mut client, &looked.scope(), &limits)?;
        // A run looks again, writes, then recounts every catalog constraint (cleanup/run.rs).
        let recounted: Vec<_> = crate::catalog::constraints::CATALOG.iter().collect();
        let per_table: Vec<u64> = looked.previews.iter().map(|p| p.total).collect();
        let (rows_in_sequence, sessions) = shares::in_sequence(&mut client, &per_table, &batching)?;
        let repair = estimate::Repair {
            look: looking,
            rows: looked.total,
            rows_in_sequence,
            sessions,
        };
        let estimate = estimate::estimate(
            &mut client,
            None,
            estimate::Work::Cleanup,
            &recounted,
            &[],
            Some(repair),
        )?;
        return Ok(stop_here(
            preview,
            Some((blockers, estimate)),
            schema_version,
            looked.total,
        ));
    }
    // Refuses a standby or read-only server first (replication::refuse_unless_writable).
    let mut session = settings.begin_session(target.clone(), client)?;
    let (looked, details, schema_version) =
        match look(settings, session.client(), &policy, Some(&target))? {
            Ok(looked) => looked,
            Err(stop) => return Ok(stop),
        };
    if looked.total == 0 {
        return Ok(stop_here(details, None, schema_version, 0));
    }
    settings.confirm(&looked.question())?;
    session.locking(&looked.scope(), |session| {
        apply(
            settings,
            session,
            &policy,
            &looked,
            batching,
            details,
            schema_version,
        )
    })
}

/// Everything before the confirmation: the schema version, the look (plan, proofs, preview,
/// decisions) and the report it gives. `Err`: the run stops here, rules need a decision.
fn look(
    settings: &Settings,
    client: &mut Client,
    policy: &Policy,
    run_on: Option<&Target>,
) -> Result<Result<(Looked, Preview, i32), Outcome>> {
    let dry_run = run_on.is_none();
    let schema_version = history::current_version(&history::read(client)?);
    settings.journal.version(schema_version);
    let mut looked = run::look(client, policy, run_on, &settings.log)?;
    let preview = Preview {
        policy: Some(policy.source.clone().unwrap_or_else(|| "built-in".into())),
        rules: preview_rules(&looked.previews, dry_run),
        total_rows: looked.total,
        notes: preview_notes(&looked.plans, &looked.previews),
    };
    let undecided = std::mem::take(&mut looked.needs_decision);
    if !undecided.is_empty() {
        return Ok(Err(needs_decision(
            preview,
            undecided,
            dry_run,
            schema_version,
        )));
    }
    Ok(Ok((looked, preview, schema_version)))
}

/// The report of a dry run (with the blockers it found), or of a run with nothing to repair:
/// nothing was changed.
fn stop_here(
    mut preview: Preview,
    dry_run: Option<(Vec<Blocker>, estimate::Estimate)>,
    schema_version: i32,
    total: u64,
) -> Outcome {
    if total == 0 {
        preview
            .notes
            .push("nothing to repair: no row breaks a constraint the policy covers".into());
    }
    let is_dry_run = dry_run.is_some();
    let details = match dry_run {
        Some((blockers, estimate)) => CleanupReport::DryRun(DryRun {
            preview,
            blockers,
            estimate,
        }),
        None => CleanupReport::NothingToDo(preview),
    };
    let report = Report {
        command: "cleanup",
        ok: true,
        dry_run: is_dry_run,
        schema_version,
        details,
    };
    Outcome::new(report, Code::Ok)
}

/// After the confirmation: the run recorded, its batches, the recount.
fn apply(
    settings: &Settings,
    session: &mut Session,
    policy: &Policy,
    looked: &Looked,
    batching: Batching,
    mut preview: Preview,
    schema_version: i32,
) -> Result<Outcome> {
    let started = run::start(session, policy, schema_version)?;
    let run_id = started.run_id;
    let interrupted_runs = started.interrupted_runs;
    settings.journal.run_id(&run_id.to_string());
    let work = run::Apply {
        policy,
        looked,
        run_id,
        batching,
    };
    let recount = match run::apply(session, work, &mut preview) {
        Ok(recount) => recount,
        Err(stopped) => {
            let ran = Ran {
                run_id,
                preview,
                interrupted_runs,
            };
            return Ok(failed(ran, stopped, schema_version));
        }
    };
    let remaining = recount.remaining_violations;
    let report = Report {
        command: "cleanup",
        ok: remaining == 0,
        dry_run: false,
        schema_version,
        details: CleanupReport::Applied(Applied {
            run_id: run_id.to_string(),
            preview,
            recount,
            interrupted_runs,
        }),
    };
    let code = if remaining == 0 {
        Code::Ok
    } else {
        Code::Violations
    };
    Ok(Outcome::new(report, code))
}

/// The report of a run that stops for rules needing a decision: nothing was changed, exit 4.
fn needs_decision(
    preview: Preview,
    needs_decision: Vec<decisions::NeedsDecision>,
    dry_run: bool,
    schema_version: i32,
) -> Outcome {
    let refusal = Refusal::NeedsDecision(format!(
        "{} cleanup rule(s) need a decision in a policy file (see {}); nothing was changed",
        needs_decision.len(),
        decisions::EXAMPLE_POLICY
    ));
    let _ = writeln!(std::io::stderr(), "ruleiq-db: refused: {refusal}");
    let report = Report {
        command: "cleanup",
        ok: false,
        dry_run,
        schema_version,
        details: CleanupReport::NeedsDecision(Undecided {
            preview,
            needs_decision,
            reason: refusal.reason(),
        }),
    };
    Outcome::new(report, refusal.code())
}

/// A run that started: its id, what it did so far, and the earlier runs it completes.
struct Ran {
    run_id: Uuid,
    preview: Preview,
    interrupted_runs: Vec<String>,
}

/// The report of a run that failed after it started changing rows: what changed, how to undo.
fn failed(ran: Ran, stopped: Stopped, schema_version: i32) -> Outcome {
    let Ran {
        run_id,
        mut preview,
        interrupted_runs,
    } = ran;
    let Stopped { error, accounted } = stopped;
    let interrupted = crate::db::interrupt::requested();
    let code = if interrupted {
        Code::Interrupted
    } else {
        code_of(&error)
    };
    // Only what the audit shows committed needs undoing; a run stopped before its first batch
    // changed nothing, and offering an undo for it would only confuse.
    let changed_nothing = accounted.changed_tables.is_empty() && accounted.uncertain.is_none();
    let undo = (!changed_nothing).then(|| failure::undo_command(run_id));
    let tables: Vec<String> = accounted
        .changed_tables
        .iter()
        .map(|t| format!("{} ({})", t.table, rows(t.rows)))
        .collect();
    let label = if interrupted { "interrupted" } else { "error" };
    let _ = writeln!(
        std::io::stderr(),
        "ruleiq-db: {label}: {error:#}\nruleiq-db: cleanup run {run_id} stopped; {}",
        match &undo {
            Some(undo) => format!("already changed: {}; undo: `{undo}`", tables.join(", ")),
            None => "nothing was changed (no batch had committed), so there is nothing to undo"
                .to_string(),
        }
    );
    if let Some(note) = accounted.uncertain {
        preview.notes.push(note);
    }
    let report = Report {
        command: "cleanup",
        ok: false,
        dry_run: false,
        schema_version,
        details: CleanupReport::Failed(Failed {
            run_id: run_id.to_string(),
            preview,
            failure: Failure::of(&error, code),
            changed_tables: accounted.changed_tables,
            undo,
            interrupted,
            interrupted_runs,
        }),
    };
    Outcome::new(report, code)
}

fn run_undo(settings: &Settings, text: &str) -> Result<Outcome> {
    let run_id = Uuid::parse_str(text.trim()).map_err(|_| {
        anyhow!(
            "'{text}' is not a cleanup run id: expected the UUID a cleanup report gives as run_id"
        )
    })?;
    let batching = Batching::from_env()?;
    let (target, mut client) = settings.connect()?;
    run::without_jit(&mut client)?;
    let mut session = settings.begin_session(target, client)?;
    let schema_version = history::current_version(&history::read(session.client())?);
    settings.journal.version(schema_version);
    settings.journal.run_id(&run_id.to_string());
    let found = undo_run::find(session.client(), run_id)?;
    let run = found.run;
    let mut details = Undone {
        run_id: run_id.to_string(),
        rules: found.rules,
        total_rows: run.records as u64,
        rows_restored: 0,
        conflicts: Vec::new(),
        total_conflicts: 0,
        notes: Vec::new(),
    };
    if run.status == "interrupted" || run.status == "started" {
        details.notes.push(format!(
            "run {run_id} did not finish; undo restores the batches it completed"
        ));
    }
    if run.unrestored == 0 {
        details.notes.push(format!(
            "every one of the {} records of run {run_id} is already restored; nothing to do",
            run.records
        ));
        let report = Report {
            command: "cleanup",
            ok: true,
            dry_run: false,
            schema_version,
            details: CleanupReport::Undone(details),
        };
        return Ok(Outcome::new(report, Code::Ok));
    }
    settings.confirm(&format!(
        "undo cleanup run {run_id}: restore up to {} rows it changed or deleted (rows changed since are left alone). Go ahead?",
        run.unrestored
    ))?;
    let tables = details.rules.iter().map(|r| r.table.clone()).collect();
    let scope = Scope::new("cleanup --undo", tables, Takes::RowExclusive);
    let outcome = session.locking(&scope, |session| {
        undo_run::restore(session, run_id, batching)
    })?;
    if outcome.total_conflicts > 0 {
        details.notes.push(format!(
            "{} rows changed after the cleanup and were left alone; resolve them and run --undo again to restore them",
            outcome.total_conflicts
        ));
    }
    details.rows_restored = outcome.restored;
    details.total_conflicts = outcome.total_conflicts;
    details.conflicts = outcome.conflicts;
    let ok = outcome.total_conflicts == 0;
    let report = Report {
        command: "cleanup",
        ok,
        dry_run: false,
        schema_version,
        details: CleanupReport::Undone(details),
    };
    Ok(Outcome::new(
        report,
        if ok { Code::Ok } else { Code::Violations },
    ))
}
