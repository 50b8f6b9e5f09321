//! Adopting a database another tool built (docs/design.md §4), the decision and the record: read
//! the evidence (`alembic_version`), compare the live schema with that version's shape (or,
//! without trustworthy evidence, with the version the shape fits best), classify each
//! difference, and record 001..N as applied without running them, so that `migrate` carries on
//! from there.
//!
//! Blocking differences (what 008, its rollback or cleanup needs) refuse; differences 008 does
//! not need refuse until the DBA accepts them with `--accept-drift`, and are then recorded
//! beside the history in the same transaction. Nothing here ever changes the database's own
//! objects, and no message asks the DBA to.

use super::{accepted, Difference, Evidence, Verdict};
use crate::catalog::{migrations, HISTORY_TABLE, TABLES};
use crate::db::Session;
use crate::history;
use crate::refusal::Refusal;
use anyhow::Result;
use postgres::Client;
use std::collections::BTreeMap;

/// What the DBA asked for.
#[derive(Debug, Clone, Copy)]
pub struct Request {
    /// `--version N`: compare with (and record up to) N whatever the evidence says.
    pub version: Option<i32>,
    /// `--accept-drift`: accept the differences 008 does not need.
    pub accept_drift: bool,
}

/// What comparing the database with the versions' shapes found, and what follows from it.
#[derive(Debug)]
pub struct Decision {
    /// The version the evidence names, else the one the shape fits best (0: nothing of ours).
    pub detected_version: i32,
    /// What `alembic_version` says and whether it is trusted.
    pub evidence: String,
    /// The version the differences are measured against.
    pub compared_with: i32,
    pub differences: Vec<Difference>,
    pub judgement: Judgement,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Judgement {
    /// None of ruleIQ's tables: there is nothing to adopt. The sentence says so.
    NothingToAdopt(String),
    /// Differences stop the adoption; the message says which and what the way forward is.
    Refused(String),
    /// Adopt at `version`; `why` says where the version comes from, for messages.
    Adopt { version: i32, why: String },
}

/// Where the version to compare with comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Requested,
    Evidence,
    Shape,
}

/// Refuses (exit 4) a database that already has a ruleiq-db history: there is nothing to adopt.
pub fn refuse_existing_history(applied: &[history::Applied]) -> Result<()> {
    if applied.is_empty() {
        return Ok(());
    }
    Refusal::HistoryExists(format!(
        "this database already has a ruleiq-db history (version {}, {} migrations recorded in {HISTORY_TABLE}): baseline only adopts a database without one; nothing was changed. See `ruleiq-db status`",
        history::current_version(applied),
        applied.len()
    )).fail()
}

/// Reads the evidence and the live shape, compares it with every version's and decides. Reads
/// only.
pub fn decide(client: &mut Client, request: Request) -> Result<Decision> {
    let evidence = super::read_evidence(client)?;
    let shapes = super::expected(client)?;
    let live = super::live(client)?;
    let mut decision = Decision {
        detected_version: 0,
        evidence: evidence.text.clone(),
        compared_with: 0,
        differences: Vec::new(),
        judgement: Judgement::NothingToAdopt("nothing to adopt: the database has none of ruleIQ's tables; `ruleiq-db migrate` builds the schema from scratch".into()),
    };
    if !TABLES.iter().any(|t| live.has_table(t)) {
        return Ok(decision);
    }
    let compared: BTreeMap<i32, Vec<Difference>> = shapes
        .versions()
        .filter(|v| *v > 0)
        .map(|v| (v, super::compare(&shapes, v, &live)))
        .collect();
    let detected = evidence.version.unwrap_or_else(|| best_fit(&compared));
    let (version, source) = match (request.version, evidence.version) {
        (Some(n), _) => (n, Source::Requested),
        (None, Some(v)) => (v, Source::Evidence),
        (None, None) => (detected, Source::Shape),
    };
    decision.detected_version = detected;
    decision.compared_with = version;
    decision.differences = compared[&version].clone();
    if request.accept_drift {
        decision.differences.iter_mut().for_each(Difference::accept);
    }
    let differences = &decision.differences;
    let why = origin(version, source, &evidence);
    decision.judgement = if count(differences, Verdict::Blocking) > 0 {
        Judgement::Refused(blocked_message(&why, differences, request.accept_drift))
    } else if count(differences, Verdict::NotAccepted) > 0 {
        Judgement::Refused(acceptance_message(version, &why, differences))
    } else {
        Judgement::Adopt { version, why }
    };
    Ok(decision)
}

/// Records 1..=version as applied, with refinery's names and checksums, and the accepted
/// differences, in one transaction of `session`; returns the versions recorded.
pub fn record(session: &mut Session, version: i32, differences: &[Difference]) -> Result<Vec<i32>> {
    let to_record: Vec<_> = migrations::all()
        .into_iter()
        .filter(|m| m.version() <= version)
        .collect();
    session.transaction("recording the history", |tx| {
        // The same table refinery creates, so that `migrate` reads it as its own.
        history::create_table(tx)?;
        // We hold the migration lock, but another tool could have written a history meanwhile.
        refuse_existing_history(&history::read(tx)?)?;
        history::record_adopted(tx, &to_record)?;
        accepted::record(tx, version, differences)
    })?;
    Ok(to_record.iter().map(|m| m.version()).collect())
}

/// What adopting at `version` did, in a sentence, with what comes next.
pub fn adopted_summary(version: i32, why: &str, differences: &[Difference]) -> String {
    let latest = migrations::latest_version();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shape::{self, Class};

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
