//! `rollback`: revert applied migrations, newest first, one transaction each, never losing data
//! (the engine is `archive::revert`).

use super::{Outcome, Settings};
use crate::archive::revert::{self, PlannedStep, Step};
use crate::archive::{self, Archived, Stamp};
use crate::cli::RollbackArgs;
use crate::db::blockers::{self, Blocker};
use crate::exit::Code;
use crate::history;
use crate::report::{self, Details, MigrationRun, Report};
use anyhow::Result;
use postgres::Client;
use serde::Serialize;
use std::io::Write;

#[derive(Debug, Serialize, Default)]
pub struct RollbackReport {
    pub from_version: i32,
    pub to_version: i32,
    pub reverted: Vec<MigrationRun>,
    pub archived: Vec<Archived>,
    /// With --dry-run: each step, its statements with their locks, and what it would archive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<Vec<PlannedStep>>,
    /// With --dry-run: sessions that would make the down migrations' table locks wait.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blockers: Option<Vec<Blocker>>,
}

/// What both a plan and a real rollback start from, read under the migration lock for a real
/// one.
struct Chosen {
    applied: Vec<history::Applied>,
    from: i32,
    to: i32,
    steps: Vec<Step>,
}

pub fn run(settings: &Settings, args: &RollbackArgs) -> Result<Outcome> {
    let (target, mut client) = settings.connect()?;
    if args.dry_run {
        return dry_run(settings, args, &mut client);
    }
    let mut session = settings.begin_session(target, client)?;
    let Chosen {
        applied,
        from,
        to,
        steps,
    } = choose(settings, args, session.client())?;
    if steps.is_empty() {
        return Ok(nothing_to_do(settings, from, false));
    }
    revert::refuse_unsafe(session.client(), &steps)?;
    let scope = revert::scope(&steps);

    let listed: Vec<String> = steps.iter().map(Step::label).collect();
    settings.confirm(&format!(
        "Roll back from version {from} to {to}, reverting {}? Dropped tables and columns are kept in schema {}",
        listed.join(", "),
        archive::SCHEMA
    ))?;
    // After the prompt, which may have waited long: who blocks now is what matters.
    let done = session.locking(&scope, |session| {
        // Taken after the prompt: archive names say when the rollback ran, not when it was
        // asked.
        let stamp = Stamp::now();
        revert::revert(session, &applied, &steps, &stamp, &settings.journal)
    })?;
    let details = RollbackReport {
        from_version: from,
        to_version: done.to_version,
        reverted: done.runs,
        archived: done.archived,
        ..Default::default()
    };
    Ok(finish(details, false, done.to_version))
}

/// `--dry-run`: the same reads and refusals, then the plan and the blockers; no lock taken.
fn dry_run(settings: &Settings, args: &RollbackArgs, client: &mut Client) -> Result<Outcome> {
    let Chosen {
        from, to, steps, ..
    } = choose(settings, args, client)?;
    if steps.is_empty() {
        return Ok(nothing_to_do(settings, from, true));
    }
    revert::refuse_unsafe(client, &steps)?;
    let scope = revert::scope(&steps);
    let blockers = blockers::find(client, &scope, &settings.safety.blocker_limits())?;
    let stamp = Stamp::now();
    let plan = revert::plan(client, &steps, &stamp)?;
    let details = RollbackReport {
        from_version: from,
        to_version: to,
        plan: Some(plan),
        blockers: Some(blockers),
        ..Default::default()
    };
    Ok(finish(details, true, from))
}

fn choose(settings: &Settings, args: &RollbackArgs, client: &mut Client) -> Result<Chosen> {
    let applied = history::read(client)?;
    history::verify(&applied)?;
    let from = history::current_version(&applied);
    settings.journal.version(from);
    let (to, steps) = revert::choose_steps(&applied, args.to, args.steps)?;
    Ok(Chosen {
        applied,
        from,
        to,
        steps,
    })
}

fn nothing_to_do(settings: &Settings, from: i32, dry_run: bool) -> Outcome {
    settings.log.line(&format!(
        "nothing to roll back: the database is at version {from}"
    ));
    let details = RollbackReport {
        from_version: from,
        to_version: from,
        ..Default::default()
    };
    finish(details, dry_run, from)
}

fn finish(details: RollbackReport, dry_run: bool, version: i32) -> Outcome {
    Outcome::new(
        Report {
            command: "rollback",
            ok: true,
            dry_run,
            schema_version: version,
            details,
        },
        Code::Ok,
    )
}

impl Details for RollbackReport {
    fn summary(&self, _dry_run: bool, _schema_version: i32) -> report::Summary {
        report::Summary::line(format!(
            "version {} → {}, {} archives",
            self.from_version,
            self.to_version,
            self.archived.len()
        ))
    }

    fn write_table(&self, out: &mut dyn Write) -> std::io::Result<()> {
        report::write_versions(out, self.from_version, self.to_version)?;
        if let Some(plan) = &self.plan {
            for step in plan {
                writeln!(out, "V{} {} would be reverted:", step.version, step.name)?;
                writeln!(out, "{}", report::statements_table(&step.statements))?;
            }
            revert::write_archives(out, plan.iter().flat_map(|s| &s.archives), "Would archive")?;
            if let Some(found) = &self.blockers {
                blockers::write_table(out, found)?;
            }
            return Ok(());
        }
        report::write_migrations(out, "reverted", &self.reverted)?;
        revert::write_archives(out, self.archived.iter(), "Archived")
    }
}
