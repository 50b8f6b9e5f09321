//! One blocker, told in a line (stderr, refusals) or as a table (dry-run reports). Nothing here
//! shows a query's text beyond its first keyword.

use serde::Serialize;

/// One session (or prepared transaction) that would make the command wait.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Blocker {
    /// The server process; null for a prepared transaction (it has none).
    pub pid: Option<i32>,
    pub application_name: String,
    /// `pg_stat_activity.state` ("idle in transaction", "active"), or "prepared".
    pub state: String,
    /// Seconds since its transaction began (or since it was prepared).
    pub age_s: f64,
    /// The conflicting lock it holds or waits for on `table`.
    pub lock: Option<String>,
    pub table: Option<String>,
    /// Why it counts, in words.
    pub reasons: Vec<String>,
    /// When its current (or last) statement started, UTC.
    pub query_start: Option<String>,
    /// The first keyword of that statement (never its text).
    pub statement: Option<String>,
    /// A prepared transaction's global identifier (for COMMIT/ROLLBACK PREPARED).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gid: Option<String>,
}

impl Blocker {
    /// One line for stderr and refusals.
    pub fn describe(&self) -> String {
        let who = match (&self.pid, &self.gid) {
            (Some(pid), _) => crate::db::who::session_label(*pid, &self.application_name, None),
            (None, Some(gid)) => format!("prepared transaction '{gid}'"),
            (None, None) => "a session".to_string(),
        };
        let mut parts = vec![
            who,
            format!("{}, transaction open {}", self.state, seconds(self.age_s)),
        ];
        if let (Some(lock), Some(table)) = (&self.lock, &self.table) {
            parts.push(format!("{lock} on {table}"));
        }
        if let Some(start) = &self.query_start {
            match &self.statement {
                Some(keyword) => parts.push(format!("query started {start} ({keyword})")),
                None => parts.push(format!("query started {start}")),
            }
        }
        parts.push(self.reasons.join("; "));
        parts.join(", ")
    }

    pub(super) fn identity(&self) -> (Option<i32>, Option<String>) {
        (self.pid, self.gid.clone())
    }
}

pub(super) fn seconds(s: f64) -> String {
    if s >= 120.0 {
        format!("{:.0} min", s / 60.0)
    } else {
        format!("{s:.0} s")
    }
}

/// The blockers as a table, for dry-run reports.
pub fn write_table(out: &mut dyn std::io::Write, blockers: &[Blocker]) -> std::io::Result<()> {
    if blockers.is_empty() {
        return writeln!(
            out,
            "Blockers: none; no session would make this wait for a lock."
        );
    }
    let mut t =
        crate::report::table(&["pid", "application", "state", "age", "lock", "table", "why"]);
    for b in blockers {
        t.add_row(vec![
            b.pid
                .map(|p| p.to_string())
                .or_else(|| b.gid.as_ref().map(|g| format!("prepared '{g}'")))
                .unwrap_or_default(),
            b.application_name.clone(),
            b.state.clone(),
            seconds(b.age_s),
            b.lock.clone().unwrap_or_default(),
            b.table.clone().unwrap_or_default(),
            b.reasons.join("; "),
        ]);
    }
    writeln!(
        out,
        "Blockers (a real run waits for them up to --lock-wait, then refuses):\n{t}"
    )
}
