//! The rehearsal's last step with --with-standby: the standby, once it has replayed everything,
//! must hold exactly the primary's rows.

use super::report::{error_report, StandbyCheck, Step};
use super::STANDBY_NAME;
use crate::db::config::Target;
use crate::db::replication;
use crate::progress::Log;
use anyhow::Result;
use serde_json::Value;
use std::time::{Duration, Instant};

/// How long the standby may take to replay what the rehearsal wrote.
const REPLAY_TIMEOUT: Duration = Duration::from_secs(120);

/// The standby step: waits for replay, compares, and says how it went.
pub fn step(log: &Log, primary: &Target, standby: &Target) -> (Step, Option<StandbyCheck>) {
    let started = Instant::now();
    let checked = compare(log, primary, standby);
    let (ok, summary, report) = match &checked {
        Ok(c) if c.identical => (
            true,
            format!(
                "the standby replayed everything: {} tables, {} rows, identical",
                c.tables, c.rows
            ),
            serde_json::to_value(c).unwrap_or(Value::Null),
        ),
        Ok(c) => (
            false,
            format!("the standby differs: {}", c.differing.join(", ")),
            serde_json::to_value(c).unwrap_or(Value::Null),
        ),
        Err(e) => (false, format!("{e:#}"), error_report(e)),
    };
    let step = Step::finished(
        "standby",
        format!("compare standby '{STANDBY_NAME}' with the primary"),
        ok,
        started,
        summary,
        report,
    );
    (step, checked.ok())
}

/// Waits until the standby has replayed everything, then compares every table on both servers.
fn compare(log: &Log, primary: &Target, standby: &Target) -> Result<StandbyCheck> {
    let mut on_primary = crate::db::connect(primary)?;
    let waited =
        replication::wait_until_replayed(&mut on_primary, log, "the rehearsal", REPLAY_TIMEOUT)?;
    let expected = replication::fingerprint(&mut on_primary)?;
    let actual = replication::fingerprint(&mut crate::db::connect(standby)?)?;
    let mut differing: Vec<String> = expected
        .iter()
        .filter(|(table, digest)| actual.get(*table) != Some(digest))
        .map(|(table, _)| table.clone())
        .collect();
    differing.extend(
        actual
            .keys()
            .filter(|t| !expected.contains_key(*t))
            .cloned(),
    );
    Ok(StandbyCheck {
        name: STANDBY_NAME.into(),
        replica_wait_ms: waited.as_millis() as u64,
        tables: expected.len(),
        rows: expected.values().map(|(rows, _)| rows).sum(),
        identical: differing.is_empty(),
        differing,
    })
}
