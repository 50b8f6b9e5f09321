//! `baseline`: adopt a database another tool built. Find the highest version whose complete
//! shape it has and record 001..N as applied, without running them, so that `migrate` carries
//! on from there.
//!
//! A version is recorded only when nothing stops it: every object of the version is there
//! (extra tables, columns and indexes are listed and allowed; columns already renamed by hand
//! are allowed because 008 accepts them), and no object of a later plain-SQL migration is there
//! either, since `migrate` would then try to create it again and fail. When no version passes,
//! nothing is recorded and the report lists the differences against the closest version (the
//! fewest stopping differences; the higher one on a tie), which is the list of what to fix.

use super::{Context, Outcome};
use crate::catalog::sql::quote_ident;
use crate::catalog::{migrations, HISTORY_TABLE};
use crate::cli::BaselineArgs;
use crate::db;
use crate::exit::{refuse, Code};
use crate::health::blockers::{Scope, Takes};
use crate::history;
use crate::report::{self, Details, Report};
use crate::shape::{self, Difference, Kind};
use anyhow::{Context as _, Result};
use postgres::Client;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;

#[derive(Debug, Serialize)]
pub struct BaselineReport {
    /// The highest version whose every object the database has (0: none).
    pub detected_version: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_version: Option<i32>,
    /// The versions recorded as applied by this run.
    pub recorded: Vec<i32>,
    /// The version the differences are measured against.
    pub compared_with: i32,
    pub differences: Vec<Difference>,
    pub summary: String,
}

/// What to do with the database, decided from its differences against every version.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// None of the objects ruleIQ's migrations create.
    NothingToAdopt,
    Adopt(i32),
    Refuse {
        against: i32,
        reason: String,
    },
}

pub fn run(ctx: &Context, args: &BaselineArgs) -> Result<Outcome> {
    let latest = migrations::latest_version();
    if let Some(v) = args.version {
        if migrations::get(v).is_none() {
            return refuse(format!(
                "--version {v} does not exist: the migrations are versions 1 to {latest}; nothing was changed"
            ));
        }
    }
    let (_, mut client) = ctx.connect()?;
    ctx.lock_for_changes(&mut client)?;
    let applied = history::read(&mut client)?;
    ctx.journal.version(history::current_version(&applied));
    refuse_existing_history(&applied)?;

    let shapes = shape::expected(&mut client)?;
    let live = shape::live(&mut client)?;
    let compared: BTreeMap<i32, Vec<Difference>> = shapes
        .versions()
        .map(|v| (v, shape::compare(&shapes, v, &live)))
        .collect();
    let detected = detected(&compared);
    let verdict = decide(&compared, args.version);
    let against = match &verdict {
        Verdict::NothingToAdopt => 0,
        Verdict::Adopt(v) => *v,
        Verdict::Refuse { against, .. } => *against,
    };
    let mut details = BaselineReport {
        detected_version: detected,
        requested_version: args.version,
        recorded: Vec::new(),
        compared_with: against,
        differences: compared[&against].clone(),
        summary: String::new(),
    };
    let (ok, code) = match verdict {
        Verdict::NothingToAdopt => {
            details.summary = "nothing to adopt: the database has none of ruleIQ's tables; `ruleiq-db migrate` builds the schema from scratch".into();
            (true, Code::Ok)
        }
        Verdict::Adopt(version) => {
            // Baseline locks no ruleIQ table (it only writes the history), so only old, idle
            // and prepared transactions can hold it up.
            ctx.wait_for_blockers(
                &mut client,
                &Scope::new("baseline", Vec::new(), Takes::AccessExclusive),
            )?;
            details.recorded = record(ctx, &mut client, version)?;
            details.summary = adopted_summary(version, latest);
            (true, Code::Ok)
        }
        Verdict::Refuse { reason, .. } => {
            details.summary = format!("{reason}; nothing was recorded");
            (false, Code::Refused)
        }
    };
    ctx.log.line(&if ok {
        details.summary.clone()
    } else {
        format!("refused: {}", details.summary)
    });
    let schema_version = details.recorded.last().copied().unwrap_or(0);
    Ok(Outcome::new(
        Report {
            command: "baseline",
            ok,
            dry_run: false,
            schema_version,
            details,
        },
        code,
    ))
}

fn refuse_existing_history(applied: &[history::Applied]) -> Result<()> {
    if applied.is_empty() {
        return Ok(());
    }
    refuse(format!(
        "this database already has a ruleiq-db history (version {}, {} migrations recorded in {HISTORY_TABLE}): baseline only adopts a database without one; nothing was changed. See `ruleiq-db status`",
        history::current_version(applied),
        applied.len()
    ))
}

fn blocking(differences: &[Difference]) -> usize {
    differences.iter().filter(|d| !d.allowed).count()
}

/// The highest version whose every object is present, objects of later versions aside.
fn detected(compared: &BTreeMap<i32, Vec<Difference>>) -> i32 {
    compared
        .iter()
        .rev()
        .find(|(_, differences)| {
            differences
                .iter()
                .all(|d| d.allowed || d.kind == Kind::Ahead)
        })
        .map_or(0, |(v, _)| *v)
}

fn decide(compared: &BTreeMap<i32, Vec<Difference>>, requested: Option<i32>) -> Verdict {
    let adoptable = |v: i32| compared.get(&v).is_some_and(|d| blocking(d) == 0);
    // Version 0 is the empty schema: it matches only when no object of any version is there.
    if adoptable(0) {
        return Verdict::NothingToAdopt;
    }
    if let Some(n) = requested {
        if adoptable(n) {
            return Verdict::Adopt(n);
        }
        let differences = compared.get(&n).map_or(&[][..], Vec::as_slice);
        let only_ahead = differences
            .iter()
            .all(|d| d.allowed || d.kind == Kind::Ahead);
        let reason = if only_ahead {
            format!(
                "version {n} is complete, but the database also holds objects of later versions: recording {n} would make `migrate` fail creating them again"
            )
        } else {
            format!(
                "the database does not have the shape of version {n}: {} difference(s) stop it (the highest version it has completely is {})",
                blocking(differences),
                detected(compared)
            )
        };
        return Verdict::Refuse { against: n, reason };
    }
    if let Some(v) = compared.keys().rev().copied().find(|v| adoptable(*v)) {
        return Verdict::Adopt(v);
    }
    let (against, differences) = compared
        .iter()
        .filter(|(v, _)| **v > 0)
        .min_by_key(|(v, d)| (blocking(d), std::cmp::Reverse(**v)))
        .expect("there is at least one migration");
    let found = detected(compared);
    let reason = if found > 0 {
        format!(
            "version {found} is complete, but the database also holds objects of later versions, so no version can be recorded safely; against version {against}, the closest, {} difference(s) stop it: create what is missing (or remove what does not belong) and run baseline again",
            blocking(differences)
        )
    } else {
        format!(
            "the database matches no version's shape; against version {against}, the closest, {} difference(s) stop it: create what is missing (or remove what does not belong) and run baseline again",
            blocking(differences)
        )
    };
    Verdict::Refuse {
        against: *against,
        reason,
    }
}

/// Records 1..=version as applied, with refinery's names and checksums, in one transaction.
fn record(ctx: &Context, client: &mut Client, version: i32) -> Result<Vec<i32>> {
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
        tx.commit()?;
        Ok(())
    })?;
    Ok(to_record.iter().map(|m| m.version()).collect())
}

fn adopted_summary(version: i32, latest: i32) -> String {
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
    format!("adopted at version {version}: V1 to V{version} recorded as applied without running them{next}")
}

impl Details for BaselineReport {
    fn write_table(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let recorded = match (self.recorded.first(), self.recorded.last()) {
            (Some(first), Some(last)) => format!("V{first} to V{last}"),
            _ => "nothing".into(),
        };
        writeln!(
            out,
            "detected version: {}; recorded: {recorded}",
            self.detected_version
        )?;
        writeln!(out, "{}", self.summary)?;
        if self.differences.is_empty() {
            return writeln!(
                out,
                "No difference from the shape of version {}.",
                self.compared_with
            );
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
                if d.allowed { "allowed" } else { "stops it" }.to_string(),
            ]);
        }
        writeln!(out, "{t}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn difference(kind: Kind) -> Difference {
        Difference {
            object: format!("{kind:?}"),
            problem: String::new(),
            kind,
            allowed: kind.allowed(),
        }
    }

    fn compared(versions: &[(i32, &[Kind])]) -> BTreeMap<i32, Vec<Difference>> {
        versions
            .iter()
            .map(|(v, kinds)| (*v, kinds.iter().copied().map(difference).collect()))
            .collect()
    }

    #[test]
    fn adopts_the_highest_version_that_nothing_stops() {
        let c = compared(&[
            (0, &[Kind::Ahead]),
            (1, &[Kind::Extra]),
            (2, &[Kind::RenamedByHand, Kind::Extra]),
            (3, &[Kind::Missing]),
        ]);
        assert_eq!(decide(&c, None), Verdict::Adopt(2));
        assert_eq!(decide(&c, Some(1)), Verdict::Adopt(1));
        assert!(matches!(
            decide(&c, Some(3)),
            Verdict::Refuse { against: 3, .. }
        ));
    }

    #[test]
    fn an_empty_schema_has_nothing_to_adopt() {
        let c = compared(&[(0, &[Kind::Extra]), (1, &[Kind::Missing])]);
        assert_eq!(decide(&c, None), Verdict::NothingToAdopt);
        assert_eq!(decide(&c, Some(1)), Verdict::NothingToAdopt);
    }

    #[test]
    fn a_complete_version_with_later_objects_is_refused_against_the_closest() {
        let c = compared(&[
            (0, &[Kind::Ahead]),
            (1, &[Kind::Ahead, Kind::Ahead]),
            (2, &[Kind::Missing]),
            (3, &[Kind::Missing, Kind::Missing]),
        ]);
        assert_eq!(detected(&c), 1);
        match decide(&c, None) {
            Verdict::Refuse { against, reason } => {
                assert_eq!(against, 2);
                assert!(reason.contains("version 1 is complete"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        match decide(&c, Some(1)) {
            Verdict::Refuse { against, reason } => {
                assert_eq!(against, 1);
                assert!(reason.contains("fail creating them again"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }
}
