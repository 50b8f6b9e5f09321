//! `status`: where the database stands: each migration, each catalog constraint, and drift
//! from the schema the recorded version should have.

use super::{Context, Outcome};
use crate::catalog::constraints::{Kind as ConstraintKind, CATALOG};
use crate::catalog::renames::KNOWN_TRUNCATIONS;
use crate::checker::{constraint_presence, ConstraintState};
use crate::exit::Code;
use crate::history::{self, Entry, State};
use crate::report::{self, Details, Report};
use crate::shape::{self, accepted, Difference};
use anyhow::Result;
use postgres::Client;
use serde::Serialize;
use std::io::Write;

#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub migrations: Vec<Entry>,
    pub constraints: Vec<ConstraintStatus>,
    pub drift: Vec<Drift>,
    /// For information only: these never make status fail.
    pub known_truncations: Vec<KnownTruncation>,
}

#[derive(Debug, Serialize)]
pub struct ConstraintStatus {
    pub name: &'static str,
    pub table: &'static str,
    pub kind: ConstraintKind,
    pub state: ConstraintState,
    /// The name an existing foreign key had before 008 adopted it (or still has, before 008).
    pub adopted_from: Option<String>,
}

/// A truncated column name that 008 deliberately keeps (the application uses it as it is).
#[derive(Debug, Serialize)]
pub struct KnownTruncation {
    pub table: &'static str,
    pub column: &'static str,
}

/// One way the database differs from the shape its recorded version should have.
pub type Drift = Difference;

pub fn run(ctx: &Context) -> Result<Outcome> {
    let (_, mut client) = ctx.connect()?;
    let applied = history::read(&mut client)?;
    let version = history::current_version(&applied);
    let entries = history::compare(&applied);
    let mut presence = constraint_presence(&mut client)?;
    let constraints = CATALOG
        .iter()
        .map(|c| {
            let p = presence
                .remove(c.name)
                .expect("every catalog constraint has a presence");
            ConstraintStatus {
                name: c.name,
                table: c.table,
                kind: c.kind(),
                state: p.state,
                adopted_from: p.adopted_from,
            }
        })
        .collect();
    let known_truncations = known_truncations(&mut client)?;
    let drift = drift(&mut client, version)?;
    // Tolerated drift (a table another tool keeps, a column renamed by hand before 008) and
    // drift accepted at baseline are shown but are not a fault.
    let healthy = entries
        .iter()
        .all(|e| matches!(e.state, State::Applied | State::Pending))
        && drift.iter().all(|d| d.verdict.is_fine());
    let report = Report {
        command: "status",
        ok: healthy,
        dry_run: false,
        schema_version: version,
        details: StatusReport {
            migrations: entries,
            constraints,
            drift,
            known_truncations,
        },
    };
    Ok(Outcome::new(report, Code::Ok))
}

/// The known truncated names this database actually has.
fn known_truncations(client: &mut Client) -> Result<Vec<KnownTruncation>> {
    let tables: Vec<&str> = KNOWN_TRUNCATIONS.iter().map(|(t, _)| *t).collect();
    let columns: Vec<&str> = KNOWN_TRUNCATIONS.iter().map(|(_, c)| *c).collect();
    let present = client.query(
        "SELECT w.tbl, w.col FROM unnest($1::text[], $2::text[]) AS w(tbl, col)
          WHERE EXISTS (SELECT 1 FROM pg_attribute a
                         WHERE a.attrelid = to_regclass(quote_ident(w.tbl))
                           AND a.attname = w.col AND NOT a.attisdropped)",
        &[&tables, &columns],
    )?;
    Ok(KNOWN_TRUNCATIONS
        .iter()
        .filter(|(t, c)| {
            present
                .iter()
                .any(|r| r.get::<_, &str>(0) == *t && r.get::<_, &str>(1) == *c)
        })
        .map(|&(table, column)| KnownTruncation { table, column })
        .collect())
}

/// The differences between the database and the shape of its recorded version (the latest
/// embedded one when the history names a newer build's), the same comparison `baseline` makes;
/// those accepted with `baseline --accept-drift` are marked accepted.
///
/// Finding the expected shape needs a scratch schema (rolled back at once); where the role may
/// not create one, or the server is a read-only standby, the drift says so instead of failing
/// the whole status.
pub fn drift(client: &mut Client, version: i32) -> Result<Vec<Drift>> {
    let shapes = match shape::expected(client) {
        Ok(shapes) => shapes,
        Err(error) => {
            return Ok(vec![Difference::not_compared(format!(
                "not compared with version {version}: {error:#}"
            ))])
        }
    };
    let live = shape::live(client)?;
    let mut drift = shape::compare(&shapes, version.min(shapes.latest()), &live);
    accepted::mark(&mut drift, &accepted::read(client)?);
    Ok(drift)
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
        let mut t = report::table(&["constraint", "table", "kind", "state", "adopted from"]);
        for c in &self.constraints {
            t.add_row(vec![
                c.name,
                c.table,
                c.kind.as_str(),
                c.state.as_str(),
                c.adopted_from.as_deref().unwrap_or(""),
            ]);
        }
        writeln!(out, "{t}")?;
        if !self.known_truncations.is_empty() {
            let names: Vec<String> = self
                .known_truncations
                .iter()
                .map(|k| format!("{}.{}", k.table, k.column))
                .collect();
            writeln!(
                out,
                "Known truncated names, kept on purpose (the application uses them; for information): {}",
                names.join(", ")
            )?;
        }
        if self.drift.is_empty() {
            writeln!(out, "No drift: the schema matches its recorded version.")
        } else {
            let mut t = report::table(&["object", "drift", "kind", "verdict"]);
            for d in &self.drift {
                t.add_row(vec![
                    d.object.clone(),
                    d.problem.clone(),
                    d.kind.as_str().to_string(),
                    d.verdict.as_str().to_string(),
                ]);
            }
            writeln!(out, "{t}")
        }
    }
}
