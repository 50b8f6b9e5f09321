//! `baseline`: adopt a database another tool built (docs/design.md §4). The decision and the record
//! are the adopt engine's (`crate::shape::adopt`); this parses the options, calls it under the
//! migration lock and builds the report.

use super::{Outcome, Settings};
use crate::catalog::migrations;
use crate::cli::BaselineArgs;
use crate::db::blockers::{Scope, Takes};
use crate::exit::Code;
use crate::history;
use crate::refusal::Refusal;
use crate::report::{self, Details, Report};
use crate::shape::adopt::{self, Judgement, Request};
use crate::shape::{Difference, Verdict};
use anyhow::Result;
use serde::Serialize;
use std::io::Write;

#[derive(Debug, Serialize)]
pub struct BaselineReport {
    /// The version the evidence names, else the one the shape fits best (0: nothing of ours).
    pub detected_version: i32,
    /// What `alembic_version` says and whether it is trusted.
    pub evidence: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_version: Option<i32>,
    /// The versions recorded as applied by this run.
    pub recorded: Vec<i32>,
    /// The version the differences are measured against.
    pub compared_with: i32,
    pub differences: Vec<Difference>,
    /// Whether `--accept-drift` was given.
    pub accept_drift: bool,
    pub summary: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The refusal's reason (`drift`), as in a failure document.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

pub fn run(settings: &Settings, args: &BaselineArgs) -> Result<Outcome> {
    let latest = migrations::latest_version();
    if let Some(v) = args.version {
        if migrations::get(v).is_none() {
            return Refusal::UnknownTarget(format!(
                "--version {v} does not exist: the migrations are versions 1 to {latest}; nothing was changed"
            )).fail();
        }
    }
    let (target, client) = settings.connect()?;
    let mut session = settings.begin_session(target, client)?;
    let applied = history::read(session.client())?;
    settings.journal.version(history::current_version(&applied));
    adopt::refuse_existing_history(&applied)?;

    let request = Request {
        version: args.version,
        accept_drift: args.accept_drift,
    };
    let decision = adopt::decide(session.client(), request)?;
    let mut details = BaselineReport {
        detected_version: decision.detected_version,
        evidence: decision.evidence,
        requested_version: args.version,
        recorded: Vec::new(),
        compared_with: decision.compared_with,
        differences: decision.differences,
        accept_drift: args.accept_drift,
        summary: String::new(),
        error: None,
        exit_code: None,
        reason: None,
    };
    let (version, why) = match decision.judgement {
        Judgement::NothingToAdopt(summary) => {
            settings.log.line(&summary);
            details.summary = summary;
            return Ok(outcome(details, true, Code::Ok, 0));
        }
        Judgement::Refused(message) => {
            return Ok(refused(settings, details, Refusal::Drift(message)))
        }
        Judgement::Adopt { version, why } => (version, why),
    };
    // Baseline locks no ruleIQ table (it only writes the history), so only old, idle and
    // prepared transactions can hold it up.
    let scope = Scope::new("baseline", Vec::new(), Takes::AccessExclusive);
    details.recorded = session.locking(&scope, |session| {
        adopt::record(session, version, &details.differences)
    })?;
    details.summary = adopt::adopted_summary(version, &why, &details.differences);
    settings.log.line(&details.summary);
    Ok(outcome(details, true, Code::Ok, version))
}

fn outcome(details: BaselineReport, ok: bool, code: Code, schema_version: i32) -> Outcome {
    Outcome::new(
        Report {
            command: "baseline",
            ok,
            dry_run: false,
            schema_version,
            details,
        },
        code,
    )
}

fn refused(settings: &Settings, mut details: BaselineReport, refusal: Refusal) -> Outcome {
    let message = refusal.message().to_string();
    settings.log.line(&format!("refused: {message}"));
    details.summary = message.clone();
    details.error = Some(message);
    details.exit_code = Some(refusal.code().as_i32());
    details.reason = Some(refusal.reason());
    outcome(details, false, refusal.code(), 0)
}

impl Details for BaselineReport {
    fn summary(&self, _dry_run: bool, schema_version: i32) -> report::Summary {
        if let Some(error) = &self.error {
            return report::Summary::of_error(error);
        }
        report::Summary::line(format!(
            "adopted at version {schema_version} ({}); differences: {}",
            self.evidence,
            crate::shape::verdict_counts(&self.differences)
        ))
    }

    fn write_table(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let recorded = match (self.recorded.first(), self.recorded.last()) {
            (Some(first), Some(last)) => format!("V{first} to V{last}"),
            _ => "nothing".into(),
        };
        writeln!(out, "evidence: {}", self.evidence)?;
        writeln!(
            out,
            "detected version: {}; recorded: {recorded}",
            self.detected_version
        )?;
        writeln!(out, "{}", self.summary)?;
        if self.differences.is_empty() {
            if self.compared_with > 0 {
                writeln!(
                    out,
                    "No difference from the shape of version {}.",
                    self.compared_with
                )?;
            }
            return Ok(());
        }
        writeln!(
            out,
            "Differences from the shape of version {}:",
            self.compared_with
        )?;
        let mut t = report::table(&["object", "difference", "kind", "verdict"]);
        for d in &self.differences {
            t.add_row(vec![
                d.object.clone(),
                d.problem.clone(),
                d.kind.as_str().to_string(),
                verdict_text(d.verdict).to_string(),
            ]);
        }
        writeln!(out, "{t}")
    }
}

fn verdict_text(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::NotAccepted => "needs --accept-drift",
        other => other.as_str(),
    }
}
