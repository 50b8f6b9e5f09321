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
use crate::report::{self, Details, Failure};
use crate::units::rows;
use serde::Serialize;
use std::io::Write;

/// What `cleanup` reports, one case per way a run ends; each renders its own table. The JSON
/// and YAML keys are those of [`Wire`], the same for every case.
#[derive(Debug)]
pub enum CleanupReport {
    /// `--dry-run`: what the policy would do, and who would make the batches wait.
    DryRun(DryRun),
    /// A run that found nothing to repair: nothing was changed.
    NothingToDo(Preview),
    /// Rules need a decision in a policy file: refused, nothing was changed.
    NeedsDecision(Undecided),
    /// The batches ran and the violations were counted again.
    Applied(Applied),
    /// A run that failed (or was interrupted) after it started: what it had changed.
    Failed(Failed),
    /// `--undo RUN_ID`: what was put back.
    Undone(Undone),
}

/// What the look before a run found: the policy's rules with their rows, and notes.
#[derive(Debug, Default)]
pub struct Preview {
    /// "built-in", or the policy file that overrode it.
    pub policy: Option<String>,
    pub rules: Vec<RuleReport>,
    /// Distinct rows changed or deleted (one audit record each); for a dry run, that would be.
    pub total_rows: u64,
    pub notes: Vec<String>,
}

#[derive(Debug)]
pub struct DryRun {
    pub preview: Preview,
    /// Sessions that would make the batches wait for their locks.
    pub blockers: Vec<Blocker>,
    /// How long a real run is expected to take, and what that rests on.
    pub estimate: Estimate,
}

#[derive(Debug)]
pub struct Undecided {
    pub preview: Preview,
    /// Rules whose built-in action would break the live schema (NULL into a NOT NULL
    /// column): nothing runs until a policy file decides them.
    pub needs_decision: Vec<NeedsDecision>,
    /// The refusal's reason (`needs_decision`), as in a failure document.
    pub reason: &'static str,
}

#[derive(Debug)]
pub struct Applied {
    pub run_id: String,
    pub preview: Preview,
    pub recount: Recount,
    /// Earlier runs that were killed before they finished; this run completes their work.
    pub interrupted_runs: Vec<String>,
}

/// Violations counted again after a run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Recount {
    /// Of the constraints the policy covers.
    pub remaining_violations: u64,
    /// Of every catalog constraint, skipped ones included: what `migrate`'s preflight will find.
    pub violations_left: u64,
}

#[derive(Debug)]
pub struct Failed {
    pub run_id: String,
    pub preview: Preview,
    pub failure: Failure,
    /// Every table the run had already changed (committed, audited).
    pub changed_tables: Vec<ChangedTable>,
    /// The command that undoes what it changed (None when it changed nothing).
    pub undo: Option<String>,
    /// Ctrl-C or SIGTERM stopped the run (exit 130).
    pub interrupted: bool,
    pub interrupted_runs: Vec<String>,
}

#[derive(Debug)]
pub struct Undone {
    /// The run undone.
    pub run_id: String,
    /// What the run did, per rule.
    pub rules: Vec<RuleReport>,
    /// The records the run wrote.
    pub total_rows: u64,
    pub rows_restored: u64,
    /// Rows undo left alone because they changed since the cleanup (the first 100).
    pub conflicts: Vec<Conflict>,
    pub total_conflicts: u64,
    pub notes: Vec<String>,
}

/// The report's keys, in their order, whichever the case (docs/design.md §2).
#[derive(Serialize)]
struct Wire<'a> {
    /// The run that changed rows (null for a dry run or when nothing needed changing); with
    /// --undo, the run undone.
    run_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy: Option<&'a str>,
    rules: &'a [RuleReport],
    total_rows: u64,
    needs_decision: &'a [NeedsDecision],
    #[serde(skip_serializing_if = "Option::is_none")]
    remaining_violations: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    violations_left: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    changed_tables: Option<&'a [ChangedTable]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    undo: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interrupted: Option<bool>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    interrupted_runs: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    rows_restored: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    conflicts: Option<&'a [Conflict]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    total_conflicts: Option<u64>,
    notes: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    blockers: Option<&'a [Blocker]>,
    /// With --dry-run: the expected duration of a real run, in ms, and how it was reached.
    #[serde(skip_serializing_if = "Option::is_none")]
    estimate_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    estimate: Option<&'a Estimate>,
}

impl<'a> Wire<'a> {
    fn of(preview: &'a Preview) -> Wire<'a> {
        Wire {
            run_id: None,
            policy: preview.policy.as_deref(),
            rules: &preview.rules,
            total_rows: preview.total_rows,
            needs_decision: &[],
            remaining_violations: None,
            violations_left: None,
            error: None,
            exit_code: None,
            reason: None,
            changed_tables: None,
            undo: None,
            interrupted: None,
            interrupted_runs: &[],
            rows_restored: None,
            conflicts: None,
            total_conflicts: None,
            notes: &preview.notes,
            blockers: None,
            estimate_ms: None,
            estimate: None,
        }
    }
}

impl Serialize for CleanupReport {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let wire = match self {
            CleanupReport::DryRun(d) => Wire {
                blockers: Some(&d.blockers),
                estimate_ms: Some(d.estimate.total_ms),
                estimate: Some(&d.estimate),
                ..Wire::of(&d.preview)
            },
            CleanupReport::NothingToDo(p) => Wire::of(p),
            CleanupReport::NeedsDecision(u) => Wire {
                needs_decision: &u.needs_decision,
                reason: Some(u.reason),
                ..Wire::of(&u.preview)
            },
            CleanupReport::Applied(a) => Wire {
                run_id: Some(&a.run_id),
                remaining_violations: Some(a.recount.remaining_violations),
                violations_left: Some(a.recount.violations_left),
                interrupted_runs: &a.interrupted_runs,
                ..Wire::of(&a.preview)
            },
            CleanupReport::Failed(f) => Wire {
                run_id: Some(&f.run_id),
                error: Some(&f.failure.error),
                exit_code: Some(f.failure.exit_code),
                reason: f.failure.reason,
                changed_tables: Some(&f.changed_tables),
                undo: f.undo.as_deref(),
                interrupted: f.interrupted.then_some(true),
                interrupted_runs: &f.interrupted_runs,
                ..Wire::of(&f.preview)
            },
            CleanupReport::Undone(u) => Wire {
                run_id: Some(&u.run_id),
                policy: None,
                rules: &u.rules,
                total_rows: u.total_rows,
                rows_restored: Some(u.rows_restored),
                conflicts: Some(&u.conflicts),
                total_conflicts: Some(u.total_conflicts),
                notes: &u.notes,
                ..Wire::of(&EMPTY)
            },
        };
        wire.serialize(serializer)
    }
}

/// The preview of an undo, which has no policy of its own.
static EMPTY: Preview = Preview {
    policy: None,
    rules: Vec::new(),
    total_rows: 0,
    notes: Vec::new(),
};

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
        let (total_rows, run_id) = match self {
            CleanupReport::NeedsDecision(u) => return u.summary(),
            CleanupReport::Failed(f) => return report::Summary::of_error(&f.failure.error),
            CleanupReport::DryRun(DryRun { preview, .. }) | CleanupReport::NothingToDo(preview) => {
                (preview.total_rows, None)
            }
            CleanupReport::Applied(a) => (a.preview.total_rows, Some(a.run_id.as_str())),
            CleanupReport::Undone(u) => (u.total_rows, Some(u.run_id.as_str())),
        };
        let line = if dry_run {
            format!("would change {total_rows} rows")
        } else {
            format!("changed {total_rows} rows, run {}", run_id.unwrap_or("?"))
        };
        report::Summary {
            rows: Some(total_rows),
            ..report::Summary::line(line)
        }
    }

    fn write_table(&self, out: &mut dyn Write) -> std::io::Result<()> {
        match self {
            CleanupReport::DryRun(d) => d.write_table(out),
            CleanupReport::NothingToDo(p) => p.write_table(out),
            CleanupReport::NeedsDecision(u) => u.write_table(out),
            CleanupReport::Applied(a) => a.write_table(out),
            CleanupReport::Failed(f) => f.write_table(out),
            CleanupReport::Undone(u) => u.write_table(out),
        }
    }
}

/// The rules as a table (with examples, old → new, when a dry run has them).
fn write_rules(out: &mut dyn Write, rules: &[RuleReport]) -> std::io::Result<()> {
    if rules.is_empty() {
        return Ok(());
    }
    let with_examples = rules.iter().any(|r| r.examples.is_some());
    let mut header = vec!["constraint", "table", "action", "rows", "cascaded"];
    if with_examples {
        header.push("examples (old → new)");
    }
    let mut table = report::table(&header);
    for r in rules {
        let mut row = vec![
            r.constraint.clone(),
            r.table.clone(),
            r.action.clone(),
            r.rows.to_string(),
            r.cascaded_rows.to_string(),
        ];
        if let Some(examples) = &r.examples {
            let lines: Vec<String> = examples.iter().map(|e| describe(e, &r.action)).collect();
            row.push(lines.join("\n"));
        }
        table.add_row(row);
    }
    writeln!(out, "{table}")
}

fn write_notes(out: &mut dyn Write, notes: &[String]) -> std::io::Result<()> {
    for note in notes {
        writeln!(out, "note: {note}")?;
    }
    Ok(())
}

impl Preview {
    /// The rules, the policy and the notes: how every case but an undo begins.
    fn write_head(&self, out: &mut dyn Write) -> std::io::Result<()> {
        write_rules(out, &self.rules)?;
        if let Some(policy) = &self.policy {
            writeln!(out, "policy: {policy}")?;
        }
        write_notes(out, &self.notes)
    }

    /// What a run would change, when there is anything.
    fn write_would_change(&self, out: &mut dyn Write) -> std::io::Result<()> {
        if self.total_rows == 0 {
            return Ok(());
        }
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

    fn write_table(&self, out: &mut dyn Write) -> std::io::Result<()> {
        self.write_head(out)?;
        self.write_would_change(out)
    }
}

impl DryRun {
    fn write_table(&self, out: &mut dyn Write) -> std::io::Result<()> {
        self.preview.write_head(out)?;
        blockers::write_table(out, &self.blockers)?;
        writeln!(out, "{}", self.estimate.line())?;
        self.preview.write_would_change(out)
    }
}

impl Undecided {
    fn summary(&self) -> report::Summary {
        let names: Vec<&str> = self
            .needs_decision
            .iter()
            .map(|d| d.constraint.as_str())
            .collect();
        report::Summary {
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
        }
    }

    fn write_table(&self, out: &mut dyn Write) -> std::io::Result<()> {
        self.preview.write_head(out)?;
        writeln!(out, "Needs a decision (nothing was changed):")?;
        for d in &self.needs_decision {
            writeln!(out, "- {}", d.sentence())?;
        }
        writeln!(
            out,
            "Next: decide these rules in a policy file, then `ruleiq-db cleanup --dry-run --policy FILE`."
        )
    }
}

impl Applied {
    fn write_table(&self, out: &mut dyn Write) -> std::io::Result<()> {
        self.preview.write_head(out)?;
        let run = &self.run_id;
        writeln!(
            out,
            "run {run}: {} rows changed, each recorded in {}. Undo: `ruleiq-db cleanup --undo {run}`",
            self.preview.total_rows,
            audit::CHANGES
        )?;
        match (
            self.recount.remaining_violations,
            self.recount.violations_left,
        ) {
            (0, 0) => writeln!(
                out,
                "No violations left. Next: `ruleiq-db migrate` can enforce the constraints."
            ),
            (0, left) => writeln!(
                out,
                "{} still break constraints the policy leaves alone: `ruleiq-db migrate` will refuse until a policy repairs them.",
                rows(left)
            ),
            (remaining, _) => writeln!(
                out,
                "{} break covered constraints after the run. Next: `ruleiq-db cleanup` again.",
                rows(remaining)
            ),
        }
    }
}

impl Failed {
    fn write_table(&self, out: &mut dyn Write) -> std::io::Result<()> {
        self.preview.write_head(out)?;
        writeln!(
            out,
            "cleanup run {} FAILED: {}",
            self.run_id, self.failure.error
        )?;
        if self.changed_tables.is_empty() {
            writeln!(out, "No table was changed before the failure.")?;
        } else {
            writeln!(
                out,
                "Already changed before the failure (committed, each row recorded in {}):",
                audit::CHANGES
            )?;
            let mut table = report::table(&["table", "rows changed"]);
            for t in &self.changed_tables {
                table.add_row(vec![t.table.clone(), t.rows.to_string()]);
            }
            writeln!(out, "{table}")?;
        }
        if let Some(undo) = &self.undo {
            writeln!(out, "Undo: `{undo}`")?;
        }
        Ok(())
    }
}

impl Undone {
    fn write_table(&self, out: &mut dyn Write) -> std::io::Result<()> {
        write_rules(out, &self.rules)?;
        write_notes(out, &self.notes)?;
        writeln!(
            out,
            "undo of run {}: {} rows restored, {} conflicts",
            self.run_id, self.rows_restored, self.total_conflicts
        )?;
        if !self.conflicts.is_empty() {
            let mut table =
                report::table(&["table", "primary key", "reason", "cleanup left", "now"]);
            for c in &self.conflicts {
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
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(report: &CleanupReport) -> Vec<String> {
        match serde_json::to_value(report).unwrap() {
            serde_json::Value::Object(map) => map.keys().cloned().collect(),
            other => panic!("not an object: {other}"),
        }
    }

    fn preview() -> Preview {
        Preview {
            policy: Some("built-in".into()),
            ..Preview::default()
        }
    }

    /// The keys each case had when the report was one struct of optional fields, in order.
    #[test]
    fn every_case_keeps_the_keys_of_the_report_contract() {
        let head = ["run_id", "policy", "rules", "total_rows", "needs_decision"];
        let with = |rest: &[&str]| -> Vec<String> {
            head.iter().chain(rest).map(|k| k.to_string()).collect()
        };
        let dry = CleanupReport::DryRun(DryRun {
            preview: preview(),
            blockers: Vec::new(),
            estimate: Estimate::default(),
        });
        assert_eq!(
            keys(&dry),
            with(&["notes", "blockers", "estimate_ms", "estimate"])
        );
        assert_eq!(
            keys(&CleanupReport::NothingToDo(preview())),
            with(&["notes"])
        );
        let undecided = CleanupReport::NeedsDecision(Undecided {
            preview: preview(),
            needs_decision: Vec::new(),
            reason: "needs_decision",
        });
        assert_eq!(keys(&undecided), with(&["reason", "notes"]));
        let applied = CleanupReport::Applied(Applied {
            run_id: "r".into(),
            preview: preview(),
            recount: Recount::default(),
            interrupted_runs: vec!["old".into()],
        });
        assert_eq!(
            keys(&applied),
            with(&[
                "remaining_violations",
                "violations_left",
                "interrupted_runs",
                "notes"
            ])
        );
        let failed = CleanupReport::Failed(Failed {
            run_id: "r".into(),
            preview: preview(),
            failure: Failure {
                error: "e".into(),
                exit_code: 130,
                reason: None,
            },
            changed_tables: Vec::new(),
            undo: Some("ruleiq-db cleanup --undo r".into()),
            interrupted: true,
            interrupted_runs: Vec::new(),
        });
        assert_eq!(
            keys(&failed),
            with(&[
                "error",
                "exit_code",
                "changed_tables",
                "undo",
                "interrupted",
                "notes"
            ])
        );
        let undone = CleanupReport::Undone(Undone {
            run_id: "r".into(),
            rules: Vec::new(),
            total_rows: 0,
            rows_restored: 0,
            conflicts: Vec::new(),
            total_conflicts: 0,
            notes: Vec::new(),
        });
        assert_eq!(
            keys(&undone),
            [
                "run_id",
                "rules",
                "total_rows",
                "needs_decision",
                "rows_restored",
                "conflicts",
                "total_conflicts",
                "notes"
            ]
        );
    }
}
