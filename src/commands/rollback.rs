//! `rollback`: revert applied migrations, newest first, one transaction each (the down
//! statements, the archiving and the removal of the history row together), never losing data.

use super::{Context, Outcome};
use crate::archive::{self, Archived, Stamp};
use crate::catalog::migrations::REPAIR_VERSION;
use crate::catalog::repair::PlannedStatement;
use crate::catalog::repair::RENAME_CONFLICT_SQLSTATE;
use crate::catalog::{down, HISTORY_TABLE};
use crate::cli::RollbackArgs;
use crate::db;
use crate::exit::Code;
use crate::health::blockers::{self, Blocker, Scope, Takes};
use crate::history::{self, Applied};
use crate::refusal::Refusal;
use crate::report::{self, Details, MigrationRun, Report};
use anyhow::{Context as _, Result};
use postgres::Client;
use serde::Serialize;
use std::io::Write;
use std::time::Instant;

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

#[derive(Debug, Serialize)]
pub struct PlannedStep {
    pub version: i32,
    pub name: String,
    pub statements: Vec<PlannedStatement>,
    pub archives: Vec<Archived>,
}

/// One migration to revert.
struct Step {
    version: i32,
    name: String,
}

impl Step {
    fn label(&self) -> String {
        format!("V{} {}", self.version, self.name)
    }
}

pub fn run(ctx: &Context, args: &RollbackArgs) -> Result<Outcome> {
    let (_target, mut client) = ctx.connect()?;
    if !args.dry_run {
        ctx.lock_for_changes(&mut client)?;
    }
    let applied = history::read(&mut client)?;
    history::verify(&applied)?;
    let from = history::current_version(&applied);
    ctx.journal.version(from);
    let (to, steps) = choose_steps(&applied, args)?;
    let mut details = RollbackReport {
        from_version: from,
        to_version: from,
        ..Default::default()
    };
    if steps.is_empty() {
        ctx.log.line(&format!(
            "nothing to roll back: the database is at version {from}"
        ));
        return Ok(finish(details, args.dry_run, from));
    }
    if steps.iter().any(|s| s.version == REPAIR_VERSION) {
        crate::constraints::spelling::refuse_rename_conflicts(
            &mut client,
            "008's down cannot give the columns their legacy names back",
            "roll back again",
        )?;
    }
    let archiving = steps
        .iter()
        .map(|s| archived_by(s.version))
        .collect::<Result<Vec<_>>>()?
        .concat();
    archive::dependents::refuse_dependents(&mut client, &archiving, "nothing was changed")?;
    let downs: Vec<PlannedStatement> = steps
        .iter()
        .flat_map(|s| down::statements(s.version).expect("checked by choose_steps"))
        .collect();
    let scope = Scope::of_statements(
        "rollback",
        downs.iter().map(|s| s.sql.as_str()),
        Takes::AccessExclusive,
    );
    if args.dry_run {
        details.blockers = Some(ctx.list_blockers(&mut client, &scope)?);
        let stamp = Stamp::now();
        let mut plan = Vec::new();
        for step in &steps {
            plan.push(plan_step(&mut client, step, &stamp)?);
        }
        details.plan = Some(plan);
        details.to_version = to;
        return Ok(finish(details, true, from));
    }

    let listed: Vec<String> = steps.iter().map(Step::label).collect();
    ctx.confirm(&format!(
        "Roll back from version {from} to {to}, reverting {}? Dropped tables and columns are kept in schema {}",
        listed.join(", "),
        archive::SCHEMA
    ))?;
    // After the prompt, which may have waited long: who blocks now is what matters.
    ctx.wait_for_blockers(&mut client, &scope)?;
    // Taken after the prompt: archive names say when the rollback ran, not when it was asked.
    let stamp = Stamp::now();

    let bar = ctx.log.bar(steps.len() as u64, "rolling back");
    let mut throttle = ctx.replica_throttle();
    for step in &steps {
        // A step copies whole columns into the archive in one transaction: it cannot pause
        // inside, so it waits before, while the standbys are behind.
        throttle
            .between_batches(&mut client, &ctx.log)
            .map_err(|e| stopped_at(e, step, details.to_version, details.reverted.len()))?;
        bar.set_message(step.label());
        ctx.log.line(&format!("reverting {}", step.label()));
        let started = Instant::now();
        let archived = revert_one(ctx, &mut client, step, &stamp)
            .map_err(|e| stopped_at(e, step, details.to_version, details.reverted.len()))?;
        for a in &archived {
            ctx.log.line(&format!(
                "archived {} as {} ({} rows)",
                a.object, a.archive, a.rows
            ));
        }
        details.archived.extend(archived);
        let run = MigrationRun {
            version: step.version,
            name: step.name.clone(),
            duration_ms: started.elapsed().as_millis() as u64,
        };
        details.to_version = next_version_below(&applied, step.version);
        ctx.journal.reverted(&run, details.to_version);
        details.reverted.push(run);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let version = details.to_version;
    Ok(finish(details, false, version))
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

/// The version to stop at and the applied migrations above it, newest first. Refuses (exit 4)
/// a target that is not below what is applied, or more steps than there are.
fn choose_steps(applied: &[Applied], args: &RollbackArgs) -> Result<(i32, Vec<Step>)> {
    let from = history::current_version(applied);
    let mut newest_first: Vec<&Applied> = applied.iter().collect();
    newest_first.sort_by_key(|a| std::cmp::Reverse(a.version));
    let to = match (args.to, args.steps) {
        (Some(n), _) if n < 0 => {
            return Refusal::UnknownTarget(format!(
                "--to {n} is not a version: use 0 to revert every migration; nothing was changed"
            ))
            .fail()
        }
        (Some(n), _) if n > from => {
            return Refusal::TargetOutOfRange(format!(
                "--to {n} is above the current version {from}: rollback only goes down (use `ruleiq-db migrate --target {n}`); nothing was changed"
            ))
            .fail()
        }
        (Some(n), _) => n,
        (None, Some(0)) => {
            return Refusal::TargetOutOfRange(
                "--steps 0 reverts nothing: give at least 1; nothing was changed".into(),
            )
            .fail()
        }
        (None, Some(k)) if k as usize > applied.len() => {
            return Refusal::TargetOutOfRange(format!(
                "--steps {k} is more than the {} migrations applied (the database is at version {from}); use --to 0 to revert them all; nothing was changed",
                applied.len()
            ))
            .fail()
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
            ))
            .fail();
        }
    }
    Ok((to, steps))
}

/// What the down of `version` archives: the tables it moves and the columns it drops.
fn archived_by(version: i32) -> Result<Vec<archive::Action>> {
    let mut actions = Vec::new();
    for s in down::statements(version).expect("checked by choose_steps") {
        let action = archive::classify(&s.sql)?;
        if action != archive::Action::Run {
            actions.push(action);
        }
    }
    Ok(actions)
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

/// What a step would do, read-only.
fn plan_step(client: &mut Client, step: &Step, stamp: &Stamp) -> Result<PlannedStep> {
    let mut statements = Vec::new();
    let mut archives = Vec::new();
    for s in down::statements(step.version).expect("checked by choose_steps") {
        let action = archive::classify(&s.sql)?;
        let mut lock = s.lock;
        if let Some(a) = archive::preview(client, &action, step.version, stamp)? {
            lock = match action {
                archive::Action::MoveTable { .. } => format!(
                    "{lock} (catalog change only: the table is renamed and moved to {}, not dropped)",
                    a.archive
                ),
                _ => format!(
                    "SHARE on {} while its {} rows are first copied to {} (reads go on, writes wait); then {lock}",
                    a.object.split('.').next().unwrap_or_default(),
                    a.rows,
                    a.archive
                ),
            };
            archives.push(a);
        }
        statements.push(PlannedStatement { sql: s.sql, lock });
    }
    statements.push(PlannedStatement {
        sql: format!(
            "DELETE FROM {HISTORY_TABLE} WHERE version = {}",
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

/// Reverts one migration in one transaction: archive, down statements, history row. A
/// statement that hits lock_timeout rolls the whole step back and it is tried again.
fn revert_one(
    ctx: &Context,
    client: &mut Client,
    step: &Step,
    stamp: &Stamp,
) -> Result<Vec<Archived>> {
    let statements = down::statements(step.version).expect("checked by choose_steps");
    let archiving = archived_by(step.version)?;
    let label = step.label();
    db::retry_on_lock_timeout(&format!("{label} down"), ctx.retry(), &ctx.log, || {
        let mut tx = client.transaction()?;
        // Checked again in the step's transaction: a view created since the first check must
        // not be re-pointed at the archive either.
        archive::dependents::refuse_dependents(&mut tx, &archiving, "this step was not run")?;
        let mut archived = Vec::new();
        for s in &statements {
            let made = archive::run_statement(&mut tx, &s.sql, step.version, &label, stamp)
                .with_context(|| format!("{label} down: {}", first_line(&s.sql)))?;
            archived.extend(made);
        }
        let removed = tx.execute(
            &format!("DELETE FROM {HISTORY_TABLE} WHERE version = $1"),
            &[&step.version],
        )?;
        if removed != 1 {
            anyhow::bail!(
                "{label}: its history row disappeared while the step ran (another tool changed {HISTORY_TABLE}?)"
            );
        }
        tx.commit()?;
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

fn first_line(sql: &str) -> String {
    crate::catalog::sql::summarise_statement(sql)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
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
        writeln!(
            out,
            "from version {} to version {}",
            self.from_version, self.to_version
        )?;
        if let Some(plan) = &self.plan {
            for step in plan {
                writeln!(out, "V{} {} would be reverted:", step.version, step.name)?;
                writeln!(out, "{}", report::statements_table(&step.statements))?;
            }
            write_archives(out, plan.iter().flat_map(|s| &s.archives), "Would archive")?;
            if let Some(found) = &self.blockers {
                blockers::write_table(out, found)?;
            }
            return Ok(());
        }
        if !self.reverted.is_empty() {
            writeln!(
                out,
                "{}",
                report::migrations_table("reverted", &self.reverted)
            )?;
        }
        write_archives(out, self.archived.iter(), "Archived")
    }
}

/// A statement as a person scans a plan: a `DO` block (008's state-aware renames) shows the
/// ALTER it runs; the JSON and YAML reports keep the full text.
fn write_archives<'a>(
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
        writeln!(
            out,
            "{title} in schema {} (nothing is dropped):",
            archive::SCHEMA
        )?;
        writeln!(out, "{t}")?;
    }
    Ok(())
}
