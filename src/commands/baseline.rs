//! `baseline`: adopt a database another tool built (DESIGN.md §4). Read the evidence
//! (`alembic_version`), compare the live schema with that version's shape (or, without
//! trustworthy evidence, with the version the shape fits best), classify each difference, and
//! record 001..N as applied without running them, so that `migrate` carries on from there.
//!
//! Blocking differences (what 008, its rollback or cleanup needs) refuse; differences 008 does
//! not need refuse until the DBA accepts them with `--accept-drift`, and are then recorded
//! beside the history in the same transaction. Nothing here ever changes the database's own
//! objects, and no message asks the DBA to.

use super::{Context, Outcome};
use crate::catalog::sql::quote_ident;
use crate::catalog::{migrations, HISTORY_TABLE, TABLES};
use crate::cli::BaselineArgs;
use crate::db;
use crate::exit::Code;
use crate::health::blockers::{Scope, Takes};
use crate::history;
use crate::refusal::Refusal;
use crate::report::{self, Details, Report};
use crate::shape::{self, accepted, Difference, Evidence, Verdict};
use anyhow::{Context as _, Result};
use postgres::Client;
use serde::Serialize;
use std::collections::BTreeMap;
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

/// Where the version to compare with comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Requested,
    Evidence,
    Shape,
}

pub fn run(ctx: &Context, args: &BaselineArgs) -> Result<Outcome> {
    let latest = migrations::latest_version();
    if let Some(v) = args.version {
        if migrations::get(v).is_none() {
            return Refusal::UnknownTarget(format!(
                "--version {v} does not exist: the migrations are versions 1 to {latest}; nothing was changed"
            ))
            .fail();
        }
    }
    let (_, mut client) = ctx.connect()?;
    ctx.lock_for_changes(&mut client)?;
    let applied = history::read(&mut client)?;
    ctx.journal.version(history::current_version(&applied));
    refuse_existing_history(&applied)?;

    let evidence = shape::read_evidence(&mut client)?;
    let shapes = shape::expected(&mut client)?;
    let live = shape::live(&mut client)?;
    let mut details = BaselineReport {
        detected_version: 0,
        evidence: evidence.text.clone(),
        requested_version: args.version,
        recorded: Vec::new(),
        compared_with: 0,
        differences: Vec::new(),
        accept_drift: args.accept_drift,
        summary: String::new(),
        error: None,
        exit_code: None,
        reason: None,
    };
    if !TABLES.iter().any(|t| live.has_table(t)) {
        details.summary = "nothing to adopt: the database has none of ruleIQ's tables; `ruleiq-db migrate` builds the schema from scratch".into();
        ctx.log.line(&details.summary);
        return Ok(outcome(details, true, Code::Ok, 0));
    }
    let compared: BTreeMap<i32, Vec<Difference>> = shapes
        .versions()
        .filter(|v| *v > 0)
        .map(|v| (v, shape::compare(&shapes, v, &live)))
        .collect();
    let detected = evidence.version.unwrap_or_else(|| best_fit(&compared));
    let (version, source) = match (args.version, evidence.version) {
        (Some(n), _) => (n, Source::Requested),
        (None, Some(v)) => (v, Source::Evidence),
        (None, None) => (detected, Source::Shape),
    };
    details.detected_version = detected;
    details.compared_with = version;
    details.differences = compared[&version].clone();
    if args.accept_drift {
        details.differences.iter_mut().for_each(Difference::accept);
    }

    let blocking = count(&details.differences, Verdict::Blocking);
    let to_accept = count(&details.differences, Verdict::NotAccepted);
    let why = origin(version, source, &evidence);
    if blocking > 0 {
        let message = blocked_message(&why, &details.differences, args.accept_drift);
        return Ok(refused(ctx, details, Refusal::Drift(message)));
    }
    if to_accept > 0 {
        let message = acceptance_message(version, &why, &details.differences);
        return Ok(refused(ctx, details, Refusal::Drift(message)));
    }
    // Baseline locks no ruleIQ table (it only writes the history), so only old, idle and
    // prepared transactions can hold it up.
    ctx.wait_for_blockers(
        &mut client,
        &Scope::new("baseline", Vec::new(), Takes::AccessExclusive),
    )?;
    details.recorded = record(ctx, &mut client, version, &details.differences)?;
    details.summary = adopted_summary(version, &why, latest, &details.differences);
    ctx.log.line(&details.summary);
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

fn refused(ctx: &Context, mut details: BaselineReport, refusal: Refusal) -> Outcome {
    let message = refusal.message().to_string();
    ctx.log.line(&format!("refused: {message}"));
    details.summary = message.clone();
    details.error = Some(message);
    details.exit_code = Some(refusal.code().as_i32());
    details.reason = Some(refusal.reason());
    outcome(details, false, refusal.code(), 0)
}

fn refuse_existing_history(applied: &[history::Applied]) -> Result<()> {
    if applied.is_empty() {
        return Ok(());
    }
    Refusal::HistoryExists(format!(
        "this database already has a ruleiq-db history (version {}, {} migrations recorded in {HISTORY_TABLE}): baseline only adopts a database without one; nothing was changed. See `ruleiq-db status`",
        history::current_version(applied),
        applied.len()
    ))
    .fail()
}

fn count(differences: &[Difference], verdict: Verdict) -> usize {
    differences.iter().filter(|d| d.verdict == verdict).count()
}

/// The version the shape fits best: the fewest blocking differences, then the fewest to
/// accept, then the higher version.
fn best_fit(compared: &BTreeMap<i32, Vec<Difference>>) -> i32 {
    compared
        .iter()
        .min_by_key(|(v, d)| {
            (
                count(d, Verdict::Blocking),
                count(d, Verdict::NotAccepted),
                std::cmp::Reverse(**v),
            )
        })
        .map_or(0, |(v, _)| *v)
}

/// Why this version is the one compared with, for messages.
fn origin(version: i32, source: Source, evidence: &Evidence) -> String {
    match source {
        Source::Requested => format!("version {version} (--version {version}; {})", evidence.text),
        Source::Evidence => format!("version {version} ({})", evidence.text),
        Source::Shape => format!(
            "version {version} (the shape fits it best; {})",
            evidence.text
        ),
    }
}

/// At most a few differences of one verdict, one per line, for a message.
fn listing(differences: &[Difference], verdict: Verdict) -> String {
    const SHOWN: usize = 5;
    let of: Vec<&Difference> = differences
        .iter()
        .filter(|d| d.verdict == verdict)
        .collect();
    let mut lines: Vec<String> = of
        .iter()
        .take(SHOWN)
        .map(|d| format!("  {}: {}", d.object, d.problem))
        .collect();
    if of.len() > SHOWN {
        lines.push(format!(
            "  … and {} more (all in the report)",
            of.len() - SHOWN
        ));
    }
    lines.join("\n")
}

fn blocked_message(why: &str, differences: &[Difference], accept_drift: bool) -> String {
    let blocking = count(differences, Verdict::Blocking);
    let also = count(differences, Verdict::NotAccepted);
    let accept_note = if accept_drift {
        "--accept-drift does not cover these: ruleiq-db records a version only when 008, its rollback and cleanup find what they need"
    } else {
        "--accept-drift would not cover these: ruleiq-db records a version only when 008, its rollback and cleanup find what they need"
    };
    let others = if also > 0 {
        format!(" ({also} other difference(s) 008 does not need would also need --accept-drift; see the report)")
    } else {
        String::new()
    };
    format!(
        "{why} cannot be adopted: {blocking} difference(s) concern what ruleiq-db needs:\n{}\n{accept_note}{others}. If the database is at another version, name it with `ruleiq-db baseline --version N`. Nothing was recorded; the database is unchanged",
        listing(differences, Verdict::Blocking)
    )
}

fn acceptance_message(version: i32, why: &str, differences: &[Difference]) -> String {
    let n = count(differences, Verdict::NotAccepted);
    format!(
        "{why} differs from its expected shape in {n} way(s) that 008 does not need:\n{}\nTo adopt it as it is, run `ruleiq-db baseline --accept-drift`: version {version} is recorded with these differences accepted beside the history, and `ruleiq-db status` shows them as accepted. Nothing was recorded; the database is unchanged",
        listing(differences, Verdict::NotAccepted)
    )
}

/// Records 1..=version as applied, with refinery's names and checksums, and the accepted
/// differences, in one transaction.
fn record(
    ctx: &Context,
    client: &mut Client,
    version: i32,
    differences: &[Difference],
) -> Result<Vec<i32>> {
    let to_record: Vec<_> = migrations::all()
        .into_iter()
        .filter(|m| m.version() <= version)
        .collect();
    // refinery parses applied_on as RFC 3339 whenever it reads the history.
    let applied_on = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let table = quote_ident(HISTORY_TABLE);
    db::retry_on_lock_timeout("recording the history", ctx.retry(), &ctx.log, || {
        let mut tx = client.transaction()?;
        // The same table refinery creates, so that `migrate` reads it as its own.
        tx.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {table} (version int4 PRIMARY KEY, name VARCHAR(255), applied_on VARCHAR(255), checksum VARCHAR(255))"
        ))?;
        // We hold the migration lock, but another tool could have written a history meanwhile.
        refuse_existing_history(&history::read(&mut tx)?)?;
        let insert = tx.prepare(&format!(
            "INSERT INTO {table} (version, name, applied_on, checksum) VALUES ($1, $2, $3, $4)"
        ))?;
        for m in &to_record {
            tx.execute(
                &insert,
                &[
                    &m.version(),
                    &m.name(),
                    &applied_on,
                    &m.checksum().to_string(),
                ],
            )
            .with_context(|| format!("recording V{} {}", m.version(), m.name()))?;
        }
        accepted::record(&mut tx, version, differences)?;
        tx.commit()?;
        Ok(())
    })?;
    Ok(to_record.iter().map(|m| m.version()).collect())
}

fn adopted_summary(version: i32, why: &str, latest: i32, differences: &[Difference]) -> String {
    let pending = if version + 1 == latest {
        format!("V{latest}")
    } else {
        format!("V{} to V{latest}", version + 1)
    };
    let next = if version < latest {
        format!(
            "; next, `ruleiq-db check-constraints --dry-run`, then `ruleiq-db migrate` applies {pending}"
        )
    } else {
        String::new()
    };
    let accepted = count(differences, Verdict::Accepted);
    let tolerated = count(differences, Verdict::Tolerated);
    let mut noted = Vec::new();
    if accepted > 0 {
        noted.push(format!(
            "{accepted} difference(s) accepted and kept with the history"
        ));
    }
    if tolerated > 0 {
        noted.push(format!("{tolerated} tolerated"));
    }
    let noted = if noted.is_empty() {
        String::new()
    } else {
        format!(" ({})", noted.join(", "))
    };
    format!(
        "adopted at {why}: V1 to V{version} recorded as applied without running them{noted}{next}"
    )
}

impl Details for BaselineReport {
    fn summary(&self, _dry_run: bool, schema_version: i32) -> report::Summary {
        if let Some(error) = &self.error {
            return report::Summary::of_error(error);
        }
        report::Summary::line(format!(
            "adopted at version {schema_version} ({}); differences: {}",
            self.evidence,
            report::verdict_counts(&self.differences)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shape::Class;

    fn difference(kind: Class, verdict: Verdict) -> Difference {
        Difference {
            object: format!("{verdict:?}"),
            problem: String::new(),
            kind,
            verdict,
            finding: shape::Finding::Missing,
            key: format!("{verdict:?}"),
        }
    }

    fn compared(versions: &[(i32, &[Verdict])]) -> BTreeMap<i32, Vec<Difference>> {
        versions
            .iter()
            .map(|(v, verdicts)| {
                let list = verdicts
                    .iter()
                    .map(|verdict| {
                        let kind = match verdict {
                            Verdict::Blocking => Class::Blocking,
                            Verdict::Tolerated => Class::Tolerated,
                            _ => Class::Accepted,
                        };
                        difference(kind, *verdict)
                    })
                    .collect();
                (*v, list)
            })
            .collect()
    }

    #[test]
    fn the_shape_picks_the_version_with_the_fewest_stopping_differences() {
        use Verdict::*;
        let c = compared(&[
            (1, &[Blocking, Tolerated]),
            (2, &[NotAccepted, Tolerated]),
            (3, &[NotAccepted, NotAccepted]),
            (4, &[Blocking]),
        ]);
        assert_eq!(best_fit(&c), 2);
        let tie = compared(&[
            (5, &[Tolerated]),
            (6, &[Tolerated, Tolerated]),
            (7, &[Blocking]),
        ]);
        assert_eq!(best_fit(&tie), 6, "on a tie, the higher version");
    }

    #[test]
    fn refusals_name_the_way_forward_with_ruleiq_db_only() {
        let evidence = Evidence {
            revisions: vec!["007".into()],
            version: Some(7),
            text: "alembic_version = '007'".into(),
        };
        let why = origin(7, Source::Evidence, &evidence);
        let list = vec![
            difference(Class::Blocking, Verdict::Blocking),
            difference(Class::Accepted, Verdict::NotAccepted),
        ];
        let blocked = blocked_message(&why, &list, true);
        assert!(blocked.starts_with("version 7 (alembic_version = '007') cannot be adopted"));
        assert!(blocked.contains("--accept-drift does not cover these"));
        assert!(blocked.contains("--version N"));
        let accept = acceptance_message(7, &why, &list[1..]);
        assert!(accept.contains("`ruleiq-db baseline --accept-drift`"));
        for text in [blocked, accept] {
            let lower = text.to_lowercase();
            for advice in ["create ", "drop ", "remove ", "rename it"] {
                assert!(!lower.contains(advice), "{advice:?} in {text}");
            }
        }
    }
}
