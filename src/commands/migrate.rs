//! `migrate`: apply pending migrations one transaction each, with the preflight before 008 and
//! validation after it. The work is the migrate engine's (`crate::migrate`); this parses the
//! options, calls it in order and builds the report.

mod render;

use super::{Outcome, Settings};
use crate::archive::restore::{self, Restored};
use crate::catalog::migrations::{self, REPAIR_VERSION};
use crate::catalog::Catalog;
use crate::constraints::check::Finding;
use crate::constraints::validate::Timed;
use crate::db::blockers;
use crate::db::{Connection, Session};
use crate::exit::Code;
use crate::health::estimate::Estimate;
use crate::history;
use crate::migrate::preflight::{self, Verdict};
use crate::migrate::steps::{self, Run};
use crate::migrate::{plan, PlannedMigration, Preflight};
use crate::refusal::Refusal;
use crate::report::{MigrationRun, Report};
use anyhow::Result;
use serde::Serialize;

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
    /// How long each VALIDATE of `validated` took, beside `--dry-run`'s `estimate.validate`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub validate_ms: Vec<Timed>,
    /// What the applied migrations created again and a rollback had archived, put back.
    pub restored: Vec<Restored>,
    /// With --dry-run: what the pending migrations would put back from the archive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub would_restore: Option<Vec<restore::Planned>>,
    /// With --dry-run: sessions that would make the migrations' table locks wait.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blockers: Option<Vec<blockers::Blocker>>,
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

pub fn run(settings: &Settings, args: &crate::cli::MigrateArgs) -> Result<Outcome> {
    let (target, client) = settings.connect()?;
    let mut conn = if args.dry_run {
        Connection::reading(client)
    } else {
        Connection::changing(settings.begin_session(target.clone(), client)?)
    };
    let applied = history::read(conn.client())?;
    history::verify(&applied)?;
    history::refuse_unadopted(conn.client(), &applied)?;
    let from = history::current_version(&applied);
    settings.journal.version(from);
    let to = resolve_target(args.target, from)?;
    let catalog = Catalog::embedded();
    let pending = catalog.pending(from, to);

    let mut details = MigrateReport {
        from_version: from,
        to_version: from,
        ..Default::default()
    };
    let includes_repair = pending.iter().any(|m| m.version() == REPAIR_VERSION);
    let adding = catalog.added_by_any(&pending);
    let first_adding = adding.iter().map(|c| c.migration).min();
    let restores = restore::planned(conn.client(), &pending)?;
    let restores_before_adding = restores
        .iter()
        .any(|r| first_adding.is_some_and(|first| r.version < first));
    let plans: Vec<PlannedMigration> = pending
        .iter()
        .map(|m| plan::plan_of(&catalog, m, args.no_compat))
        .collect();
    let scope = plan::blocker_scope(&plans);
    if args.dry_run {
        // Shown also when the preflight blocks: what 008 will do once the rows are clean.
        details.plan = Some(plans);
        let limits = settings.safety.blocker_limits();
        details.blockers = Some(blockers::find(conn.client(), &scope, &limits)?);
        // The preflight runs in full right below unless it is deferred: its scans are then
        // timed, not sampled.
        let preflight_timed = first_adding.is_some() && !restores_before_adding;
        let found = plan::look_ahead(
            conn.client(),
            &target,
            &catalog,
            &pending,
            to,
            preflight_timed,
        )?;
        details.estimate_ms = Some(found.total_ms);
        details.estimate = Some(found);
    }
    if includes_repair {
        crate::constraints::spelling::refuse_rename_conflicts(
            conn.client(),
            "008 cannot repair column names",
            "migrate again",
        )?;
    }
    if let Some(first) = first_adding {
        if restores_before_adding {
            // The rows cannot be judged yet: values a rollback archived (approvals, for one)
            // come back only with the migrations before the one adding constraints. The
            // preflight runs right before it instead.
            settings.log.line(&format!("preflight deferred: the migrations before {first:03} first put back what a rollback archived; the rows are checked right before {first:03}"));
        } else {
            let verdict = preflight::run(&target, conn.client(), &settings.log, from, &adding)?;
            if let Some(estimate) = details.estimate.as_mut() {
                estimate.check_timed(
                    std::time::Duration::from_millis(verdict.preflight.duration_ms),
                    &verdict.timed,
                );
                details.estimate_ms = Some(estimate.total_ms);
            }
            if let Some(outcome) = preflight_outcome(&mut details, verdict, args.dry_run) {
                return Ok(outcome);
            }
        }
    }
    let mut session = match conn {
        Connection::Reading(_) => {
            details.would_restore = Some(restores);
            details.to_version = to;
            return Ok(finish(details, true, true, from, Code::Ok));
        }
        Connection::Changing(session) => *session,
    };
    let apply = |session: &mut Session| {
        steps::apply_pending(
            &mut Run {
                session,
                journal: &settings.journal,
                no_compat: args.no_compat,
                catalog: &catalog,
            },
            &pending,
        )
    };
    let done = if pending.is_empty() {
        settings.log.line(&format!(
            "nothing to migrate: the database is at version {from}"
        ));
        apply(&mut session)?
    } else {
        session.locking_for_ddl(&scope, apply)?
    };
    details.to_version = done.applied.last().map_or(from, |r| r.version);
    details.applied = done.applied;
    details.restored = done.restored;
    details.compat = done.compat;
    if let Some(verdict) = done.preflight {
        if let Some(outcome) = preflight_outcome(&mut details, verdict, false) {
            return Ok(outcome);
        }
    }

    let mut code = Code::Ok;
    if details.to_version >= REPAIR_VERSION {
        let validation = steps::validate(&mut session, &catalog)?;
        details.validated = validation.validated;
        details.validate_ms = validation.durations;
        if let Some(blocked_by) = validation.blocked_by {
            details.blocked_by = blocked_by;
            code = Code::Violations;
        }
    }
    details.replica_wait_ms = session.replica_waited().as_millis() as u64;
    let version = details.to_version;
    Ok(finish(details, code == Code::Ok, false, version, code))
}

/// Notes the preflight's verdict; returns the finished outcome when rows block the repair.
fn preflight_outcome(
    details: &mut MigrateReport,
    verdict: Verdict,
    dry_run: bool,
) -> Option<Outcome> {
    let ok = verdict.preflight.ok;
    details.preflight = Some(verdict.preflight);
    if ok {
        return None;
    }
    details.blocked_by = verdict.blocked_by;
    let version = details.to_version;
    Some(finish(
        std::mem::take(details),
        false,
        dry_run,
        version,
        Code::Violations,
    ))
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
        )).fail();
    }
    if target < from {
        return Refusal::TargetOutOfRange(format!(
            "--target {target} is below the current version {from}: migrate only goes up; use `ruleiq-db rollback --to {target}`"
        )).fail();
    }
    Ok(target)
}
