//! The rehearsal's step for old and new application code after 008.

use super::report::{error_report, Step};
use crate::db::config::Target;
use crate::progress::Log;
use std::time::Instant;

/// What the step does, as its report's `command`.
pub fn line() -> String {
    format!(
        "the application's queries, legacy and full names, with search_path={}",
        crate::catalog::compat::SEARCH_PATH
    )
}

/// Old and new application code after 008: the application's queries with the legacy and the
/// full column names through the compatibility schema, and with the full names against the
/// tables, all returning the same rows.
pub fn step(log: &Log, target: &Target) -> Step {
    let line = line();
    log.line(&format!("rehearse: {line}"));
    let started = Instant::now();
    let (ok, summary, report) = match crate::app_queries::run_all(target) {
        Ok(runs) => {
            let failed: Vec<String> = runs
                .iter()
                .filter_map(|r| {
                    r.problem
                        .as_ref()
                        .map(|p| format!("{} ({:?}, {}): {p}", r.query, r.names, r.search_path))
                })
                .collect();
            let summary = if failed.is_empty() {
                format!(
                    "{} runs of the 3 queries (old names and new), same rows every time",
                    runs.len()
                )
            } else {
                format!(
                    "{} of {} runs failed: {}",
                    failed.len(),
                    runs.len(),
                    failed.join("; ")
                )
            };
            (
                failed.is_empty(),
                summary,
                serde_json::json!({ "command": "application queries", "runs": runs }),
            )
        }
        Err(e) => (false, format!("{e:#}"), error_report(&e)),
    };
    Step::finished("application queries", line, ok, started, summary, report)
}
