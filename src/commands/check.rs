//! `check-constraints`: name every row that would break the catalog constraints, and (without
//! --dry-run) validate the NOT VALID constraints that nothing violates any more.

use super::{Outcome, Settings};
use crate::catalog::constraints::{self, Constraint, CATALOG};
use crate::cli::CheckArgs;
use crate::constraints::check::{self, ConstraintState, Finding};
use crate::constraints::live::{self, LiveSince};
use crate::constraints::validate;
use crate::db::Connection;
use crate::exit::Code;
use crate::health::estimate::Estimate;
use crate::history;
use crate::refusal::Refusal;
use crate::report::{self, Details, Report};
use anyhow::Result;
use serde::Serialize;
use std::io::Write;

#[derive(Debug, Serialize)]
pub struct CheckReport {
    pub constraints: Vec<Finding>,
    pub total_violations: u64,
    /// Violating rows written since the last completed cleanup run (or within --live-window).
    pub total_live_violations: u64,
    /// From when on a violating row counts as live, and why.
    pub live_since: LiveSince,
    /// Constraints this run validated (always empty with --dry-run).
    pub validated: Vec<&'static str>,
    /// With --dry-run: the expected duration of a real run (the check, then the VALIDATE of
    /// the NOT VALID constraints nothing violates), in ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimate_ms: Option<u64>,
    /// With --dry-run: how `estimate_ms` was reached.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimate: Option<Estimate>,
    /// Whether every catalog constraint was checked (no --constraint filter): only then does
    /// "no violations" mean migrate can enforce them.
    #[serde(skip)]
    pub all_checked: bool,
}

/// The catalog entries named by `--constraint`, or all of them.
pub fn select(names: &[String]) -> Result<Vec<&'static Constraint>> {
    if names.is_empty() {
        return Ok(CATALOG.iter().collect());
    }
    let mut selected = Vec::new();
    for name in names {
        match constraints::find(name) {
            Some(c) if !selected.contains(&c) => selected.push(c),
            Some(_) => {}
            None => {
                return Refusal::UnknownConstraint(format!(
                    "unknown constraint '{name}'; the catalog has: {}",
                    constraints::names().join(", ")
                ))
                .fail()
            }
        }
    }
    Ok(selected)
}

pub fn run(settings: &Settings, args: &CheckArgs) -> Result<Outcome> {
    let selected = select(&args.constraints)?;
    let (target, client) = settings.connect()?;
    let mut conn = if args.dry_run {
        Connection::reading(client)
    } else {
        Connection::changing(settings.begin_session(target.clone(), client)?)
    };
    let schema_version = history::current_version(&history::read(conn.client())?);
    settings.journal.version(schema_version);
    let started = std::time::Instant::now();
    let check::Checked {
        mut findings,
        live_since,
        timed,
    } = check::check_live(
        &target,
        conn.client(),
        &selected,
        &settings.log,
        args.live_window,
    )?;
    let mut validated = Vec::new();
    let clean: Vec<&'static Constraint> = findings
        .iter()
        .filter(|f| f.violations == 0 && f.state == ConstraintState::NotValid)
        .map(Finding::constraint)
        .collect();
    let checking = started.elapsed();
    let estimate = if args.dry_run {
        Some(Estimate::of_check(
            conn.client(),
            Some(&target),
            checking,
            &timed,
            &clean,
        )?)
    } else {
        None
    };
    if let Some(session) = conn.session() {
        if !clean.is_empty() {
            let outcome = validate::validate_not_valid(session, Some(&clean))?;
            validated = outcome.validated;
            // A row may have arrived between the count and VALIDATE: count again those blocked.
            if !outcome.blocked.is_empty() {
                let recount = check::check_live(
                    &target,
                    session.client(),
                    &outcome.blocked,
                    &settings.log,
                    args.live_window,
                )?;
                for fresh in recount.findings {
                    if let Some(f) = findings.iter_mut().find(|f| f.name == fresh.name) {
                        *f = fresh;
                    }
                }
            }
            for f in findings.iter_mut().filter(|f| validated.contains(&f.name)) {
                f.state = ConstraintState::Valid;
            }
        }
    }
    let total = check::total_violations(&findings);
    let total_live = check::total_live_violations(&findings);
    let code = if total > 0 {
        Code::Violations
    } else {
        Code::Ok
    };
    let report = Report {
        command: "check-constraints",
        ok: total == 0,
        dry_run: args.dry_run,
        schema_version,
        details: CheckReport {
            constraints: findings,
            total_violations: total,
            total_live_violations: total_live,
            live_since,
            validated,
            estimate_ms: estimate.as_ref().map(|e| e.total_ms),
            estimate,
            all_checked: selected.len() == CATALOG.len(),
        },
    };
    Ok(Outcome::new(report, code))
}

/// The findings table, most violated first; shared with `migrate`'s blocked preflight.
pub fn write_findings(out: &mut dyn Write, findings: &[Finding]) -> std::io::Result<()> {
    let mut sorted: Vec<&Finding> = findings.iter().collect();
    sorted.sort_by(|a, b| b.violations.cmp(&a.violations).then(a.name.cmp(b.name)));
    let mut table = report::table(&[
        "constraint",
        "table",
        "kind",
        "state",
        "violations",
        "live",
        "sample primary keys",
    ]);
    for f in sorted {
        let sample = if !f.checked {
            "(table absent)".to_string()
        } else if f.sample.is_empty() {
            "-".to_string()
        } else {
            // Three keys keep the table readable; JSON and YAML carry all ten.
            let shown: Vec<&str> = f.sample.iter().take(3).map(String::as_str).collect();
            let hidden = f.violations.saturating_sub(shown.len() as u64);
            let more = if hidden > 0 {
                format!("\n… and {hidden} more")
            } else {
                String::new()
            };
            format!("{}{more}", shown.join("\n"))
        };
        table.add_row(vec![
            f.name.to_string(),
            f.table.to_string(),
            f.kind.as_str().to_string(),
            f.state.as_str().to_string(),
            f.violations.to_string(),
            f.live_violations.to_string(),
            sample,
        ]);
    }
    writeln!(out, "{table}")
}

impl Details for CheckReport {
    fn summary(&self, _dry_run: bool, _schema_version: i32) -> report::Summary {
        let line = match self.total_violations {
            0 => format!("no row violates the {} constraints", self.constraints.len()),
            total => format!(
                "{total} violating rows across {} constraints",
                self.constraints.iter().filter(|c| c.violations > 0).count()
            ),
        };
        report::Summary {
            violations: Some(self.total_violations),
            ..report::Summary::line(line)
        }
    }

    fn write_table(&self, out: &mut dyn Write) -> std::io::Result<()> {
        write_findings(out, &self.constraints)?;
        if !self.validated.is_empty() {
            writeln!(out, "validated: {}", self.validated.join(", "))?;
        }
        if let Some(e) = &self.estimate {
            writeln!(out, "{}", e.line())?;
        }
        if self.total_live_violations > 0 {
            writeln!(
                out,
                "{}.",
                live::meaning(self.total_live_violations, &self.live_since)
            )?;
        }
        if self.total_violations > 0 {
            writeln!(
                out,
                "{} rows violate the constraints. Next: `ruleiq-db cleanup --dry-run` shows how the policy would repair them.",
                self.total_violations
            )
        } else if self.all_checked {
            writeln!(
                out,
                "No violations. Next: `ruleiq-db migrate` can enforce the constraints."
            )
        } else {
            writeln!(
                out,
                "No violations of the constraints checked. Next: `ruleiq-db check-constraints --dry-run` checks them all, as `ruleiq-db migrate` will."
            )
        }
    }
}
