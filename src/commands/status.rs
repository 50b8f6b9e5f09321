//! `status`: where the database stands: each migration, each catalog constraint, and drift
//! from the schema the recorded version should have.

use super::{Context, Outcome};
use crate::catalog::constraints::{Kind as ConstraintKind, CATALOG};
use crate::checker::{constraint_states, ConstraintState};
use crate::exit::Code;
use crate::history::{self, Entry, State};
use crate::replication::{self, ServerRole, Standby};
use crate::report::{self, Details, Report};
use crate::shape::{self, Difference, Kind};
use anyhow::Result;
use postgres::Client;
use serde::Serialize;
use std::io::Write;

#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub migrations: Vec<Entry>,
    pub constraints: Vec<ConstraintStatus>,
    pub drift: Vec<Drift>,
    /// Whether the server is a primary or a standby (changing commands refuse a standby).
    pub server_role: ServerRole,
    /// The streaming standbys this server feeds (DESIGN.md §8).
    pub standbys: Vec<Standby>,
}

#[derive(Debug, Serialize)]
pub struct ConstraintStatus {
    pub name: &'static str,
    pub table: &'static str,
    pub kind: ConstraintKind,
    pub state: ConstraintState,
}

/// One way the database differs from the shape its recorded version should have.
pub type Drift = Difference;

pub fn run(ctx: &Context) -> Result<Outcome> {
    let (_, mut client) = ctx.connect()?;
    let applied = history::read(&mut client)?;
    let version = history::current_version(&applied);
    let entries = history::compare(&applied);
    let states = constraint_states(&mut client)?;
    let constraints = CATALOG
        .iter()
        .map(|c| ConstraintStatus {
            name: c.name,
            table: c.table,
            kind: c.kind(),
            state: states[c.name],
        })
        .collect();
    let drift = drift(&mut client, version)?;
    let server_role = ServerRole::of(&mut client)?;
    let standbys = replication::standbys(&mut client)?;
    // Allowed drift (a table another tool keeps, a column renamed by hand before 008) is shown
    // but is not a fault.
    let healthy = entries
        .iter()
        .all(|e| matches!(e.state, State::Applied | State::Pending))
        && drift.iter().all(|d| d.allowed);
    let report = Report {
        command: "status",
        ok: healthy,
        dry_run: false,
        schema_version: version,
        details: StatusReport {
            migrations: entries,
            constraints,
            drift,
            server_role,
            standbys,
        },
    };
    Ok(Outcome::new(report, Code::Ok))
}

/// The differences between the database and the shape of its recorded version (the latest
/// embedded one when the history names a newer build's), the same comparison `baseline` makes.
///
/// Finding the expected shape needs a scratch schema (rolled back at once); where the role may
/// not create one, or the server is a read-only standby, the drift says so instead of failing
/// the whole status.
pub fn drift(client: &mut Client, version: i32) -> Result<Vec<Drift>> {
    let shapes = match shape::expected(client) {
        Ok(shapes) => shapes,
        Err(error) => {
            return Ok(vec![Difference {
                object: "schema".into(),
                problem: format!("not compared with version {version}: {error:#}"),
                kind: Kind::Missing,
                allowed: false,
            }])
        }
    };
    let live = shape::live(client)?;
    Ok(shape::compare(&shapes, version.min(shapes.latest()), &live))
}

impl Details for StatusReport {
    fn write_table(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let mut t = report::table(&["version", "migration", "state", "applied on"]);
        for m in &self.migrations {
            t.add_row(vec![
                format!("V{}", m.version),
                m.name.clone(),
                format!("{:?}", m.state).to_lowercase(),
                m.applied_on.clone().unwrap_or_default(),
            ]);
        }
        writeln!(out, "{t}")?;
        let mut t = report::table(&["constraint", "table", "kind", "state"]);
        for c in &self.constraints {
            t.add_row(vec![c.name, c.table, c.kind.as_str(), c.state.as_str()]);
        }
        writeln!(out, "{t}")?;
        write_replication(out, self.server_role, &self.standbys)?;
        if self.drift.is_empty() {
            writeln!(out, "No drift: the schema matches its recorded version.")
        } else {
            let mut t = report::table(&["object", "drift", "verdict"]);
            for d in &self.drift {
                t.add_row(vec![
                    d.object.clone(),
                    d.problem.clone(),
                    if d.allowed { "allowed" } else { "problem" }.to_string(),
                ]);
            }
            writeln!(out, "{t}")
        }
    }
}

/// The server's role and its standbys with their lag.
fn write_replication(
    out: &mut dyn Write,
    role: ServerRole,
    standbys: &[Standby],
) -> std::io::Result<()> {
    if role == ServerRole::Standby {
        writeln!(
            out,
            "This server is a standby (read-only, in recovery): ruleiq-db refuses to change it; point changing commands at its primary."
        )?;
    }
    if standbys.is_empty() {
        return writeln!(out, "Standbys: none streaming from this server.");
    }
    let ms = |v: Option<u64>| v.map_or("?".to_string(), |n| format!("{n} ms"));
    let mut t = report::table(&[
        "standby",
        "state",
        "write lag",
        "flush lag",
        "replay lag",
        "not replayed",
    ]);
    for s in standbys {
        t.add_row(vec![
            s.name.clone(),
            s.state
                .clone()
                .unwrap_or_else(|| "? (needs pg_monitor)".into()),
            ms(s.write_lag_ms),
            ms(s.flush_lag_ms),
            ms(s.replay_lag_ms),
            s.replay_lag_bytes
                .map_or("?".to_string(), replication::bytes),
        ]);
    }
    writeln!(out, "Standbys of this {}:", role.as_str())?;
    writeln!(out, "{t}")
}
