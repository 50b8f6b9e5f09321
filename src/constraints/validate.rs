//! Turning NOT VALID constraints into valid ones: `VALIDATE CONSTRAINT`, one transaction each.
//! It takes SHARE UPDATE EXCLUSIVE, so the application reads and writes while it scans, and
//! different tables are validated at the same time.

use crate::catalog::constraints::{self as catalog, Constraint, CATALOG};
use crate::constraints::presence::{presence_of, ConstraintState};
use crate::db::introspect;
use crate::db::session::Retrying;
use crate::db::{self, Session};
use crate::progress::Log;
use anyhow::Result;
use indicatif::ProgressBar;
use postgres::error::SqlState;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// What a validation pass did.
#[derive(Debug, Default)]
pub struct Validation {
    pub validated: Vec<&'static str>,
    /// Constraints whose VALIDATE found violating rows: still NOT VALID.
    pub blocked: Vec<&'static Constraint>,
    /// How long each VALIDATE of `validated` took, in the same order: what a DBA holds
    /// `migrate --dry-run`'s estimate against.
    pub durations: Vec<Timed>,
}

/// How long one VALIDATE took, retries and lock waits included.
#[derive(Debug, Clone, Serialize)]
pub struct Timed {
    pub constraint: &'static str,
    pub ms: u64,
}

/// Validates every catalog constraint (of `only`, if given, which may hold a later
/// migration's) that exists NOT VALID. After each VALIDATE, the session (or its worker) waits
/// until the standbys have replayed it, so that a standby does not
/// go on answering with the constraint not valid for long.
///
/// VALIDATE takes SHARE UPDATE EXCLUSIVE, which conflicts with itself but not across tables:
/// each table's constraints are validated one after another, and different tables at the same
/// time, the first table's on `session` and each other table's on a worker of its own
/// ([`Session::worker`], under the session's migration lock). One transaction per constraint
/// either way, retried as the session's own work is.
pub fn validate_not_valid(
    session: &mut Session,
    only: Option<&[&'static Constraint]>,
) -> Result<Validation> {
    let log = &session.log().clone();
    // Catalog order first; a constraint of a catalog handed in that this build lacks after them.
    let wanted_by = |c: &Constraint| only.is_none_or(|list| list.iter().any(|o| o.name == c.name));
    let mut candidates: Vec<&'static Constraint> =
        CATALOG.iter().filter(|c| wanted_by(c)).collect();
    candidates.extend(
        only.into_iter()
            .flatten()
            .filter(|o| !CATALOG.iter().any(|c| c.name == o.name)),
    );
    let presence = presence_of(session.client(), &candidates)?;
    // Every table's size in one query, for the progress bar's ETA.
    let sizes = introspect::table_sizes(
        session.client(),
        &catalog::tables_read(candidates.iter().copied()),
    )?;
    // A foreign key not adopted yet is validated under its own name.
    let wanted: Vec<Pending> = candidates
        .iter()
        .copied()
        .filter_map(|c| {
            let p = presence.get(c.name)?;
            (p.state == ConstraintState::NotValid).then(|| Pending {
                constraint: c,
                actual_name: p.actual_name.clone().unwrap_or_else(|| c.name.to_string()),
                bytes: c.tables_read().map(|table| sizes.bytes(table) as u64).sum(),
            })
        })
        .collect();
    let bar = log.bytes_bar(
        wanted.iter().map(|p| p.bytes).sum(),
        "validating constraints",
    );
    let groups = by_table(wanted);
    let shared = Shared {
        log,
        bar: &bar,
        validated: Mutex::new(Vec::new()),
        stop: AtomicBool::new(false),
    };
    let mut results: Vec<Result<Vec<&'static Constraint>>> = Vec::new();
    if let Some((first, rest)) = groups.split_first() {
        // A server out of connection slots only makes this slower: such a table's constraints
        // are validated on the main session, after its own.
        let mut on_main = vec![first];
        let mut own_sessions = Vec::new();
        for group in rest {
            match session.worker() {
                Ok(worker) => own_sessions.push((group, worker)),
                Err(e) => {
                    log.line(&format!(
                        "validating {}'s constraints after the others: no session of its own ({e:#})",
                        group[0].constraint.table
                    ));
                    on_main.push(group);
                }
            }
        }
        std::thread::scope(|scope| {
            let shared = &shared;
            let handles: Vec<_> = own_sessions
                .into_iter()
                .map(|(group, mut worker)| {
                    scope.spawn(move || validate_group(&mut worker, group, shared))
                })
                .collect();
            for group in on_main {
                results.push(validate_group(session, group, shared));
            }
            for handle in handles {
                results.push(handle.join().expect("validation worker panicked"));
            }
        });
    }
    bar.finish_and_clear();
    let mut durations = shared.validated.into_inner().expect("validated list");
    let mut blocked: Vec<&'static Constraint> = Vec::new();
    let mut first_error = None;
    for result in results {
        match result {
            Ok(list) => blocked.extend(list),
            Err(e) if first_error.is_none() => first_error = Some(e),
            Err(_) => {}
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    // The report lists them in catalog order, whichever session finished first.
    let position = |name: &str| candidates.iter().position(|c| c.name == name);
    durations.sort_by_key(|t| position(t.constraint));
    blocked.sort_by_key(|c| position(c.name));
    Ok(Validation {
        validated: durations.iter().map(|t| t.constraint).collect(),
        blocked,
        durations,
    })
}

struct Pending {
    constraint: &'static Constraint,
    actual_name: String,
    /// What its VALIDATE reads, for the progress bar's ETA.
    bytes: u64,
}

/// What the sessions validating at the same time share.
struct Shared<'a> {
    log: &'a Log,
    bar: &'a ProgressBar,
    validated: Mutex<Vec<Timed>>,
    /// Set when a session fails: the others stop before their next VALIDATE.
    stop: AtomicBool,
}

/// The constraints grouped by table, each group in catalog order, groups in order of their
/// first constraint.
fn by_table(wanted: Vec<Pending>) -> Vec<Vec<Pending>> {
    let mut groups: Vec<Vec<Pending>> = Vec::new();
    for p in wanted {
        match groups
            .iter_mut()
            .find(|g| g[0].constraint.table == p.constraint.table)
        {
            Some(group) => group.push(p),
            None => groups.push(vec![p]),
        }
    }
    groups
}

/// Validates one table's constraints, one transaction each; returns those rows block.
fn validate_group(
    connection: &mut impl Retrying,
    group: &[Pending],
    shared: &Shared<'_>,
) -> Result<Vec<&'static Constraint>> {
    let mut blocked = Vec::new();
    for Pending {
        constraint: c,
        actual_name,
        bytes,
    } in group
    {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        shared.bar.set_message(c.name);
        let started = Instant::now();
        let result = connection.run_patiently(
            &format!("validate {}", c.name),
            &c.validate_sql_as(actual_name),
        );
        match result {
            Ok(()) => {
                shared
                    .validated
                    .lock()
                    .expect("validated list")
                    .push(Timed {
                        constraint: c.name,
                        ms: started.elapsed().as_millis() as u64,
                    });
                let waited = connection.wait_for_replay(&format!("VALIDATE {}", c.name));
                if let Err(e) = waited {
                    shared.stop.store(true, Ordering::SeqCst);
                    return Err(e);
                }
            }
            Err(e)
                if matches!(
                    db::sql_state(&e),
                    Some(code) if *code == SqlState::CHECK_VIOLATION || *code == SqlState::FOREIGN_KEY_VIOLATION
                ) =>
            {
                shared.log.line(&format!(
                    "{} stays NOT VALID: rows violate it (see check-constraints)",
                    c.name
                ));
                blocked.push(*c);
            }
            Err(e) => {
                shared.stop.store(true, Ordering::SeqCst);
                let before: Vec<&str> = shared
                    .validated
                    .lock()
                    .expect("validated list")
                    .iter()
                    .map(|t| t.constraint)
                    .collect();
                return Err(e.context(interrupted(c, &before)));
            }
        }
        shared.bar.inc(*bytes);
    }
    Ok(blocked)
}

/// What a VALIDATE that did not finish leaves behind: its transaction rolled back, so the
/// constraint is still NOT VALID (new rows are checked, old ones not yet), and those validated
/// before it stay valid.
fn interrupted(c: &Constraint, validated: &[&str]) -> String {
    let before = if validated.is_empty() {
        String::new()
    } else {
        format!(" ({} validated before it)", validated.join(", "))
    };
    format!(
        "VALIDATE CONSTRAINT {} on {} did not finish: the constraint stays NOT VALID{before}; run `ruleiq-db check-constraints` to validate it",
        c.name, c.table
    )
}
