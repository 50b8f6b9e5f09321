//! A cleanup run, in the order commands/cleanup.rs documents: [`look`] (plan, prove the
//! reads and values, preview, list the rules that need a decision, prove the writes), then
//! the command's confirmation, then [`start`] (the audit trail and the run's record) and
//! [`apply`] (the batches, the run recorded finished, the violations counted again). A
//! failure after the start is accounted for from the audit (failure.rs) and handed back with
//! the error, so the report can say what changed and how to undo it.

use super::audit;
pub use super::batches::without_jit;
use super::batches::{self, Batching, Pacing, Phase, PhaseTotals};
use super::decisions::{self, NeedsDecision};
use super::failure::{self, Accounted};
use super::plan::{self, TablePlan};
use super::policy::{Action, Policy};
use super::preview::{self, TablePreview};
use super::proof;
use super::report::{Preview, Recount, RuleReport};
use super::shares;
use crate::catalog::constraints::CATALOG;
use crate::constraints::check;
use crate::db::blockers::{Scope, Takes};
use crate::db::config::Target;
use crate::db::session::Worker;
use crate::db::{self, Query, Session};
use crate::progress::Log;
use crate::units::rows;
use anyhow::Result;
use postgres::{Client, IsolationLevel};
use std::sync::atomic::AtomicBool;
use uuid::Uuid;

/// What a run found before changing anything.
pub struct Looked {
    pub plans: Vec<TablePlan>,
    pub previews: Vec<TablePreview>,
    /// Distinct rows that would change or go.
    pub total: u64,
    /// Rules whose action would break the live schema: nothing runs until they are decided.
    pub needs_decision: Vec<NeedsDecision>,
}

impl Looked {
    /// The tables the batches lock, for the blocker check.
    pub fn scope(&self) -> Scope {
        Scope::new(
            "cleanup",
            self.plans.iter().map(|p| p.table.to_string()).collect(),
            Takes::RowExclusive,
        )
    }

    /// The confirmation asked before the first change.
    pub fn question(&self) -> String {
        let tables: Vec<String> = self
            .previews
            .iter()
            .filter(|p| p.total > 0)
            .map(|p| format!("{} {}", p.table, p.total))
            .collect();
        format!(
            "cleanup will change {} rows ({}), each recorded in schema ruleiq_audit and undoable. Go ahead?",
            self.total,
            tables.join(", ")
        )
    }
}

/// Plans, proves the plan's reads and values, and previews, in one snapshot; then lists the
/// rules that need a decision and, when there are none and rows would change, proves the
/// writes. A dry run (`run_on` None) is read-only; a real run also collects, from the preview,
/// the keys its batches will walk (into temporary tables, gone with the session), reading the
/// rows on a second session to `run_on`'s server.
pub fn look(
    client: &mut Client,
    policy: &Policy,
    run_on: Option<&Target>,
    log: &Log,
) -> Result<Looked> {
    let (plans, previews) = scan(client, policy, run_on, log)?;
    let total = previews.iter().map(|p| p.total).sum();
    let needs_decision = decisions::find(client, policy, &plans, &previews)?;
    if needs_decision.is_empty() && total > 0 {
        proof::prove_writes(client, &plans, &previews)?;
    }
    Ok(Looked {
        plans,
        previews,
        total,
        needs_decision,
    })
}

fn scan(
    client: &mut Client,
    policy: &Policy,
    run_on: Option<&Target>,
    log: &Log,
) -> Result<(Vec<TablePlan>, Vec<TablePreview>)> {
    let collect_keys = run_on.is_some();
    let mut tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(!collect_keys)
        .start()?;
    let plans = plan::build(policy, &mut tx)?;
    proof::prove_reads(&mut tx, &plans, collect_keys)?;
    let source = policy.source.as_deref().unwrap_or("the built-in policy");
    proof::prove_values(&mut tx, &plans, source)?;
    let previews = match run_on {
        None => preview::preview(&mut tx, &plans)?,
        Some(target) => {
            for plan in &plans {
                tx.batch(&plan.create_keys_table_sql())?;
            }
            let snapshot: String = tx.row("SELECT pg_export_snapshot()", &[])?.get(0);
            match reader(target) {
                Ok(mut reader) => {
                    let mut reading = db::snapshot::read_in(&mut reader, &snapshot)?;
                    let previews = preview::collect(&mut tx, Some(&mut reading), &plans)?;
                    reading.commit()?;
                    previews
                }
                // A server out of connection slots only makes the preview slower.
                Err(e) => {
                    log.line(&format!(
                        "previewing on this session alone: no second session ({e:#})"
                    ));
                    preview::collect(&mut tx, None, &plans)?
                }
            }
        }
    };
    tx.commit()?;
    if collect_keys {
        for plan in &plans {
            client.batch(&plan.index_keys_table_sql())?;
        }
    }
    Ok((plans, previews))
}

/// The preview's second session: cleanup's settings, no statement timeout (as the first).
fn reader(target: &Target) -> Result<Client> {
    let mut client = db::connect(target)?;
    without_jit(&mut client)?;
    Ok(client)
}

/// A run under way: its id, and earlier runs that were killed before they finished (this run
/// completes their work).
pub struct Started {
    pub run_id: Uuid,
    pub interrupted_runs: Vec<String>,
}

/// Creates the audit trail when absent and records a new run as started.
pub fn start(session: &mut Session, policy: &Policy, schema_version: i32) -> Result<Started> {
    audit::ensure(session)?;
    let run_id = Uuid::new_v4();
    let interrupted_runs = audit::begin_run(session, run_id, schema_version, policy)?;
    let log = session.log();
    for earlier in &interrupted_runs {
        log.line(&format!(
            "run {earlier} was interrupted; its whole batches stay recorded (undo it separately), this run repairs what is left"
        ));
    }
    log.line(&format!("cleanup run {run_id} started"));
    Ok(Started {
        run_id,
        interrupted_runs,
    })
}

/// What [`apply`] works with besides the session.
pub struct Apply<'a> {
    pub policy: &'a Policy,
    pub looked: &'a Looked,
    pub run_id: Uuid,
    pub batching: Batching,
}

/// A run that stopped on an error after it started: the error, and what it had changed.
pub struct Stopped {
    pub error: anyhow::Error,
    pub accounted: Accounted,
}

/// Runs every table's batches, records the run finished, and counts the violations again,
/// filling `done` (rules, total_rows, notes) as it goes. On an error, what the run changed is
/// read from the audit and the run marked interrupted.
pub fn apply(
    session: &mut Session,
    mut run: Apply<'_>,
    done: &mut Preview,
) -> Result<Recount, Stopped> {
    let mut started: Vec<&'static str> = Vec::new();
    let run_id = run.run_id;
    let result = (|| -> Result<Recount> {
        done.rules = run_batches(session, &mut run, &mut started)?;
        audit::finish_run(session, run_id)?;
        done.total_rows = count_records(session.client(), run_id)?;
        recount(session, run.policy, &mut done.notes)
    })();
    result.map_err(|error| {
        let target = session.target().clone();
        let log = session.log().clone();
        let reconnect = || -> Result<Client> {
            let client = db::connect(&target)?;
            for note in db::take_notes() {
                log.line(&note);
            }
            Ok(client)
        };
        let accounted = failure::account(session.client(), reconnect, run_id, &started);
        Stopped { error, accounted }
    })
}

/// Runs every table's phases; returns what each rule did.
fn run_batches(
    session: &mut Session,
    run: &mut Apply<'_>,
    started: &mut Vec<&'static str>,
) -> Result<Vec<RuleReport>> {
    let log = session.log().clone();
    let mut rules = Vec::new();
    for (plan, preview) in run.looked.plans.iter().zip(&run.looked.previews) {
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
            let bar = log.bar(preview.total, &what);
            // Deletes first, then updates; a plan without either has no such phase.
            let phases: Vec<_> = [
                (plan.delete_batch_sql(), None, &plan.deletes),
                (plan.update_batch_sql(), plan.bound_values(), &plan.stages),
            ]
            .into_iter()
            .filter_map(|(sql, values, phase_rules)| sql.map(|sql| (sql, values, phase_rules)))
            .collect();
            let phase_list: Vec<Phase> = phases
                .iter()
                .map(|(sql, values, phase_rules)| Phase {
                    sql,
                    values: *values,
                    rules: phase_rules.len(),
                    what: &what,
                })
                .collect();
            let workers = shares::hand_out(session, plan, &run.batching)?;
            let sessions = workers.len() + 1;
            let totals = run_table(
                session,
                workers,
                &phase_list,
                run.run_id,
                &mut run.batching,
                &bar,
            )?;
            let batches_run: u64 = totals.iter().map(|t| t.batches).sum();
            let longest = totals.iter().map(|t| t.longest).max().unwrap_or_default();
            for ((_, _, phase_rules), totals) in phases.iter().zip(totals) {
                for (rule, (rows, cascaded)) in phase_rules.iter().zip(totals.per_rule) {
                    did.push((rule.constraint.name, rule.action, rows, cascaded));
                }
            }
            bar.finish_and_clear();
            let on = if sessions > 1 {
                format!(" on {sessions} sessions at once")
            } else {
                String::new()
            };
            log.line(&format!(
                "{}: {batches_run} batch(es){on}, the longest held its row locks {} ms",
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
            log.line(&match action {
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

/// Runs a table's phases, one after another, on `session` over its own keys and on each of
/// `workers` over the share it was handed, all at once; returns each phase's totals over every
/// session. When one session fails, the others stop before their next batch, and the first
/// error is returned: every batch committed stays, audited, as a killed run's do.
fn run_table(
    session: &mut Session,
    workers: Vec<Worker>,
    phases: &[Phase<'_>],
    run_id: Uuid,
    batching: &mut Batching,
    bar: &indicatif::ProgressBar,
) -> Result<Vec<PhaseTotals>> {
    let stop = AtomicBool::new(false);
    *batching = batching.shared_by(workers.len() + 1);
    let (own, others) = std::thread::scope(|scope| {
        let handles: Vec<_> = workers
            .into_iter()
            .map(|mut worker| {
                let (mut batching, stop) = (*batching, &stop);
                scope.spawn(move || {
                    let mut pacing = Pacing {
                        run_id,
                        batching: &mut batching,
                        stop: Some(stop),
                    };
                    batches::run_phases(&mut worker, phases, &mut pacing, bar)
                })
            })
            .collect();
        let mut pacing = Pacing {
            run_id,
            batching,
            stop: Some(&stop),
        };
        let own = batches::run_phases(session, phases, &mut pacing, bar);
        let others: Vec<Result<Vec<PhaseTotals>>> = handles
            .into_iter()
            .map(|h| h.join().expect("a repair session panicked"))
            .collect();
        (own, others)
    });
    let mut totals = own?;
    for other in others {
        for (mine, theirs) in totals.iter_mut().zip(other?) {
            mine.merge(theirs);
        }
    }
    Ok(totals)
}

fn count_records(client: &mut Client, run_id: Uuid) -> Result<u64> {
    let n: i64 = client
        .row(
            &format!("SELECT count(*) FROM {} WHERE run_id = $1", audit::CHANGES),
            &[&run_id],
        )?
        .get(0);
    Ok(n as u64)
}

/// After the run: violations of the covered constraints (exit 3 when rows arrived while it
/// ran) and of every catalog constraint (what migrate will find, skipped rules included).
fn recount(session: &mut Session, policy: &Policy, notes: &mut Vec<String>) -> Result<Recount> {
    let all: Vec<_> = CATALOG.iter().collect();
    let target = session.target().clone();
    let log = session.log().clone();
    let findings = check::check(&target, session.client(), &all, &log)?;
    let covered = policy.covered();
    let remaining: u64 = findings
        .iter()
        .filter(|f| covered.iter().any(|c| c.name == f.name))
        .map(|f| f.violations)
        .sum();
    let left = check::total_violations(&findings);
    if remaining > 0 {
        notes.push(format!(
            "{remaining} rows break covered constraints after the run (written while it ran?); run cleanup again"
        ));
    }
    let unrepaired: Vec<String> = findings
        .iter()
        .filter(|f| f.violations > 0 && !covered.iter().any(|c| c.name == f.name))
        .map(|f| format!("{} ({})", f.name, rows(f.violations)))
        .collect();
    if !unrepaired.is_empty() {
        notes.push(format!(
            "left as the policy says: {}; `ruleiq-db migrate` refuses while rows break a constraint it adds or validates",
            unrepaired.join(", ")
        ));
    }
    Ok(Recount {
        remaining_violations: remaining,
        violations_left: left,
    })
}
