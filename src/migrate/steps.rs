//! A migrate run's changes, all through the [`Session`]: the pending migrations one transaction
//! each (the preflight again right before 008 when earlier ones ran first), 008's
//! compatibility schema handled as soon as 008 commits, and the NOT VALID constraints validated
//! at the end.

use super::preflight::{self, Verdict};
use crate::archive::restore::Restored;
use crate::catalog::compat::{CONNECTION_OPTION, SCHEMA};
use crate::catalog::migrations::REPAIR_VERSION;
use crate::compat::Created;
use crate::constraints::check::{self, Finding};
use crate::constraints::validate;
use crate::db::{Query, Retrying, Session};
use crate::journal::Journal;
use crate::report::MigrationRun;
use anyhow::Result;
use refinery::Migration;
use std::time::Instant;

/// What the run works with besides the migrations.
pub struct Run<'a> {
    /// Waits for the standbys between migrations and after 008, too.
    pub session: &'a mut Session,
    /// Where each committed migration is noted for the failure document.
    pub journal: &'a Journal,
    /// --no-compat: drop 008's compatibility schema right after 008 commits.
    pub no_compat: bool,
}

/// What applying the pending migrations did.
#[derive(Debug, Default)]
pub struct Applied {
    pub applied: Vec<MigrationRun>,
    /// What the applied migrations created again and a rollback had archived, put back.
    pub restored: Vec<Restored>,
    /// The compatibility schema, when this run's 008 created it and kept it.
    pub compat: Option<Created>,
    /// The preflight run right before 008 (earlier migrations ran first). When rows block it,
    /// the run stopped there.
    pub preflight: Option<Verdict>,
}

/// Applies `pending` in order, one transaction each.
pub fn apply_pending(run: &mut Run<'_>, pending: &[Migration]) -> Result<Applied> {
    let log = run.session.log().clone();
    let mut done = Applied::default();
    let bar = log.bar(pending.len() as u64, "migrating");
    for m in pending {
        run.session.pace()?;
        if m.version() == REPAIR_VERSION && !done.applied.is_empty() {
            // Rows may have changed while the earlier migrations ran: look again, right before.
            let target = run.session.target().clone();
            let at = done.applied.last().map_or(0, |r| r.version);
            let verdict = preflight::run(&target, run.session.client(), &log, at)?;
            let blocked = !verdict.preflight.ok;
            done.preflight = Some(verdict);
            if blocked {
                return Ok(done);
            }
        }
        let roles_recorded = m.version() == REPAIR_VERSION
            && !crate::compat::recorded_roles(run.session.client())?.is_empty();
        if roles_recorded {
            // A session of a role pointed at the views that predates the setting resolves
            // names in `public`: after the renames its legacy names would fail. Wait for such
            // sessions within --lock-wait, never terminating one (docs/design.md §7).
            let wait = run.session.safety().lock_wait;
            crate::compat::wait_in_effect(
                run.session.client(),
                wait,
                &log,
                &format!(
                    "migrate: V{} {} was not applied (the database stays at version {}), because",
                    m.version(),
                    m.name(),
                    m.version() - 1
                ),
            )?;
        }
        bar.set_message(format!("V{} {}", m.version(), m.name()));
        log.line(&format!("applying V{} {}", m.version(), m.name()));
        let started = Instant::now();
        // 008 re-creates the views over the new names in its transaction; the recorded roles
        // get their rights on them in the same transaction, so no session of theirs finds a
        // view it may not use (docs/design.md §7).
        let views_before: Vec<String> = if m.version() == REPAIR_VERSION {
            crate::compat::inspect(run.session.client())?
                .map(|f| f.views.into_iter().map(|v| v.view).collect())
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let lock_views = crate::catalog::compat::lock_views(&views_before);
        let restored = crate::apply::apply_around(
            run.session,
            m,
            |tx| {
                // Views made before 008 (`compat --for-role`) are locked before its tables.
                if let Some(lock) = &lock_views {
                    tx.batch(lock)?;
                }
                Ok(())
            },
            |tx| {
                if roles_recorded {
                    let roles: Vec<String> = crate::compat::recorded_roles(tx)?
                        .into_iter()
                        .map(|(r, _)| r)
                        .collect();
                    crate::compat::sync_rights(tx, &roles)?;
                }
                Ok(())
            },
        )?;
        for r in &restored {
            log.line(&format!(
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
        done.restored.extend(restored);
        let applied = MigrationRun {
            version: m.version(),
            name: m.name().to_string(),
            duration_ms: started.elapsed().as_millis() as u64,
        };
        run.journal.applied(&applied);
        done.applied.push(applied);
        if m.version() == REPAIR_VERSION {
            done.compat = after_repair(run.session, run.no_compat)?;
            // The application reads the new names from the primary now: the standbys must
            // follow before anything else happens.
            run.session
                .wait_for_replay(&format!("V{} {}", m.version(), m.name()))?;
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(done)
}

/// Right after 008 commits: with --no-compat the compatibility schema 008 created goes again;
/// otherwise the report says how the application reaches it.
fn after_repair(session: &mut Session, no_compat: bool) -> Result<Option<Created>> {
    if no_compat && !crate::compat::recorded_roles(session.client())?.is_empty() {
        // Roles are pointed at the views: dropping them would break their legacy names now.
        session.log().line(&format!(
            "--no-compat: schema {SCHEMA} is kept, roles are pointed at it (`ruleiq-db compat` lists them); end it with `ruleiq-db compat --drop`"
        ));
    } else if no_compat {
        crate::compat::drop_retried(session).map_err(|e| {
            e.context(format!(
                "008 was applied, but its compatibility schema {SCHEMA} could not be dropped (--no-compat); drop it with `ruleiq-db compat --drop`"
            ))
        })?;
        session.log().line(&format!(
            "--no-compat: dropped schema {SCHEMA} after 008 committed"
        ));
        return Ok(None);
    }
    let Some(found) = crate::compat::inspect(session.client())? else {
        return Ok(None);
    };
    session.log().line(&format!(
        "008 created schema {}: application code that still uses legacy column names connects with {CONNECTION_OPTION}",
        found.schema
    ));
    Ok(Some(Created::new(found)))
}

/// What validating after 008 did.
#[derive(Debug, Default)]
pub struct Validated {
    pub validated: Vec<&'static str>,
    /// How long each of `validated` took.
    pub durations: Vec<validate::Timed>,
    /// The constraints rows still violate, counted: they stay NOT VALID (None when none).
    pub blocked_by: Option<Vec<Finding>>,
}

/// Validates every catalog constraint that is NOT VALID; those rows block are counted for the
/// report.
pub fn validate(session: &mut Session) -> Result<Validated> {
    let validation = validate::validate_not_valid(session, None)?;
    let mut done = Validated {
        validated: validation.validated,
        durations: validation.durations,
        blocked_by: None,
    };
    if !validation.blocked.is_empty() {
        let target = session.target().clone();
        let log = session.log().clone();
        done.blocked_by = Some(check::check(
            &target,
            session.client(),
            &validation.blocked,
            &log,
        )?);
        log.line("some constraints stay NOT VALID because rows violate them: run `ruleiq-db check-constraints --dry-run`, then `ruleiq-db cleanup`, then `ruleiq-db check-constraints` to validate");
    }
    Ok(done)
}
