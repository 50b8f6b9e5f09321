//! The rehearsal's report: every step as it went, the policy it chose, and the totals; a
//! total whose step did not run is "not run", never a zero.

use crate::report::{self, Details, Summary};
use serde::Serialize;
use serde_json::Value;
use std::io::Write;
use std::time::Instant;

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
    /// For a dump: the roles it names that the server lacked, created NOLOGIN before loading
    /// (null: no dump, or the step did not run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roles_created: Option<Vec<String>>,
    /// The queries measured before and after 008 (empty when the measurement did not run).
    pub queries: Vec<super::queries::Comparison>,
    /// Each role that may read a renamed table, and whether it may read its compatibility view.
    pub compat_grants: Vec<super::roles::CompatGrant>,
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

    /// A step after a failed one, which never ran; `command` is what it would have run.
    pub fn not_run(name: &str, command: String) -> Step {
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

    /// A step that is not a command of its own (loading SQL, the application's queries, the
    /// standby comparison): exit code 0 or 1, and nothing for rehearse to total.
    pub fn finished(
        step: &str,
        command: String,
        ok: bool,
        started: Instant,
        summary: String,
        report: Value,
    ) -> Step {
        Step {
            step: step.to_string(),
            command,
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

    /// A step that is not a command of its own and failed with `error`.
    pub fn failed(step: &str, command: String, started: Instant, error: &anyhow::Error) -> Step {
        Step::finished(
            step,
            command,
            false,
            started,
            format!("{error:#}"),
            error_report(error),
        )
    }

    /// Loading a file of SQL (the fixture or a dump) with psql.
    pub fn loaded(name: &str, what: &str, started: Instant, result: anyhow::Result<()>) -> Step {
        let (ok, summary, report) = match result {
            Ok(()) => (
                true,
                format!("loaded {what}"),
                serde_json::json!({ "loaded": what }),
            ),
            Err(e) => (false, format!("{e:#}"), error_report(&e)),
        };
        Step::finished(name, loading(what), ok, started, summary, report)
    }
}

/// Loading `what` (the fixture, a dump), as its step's `command`.
pub fn loading(what: &str) -> String {
    format!("psql -f {what}")
}

/// The report of a step that ended in an error.
pub fn error_report(e: &anyhow::Error) -> Value {
    serde_json::json!({ "error": format!("{e:#}") })
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
        super::report_measured::write(
            super::report_measured::Measured {
                roles_created: &self.roles_created,
                queries: &self.queries,
                compat_grants: &self.compat_grants,
            },
            out,
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
}
