//! A `cleanup --undo RUN_ID` run: [`find`] reads what the audit holds of the run, then (after
//! the command's confirmation and blocker wait) [`restore`] puts its rows back (undo.rs) and
//! marks the run undone once nothing is left in conflict.

use super::audit::{self, Run};
use super::batches::Batching;
use super::report::RuleReport;
use super::undo::{self, UndoOutcome};
use crate::db::Session;
use anyhow::{bail, Result};
use postgres::Client;
use uuid::Uuid;

/// The run to undo as the audit records it, and per rule what it changed.
pub struct Found {
    pub run: Run,
    pub rules: Vec<RuleReport>,
}

/// Reads run `run_id` from the audit; an error naming the recent runs when there is none.
pub fn find(client: &mut Client, run_id: Uuid) -> Result<Found> {
    if !audit::exists(client)? {
        bail!("no cleanup run {run_id}: no cleanup has ever changed this database (schema ruleiq_audit does not exist)");
    }
    let Some(run) = audit::find_run(client, run_id)? else {
        let recent = audit::recent_runs(client, 5)?;
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
    let rules = audit::run_rules(client, run_id)?
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
    Ok(Found { run, rules })
}

/// Restores what run `run_id` changed; marks the run undone when no row was left in conflict.
pub fn restore(session: &mut Session, run_id: Uuid, batching: Batching) -> Result<UndoOutcome> {
    let outcome = undo::undo(session, run_id, batching).map_err(|e| {
        e.context(format!(
            "undo of run {run_id} stopped; the batches it finished are restored and marked, so `ruleiq-db cleanup --undo {run_id}` again finishes the job"
        ))
    })?;
    if outcome.total_conflicts == 0 {
        audit::mark_undone(session, run_id)?;
    }
    Ok(outcome)
}
