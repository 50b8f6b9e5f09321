//! `cleanup`: repair the rows that break the catalog constraints, by policy (DESIGN.md §3),
//! every change audited in schema `ruleiq_audit` and undoable with `--undo RUN_ID`.
//!
//! Order of work, so that nothing changes before everything that can fail early has: the
//! policy is read and checked (exit 1 naming file and line), the server found writable, the
//! migration lock taken, the tables planned, the plan's reads and values proven, the tables
//! previewed (the preview runs every expression the batches will), the rules that need a
//! decision listed (exit 4), the plan's writes proven (exit 4), then the confirmation (exit 4
//! without --yes off a terminal), then the batches. A failure after the first batch reports
//! what changed and how to undo it (cleanup/failure.rs).

use super::{Context, Outcome};
use crate::catalog::constraints::CATALOG;
use crate::cleanup::audit;
use crate::cleanup::batches::{self, Batching};
use crate::cleanup::decisions::{self, NeedsDecision};
use crate::cleanup::failure::{self, ChangedTable};
use crate::cleanup::plan::{self, TablePlan};
use crate::cleanup::policy::{Action, Policy};
use crate::cleanup::policy_file;
use crate::cleanup::preview::{self, Example, TablePreview};
use crate::cleanup::proof;
use crate::cleanup::undo::{self, Conflict};
use crate::cli::CleanupArgs;
use crate::constraints::check;
use crate::exit::{code_of, Code};
use crate::health::blockers::{self, Blocker, Scope, Takes};
use crate::history;
use crate::refusal::Refusal;
use crate::report::{self, Details, Report};
use anyhow::{anyhow, bail, Result};
use postgres::{Client, IsolationLevel};
use serde::Serialize;
use std::io::Write;
use uuid::Uuid;

#[derive(Debug, Serialize, Default)]
pub struct CleanupReport {
    /// The run that changed rows (null for a dry run or when nothing needed changing); with
    /// --undo, the run undone.
    pub run_id: Option<String>,
    /// "built-in", or the policy file that overrode it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    pub rules: Vec<RuleReport>,
    /// Distinct rows changed or deleted (one audit record each); for a dry run, that would be.
    pub total_rows: u64,
    /// Rules whose built-in action would break the live schema (NULL into a NOT NULL
    /// column): nothing runs until a policy file decides them.
    pub needs_decision: Vec<NeedsDecision>,
    /// Violations of the constraints the policy covers, counted again after the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remaining_violations: Option<u64>,
    /// Violations of every catalog constraint after the run, skipped ones included: what
    /// `migrate`'s preflight will find.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub violations_left: Option<u64>,
    /// A run that failed part-way: the error, its exit code, every table it had already
    /// changed and the command that undoes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The refusal's reason (e.g. `needs_decision`), as in a failure document.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed_tables: Option<Vec<ChangedTable>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub undo: Option<String>,
    /// Earlier runs that were killed before they finished; this run completes their work.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub interrupted_runs: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows_restored: Option<u64>,
    /// Rows undo left alone because they changed since the cleanup (the first 100).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conflicts: Option<Vec<Conflict>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_conflicts: Option<u64>,
    pub notes: Vec<String>,
    /// With --dry-run: sessions that would make the batches wait for their locks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blockers: Option<Vec<Blocker>>,
}

#[derive(Debug, Serialize)]
pub struct RuleReport {
    pub constraint: String,
    pub table: String,
    pub action: String,
    /// Rows that break the constraint (a dry run's count equals check-constraints').
    pub rows: u64,
    /// Further rows this rule repairs because an earlier rule on the same table rewrote them
    /// into a violation of it ('Approved' → 'approved', then demoted).
    pub cascaded_rows: u64,
    /// Dry run: a few rows, old → new.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub examples: Option<Vec<Example>>,
}

pub fn run(ctx: &Context, args: &CleanupArgs) -> Result<Outcome> {
    if let Some(run_id) = &args.undo {
        return run_undo(ctx, run_id);
    }
    let policy = match &args.policy {
        Some(path) => policy_file::load(path)?,
        None => Policy::builtin(),
    };
    let batching = Batching::from_env()?;
    let (target, mut client) = ctx.connect()?;
    without_jit(&mut client)?;
    if !args.dry_run {
        // Refuses a standby or read-only server first (replication::refuse_unless_writable).
        ctx.lock_for_changes(&mut client)?;
    }
    let schema_version = history::current_version(&history::read(&mut client)?);
    ctx.journal.version(schema_version);
    let (plans, previews) = look(&mut client, &policy, !args.dry_run)?;
    let total: u64 = previews.iter().map(|p| p.total).sum();
    let mut details = CleanupReport {
        policy: Some(policy.source.clone().unwrap_or_else(|| "built-in".into())),
        total_rows: total,
        ..Default::default()
    };
    details.rules = preview_rules(&previews, args.dry_run);
    details.notes = preview_notes(&plans, &previews);
    details.needs_decision = decisions::find(&mut client, &policy, &plans, &previews)?;
    if !details.needs_decision.is_empty() {
        return Ok(needs_decision(details, args.dry_run, schema_version));
    }
    if total > 0 {
        proof::prove_writes(&mut client, &plans, &previews)?;
    }
    let scope = Scope::new(
        "cleanup",
        plans.iter().map(|p| p.table.to_string()).collect(),
        Takes::RowExclusive,
    );
    if args.dry_run {
        details.blockers = Some(ctx.list_blockers(&mut client, &scope)?);
    }
    if args.dry_run || total == 0 {
        if total == 0 {
            details
                .notes
                .push("nothing to repair: no row breaks a constraint the policy covers".into());
        }
        let report = Report {
            command: "cleanup",
            ok: true,
            dry_run: args.dry_run,
            schema_version,
            details,
        };
        return Ok(Outcome::new(report, Code::Ok));
    }

    ctx.confirm(&question(&previews, total))?;
    ctx.wait_for_blockers(&mut client, &scope)?;
    audit::ensure(&mut client)?;
    let run_id = Uuid::new_v4();
    details.interrupted_runs = audit::begin_run(&mut client, run_id, schema_version, &policy)?;
    for earlier in &details.interrupted_runs {
        ctx.log.line(&format!(
            "run {earlier} was interrupted; its whole batches stay recorded (undo it separately), this run repairs what is left"
        ));
    }
    ctx.log.line(&format!("cleanup run {run_id} started"));
    ctx.journal.run_id(&run_id.to_string());
    details.run_id = Some(run_id.to_string());
    let mut started: Vec<&'static str> = Vec::new();
    let result = (|| -> Result<()> {
        details.rules = apply(
            ctx,
            &mut client,
            run_id,
            &plans,
            &previews,
            batching,
            &mut started,
        )?;
        audit::finish_run(&mut client, run_id)?;
        details.total_rows = count_records(&mut client, run_id)?;
        recount(ctx, &target, &mut client, &policy, &mut details)
    })();
    if let Err(error) = result {
        return Ok(failed(
            ctx,
            &mut client,
            run_id,
            &started,
            error,
            details,
            schema_version,
        ));
    }
    let remaining = details.remaining_violations.unwrap_or(0);
    let report = Report {
        command: "cleanup",
        ok: remaining == 0,
        dry_run: false,
        schema_version,
        details,
    };
    let code = if remaining == 0 {
        Code::Ok
    } else {
        Code::Violations
    };
    Ok(Outcome::new(report, code))
}

/// After the run: violations of the covered constraints (exit 3 when rows arrived while it
/// ran) and of every catalog constraint (what migrate will find, skipped rules included).
fn recount(
    ctx: &Context,
    target: &crate::db::config::Target,
    client: &mut Client,
    policy: &Policy,
    details: &mut CleanupReport,
) -> Result<()> {
    let all: Vec<_> = CATALOG.iter().collect();
    let findings = check::check(target, client, &all, &ctx.log)?;
    let covered = policy.covered();
    let remaining: u64 = findings
        .iter()
        .filter(|f| covered.iter().any(|c| c.name == f.name))
        .map(|f| f.violations)
        .sum();
    let left = check::total_violations(&findings);
    details.remaining_violations = Some(remaining);
    details.violations_left = Some(left);
    if remaining > 0 {
        details.notes.push(format!(
            "{remaining} rows break covered constraints after the run (written while it ran?); run cleanup again"
        ));
    }
    let unrepaired: Vec<String> = findings
        .iter()
        .filter(|f| f.violations > 0 && !covered.iter().any(|c| c.name == f.name))
        .map(|f| format!("{} ({})", f.name, rows(f.violations)))
        .collect();
    if !unrepaired.is_empty() {
        details.notes.push(format!(
            "left as the policy says: {}; `ruleiq-db migrate` refuses while they break the constraints",
            unrepaired.join(", ")
        ));
    }
    Ok(())
}

/// The report of a run that stops for rules needing a decision: nothing was changed, exit 4.
fn needs_decision(mut details: CleanupReport, dry_run: bool, schema_version: i32) -> Outcome {
    let refusal = Refusal::NeedsDecision(format!(
        "{} cleanup rule(s) need a decision in a policy file (see {}); nothing was changed",
        details.needs_decision.len(),
        decisions::EXAMPLE_POLICY
    ));
    let _ = writeln!(std::io::stderr(), "ruleiq-db: refused: {refusal}");
    details.reason = Some(refusal.reason());
    let report = Report {
        command: "cleanup",
        ok: false,
        dry_run,
        schema_version,
        details,
    };
    Outcome::new(report, refusal.code())
}

/// The report of a run that failed after it started changing rows: what changed, how to undo.
fn failed(
    ctx: &Context,
    client: &mut Client,
    run_id: Uuid,
    started: &[&'static str],
    error: anyhow::Error,
    mut details: CleanupReport,
    schema_version: i32,
) -> Outcome {
    let code = code_of(&error);
    let accounted = failure::account(client, || Ok(ctx.connect()?.1), run_id, started);
    let undo = failure::undo_command(run_id);
    let tables: Vec<String> = accounted
        .changed_tables
        .iter()
        .map(|t| format!("{} ({})", t.table, rows(t.rows)))
        .collect();
    let _ = writeln!(
        std::io::stderr(),
        "ruleiq-db: error: {error:#}\nruleiq-db: cleanup run {run_id} stopped; already changed: {}; undo: `{undo}`",
        if tables.is_empty() {
            "nothing".to_string()
        } else {
            tables.join(", ")
        }
    );
    if let Some(note) = accounted.uncertain {
        details.notes.push(note);
    }
    details.error = Some(format!("{error:#}"));
    details.exit_code = Some(code.as_i32());
    details.reason = Refusal::of(&error).map(Refusal::reason);
    details.changed_tables = Some(accounted.changed_tables);
    details.undo = Some(undo);
    let report = Report {
        command: "cleanup",
        ok: false,
        dry_run: false,
        schema_version,
        details,
    };
    Outcome::new(report, code)
}

/// Cleanup runs few rows per statement through large expressions, whose cost estimates cross
/// the JIT thresholds: compiling took about 150 ms of a 780 ms batch of 5000 rows, for
/// nothing. Only this session is affected.
fn without_jit(client: &mut Client) -> Result<()> {
    client.batch_execute("SET jit = off")?;
    Ok(())
}

/// Plans, proves the plan's reads and values, and previews, in one snapshot. A dry run is read-only; a real run also collects, in
/// the same scan, the keys its batches will walk (into temporary tables, gone with the session).
fn look(
    client: &mut Client,
    policy: &Policy,
    collect_keys: bool,
) -> Result<(Vec<TablePlan>, Vec<TablePreview>)> {
    let mut tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(!collect_keys)
        .start()?;
    let plans = plan::build(policy, &mut tx)?;
    proof::prove_reads(&mut tx, &plans, collect_keys)?;
    let source = policy.source.as_deref().unwrap_or("the built-in policy");
    proof::prove_values(&mut tx, &plans, source)?;
    if collect_keys {
        for plan in &plans {
            tx.batch_execute(&plan.create_keys_table_sql())?;
        }
    }
    let previews = preview::preview(&mut tx, &plans, collect_keys)?;
    tx.commit()?;
    if collect_keys {
        for plan in &plans {
            client.batch_execute(&plan.index_keys_table_sql())?;
        }
    }
    Ok((plans, previews))
}

fn preview_rules(previews: &[TablePreview], with_examples: bool) -> Vec<RuleReport> {
    previews
        .iter()
        .flat_map(|p| {
            p.rules
                .iter()
                .filter(|r| r.rows + r.cascaded > 0)
                .map(|r| RuleReport {
                    constraint: r.constraint.name.into(),
                    table: p.table.into(),
                    action: r.action.as_str().into(),
                    rows: r.rows,
                    cascaded_rows: r.cascaded,
                    examples: with_examples.then(|| r.examples.clone()),
                })
        })
        .collect()
}

/// Says what the counts alone do not: rows reaching a rule through an earlier one, and
/// constraints left broken on purpose.
fn preview_notes(plans: &[TablePlan], previews: &[TablePreview]) -> Vec<String> {
    let mut notes = Vec::new();
    for (plan, preview) in plans.iter().zip(previews) {
        for (i, rule) in preview.rules.iter().enumerate() {
            if rule.cascaded > 0 {
                let earlier: Vec<&str> = plan.stages[..i.min(plan.stages.len())]
                    .iter()
                    .map(|s| s.constraint.name)
                    .collect();
                let example = rule
                    .examples
                    .iter()
                    .find(|e| e.cascaded)
                    .map(|e| format!(", e.g. {}", describe(e, rule.action.as_str())))
                    .unwrap_or_default();
                notes.push(format!(
                    "{}: {} also repairs {} of {} that {} rewrote into a violation of it, in the same update{example}. They count as cascaded_rows, not rows, so rows equals check-constraints",
                    rule.constraint.name,
                    rule.action,
                    rows(rule.cascaded),
                    preview.table,
                    earlier.join(", ")
                ));
            }
            if rule.action == Action::Skip && rule.rows > 0 {
                notes.push(format!(
                    "{}: skipped by the policy; its {} stay as they are and keep `migrate` from enforcing it",
                    rule.constraint.name,
                    rows(rule.rows)
                ));
            }
        }
    }
    notes
}

fn question(previews: &[TablePreview], total: u64) -> String {
    let tables: Vec<String> = previews
        .iter()
        .filter(|p| p.total > 0)
        .map(|p| format!("{} {}", p.table, p.total))
        .collect();
    format!(
        "cleanup will change {total} rows ({}), each recorded in schema ruleiq_audit and undoable. Go ahead?",
        tables.join(", ")
    )
}

/// Runs every table's phases; returns what each rule did.
fn apply(
    ctx: &Context,
    client: &mut Client,
    run_id: Uuid,
    plans: &[TablePlan],
    previews: &[TablePreview],
    mut batching: Batching,
    started: &mut Vec<&'static str>,
) -> Result<Vec<RuleReport>> {
    let mut rules = Vec::new();
    let mut throttle = ctx.replica_throttle();
    for (plan, preview) in plans.iter().zip(previews) {
        let mut did: Vec<(&'static str, Action, u64, u64)> = Vec::new();
        if preview.total > 0 {
            started.push(plan.table);
            let names: Vec<&str> = plan
                .stages
                .iter()
                .chain(&plan.deletes)
                .map(|r| r.constraint.name)
                .collect();
            let what = format!("cleanup {} ({})", plan.table, names.join(", "));
            let bar = ctx.log.bar(preview.total, &what);
            let phases = [
                (plan.delete_batch_sql(), None, &plan.deletes),
                (plan.update_batch_sql(), plan.bound_values(), &plan.stages),
            ];
            let (mut batches_run, mut longest) = (0, std::time::Duration::ZERO);
            for (sql, values, phase_rules) in phases {
                let Some(sql) = sql else { continue };
                let totals = batches::run_phase(
                    client,
                    &sql,
                    values,
                    phase_rules.len(),
                    run_id,
                    &mut batching,
                    &mut throttle,
                    ctx.retry(),
                    &ctx.log,
                    &bar,
                    &what,
                )?;
                batches_run += totals.batches;
                longest = longest.max(totals.longest);
                for (rule, (rows, cascaded)) in phase_rules.iter().zip(totals.per_rule) {
                    did.push((rule.constraint.name, rule.action, rows, cascaded));
                }
            }
            bar.finish_and_clear();
            ctx.log.line(&format!(
                "{}: {batches_run} batch(es), the longest held its row locks {} ms",
                plan.table,
                longest.as_millis()
            ));
        }
        for skipped in preview.rules.iter().filter(|r| r.action == Action::Skip) {
            did.push((skipped.constraint.name, Action::Skip, skipped.rows, 0));
        }
        for (name, action, n, cascaded) in did {
            if n + cascaded == 0 {
                continue;
            }
            ctx.log.line(&match action {
                Action::Skip => format!("{name}: skipped, {} left as they are", rows(n)),
                _ => format!(
                    "{name}: {action} repaired {} of {}{}",
                    rows(n),
                    plan.table,
                    if cascaded > 0 {
                        format!(" and {cascaded} more reached through an earlier rule")
                    } else {
                        String::new()
                    }
                ),
            });
            rules.push(RuleReport {
                constraint: name.into(),
                table: plan.table.into(),
                action: action.as_str().into(),
                rows: n,
                cascaded_rows: cascaded,
                examples: None,
            });
        }
    }
    Ok(rules)
}

fn count_records(client: &mut Client, run_id: Uuid) -> Result<u64> {
    let n: i64 = client
        .query_one(
            &format!("SELECT count(*) FROM {} WHERE run_id = $1", audit::CHANGES),
            &[&run_id],
        )?
        .get(0);
    Ok(n as u64)
}

fn run_undo(ctx: &Context, text: &str) -> Result<Outcome> {
    let run_id = Uuid::parse_str(text.trim()).map_err(|_| {
        anyhow!(
            "'{text}' is not a cleanup run id: expected the UUID a cleanup report gives as run_id"
        )
    })?;
    let batching = Batching::from_env()?;
    let (_, mut client) = ctx.connect()?;
    without_jit(&mut client)?;
    ctx.lock_for_changes(&mut client)?;
    let schema_version = history::current_version(&history::read(&mut client)?);
    ctx.journal.version(schema_version);
    ctx.journal.run_id(&run_id.to_string());
    if !audit::exists(&mut client)? {
        bail!("no cleanup run {run_id}: no cleanup has ever changed this database (schema ruleiq_audit does not exist)");
    }
    let Some(run) = audit::find_run(&mut client, run_id)? else {
        let recent = audit::recent_runs(&mut client, 5)?;
        bail!(
            "no cleanup run {run_id} in {}; recent runs: {}",
            audit::RUNS,
            if recent.is_empty() {
                "none".to_string()
            } else {
                recent.join("; ")
            }
        );
    };
    let rules = audit::run_rules(&mut client, run_id)?
        .into_iter()
        .map(|(constraint, table, action, rows)| RuleReport {
            constraint,
            table,
            action,
            rows: rows as u64,
            cascaded_rows: 0,
            examples: None,
        })
        .collect();
    let mut details = CleanupReport {
        run_id: Some(run_id.to_string()),
        rules,
        total_rows: run.records as u64,
        rows_restored: Some(0),
        conflicts: Some(Vec::new()),
        total_conflicts: Some(0),
        ..Default::default()
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
            details,
        };
        return Ok(Outcome::new(report, Code::Ok));
    }
    ctx.confirm(&format!(
        "undo cleanup run {run_id}: restore up to {} rows it changed or deleted (rows changed since are left alone). Go ahead?",
        run.unrestored
    ))?;
    let tables = details.rules.iter().map(|r| r.table.clone()).collect();
    ctx.wait_for_blockers(
        &mut client,
        &Scope::new("cleanup --undo", tables, Takes::RowExclusive),
    )?;
    let mut throttle = ctx.replica_throttle();
    let outcome = undo::undo(
        &mut client,
        run_id,
        batching,
        &mut throttle,
        ctx.retry(),
        &ctx.log,
    )
    .map_err(|e| {
        e.context(format!(
            "undo of run {run_id} stopped; the batches it finished are restored and marked, so `ruleiq-db cleanup --undo {run_id}` again finishes the job"
        ))
    })?;
    if outcome.total_conflicts == 0 {
        audit::mark_undone(&mut client, run_id)?;
    } else {
        details.notes.push(format!(
            "{} rows changed after the cleanup and were left alone; resolve them and run --undo again to restore them",
            outcome.total_conflicts
        ));
    }
    details.rows_restored = Some(outcome.restored);
    details.total_conflicts = Some(outcome.total_conflicts);
    details.conflicts = Some(outcome.conflicts);
    let ok = outcome.total_conflicts == 0;
    let report = Report {
        command: "cleanup",
        ok,
        dry_run: false,
        schema_version,
        details,
    };
    Ok(Outcome::new(
        report,
        if ok { Code::Ok } else { Code::Violations },
    ))
}

/// "1 row", "5 rows".
fn rows(n: u64) -> String {
    if n == 1 {
        "1 row".into()
    } else {
        format!("{n} rows")
    }
}

/// `'text'`, `42`, `NULL`: a JSON value as a DBA reads it.
fn shown(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => "NULL".into(),
        serde_json::Value::String(s) => format!("'{s}'"),
        other => other.to_string(),
    }
}

/// "status 'Approved' → 'approved'", "row deleted (business_profile_id '…')".
fn describe(example: &Example, action: &str) -> String {
    let serde_json::Value::Object(before) = &example.before else {
        return shown(&example.before);
    };
    let parts: Vec<String> = before
        .iter()
        .map(|(column, old)| match action {
            "delete" | "skip" => format!("{column} {}", shown(old)),
            _ => format!(
                "{column} {} → {}",
                shown(old),
                shown(
                    example
                        .after
                        .get(column)
                        .unwrap_or(&serde_json::Value::Null)
                )
            ),
        })
        .collect();
    let text = parts.join(", ");
    let text = match action {
        "delete" => format!("row deleted ({text})"),
        "skip" => format!("left: {text}"),
        _ => text,
    };
    if example.cascaded {
        format!("{text} (after an earlier rule)")
    } else {
        text
    }
}

impl Details for CleanupReport {
    fn summary(&self, dry_run: bool, _schema_version: i32) -> report::Summary {
        if !self.needs_decision.is_empty() {
            let names: Vec<&str> = self
                .needs_decision
                .iter()
                .map(|d| d.constraint.as_str())
                .collect();
            return report::Summary {
                needs_decision: self
                    .needs_decision
                    .iter()
                    .map(|d| serde_json::to_value(d).unwrap_or_default())
                    .collect(),
                ..report::Summary::line(format!(
                    "needs {} decision(s): {}",
                    names.len(),
                    names.join(", ")
                ))
            };
        }
        if let Some(error) = &self.error {
            return report::Summary::of_error(error);
        }
        let line = if dry_run {
            format!("would change {} rows", self.total_rows)
        } else {
            format!(
                "changed {} rows, run {}",
                self.total_rows,
                self.run_id.as_deref().unwrap_or("?")
            )
        };
        report::Summary {
            rows: Some(self.total_rows),
            ..report::Summary::line(line)
        }
    }

    fn write_table(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let dry_run = self.rules.iter().any(|r| r.examples.is_some());
        if !self.rules.is_empty() {
            let mut header = vec!["constraint", "table", "action", "rows", "cascaded"];
            if dry_run {
                header.push("examples (old → new)");
            }
            let mut table = report::table(&header);
            for r in &self.rules {
                let mut row = vec![
                    r.constraint.clone(),
                    r.table.clone(),
                    r.action.clone(),
                    r.rows.to_string(),
                    r.cascaded_rows.to_string(),
                ];
                if let Some(examples) = &r.examples {
                    let lines: Vec<String> =
                        examples.iter().map(|e| describe(e, &r.action)).collect();
                    row.push(lines.join("\n"));
                }
                table.add_row(row);
            }
            writeln!(out, "{table}")?;
        }
        if let Some(policy) = &self.policy {
            writeln!(out, "policy: {policy}")?;
        }
        for note in &self.notes {
            writeln!(out, "note: {note}")?;
        }
        if let Some(found) = &self.blockers {
            blockers::write_table(out, found)?;
        }
        if !self.needs_decision.is_empty() {
            writeln!(out, "Needs a decision (nothing was changed):")?;
            for d in &self.needs_decision {
                writeln!(out, "- {}", d.sentence())?;
            }
            return writeln!(
                out,
                "Next: decide these rules in a policy file, then `ruleiq-db cleanup --dry-run --policy FILE`."
            );
        }
        if let (Some(error), Some(run)) = (&self.error, &self.run_id) {
            writeln!(out, "cleanup run {run} FAILED: {error}")?;
            match self.changed_tables.as_deref() {
                Some(tables) if !tables.is_empty() => {
                    writeln!(
                        out,
                        "Already changed before the failure (committed, each row recorded in {}):",
                        audit::CHANGES
                    )?;
                    let mut table = report::table(&["table", "rows changed"]);
                    for t in tables {
                        table.add_row(vec![t.table.clone(), t.rows.to_string()]);
                    }
                    writeln!(out, "{table}")?;
                }
                _ => writeln!(out, "No table was changed before the failure.")?,
            }
            if let Some(undo) = &self.undo {
                writeln!(out, "Undo: `{undo}`")?;
            }
            return Ok(());
        }
        if let Some(restored) = self.rows_restored {
            let run = self.run_id.as_deref().unwrap_or("?");
            writeln!(
                out,
                "undo of run {run}: {restored} rows restored, {} conflicts",
                self.total_conflicts.unwrap_or(0)
            )?;
            if let Some(conflicts) = self.conflicts.as_ref().filter(|c| !c.is_empty()) {
                let mut table =
                    report::table(&["table", "primary key", "reason", "cleanup left", "now"]);
                for c in conflicts {
                    table.add_row(vec![
                        c.table.clone(),
                        c.pk.clone(),
                        c.reason.clone(),
                        c.expected.to_string(),
                        c.current.to_string(),
                    ]);
                }
                writeln!(out, "{table}")?;
            }
            return Ok(());
        }
        match &self.run_id {
            Some(run) => {
                writeln!(
                    out,
                    "run {run}: {} rows changed, each recorded in {}. Undo: `ruleiq-db cleanup --undo {run}`",
                    self.total_rows,
                    audit::CHANGES
                )?;
                match (self.remaining_violations, self.violations_left) {
                    (Some(0), Some(0)) => writeln!(
                        out,
                        "No violations left. Next: `ruleiq-db migrate` can enforce the constraints."
                    )?,
                    (Some(0), Some(left)) => writeln!(
                        out,
                        "{} still break constraints the policy leaves alone: `ruleiq-db migrate` will refuse until a policy repairs them.",
                        rows(left)
                    )?,
                    (Some(remaining), _) => writeln!(
                        out,
                        "{} break covered constraints after the run. Next: `ruleiq-db cleanup` again.",
                        rows(remaining)
                    )?,
                    _ => {}
                }
                Ok(())
            }
            None if self.total_rows > 0 => {
                let skipped: u64 = self
                    .rules
                    .iter()
                    .filter(|r| r.action == Action::Skip.as_str())
                    .map(|r| r.rows)
                    .sum();
                let after = if skipped > 0 {
                    format!(
                        "; {} of skipped rules would stay, and `ruleiq-db migrate` refuses while they do",
                        rows(skipped)
                    )
                } else {
                    String::new()
                };
                writeln!(
                    out,
                    "{} rows would change. Next: `ruleiq-db cleanup` applies this (audited, undoable){after}.",
                    self.total_rows
                )
            }
            None => Ok(()),
        }
    }
}
