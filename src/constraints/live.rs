//! Live violations (docs/design.md §1.2 point 4): violating rows the application created or
//! updated recently, so cleaning old rows alone will not make the constraints hold.
//!
//! "Recently" is after the last completed cleanup run (every violation older than that was
//! repaired then), else within `--live-window`. The checker counts them in the scan it already
//! makes: one more boolean column per row, no second pass.

use super::spelling::DatabaseSpelling;
use crate::catalog::audit;
use crate::catalog::sql::quote_ident;
use crate::db::Query;
use crate::units::count;
use anyhow::Result;
use chrono::{DateTime, Utc};
use postgres::GenericClient;
use serde::Serialize;
use std::time::Duration;

/// `--live-window`'s default: a week.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);

/// The columns that say when the application last wrote a row.
const TIME_COLUMNS: &[&str] = &["created_at", "updated_at"];

/// From when on a violating row counts as live, and why from then.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LiveSince {
    /// Not in reports when the window applies: it moves with the clock, and two runs over the
    /// same data must give the same report.
    #[serde(skip)]
    pub since: DateTime<Utc>,
    /// The completed cleanup run the count starts after (None: the window applies).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_cleanup_run: Option<String>,
    /// When that run finished.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cleanup_finished_at: Option<DateTime<Utc>>,
    /// The window, in seconds, when no cleanup run has completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_s: Option<u64>,
}

impl LiveSince {
    /// Reads the last completed cleanup run; without one, `window` back from now (the
    /// server's clock, which wrote the rows' timestamps).
    pub fn resolve(
        client: &mut (impl Query + GenericClient),
        window: Duration,
    ) -> Result<LiveSince> {
        if let Some((run_id, finished)) = last_finished_cleanup(client)? {
            return Ok(LiveSince {
                since: finished,
                after_cleanup_run: Some(run_id),
                cleanup_finished_at: Some(finished),
                window_s: None,
            });
        }
        let seconds = window.as_secs_f64();
        let since: DateTime<Utc> = client
            .row(
                "SELECT now() - make_interval(secs => $1::float8)",
                &[&seconds],
            )?
            .get(0);
        Ok(LiveSince {
            since,
            after_cleanup_run: None,
            cleanup_finished_at: None,
            window_s: Some(window.as_secs()),
        })
    }

    /// "since the cleanup run … finished (…)", "in the last 7 days".
    pub fn describe(&self) -> String {
        match (&self.after_cleanup_run, self.window_s) {
            (Some(run), _) => format!(
                "since cleanup run {run} finished ({})",
                self.since.format("%Y-%m-%d %H:%M:%S UTC")
            ),
            (None, Some(s)) => format!("in the last {}", human_window(s)),
            (None, None) => format!("since {}", self.since.format("%Y-%m-%d %H:%M:%S UTC")),
        }
    }
}

fn human_window(seconds: u64) -> String {
    match seconds {
        s if s > 0 && s % 86_400 == 0 => count(s / 86_400, "day", "days"),
        s if s > 0 && s % 3_600 == 0 => count(s / 3_600, "hour", "hours"),
        s if s > 0 && s % 60 == 0 => count(s / 60, "minute", "minutes"),
        s => count(s, "second", "seconds"),
    }
}

/// SQL saying whether row `alias` of `table` was created or updated after the bound
/// timestamptz `param`; None when the table keeps no such time (nothing can be called live).
/// Timestamps without time zone are read in the session's time zone, as PostgreSQL compares them.
pub fn written_after(
    table: &str,
    spelling: &DatabaseSpelling,
    alias: &str,
    param: &str,
) -> Option<String> {
    let terms: Vec<String> = TIME_COLUMNS
        .iter()
        .filter_map(|c| spelling.actual_name(table, c))
        .map(|actual| format!("{alias}.{} > {param}", quote_ident(&actual)))
        .collect();
    if terms.is_empty() {
        return None;
    }
    Some(format!("coalesce({}, false)", terms.join(" OR ")))
}

/// The plain words the reports use for live violations.
pub fn meaning(total_live: u64, since: &LiveSince) -> String {
    let rows = if total_live == 1 {
        "1 violating row was".to_string()
    } else {
        format!("{total_live} violating rows were")
    };
    format!(
        "{rows} written {}: the application still writes these values, and once 008 is in place those writes will fail",
        since.describe()
    )
}

/// The cleanup run that finished last, and when (None: none ever finished here). A violating
/// row written after it was not there for that run to repair: the application wrote it.
fn last_finished_cleanup(
    client: &mut (impl Query + GenericClient),
) -> Result<Option<(String, chrono::DateTime<chrono::Utc>)>> {
    if !crate::db::introspect::table_exists_in(client, audit::SCHEMA, audit::RUNS_TABLE)? {
        return Ok(None);
    }
    let row = client.row_opt(
        &format!(
            "SELECT run_id::text, finished_at FROM {}
              WHERE status = 'finished' AND finished_at IS NOT NULL
              ORDER BY finished_at DESC LIMIT 1",
            audit::RUNS
        ),
        &[],
    )?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_read_in_the_largest_whole_unit() {
        assert_eq!(human_window(7 * 86_400), "7 days");
        assert_eq!(human_window(3_600), "1 hour");
        assert_eq!(human_window(90), "90 seconds");
        assert_eq!(human_window(0), "0 seconds");
    }
}
