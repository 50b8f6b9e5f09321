//! `status`: where the database stands: each migration, each catalog constraint, and drift
//! from the schema the recorded version should have.

use super::{Outcome, Settings};
use crate::catalog::constraints::{Kind as ConstraintKind, CATALOG};
use crate::catalog::migrations::REPAIR_VERSION;
use crate::catalog::renames::KNOWN_TRUNCATIONS;
use crate::cli::StatusArgs;
use crate::constraints::check::{constraint_presence, ConstraintState, DatabaseSpelling};
use crate::db::replication::{self, ServerRole, Standby};
use crate::exit::Code;
use crate::health::picture::{self, Health};
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
    /// False when the schema could not be compared with its version (the role may not create
    /// the scratch schema, say): then `drift` holds the reason and the verdict is not ok.
    pub drift_checked: bool,
    /// With --health (docs/design.md §9).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    /// Whether the server is a primary or a standby (changing commands refuse a standby).
    pub server_role: ServerRole,
    /// The streaming standbys this server feeds (docs/design.md §8).
    pub standbys: Vec<Standby>,
    /// The compatibility schema and its views (docs/design.md §7), null when there is none.
    pub compat: Option<crate::compat::CompatSchema>,
    /// The roles pointed at the views with `compat --for-role`: since when, how many of their
    /// sessions predate it, their rights on the views (docs/design.md §7).
    pub compat_roles: Vec<crate::compat::RoleState>,
    /// While the compatibility schema exists and pg_stat_statements can be read: the legacy
    /// columns statements still name (of the recorded roles; else of every role but this
    /// one), with their calls since the statistics were reset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub legacy_names_in_use: Option<Vec<crate::compat::LegacyUse>>,
    /// Sessions holding ruleiq-db's migration lock that are not running ruleiq-db: a lock left
    /// on a backend (behind a transaction-mode pooler, one the application now uses) that
    /// nobody will release, and that would make the next migrator wait (docs/design.md §10).
    pub stranded_locks: Vec<crate::db::lock::LockHolder>,
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

/// The outcome of comparing the schema with its version.
pub enum DriftCheck {
    Compared(Vec<Drift>),
    /// Why the comparison could not run.
    NotCompared(String),
}

pub fn run(settings: &Settings, args: &StatusArgs) -> Result<Outcome> {
    let (_, mut client) = settings.connect()?;
    let applied = history::read(&mut client)?;
    let version = history::current_version(&applied);
    settings.journal.version(version);
    let entries = history::compare(&applied);
    let mut presence = constraint_presence(&mut client)?;
    let constraints: Vec<ConstraintStatus> = CATALOG
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
    let (drift, drift_checked) = match drift(&mut client, version)? {
        DriftCheck::Compared(drift) => (drift, true),
        // The reason stays in `drift`, where a reader of the report looks for it.
        DriftCheck::NotCompared(why) => (
            vec![Difference::not_compared(format!(
                "not compared with version {version}: {why}"
            ))],
            false,
        ),
    };
    // Each role pointed at the views must be able to use on a view what it may on the table
    // (docs/design.md §7): a difference stops that role's code, so it is drift.
    let compat_roles = crate::compat::recorded_states(&mut client)?;
    let mut drift = drift;
    drift.extend(compat_rights_drift(&compat_roles));
    let code = verdict(&entries, &constraints, &drift, drift_checked, version);
    let health = if args.health {
        Some(picture::collect(&mut client)?)
    } else {
        None
    };
    let server_role = ServerRole::of(&mut client)?;
    let standbys = replication::standbys(&mut client)?;
    let compat = crate::compat::inspect(&mut client)?;
    let legacy_names_in_use = if compat.is_some() {
        let roles: Vec<String> = compat_roles.iter().map(|r| r.role.clone()).collect();
        crate::compat::legacy_statements(&mut client, &roles)?
            .ok()
            .map(|end| crate::compat::legacy_use(None, &end))
    } else {
        None
    };
    let stranded_locks = crate::db::lock::stranded_lock_holders(&mut client)?;
    let code = if stranded_locks.is_empty() || code != Code::Ok {
        code
    } else {
        Code::Violations
    };
    let report = Report {
        command: "status",
        ok: code == Code::Ok,
        dry_run: false,
        schema_version: version,
        details: StatusReport {
            migrations: entries,
            constraints,
            drift,
            known_truncations,
            drift_checked,
            health,
            server_role,
            standbys,
            compat,
            compat_roles,
            legacy_names_in_use,
            stranded_locks,
        },
    };
    Ok(Outcome::new(report, code))
}

/// The exit code of a status (docs/design.md §2): 3 when something stops the next step — a
/// constraint not valid (or absent once 008 is applied), a divergent or missing migration,
/// drift that is not allowed; else 1 when the drift could not be checked (not knowing is not
/// "as expected"); else 0.
fn verdict(
    entries: &[Entry],
    constraints: &[ConstraintStatus],
    drift: &[Drift],
    drift_checked: bool,
    version: i32,
) -> Code {
    // Allowed drift (a table another tool keeps, a column renamed by hand before 008) is shown
    // but is not a fault.
    let history_ok = entries
        .iter()
        .all(|e| matches!(e.state, State::Applied | State::Pending));
    let constraints_ok = constraints.iter().all(|c| match c.state {
        ConstraintState::Valid => true,
        ConstraintState::NotValid => false,
        ConstraintState::Absent => version < REPAIR_VERSION,
    });
    let drift_ok = drift_checked && drift.iter().all(|d| d.verdict.is_fine());
    if !history_ok || !constraints_ok || (drift_checked && !drift_ok) {
        Code::Violations
    } else if !drift_checked {
        Code::Error
    } else {
        Code::Ok
    }
}

/// The known truncated names this database actually has.
fn known_truncations(client: &mut Client) -> Result<Vec<KnownTruncation>> {
    let tables: Vec<&str> = KNOWN_TRUNCATIONS.iter().map(|(t, _)| *t).collect();
    let spelling = DatabaseSpelling::read(client, &tables)?;
    Ok(KNOWN_TRUNCATIONS
        .iter()
        .filter(|(table, column)| spelling.actual_name(table, column).is_some())
        .map(|&(table, column)| KnownTruncation { table, column })
        .collect())
}

/// The differences between the database and the shape of its recorded version (the latest
/// embedded one when the history names a newer build's), the same comparison `baseline` makes;
/// or why the comparison could not run;
/// those accepted with `baseline --accept-drift` are marked accepted.
///
/// Finding the expected shape needs a scratch schema (rolled back at once); where the role may
/// not create one, or the server is a read-only standby, status says so instead of failing.
pub fn drift(client: &mut Client, version: i32) -> Result<DriftCheck> {
    let shapes = match shape::expected(client) {
        Ok(shapes) => shapes,
        Err(error) => return Ok(DriftCheck::NotCompared(format!("{error:#}"))),
    };
    let live = shape::live(client)?;
    let mut drift = shape::compare(&shapes, version.min(shapes.latest()), &live);
    accepted::mark(&mut drift, &accepted::read(client)?);
    Ok(DriftCheck::Compared(drift))
}

impl Details for StatusReport {
    fn summary(&self, _dry_run: bool, schema_version: i32) -> report::Summary {
        report::Summary::line(format!(
            "version {schema_version}, drift: {}",
            crate::shape::verdict_counts(&self.drift)
        ))
    }

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
        for holder in &self.stranded_locks {
            writeln!(
                out,
                "STRANDED migration lock: held by {}, {} for {:.0}s, which is not running ruleiq-db; the next migrator will wait for it. End that session (pg_terminate_backend({}); behind a pooler, recycle its server connections) once you are sure no ruleiq-db is running.",
                holder.describe(),
                if holder.state.is_empty() { "state unknown" } else { &holder.state },
                holder.state_age_s,
                holder.pid
            )?;
        }
        write_replication(out, self.server_role, &self.standbys)?;
        match &self.compat {
            Some(c) => {
                writeln!(
                    out,
                    "Compatibility schema {} (legacy column names for old application code; `ruleiq-db compat --drop` ends it):",
                    c.schema
                )?;
                writeln!(out, "{}", crate::compat::views_table(&c.views))?;
            }
            None => writeln!(out, "No compatibility schema.")?,
        }
        if !self.compat_roles.is_empty() {
            writeln!(
                out,
                "Roles pointed at it (search_path={}):",
                crate::catalog::compat::SEARCH_PATH
            )?;
            writeln!(out, "{}", crate::compat::roles_table(&self.compat_roles))?;
        }
        if let Some(uses) = &self.legacy_names_in_use {
            if uses.is_empty() {
                writeln!(
                    out,
                    "No statement names a legacy column (pg_stat_statements)."
                )?;
            } else {
                let mut t = report::table(&["legacy column", "full name", "calls", "statements"]);
                for u in uses {
                    t.add_row(vec![
                        format!("{}.{}", u.table, u.column),
                        u.full_name.clone(),
                        u.calls.to_string(),
                        u.statements.join("\n"),
                    ]);
                }
                writeln!(
                    out,
                    "Legacy column names still in use (pg_stat_statements):\n{t}"
                )?;
            }
        }
        if self.drift.is_empty() {
            writeln!(out, "No drift: the schema matches its recorded version.")?;
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
            writeln!(out, "{t}")?;
        }
        match &self.health {
            Some(health) => health.write_table(out),
            None => Ok(()),
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

/// A recorded role's rights on the views that differ from its rights on the tables, as drift.
fn compat_rights_drift(roles: &[crate::compat::RoleState]) -> Vec<Drift> {
    use crate::shape::{Finding, Verdict};
    let schema = crate::catalog::compat::SCHEMA;
    let mut found = Vec::new();
    for r in roles {
        let fix = format!(
            "`ruleiq-db compat --for-role {}` gives it its rights again",
            r.role
        );
        if !r.schema_usage {
            found.push((
                format!("schema {schema} for role {}", r.role),
                format!("role {} has no USAGE on schema {schema}, so its search_path skips the views; {fix}", r.role),
            ));
        }
        for d in &r.rights_drift {
            let (has, lacks) = if d.on_table {
                ("table public".to_string(), format!("view {schema}"))
            } else {
                (format!("view {schema}"), "table public".to_string())
            };
            found.push((
                format!("view {schema}.{} for role {}", d.view, r.role),
                format!(
                    "role {} may {} on the {has}.{} but not on the {lacks}.{}; {fix}",
                    r.role, d.privilege, d.view, d.view
                ),
            ));
        }
    }
    found
        .into_iter()
        .map(|(object, problem)| Drift {
            key: object.clone(),
            object,
            problem,
            kind: crate::shape::Class::Blocking,
            verdict: Verdict::Blocking,
            finding: Finding::Mismatch,
        })
        .collect()
}
