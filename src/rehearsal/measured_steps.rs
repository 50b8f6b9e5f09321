//! The rehearsal's steps for a managed service's dump and for the queries measured before and
//! after 008: reading the dump for the roles and extensions it needs (before any server
//! starts), preparing the server for it, and the two measurements.

use super::dump_scan::{self, DumpNeeds};
use super::named_params::QuerySpec;
use super::queries::{self, Before, Comparison};
use super::report::Step;
use super::roles::{self, CompatGrant};
use crate::db::config::Target;
use crate::progress::Log;
use anyhow::Result;
use std::path::Path;
use std::time::Instant;

/// Reads the dump (streamed, with the bytes read on a terminal) for the roles it names and the
/// extensions it creates.
pub fn scan_dump(log: &Log, path: &Path) -> Result<DumpNeeds> {
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let bar = log.bytes_bar(size, "reading the dump");
    let needs = dump_scan::scan(path, &|read| bar.set_position(read));
    bar.finish_and_clear();
    needs
}

/// The step before loading a dump: an extension the server lacks fails it (naming what uses
/// it); each role the dump names that the server lacks is created NOLOGIN.
pub fn prepare_dump(log: &Log, target: &Target, needs: &DumpNeeds) -> (Step, Option<Vec<String>>) {
    let line = prepare_line();
    log.line(&format!("rehearse: {line}"));
    let started = Instant::now();
    match roles::prepare(target, needs) {
        Ok(created) => {
            let named = needs.roles_to_provide().len();
            let summary = if created.is_empty() {
                format!(
                    "the server has every role the dump names ({named}); {} extension(s) available",
                    needs.extensions.len()
                )
            } else {
                log.line(&format!(
                    "rehearse: the dump names roles this server lacks; created them as NOLOGIN roles: {}",
                    created.join(", ")
                ));
                format!(
                    "created {} NOLOGIN role(s) the dump names: {}",
                    created.len(),
                    created.join(", ")
                )
            };
            let report = serde_json::json!({
                "roles_named": needs.roles_to_provide(),
                "roles_created": created,
                "extensions": needs.extensions.iter().map(|e| e.name.clone()).collect::<Vec<_>>(),
            });
            (
                Step::finished("prepare dump", line, true, started, summary, report),
                Some(created),
            )
        }
        Err(e) => (Step::failed("prepare dump", line, started, &e), None),
    }
}

/// What the step before loading a dump does, as its report's `command`.
pub fn prepare_line() -> String {
    "create the roles the dump names (NOLOGIN), check its extensions".to_string()
}

/// What the measurement at version 7 does, as its report's `command`.
pub fn before_line() -> String {
    "the application's queries at version 7 with the legacy names: rows, plan, median time"
        .to_string()
}

/// What the measurement at version 8 does, as its report's `command`.
pub fn after_line() -> String {
    format!(
        "the same queries at version 8, full names and legacy names with search_path={}",
        crate::catalog::compat::SEARCH_PATH
    )
}

/// At version 7: the application's queries and the `--queries` ones with the legacy names.
pub fn measure_before(log: &Log, target: &Target, extra: &[QuerySpec]) -> (Step, Option<Before>) {
    let line = before_line();
    log.line(&format!("rehearse: {line}"));
    let started = Instant::now();
    match queries::before(target, extra) {
        Ok(before) => {
            let failed: Vec<String> = before
                .specs
                .iter()
                .zip(&before.measured)
                .filter_map(|(s, m)| m.as_ref().err().map(|e| format!("{}: {e}", s.name)))
                .collect();
            let ok = failed.is_empty();
            let summary = if ok {
                format!(
                    "{} queries measured ({} timed runs each after a warm-up)",
                    before.specs.len(),
                    queries::RUNS
                )
            } else {
                format!(
                    "{} of {} queries failed: {}",
                    failed.len(),
                    before.specs.len(),
                    failed.join("; ")
                )
            };
            let report = serde_json::json!({
                "queries": before.specs.iter().zip(&before.measured).map(|(s, m)| serde_json::json!({
                    "name": s.name,
                    "params": s.shown,
                    "measured": m.as_ref().ok(),
                    "error": m.as_ref().err(),
                })).collect::<Vec<_>>(),
            });
            (
                Step::finished("measure before", line, ok, started, summary, report),
                Some(before),
            )
        }
        Err(e) => (Step::failed("measure before", line, started, &e), None),
    }
}

/// What the measurement at version 8 found.
#[derive(Debug, Default)]
pub struct After {
    pub queries: Vec<Comparison>,
    pub compat_grants: Vec<CompatGrant>,
}

/// At version 8: the same queries with the full names and through `ruleiq_compat`, compared with
/// version 7; and whether each role that may read a renamed table may read its view. Other rows,
/// a failure, or a role that lost its read through the view fail the step; a changed plan or a
/// slowdown is named.
pub fn measure_after(log: &Log, target: &Target, before: Option<&Before>) -> (Step, After) {
    let line = after_line();
    log.line(&format!("rehearse: {line}"));
    let started = Instant::now();
    let failed = |line: String, e: anyhow::Error| {
        (
            Step::failed("measure after", line, started, &e),
            After::default(),
        )
    };
    let Some(before) = before else {
        return failed(line, anyhow::anyhow!("nothing was measured at version 7"));
    };
    let result = queries::after(target, before).and_then(|compared| {
        let mut client = crate::db::connect(target)?;
        Ok((compared, roles::compat_grants(&mut client)?))
    });
    match result {
        Ok((compared, grants)) => {
            let lost: Vec<String> = grants
                .iter()
                .filter(|g| !g.view_select)
                .map(|g| format!("{} may read {} but not {}", g.role, g.table, g.view))
                .collect();
            let mut summary = queries::summary(&compared);
            if !grants.is_empty() {
                summary.push_str(&if lost.is_empty() {
                    format!(
                        "; {} role grant(s) reach the compatibility views",
                        grants.len()
                    )
                } else {
                    format!("; {}", lost.join("; "))
                });
            }
            let ok = compared.iter().all(|c| c.rows_same && c.problem.is_none()) && lost.is_empty();
            let report = serde_json::json!({ "queries": compared, "compat_grants": grants });
            (
                Step::finished("measure after", line, ok, started, summary, report),
                After {
                    queries: compared,
                    compat_grants: grants,
                },
            )
        }
        Err(e) => failed(line, e),
    }
}
