//! The preflight before 008: every catalog constraint checked against every row, because 008
//! adds them and a violating row would make the application's next write fail.

use crate::catalog::constraints::CATALOG;
use crate::constraints::check::{self, Finding};
use crate::constraints::live;
use crate::db::config::Target;
use crate::progress::Log;
use anyhow::Result;
use postgres::Client;
use serde::Serialize;

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

/// What the preflight found.
#[derive(Debug)]
pub struct Verdict {
    pub preflight: Preflight,
    /// The constraints with violating rows, which stop 008 (empty when `preflight.ok`).
    pub blocked_by: Vec<Finding>,
}

/// Checks every catalog constraint (reads only); when rows violate them, says so on stderr
/// with the way forward.
pub fn run(target: &Target, client: &mut Client, log: &Log) -> Result<Verdict> {
    let all: Vec<_> = CATALOG.iter().collect();
    let (findings, live_since) =
        check::check_live(target, client, &all, log, live::DEFAULT_WINDOW)?;
    let total = check::total_violations(&findings);
    let total_live = check::total_live_violations(&findings);
    let live_note = (total_live > 0).then(|| live::meaning(total_live, &live_since));
    let preflight = Preflight {
        ok: total == 0,
        total_violations: total,
        total_live_violations: total_live,
        live_note: live_note.clone(),
    };
    if total == 0 {
        return Ok(Verdict {
            preflight,
            blocked_by: Vec::new(),
        });
    }
    log.line(&format!(
        "preflight: {total} rows violate the constraints 008 would add; nothing of 008 was applied. See `ruleiq-db check-constraints --dry-run`, repair with `ruleiq-db cleanup`"
    ));
    if let Some(note) = &live_note {
        log.line(&format!("preflight: {note}"));
    }
    Ok(Verdict {
        preflight,
        blocked_by: findings.into_iter().filter(|f| f.violations > 0).collect(),
    })
}
