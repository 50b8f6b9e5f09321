//! The preflight before a migration that adds catalog constraints (008, and any later one):
//! every constraint the pending migrations add checked against every row, because a violating row under a NOT VALID constraint would make the
//! application's next write of it fail.
//!
//! A constraint the database already holds VALID is not scanned again: PostgreSQL enforces a
//! valid CHECK on every row, and a valid foreign key (production's two, which 008 adopts by
//! renaming them) already stands over whatever rows a restore with triggers disabled may have
//! left; 008 changes nothing for them, and updates of such rows keep working. Scanning 500 MB
//! of child tables to prove it again was most of the preflight. `check-constraints` still
//! counts those rows.

use crate::catalog::constraints::Constraint;
use crate::constraints::check::{self, ConstraintState, Finding};
use crate::constraints::cost::TimedScans;
use crate::constraints::live;
use crate::constraints::presence::presence_of;
use crate::db::config::Target;
use crate::progress::Log;
use anyhow::Result;
use postgres::Client;
use serde::Serialize;
use std::time::Instant;

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
    /// Catalog constraints the database already holds valid (a foreign key 008 adopts): not
    /// scanned, since 008 adds nothing over their rows; `check-constraints` counts them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub already_enforced: Vec<&'static str>,
    /// How long the scan took: what `migrate --dry-run`'s `estimate.preflight_ms` foretold.
    pub duration_ms: u64,
}

/// What the preflight found.
#[derive(Debug)]
pub struct Verdict {
    pub preflight: Preflight,
    /// The constraints with violating rows, which stop 008 (empty when `preflight.ok`).
    pub blocked_by: Vec<Finding>,
    /// The preflight's scans as they went, for a dry run's estimate.
    pub timed: TimedScans,
}

/// Checks `adding` (the constraints the pending migrations add) wherever the database does not
/// already hold them valid (reads only); when rows violate them, says so on stderr with the way
/// forward. `version` is the one the database is at: a preflight that does not finish (the
/// server restarted, the connection was cut) says that it left it there, with nothing of those
/// migrations applied.
pub fn run(
    target: &Target,
    client: &mut Client,
    log: &Log,
    version: i32,
    adding: &[&'static Constraint],
) -> Result<Verdict> {
    let by = Migrations::adding(adding);
    scan(target, client, log, adding, &by).map_err(|e| e.context(interrupted(&by, version)))
}

/// The migrations that add the constraints checked, as messages name them (`008`).
struct Migrations(String);

impl Migrations {
    fn adding(constraints: &[&Constraint]) -> Migrations {
        let mut versions: Vec<i32> = constraints.iter().map(|c| c.migration).collect();
        versions.sort_unstable();
        versions.dedup();
        let named: Vec<String> = versions.iter().map(|v| format!("{v:03}")).collect();
        Migrations(named.join(", "))
    }
}

/// What a preflight that did not finish leaves behind: nothing, since it only reads.
fn interrupted(by: &Migrations, version: i32) -> String {
    let by = &by.0;
    format!(
        "the preflight before {by} (every row checked against the constraints {by} adds) did not finish: it only reads, so nothing of {by} was applied and the database stays at version {version}; run `ruleiq-db migrate` again once the server is back"
    )
}

fn scan(
    target: &Target,
    client: &mut Client,
    log: &Log,
    adding: &[&'static Constraint],
    by: &Migrations,
) -> Result<Verdict> {
    let started = Instant::now();
    let presence = presence_of(client, adding)?;
    let (enforced, scanned): (Vec<&Constraint>, Vec<&Constraint>) = adding
        .iter()
        .copied()
        .partition(|c| presence.get(c.name).map(|p| p.state) == Some(ConstraintState::Valid));
    let already_enforced: Vec<&'static str> = enforced.iter().map(|c| c.name).collect();
    if !already_enforced.is_empty() {
        log.line(&format!(
            "preflight: {} already valid in the database, not scanned again (`check-constraints` counts every constraint)",
            already_enforced.join(", ")
        ));
    }
    let check::Checked {
        findings,
        live_since,
        timed,
    } = check::check_live(target, client, &scanned, log, live::DEFAULT_WINDOW)?;
    let total = check::total_violations(&findings);
    let total_live = check::total_live_violations(&findings);
    let live_note = (total_live > 0).then(|| live::meaning(total_live, &live_since));
    let preflight = Preflight {
        ok: total == 0,
        total_violations: total,
        total_live_violations: total_live,
        live_note: live_note.clone(),
        already_enforced,
        duration_ms: started.elapsed().as_millis() as u64,
    };
    if total == 0 {
        return Ok(Verdict {
            preflight,
            blocked_by: Vec::new(),
            timed,
        });
    }
    let by = &by.0;
    log.line(&format!(
        "preflight: {total} rows violate the constraints {by} would add; nothing of {by} was applied. See `ruleiq-db check-constraints --dry-run`, repair with `ruleiq-db cleanup`"
    ));
    if let Some(note) = &live_note {
        log.line(&format!("preflight: {note}"));
    }
    Ok(Verdict {
        preflight,
        blocked_by: findings.into_iter().filter(|f| f.violations > 0).collect(),
        timed,
    })
}
