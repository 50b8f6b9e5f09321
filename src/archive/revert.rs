//! Rollback's engine: revert applied migrations, newest first, one transaction each (the down
//! statements, the archiving and the removal of the history row together), never losing data.
//!
//! The `rollback` command chooses the steps ([`choose_steps`]), refuses what cannot be undone
//! safely ([`refuse_unsafe`]), and then either plans them read-only ([`plan`]) or reverts them
//! through a [`Session`] ([`revert`]).

use super::{dependents, execute, plan as archive_plan, Action, Archived, Stamp, SCHEMA};
use crate::catalog::migrations::REPAIR_VERSION;
use crate::catalog::repair::{PlannedStatement, RENAME_CONFLICT_SQLSTATE};
use crate::catalog::sql::qualified;
use crate::catalog::{down, HISTORY_TABLE};
use crate::db::blockers::{Scope, Takes};
use crate::db::{self, Query, Session};
use crate::history::{self, Applied};
use crate::journal::Journal;
use crate::refusal::Refusal;
use crate::report::{self, MigrationRun};
use anyhow::{Context as _, Result};
use postgres::Client;
use serde::Serialize;
use std::io::Write;
use std::time::Instant;

/// One migration to revert.
#[derive(Debug, Clone)]
pub struct Step {
    pub version: i32,
    pub name: String,
}

impl Step {
    pub fn label(&self) -> String {
        format!("V{} {}", self.version, self.name)
    }
}

/// What a step would do, for `--dry-run`: its statements with their locks, and what it would
/// archive.
#[derive(Debug, Serialize)]
pub struct PlannedStep {
    pub version: i32,
    pub name: String,
    pub statements: Vec<PlannedStatement>,
    pub archives: Vec<Archived>,
}

/// What [`revert`] did.
#[derive(Debug, Default)]
pub struct Reverted {
    pub runs: Vec<MigrationRun>,
    pub archived: Vec<Archived>,
    /// The version the database is at now.
    pub to_version: i32,
}

/// The version to stop at (`--to`, or `--steps` counted down from the newest; one step by
/// default) and the applied migrations above it, newest first. Refuses (exit 4) a target that is
/// not below what is applied, more steps than there are, or a step without a down migration.
pub fn choose_steps(
    applied: &[Applied],
    to: Option<i32>,
    steps: Option<u32>,
) -> Result<(i32, Vec<Step>)> {
    let from = history::current_version(applied);
    let mut newest_first: Vec<&Applied> = applied.iter().collect();
    newest_first.sort_by_key(|a| std::cmp::Reverse(a.version));
    let to = match (to, steps) {
        (Some(n), _) if n < 0 => {
            return Refusal::UnknownTarget(format!(
                "--to {n} is not a version: use 0 to revert every migration; nothing was changed"
            )).fail()
        }
        (Some(n), _) if n > from => {
            return Refusal::TargetOutOfRange(format!(
                "--to {n} is above the current version {from}: rollback only goes down (use `ruleiq-db migrate --target {n}`); nothing was changed"
            )).fail()
        }
        (Some(n), _) => n,
        (None, Some(0)) => {
            return Refusal::TargetOutOfRange("--steps 0 reverts nothing: give at least 1; nothing was changed".into()).fail()
        }
        (None, Some(k)) if k as usize > applied.len() => {
            return Refusal::TargetOutOfRange(format!(
                "--steps {k} is more than the {} migrations applied (the database is at version {from}); use --to 0 to revert them all; nothing was changed",
                applied.len()
            )).fail()
        }
        (None, Some(k)) => newest_first
            .get(k as usize)
            .map_or(0, |below| below.version),
        (None, None) => newest_first.get(1).map_or(0, |below| below.version),
    };
    let steps: Vec<Step> = newest_first
        .iter()
        .filter(|a| a.version > to)
        .map(|a| Step {
            version: a.version,
            name: a.name.clone(),
        })
        .collect();
    for step in &steps {
        if down::statements(step.version).is_none() {
            return Refusal::NoDownMigration(format!(
                "{} has no down migration in this ruleiq-db (migrations/down), so it cannot be reverted; nothing was changed",
                step.label()
            )).fail();
        }
    }
    Ok((to, steps))
}

/// Refuses, before anything changes, steps that would lose data or strand the user's objects:
/// 008's down when a column has both its legacy and its current name, and any step whose
/// archiving would re-point a view or function of the user's.
pub fn refuse_unsafe(client: &mut Client, steps: &[Step]) -> Result<()> {
    if steps.iter().any(|s| s.version == REPAIR_VERSION) {
        crate::constraints::spelling::refuse_rename_conflicts(
            client,
            "008's down cannot give the columns their legacy names back",
            "roll back again",
        )?;
    }
    let archiving = steps
        .iter()
        .map(|s| archived_by(s.version))
        .collect::<Result<Vec<_>>>()?
        .concat();
    dependents::refuse_dependents(client, &archiving, "nothing was changed")
}

/// The tables the steps' down statements lock, for the blocker check.
pub fn scope(steps: &[Step]) -> Scope {
    let downs: Vec<PlannedStatement> = steps
        .iter()
        .flat_map(|s| down::statements(s.version).expect("checked by choose_steps"))
        .collect();
    Scope::of_statements(
        "rollback",
        downs.iter().map(|s| s.sql.as_str()),
        Takes::AccessExclusive,
    )
}

/// What the down of `version` archives: the tables it moves and the columns it drops.
fn archived_by(version: i32) -> Result<Vec<Action>> {
    let mut actions = Vec::new();
    for s in down::statements(version).expect("checked by choose_steps") {
        let action = archive_plan::classify(&s.sql)?;
        if action != Action::Run {
            actions.push(action);
        }
    }
    Ok(actions)
}

/// What the steps would do, read-only.
pub fn plan(client: &mut Client, steps: &[Step], stamp: &Stamp) -> Result<Vec<PlannedStep>> {
    steps.iter().map(|s| plan_step(client, s, stamp)).collect()
}

fn plan_step(client: &mut Client, step: &Step, stamp: &Stamp) -> Result<PlannedStep> {
    let mut statements = Vec::new();
    let mut archives = Vec::new();
    for s in down::statements(step.version).expect("checked by choose_steps") {
        let action = archive_plan::classify(&s.sql)?;
        let mut lock = s.lock;
        if let Some(a) = archive_plan::preview(client, &action, step.version, stamp)? {
            lock = archive_plan::planned_lock(&lock, &action, &a);
            archives.push(a);
        }
        statements.push(PlannedStatement { sql: s.sql, lock });
    }
    statements.push(PlannedStatement {
        sql: format!(
            "DELETE FROM {} WHERE version = {}",
            qualified(HISTORY_TABLE),
            step.version
        ),
        lock: format!("ROW EXCLUSIVE on {HISTORY_TABLE}"),
    });
    Ok(PlannedStep {
        version: step.version,
        name: step.name.clone(),
        statements,
        archives,
    })
}

/// Reverts the steps in order, each in its own transaction, and records each in `journal` as it
/// commits. A failed step rolls back alone; the error says where the database stands.
pub fn revert(
    session: &mut Session,
    applied: &[Applied],
    steps: &[Step],
    stamp: &Stamp,
    journal: &Journal,
) -> Result<Reverted> {
    let log = session.log().clone();
    let mut done = Reverted {
        to_version: history::current_version(applied),
        ..Default::default()
    };
    let bar = log.bar(steps.len() as u64, "rolling back");
    for step in steps {
        // A step copies whole columns into the archive in one transaction: it cannot pause
        // inside, so it waits before, while the standbys are behind.
        session
            .pace()
            .map_err(|e| stopped_at(e, step, done.to_version, done.runs.len()))?;
        bar.set_message(step.label());
        log.line(&format!("reverting {}", step.label()));
        let started = Instant::now();
        let archived = revert_one(session, step, stamp)
            .map_err(|e| stopped_at(e, step, done.to_version, done.runs.len()))?;
        for a in &archived {
            log.line(&format!(
                "archived {} as {} ({} rows)",
                a.object, a.archive, a.rows
            ));
        }
        done.archived.extend(archived);
        let run = MigrationRun {
            version: step.version,
            name: step.name.clone(),
            duration_ms: started.elapsed().as_millis() as u64,
        };
        done.to_version = next_version_below(applied, step.version);
        journal.reverted(&run, done.to_version);
        done.runs.push(run);
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(done)
}

/// The highest applied version below `version`, 0 for none.
fn next_version_below(applied: &[Applied], version: i32) -> i32 {
    applied
        .iter()
        .map(|a| a.version)
        .filter(|v| *v < version)
        .max()
        .unwrap_or(0)
}

/// Reverts one migration in one transaction: archive, down statements, history row. A
/// statement that hits lock_timeout rolls the whole step back and the session tries it again.
fn revert_one(session: &mut Session, step: &Step, stamp: &Stamp) -> Result<Vec<Archived>> {
    let statements = down::statements(step.version).expect("checked by choose_steps");
    let archiving = archived_by(step.version)?;
    let label = step.label();
    session.transaction(&format!("{label} down"), |tx| {
        // Checked again in the step's transaction: a view created since the first check must
        // not be re-pointed at the archive either.
        dependents::refuse_dependents(tx, &archiving, "this step was not run")?;
        let mut archived = Vec::new();
        for s in &statements {
            let made = execute::run_statement(tx, &s.sql, step.version, &label, stamp)
                .with_context(|| format!("{label} down: {}", first_line(&s.sql)))?;
            archived.extend(made);
        }
        // While roles are pointed at the views (`compat --for-role`), their sessions find
        // names only through them: 008's down dropped them first, so in the same transaction
        // they come back over the legacy names (docs/design.md §7).
        if step.version == REPAIR_VERSION && !crate::compat::recorded_roles(tx)?.is_empty() {
            crate::compat::create_at(tx, REPAIR_VERSION - 1)
                .with_context(|| format!("{label} down: re-pointing the compatibility views to version {}", REPAIR_VERSION - 1))?;
        }
        let removed = tx.exec(
            &format!("DELETE FROM {} WHERE version = $1", qualified(HISTORY_TABLE)),
            &[&step.version],
        )?;
        if removed != 1 {
            anyhow::bail!(
                "{label}: its history row disappeared while the step ran (another tool changed {HISTORY_TABLE}?)"
            );
        }
        Ok(archived)
    })
}

/// The error of a failed step, saying where the database now stands.
fn stopped_at(error: anyhow::Error, step: &Step, version: i32, done: usize) -> anyhow::Error {
    let conflict = db::sql_state(&error).is_some_and(|s| s.code() == RENAME_CONFLICT_SQLSTATE);
    let where_now = if done == 0 {
        "nothing was changed".to_string()
    } else {
        format!("the {done} steps before it were committed: the database is at version {version}")
    };
    let message = format!(
        "{} was not reverted (its transaction rolled back); {where_now}",
        step.label()
    );
    if conflict {
        Refusal::RenameConflict(format!("{error:#}; {message}")).into()
    } else {
        error.context(message)
    }
}

/// A statement as a person scans a plan: a `DO` block (008's state-aware renames) shows the
/// ALTER it runs; the JSON and YAML reports keep the full text.
fn first_line(sql: &str) -> String {
    crate::catalog::sql::summarise_statement(sql)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The archives made or planned, as a table under `title`; nothing when there are none.
pub fn write_archives<'a>(
    out: &mut dyn Write,
    archives: impl Iterator<Item = &'a Archived>,
    title: &str,
) -> std::io::Result<()> {
    let mut t = report::table(&["object", "archive", "rows"]);
    let mut any = false;
    for a in archives {
        t.add_row(vec![
            a.object.clone(),
            a.archive.clone(),
            a.rows.to_string(),
        ]);
        any = true;
    }
    if any {
        writeln!(out, "{title} in schema {SCHEMA} (nothing is dropped):")?;
        writeln!(out, "{t}")?;
    }
    Ok(())
}
