//! `status`: where the database stands: each migration, each catalog constraint, and drift
//! from the schema the recorded version should have.

use super::{Context, Outcome};
use crate::catalog::constraints::{Kind, CATALOG};
use crate::catalog::renames::RENAMES;
use crate::catalog::{self, migrations};
use crate::checker::{constraint_states, ConstraintState};
use crate::db;
use crate::exit::Code;
use crate::history::{self, Entry, State};
use crate::report::{self, Details, Report};
use anyhow::Result;
use postgres::Client;
use serde::Serialize;
use std::io::Write;

#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub migrations: Vec<Entry>,
    pub constraints: Vec<ConstraintStatus>,
    pub drift: Vec<Drift>,
}

#[derive(Debug, Serialize)]
pub struct ConstraintStatus {
    pub name: &'static str,
    pub table: &'static str,
    pub kind: Kind,
    pub state: ConstraintState,
}

/// One way the database differs from what its recorded version should look like.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Drift {
    pub object: String,
    pub problem: String,
}

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
    let healthy = entries
        .iter()
        .all(|e| matches!(e.state, State::Applied | State::Pending))
        && drift.is_empty();
    let report = Report {
        command: "status",
        ok: healthy,
        dry_run: false,
        schema_version: version,
        details: StatusReport {
            migrations: entries,
            constraints,
            drift,
        },
    };
    Ok(Outcome::new(report, Code::Ok))
}

/// Differences between the database and the shape its recorded version implies: tables that
/// should exist and do not, and columns on the wrong side of the 008 renames.
pub fn drift(client: &mut Client, version: i32) -> Result<Vec<Drift>> {
    let mut found = Vec::new();
    let expected_tables = expected_tables(version);
    for table in catalog::TABLES {
        let exists = db::table_exists(client, table)?;
        if expected_tables.contains(table) && !exists {
            found.push(Drift {
                object: format!("table {table}"),
                problem: format!("missing (version {version} creates it)"),
            });
        }
    }
    for r in RENAMES {
        let columns = db::columns_of(client, r.table)?;
        if columns.is_empty() {
            continue;
        }
        let has_legacy = columns.iter().any(|c| c == r.legacy);
        let has_current = columns.iter().any(|c| c == r.current);
        let object = format!("column {}.{}", r.table, r.current);
        let problem = match (
            has_legacy,
            has_current,
            version >= migrations::REPAIR_VERSION,
        ) {
            (true, true, _) => Some(format!(
                "both {} and {} exist: 008 cannot rename",
                r.legacy, r.current
            )),
            (true, false, true) => Some(format!("still has the truncated name {}", r.legacy)),
            (false, true, false) => Some(format!(
                "already renamed from {} by hand (008 will accept it)",
                r.legacy
            )),
            (false, false, _) => Some(format!("missing (neither {} nor {})", r.legacy, r.current)),
            _ => None,
        };
        if let Some(problem) = problem {
            found.push(Drift { object, problem });
        }
    }
    Ok(found)
}

/// The tables migrations up to `version` create.
fn expected_tables(version: i32) -> Vec<&'static str> {
    let mut tables = Vec::new();
    for m in migrations::all()
        .into_iter()
        .filter(|m| m.version() <= version)
    {
        let sql = m.sql().unwrap_or_default().to_ascii_lowercase();
        for table in catalog::TABLES {
            if sql.contains(&format!("create table {table} "))
                || sql.contains(&format!("create table {table}("))
            {
                tables.push(*table);
            }
        }
    }
    tables
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
        if self.drift.is_empty() {
            writeln!(out, "No drift: the schema matches its recorded version.")
        } else {
            let mut t = report::table(&["object", "drift"]);
            for d in &self.drift {
                t.add_row(vec![d.object.clone(), d.problem.clone()]);
            }
            writeln!(out, "{t}")
        }
    }
}
