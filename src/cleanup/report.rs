//! What `cleanup` reports: per rule what it did (or, in a dry run, would do, with examples),
//! the totals, the rules that need a decision, what a failed run changed, what an undo
//! restored; and its table rendering. The keys are the report contract of docs/design.md §2.

use super::audit;
use super::decisions::NeedsDecision;
use super::failure::ChangedTable;
use super::plan::TablePlan;
use super::policy::Action;
use super::preview::{Example, TablePreview};
use super::undo::Conflict;
use crate::db::blockers::{self, Blocker};
use crate::health::estimate::Estimate;
use crate::report::{self, Details};
use crate::units::rows;
use serde::Serialize;
use std::io::Write;

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
    /// Set when Ctrl-C or SIGTERM stopped the run (exit 130).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<bool>,
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
    /// With --dry-run: the expected duration of a real run, in ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimate_ms: Option<u64>,
    /// With --dry-run: how `estimate_ms` was reached.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimate: Option<Estimate>,
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

/// Per rule of the preview that finds rows: what it would do (a dry run: with examples).
pub fn preview_rules(previews: &[TablePreview], with_examples: bool) -> Vec<RuleReport> {
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
pub fn preview_notes(plans: &[TablePlan], previews: &[TablePreview]) -> Vec<String> {
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
        if let Some(e) = &self.estimate {
            writeln!(out, "{}", e.line())?;
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
