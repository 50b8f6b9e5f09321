//! `migrate`: apply pending migrations one transaction each, with the preflight before 008 and
//! validation after it.

use super::check::write_findings;
use super::{Context, Outcome};
use crate::archive::restore::{self, Restored};
use crate::catalog::constraints::CATALOG;
use crate::catalog::migrations::{self, REPAIR_VERSION};
use crate::catalog::repair::{self, PlannedStatement, RENAME_CONFLICT_SQLSTATE};
use crate::catalog::sql::{lock_taken, split_statements};
use crate::constraints::check::{self, Finding};
use crate::constraints::validate;
use crate::db;
use crate::db::config::Target;
use crate::exit::Code;
use crate::health::blockers::{self, Blocker, Scope, Takes};
use crate::health::estimate::{self, Estimate};
use crate::history;
use crate::refusal::Refusal;
use crate::report::{self, Details, MigrationRun, Report};
use anyhow::Result;
use postgres::Client;
use refinery::Migration;
use serde::Serialize;
use std::io::Write;
use std::time::Instant;

#[derive(Debug, Serialize, Default)]
pub struct MigrateReport {
    pub from_version: i32,
    pub to_version: i32,
    pub applied: Vec<MigrationRun>,
    /// With --dry-run: what would run, statement by statement, with locks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<Vec<PlannedMigration>>,
    /// The preflight's verdict, when 008 is pending.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preflight: Option<Preflight>,
    /// Catalog constraints with violating rows that stop (or stopped) the repair.
    pub blocked_by: Vec<Finding>,
    pub validated: Vec<&'static str>,
    /// What the applied migrations created again and a rollback had archived, put back.
    pub restored: Vec<Restored>,
    /// With --dry-run: what the pending migrations would put back from the archive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub would_restore: Option<Vec<restore::Planned>>,
    /// With --dry-run: sessions that would make the migrations' table locks wait.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blockers: Option<Vec<Blocker>>,
    /// With --dry-run: the expected duration of the preflight and the VALIDATEs, in ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimate_ms: Option<u64>,
    /// With --dry-run: how `estimate_ms` was reached.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimate: Option<Estimate>,
    /// How long migrate waited for the standbys to replay 008 and each VALIDATE (and to catch
    /// up before a migration), in ms.
    pub replica_wait_ms: u64,
    /// The compatibility schema, when this run's 008 created it (and --no-compat did not drop
    /// it): its views and the connection option the application needs.
    pub compat: Option<crate::compat::Created>,
}

#[derive(Debug, Serialize)]
pub struct PlannedMigration {
    pub version: i32,
    pub name: String,
    pub statements: Vec<PlannedStatement>,
}

#[derive(Debug, Serialize)]
pub struct Preflight {
    pub ok: bool,
    pub total_violations: u64,
    /// Violating rows the application wrote since the last completed cleanup run (or in the
    /// last 7 days): cleanup alone will not keep them away.
    pub total_live_violations: u64,
    /// What `total_live_violations` means, in words (None when it is 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live_note: Option<String>,
}

pub fn run(ctx: &Context, args: &crate::cli::MigrateArgs) -> Result<Outcome> {
    let (target, mut client) = ctx.connect()?;
    if !args.dry_run {
        ctx.lock_for_changes(&mut client)?;
    }
    let applied = history::read(&mut client)?;
    history::verify(&applied)?;
    history::refuse_unadopted(&mut client, &applied)?;
    let from = history::current_version(&applied);
    ctx.journal.version(from);
    let to = resolve_target(args.target, from)?;
    let pending: Vec<Migration> = migrations::all()
        .into_iter()
        .filter(|m| m.version() > from && m.version() <= to)
        .collect();

    let mut details = MigrateReport {
        from_version: from,
        to_version: from,
        ..Default::default()
    };
    let includes_repair = pending.iter().any(|m| m.version() == REPAIR_VERSION);
    let restores = restore::planned(&mut client, &pending)?;
    let restores_before_repair = restores.iter().any(|r| r.version < REPAIR_VERSION);
    let plans: Vec<PlannedMigration> = pending.iter().map(|m| plan_of(m, args.no_compat)).collect();
    let scope = Scope::of_statements(
        "migrate",
        plans
            .iter()
            .flat_map(|p| p.statements.iter().map(|s| s.sql.as_str())),
        Takes::AccessExclusive,
    );
    if args.dry_run {
        details.blockers = Some(ctx.list_blockers(&mut client, &scope)?);
        let found = look_ahead(&mut client, includes_repair, to)?;
        details.estimate_ms = Some(found.total_ms);
        details.estimate = Some(found);
    }
    if includes_repair {
        crate::constraints::spelling::refuse_rename_conflicts(
            &mut client,
            "008 cannot repair column names",
            "migrate again",
        )?;
        if restores_before_repair {
            // The rows cannot be judged yet: values a rollback archived (approvals, for one)
            // come back only with the migrations before 008. The preflight runs right before
            // 008 instead.
            ctx.log.line("preflight deferred: the migrations before 008 first put back what a rollback archived; the rows are checked right before 008");
        } else if let Some(outcome) =
            preflight(ctx, &target, &mut client, &mut details, args.dry_run)?
        {
            return Ok(outcome);
        }
    }
    if args.dry_run {
        details.would_restore = Some(restores);
        details.plan = Some(plans);
        details.to_version = to;
        return Ok(finish(details, true, true, from, Code::Ok));
    }
    if pending.is_empty() {
        ctx.log.line(&format!(
            "nothing to migrate: the database is at version {from}"
        ));
    }

    if !pending.is_empty() {
        ctx.wait_for_blockers(&mut client, &scope)?;
    }
    let bar = ctx.log.bar(pending.len() as u64, "migrating");
    let mut replicas = ctx.replica_throttle();
    for m in &pending {
        replicas.between_batches(&mut client, &ctx.log)?;
        if m.version() == REPAIR_VERSION && !details.applied.is_empty() {
            // Rows may have changed while the earlier migrations ran: look again, right before.
            if let Some(outcome) = preflight(ctx, &target, &mut client, &mut details, false)? {
                return Ok(outcome);
            }
        }
        bar.set_message(format!("V{} {}", m.version(), m.name()));
        ctx.log
            .line(&format!("applying V{} {}", m.version(), m.name()));
        let started = Instant::now();
        let restored = apply_one(ctx, &mut client, m)?;
        for r in &restored {
            ctx.log.line(&format!(
                "restored {} from {} ({} rows){}",
                r.object,
                r.archive,
                r.rows,
                if r.archive_dropped {
                    ""
                } else {
                    "; the archive is kept, marked as restored"
                }
            ));
        }
        details.restored.extend(restored);
        let run = MigrationRun {
            version: m.version(),
            name: m.name().to_string(),
            duration_ms: started.elapsed().as_millis() as u64,
        };
        ctx.journal.applied(&run);
        details.applied.push(run);
        details.to_version = m.version();
        if m.version() == REPAIR_VERSION {
            after_repair(ctx, &mut client, args.no_compat, &mut details)?;
            // The application reads the new names from the primary now: the standbys must
            // follow before anything else happens.
            replicas.wait_for_replay(
                &mut client,
                &ctx.log,
                &format!("V{} {}", m.version(), m.name()),
            )?;
        }
        bar.inc(1);
    }
    bar.finish_and_clear();

    let mut code = Code::Ok;
    if details.to_version >= REPAIR_VERSION {
        let validation = validate::validate_not_valid(
            &mut client,
            ctx.validation_workers(&target),
            None,
            ctx.retry(),
            &mut replicas,
            &ctx.log,
        )?;
        details.validated = validation.validated;
        if !validation.blocked.is_empty() {
            details.blocked_by = check::check(&target, &mut client, &validation.blocked, &ctx.log)?;
            ctx.log.line("some constraints stay NOT VALID because rows violate them: run `ruleiq-db check-constraints --dry-run`, then `ruleiq-db cleanup`, then `ruleiq-db check-constraints` to validate");
            code = Code::Violations;
        }
    }
    details.replica_wait_ms = replicas.waited.as_millis() as u64;
    let version = details.to_version;
    Ok(finish(details, code == Code::Ok, false, version, code))
}

fn finish(details: MigrateReport, ok: bool, dry_run: bool, version: i32, code: Code) -> Outcome {
    Outcome::new(
        Report {
            command: "migrate",
            ok,
            dry_run,
            schema_version: version,
            details,
        },
        code,
    )
}

/// The version to stop at; refuses (exit 4) one that does not exist or lies below `from`.
fn resolve_target(target: Option<i32>, from: i32) -> Result<i32> {
    let latest = migrations::latest_version();
    let Some(target) = target else {
        return Ok(latest.max(from));
    };
    if migrations::get(target).is_none() {
        return Refusal::UnknownTarget(format!(
            "--target {target} does not exist: the migrations are versions 1 to {latest}; nothing was changed"
        ))
        .fail();
    }
    if target < from {
        return Refusal::TargetOutOfRange(format!(
            "--target {target} is below the current version {from}: migrate only goes up; use `ruleiq-db rollback --to {target}`"
        ))
        .fail();
    }
    Ok(target)
}

/// The estimate of what a run would scan: the preflight when 008 is pending, and the VALIDATE
/// of every catalog constraint that is not valid yet (a valid one is left alone).
fn look_ahead(client: &mut Client, includes_repair: bool, to: i32) -> Result<Estimate> {
    let states = check::constraint_states(client)?;
    // 008 adds the absent ones NOT VALID; after it, migrate validates whatever is NOT VALID.
    let validated = |state: check::ConstraintState| match state {
        check::ConstraintState::Absent => includes_repair,
        check::ConstraintState::NotValid => true,
        check::ConstraintState::Valid => false,
    };
    let validate: Vec<_> = if to >= REPAIR_VERSION {
        CATALOG
            .iter()
            .filter(|c| validated(states[c.name]))
            .collect()
    } else {
        Vec::new()
    };
    estimate::estimate(client, includes_repair, &validate)
}

/// Runs the preflight; returns the finished outcome when rows block the repair.
fn preflight(
    ctx: &Context,
    target: &Target,
    client: &mut Client,
    details: &mut MigrateReport,
    dry_run: bool,
) -> Result<Option<Outcome>> {
    let all: Vec<_> = CATALOG.iter().collect();
    let (findings, live_since) = check::check_live(
        target,
        client,
        &all,
        &ctx.log,
        crate::constraints::live::DEFAULT_WINDOW,
    )?;
    let total = check::total_violations(&findings);
    let total_live = check::total_live_violations(&findings);
    let live_note =
        (total_live > 0).then(|| crate::constraints::live::meaning(total_live, &live_since));
    details.preflight = Some(Preflight {
        ok: total == 0,
        total_violations: total,
        total_live_violations: total_live,
        live_note: live_note.clone(),
    });
    if total == 0 {
        return Ok(None);
    }
    details.blocked_by = findings.into_iter().filter(|f| f.violations > 0).collect();
    ctx.log.line(&format!(
        "preflight: {total} rows violate the constraints 008 would add; nothing of 008 was applied. See `ruleiq-db check-constraints --dry-run`, repair with `ruleiq-db cleanup`"
    ));
    if let Some(note) = &live_note {
        ctx.log.line(&format!("preflight: {note}"));
    }
    let version = details.to_version;
    Ok(Some(finish(
        std::mem::take(details),
        false,
        dry_run,
        version,
        Code::Violations,
    )))
}

/// Right after 008 commits: with --no-compat the compatibility schema 008 created goes again;
/// otherwise the report says how the application reaches it.
fn after_repair(
    ctx: &Context,
    client: &mut Client,
    no_compat: bool,
    details: &mut MigrateReport,
) -> Result<()> {
    if no_compat {
        crate::compat::drop_retried(client, ctx.retry(), &ctx.log).map_err(|e| {
            e.context(format!(
                "008 was applied, but its compatibility schema {} could not be dropped (--no-compat); drop it with `ruleiq-db compat --drop`",
                crate::catalog::compat::SCHEMA
            ))
        })?;
        ctx.log.line(&format!(
            "--no-compat: dropped schema {} after 008 committed",
            crate::catalog::compat::SCHEMA
        ));
        return Ok(());
    }
    if let Some(found) = crate::compat::inspect(client)? {
        ctx.log.line(&format!(
            "008 created schema {}: application code that still uses legacy column names connects with {}",
            found.schema,
            crate::catalog::compat::CONNECTION_OPTION
        ));
        details.compat = Some(crate::compat::Created::new(found));
    }
    Ok(())
}

/// Applies one migration with its history row, and puts back what a rollback archived of what
/// it creates, in one transaction, retrying when a statement hits lock_timeout.
fn apply_one(ctx: &Context, client: &mut Client, migration: &Migration) -> Result<Vec<Restored>> {
    let what = format!("V{} {}", migration.version(), migration.name());
    db::retry_on_lock_timeout(&what, ctx.retry(), &ctx.log, || {
        crate::apply::apply(client, migration)
    })
    .map_err(|e| {
        let conflict = db::sql_state(&e).is_some_and(|s| s.code() == RENAME_CONFLICT_SQLSTATE);
        if conflict {
            Refusal::RenameConflict(format!("{what}: {e:#}; nothing was changed")).into()
        } else {
            e.context(format!(
                "{what} failed and was rolled back; the database stays at the previous version"
            ))
        }
    })
}

/// The statements of a migration with the locks they take.
fn plan_of(migration: &Migration, no_compat: bool) -> PlannedMigration {
    let statements = if migration.version() == REPAIR_VERSION {
        let mut list: Vec<PlannedStatement> = repair::statements()
            .into_iter()
            .map(|s| PlannedStatement {
                sql: s.sql,
                lock: s.lock,
            })
            .collect();
        if no_compat {
            list.extend(
                crate::catalog::compat::drop_statements()
                    .into_iter()
                    .map(|s| PlannedStatement {
                        sql: s.sql,
                        lock: format!(
                            "{} — after 008 commits, one transaction (--no-compat)",
                            s.lock
                        ),
                    }),
            );
        }
        list.extend(CATALOG.iter().map(|c| PlannedStatement {
            sql: c.validate_sql(),
            lock: format!(
                "{} — after 008 commits, one transaction each",
                c.validate_lock()
            ),
        }));
        list
    } else {
        split_statements(migration.sql().unwrap_or_default())
            .into_iter()
            .map(|sql| PlannedStatement {
                lock: lock_taken(&sql),
                sql,
            })
            .collect()
    };
    PlannedMigration {
        version: migration.version(),
        name: migration.name().to_string(),
        statements,
    }
}

impl Details for MigrateReport {
    fn summary(&self, _dry_run: bool, _schema_version: i32) -> report::Summary {
        report::Summary::line(format!(
            "version {} → {}, {} applied, {} constraints validated",
            self.from_version,
            self.to_version,
            self.applied.len(),
            self.validated.len()
        ))
    }

    fn write_table(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(
            out,
            "from version {} to version {}",
            self.from_version, self.to_version
        )?;
        if let Some(plan) = &self.plan {
            if plan.is_empty() {
                writeln!(out, "Plan: nothing to apply.")?;
            }
            for m in plan {
                let t = report::statements_table(&m.statements);
                writeln!(out, "V{} {}\n{t}", m.version, m.name)?;
            }
        }
        if !self.applied.is_empty() {
            writeln!(
                out,
                "{}",
                report::migrations_table("applied", &self.applied)
            )?;
        }
        if let Some(planned) = self.would_restore.as_ref().filter(|p| !p.is_empty()) {
            writeln!(out, "Would restore from schema {}:", crate::archive::SCHEMA)?;
            let mut t = report::table(&["version", "object", "from", "rows"]);
            for p in planned {
                t.add_row(vec![
                    format!("V{}", p.version),
                    p.object.clone(),
                    p.archive.clone(),
                    p.rows.to_string(),
                ]);
            }
            writeln!(out, "{t}")?;
        }
        if let Some(p) = &self.preflight {
            writeln!(
                out,
                "preflight: {}",
                if p.ok {
                    "every row satisfies the catalog constraints".to_string()
                } else {
                    format!("{} violating rows", p.total_violations)
                }
            )?;
            if let Some(note) = &p.live_note {
                writeln!(out, "preflight: {note}.")?;
            }
        }
        if !self.blocked_by.is_empty() {
            writeln!(out, "Blocked by:")?;
            write_findings(out, &self.blocked_by)?;
            writeln!(out, "Next: `ruleiq-db cleanup --dry-run`, then `ruleiq-db cleanup`, then migrate again.")?;
        }
        if !self.validated.is_empty() {
            writeln!(out, "validated: {}", self.validated.join(", "))?;
        }
        if !self.restored.is_empty() {
            writeln!(out, "Restored from schema {}:", crate::archive::SCHEMA)?;
            let mut t = report::table(&["object", "from", "rows", "archive"]);
            for r in &self.restored {
                t.add_row(vec![
                    r.object.clone(),
                    r.archive.clone(),
                    r.rows.to_string(),
                    if r.archive_dropped { "dropped" } else { "kept" }.to_string(),
                ]);
            }
            writeln!(out, "{t}")?;
        }
        if let Some(e) = &self.estimate {
            let steps: Vec<String> = e
                .validate
                .iter()
                .map(|s| format!("{} {} ms", s.constraint, s.ms))
                .collect();
            writeln!(
                out,
                "estimated duration: {} ms (preflight {}; VALIDATE: {}). Based on {}.",
                e.total_ms,
                e.preflight_ms
                    .map_or("not run".to_string(), |ms| format!("{ms} ms")),
                if steps.is_empty() {
                    "none".to_string()
                } else {
                    steps.join(", ")
                },
                e.basis
            )?;
        }
        if let Some(found) = &self.blockers {
            blockers::write_table(out, found)?;
        }
        if self.replica_wait_ms > 0 {
            writeln!(
                out,
                "waited {} ms for the standbys to replay",
                self.replica_wait_ms
            )?;
        }
        if let Some(compat) = &self.compat {
            writeln!(
                out,
                "Compatibility schema {} (old and new column names, until `ruleiq-db compat --drop`):",
                compat.found.schema
            )?;
            writeln!(out, "{}", crate::compat::views_table(&compat.found.views))?;
            writeln!(
                out,
                "Application code that still uses legacy column names connects with {} (search_path={}).",
                compat.connection_option, compat.search_path
            )?;
        }
        Ok(())
    }
}
