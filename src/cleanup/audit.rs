//! The audit trail in schema `ruleiq_audit`: one row per cleanup run, one row per changed or
//! deleted row, written by the same statement that changes the row (see statements.rs), so a
//! change without its record cannot exist.
//!
//! `cleanup_changes` keeps, per row: the run, the time, the constraints and actions that
//! applied, the primary key, the changed columns' old and new values (jsonb, current column
//! names), and for a deleted row the whole row as `old_values` with `new_values` NULL.
//! `restored_at` is set when `cleanup --undo` puts the row back.

use super::policy::Policy;
use crate::db::{Query, Session};
use anyhow::{Context, Result};
use postgres::GenericClient;
use uuid::Uuid;

pub use crate::catalog::audit::{CHANGES, RUNS, SCHEMA};
use crate::catalog::audit::{CHANGES_TABLE, RUNS_TABLE};
use crate::db::introspect::table_exists_in;

const DDL: &str = r#"
CREATE SCHEMA IF NOT EXISTS ruleiq_audit;
CREATE TABLE IF NOT EXISTS ruleiq_audit.cleanup_runs (
    run_id         uuid PRIMARY KEY,
    started_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz,
    status         text NOT NULL DEFAULT 'started'
                   CHECK (status IN ('started', 'finished', 'interrupted')),
    schema_version integer NOT NULL,
    policy         jsonb NOT NULL,
    rows_changed   bigint,
    undone_at      timestamptz
);
CREATE TABLE IF NOT EXISTS ruleiq_audit.cleanup_changes (
    id               bigserial PRIMARY KEY,
    run_id           uuid NOT NULL REFERENCES ruleiq_audit.cleanup_runs (run_id),
    changed_at       timestamptz NOT NULL DEFAULT now(),
    table_name       text NOT NULL,
    pk               text NOT NULL,
    constraint_names text[] NOT NULL,
    actions          text[] NOT NULL,
    old_values       jsonb NOT NULL,
    new_values       jsonb,
    restored_at      timestamptz,
    UNIQUE (run_id, table_name, pk)
);
"#;

/// Creates the audit schema and tables when absent. Only a real run calls this. When they
/// exist it runs no DDL at all: even `CREATE … IF NOT EXISTS` needs the CREATE privilege, which
/// a role that only writes the audit need not hold (proof.rs checks what it does need).
pub fn ensure(session: &mut Session) -> Result<()> {
    let client = session.client();
    let missing = missing_grants(client)?;
    if !missing.is_empty() {
        let role: String = client.row("SELECT current_user::text", &[])?.get(0);
        anyhow::bail!(
            "the role {role} cannot record cleanup's audit trail in schema {SCHEMA}, so cleanup does not start; nothing was changed. Missing: {}",
            missing
                .iter()
                .map(|m| format!("{} TO {role}", m.grant))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    if tables_exist(client)? {
        // CREATE TABLE IF NOT EXISTS still demands CREATE on the schema: skip it for a role
        // that may write the audit tables but not create them.
        return Ok(());
    }
    session.transaction("creating the audit schema ruleiq_audit", |tx| {
        tx.batch(DDL)
            .context("creating the audit schema ruleiq_audit")
    })
}

fn tables_exist(client: &mut (impl Query + GenericClient)) -> Result<bool> {
    Ok(table_exists_in(client, SCHEMA, RUNS_TABLE)?
        && table_exists_in(client, SCHEMA, CHANGES_TABLE)?)
}

/// A privilege the connected role lacks to record a run's audit trail: what it may not do,
/// and the GRANT (without its `TO role`) that allows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingGrant {
    pub cannot: String,
    pub grant: String,
}

impl MissingGrant {
    fn new(cannot: String, grant: String) -> MissingGrant {
        MissingGrant { cannot, grant }
    }
}

/// What the role lacks to record a run's audit trail: create the schema (CREATE on the
/// database) when it does not exist, else use it, create the tables it lacks, and write them
/// as a run does (runs: SELECT, INSERT, UPDATE; changes: SELECT, INSERT, and its id sequence).
/// The one source of this check: proof.rs refuses on it before the run, [`ensure`] again
/// before it creates anything.
pub fn missing_grants(client: &mut (impl Query + GenericClient)) -> Result<Vec<MissingGrant>> {
    let exists: bool = client
        .row(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
            &[&SCHEMA],
        )?
        .get(0);
    let mut missing = Vec::new();
    if !exists {
        let create: bool = client
            .row(
                "SELECT has_database_privilege(current_database(), 'CREATE')",
                &[],
            )?
            .get(0);
        if !create {
            missing.push(MissingGrant::new(
                format!("may not create schema {SCHEMA} for the audit trail"),
                "GRANT CREATE ON DATABASE <this database>".into(),
            ));
        }
        return Ok(missing);
    }
    let row = client.row(
        "SELECT has_schema_privilege($1, 'USAGE'), has_schema_privilege($1, 'CREATE')",
        &[&SCHEMA],
    )?;
    let (usage, create): (bool, bool) = (row.get(0), row.get(1));
    if !usage {
        missing.push(MissingGrant::new(
            format!("may not use schema {SCHEMA}, the audit trail"),
            format!("GRANT USAGE ON SCHEMA {SCHEMA}"),
        ));
        return Ok(missing);
    }
    let mut changes_present = false;
    for (table, name, privileges) in [
        (RUNS, RUNS_TABLE, &["SELECT", "INSERT", "UPDATE"][..]),
        (CHANGES, CHANGES_TABLE, &["SELECT", "INSERT"][..]),
    ] {
        let present = table_exists_in(client, SCHEMA, name)?;
        if !present {
            if !create {
                missing.push(MissingGrant::new(
                    format!("may not create table {table} for the audit trail"),
                    format!("GRANT CREATE ON SCHEMA {SCHEMA}"),
                ));
            }
            continue;
        }
        changes_present |= table == CHANGES;
        for privilege in privileges {
            let held: bool = client
                .row("SELECT has_table_privilege($1, $2)", &[&table, privilege])?
                .get(0);
            if !held {
                missing.push(MissingGrant::new(
                    format!("may not {privilege} table {table}"),
                    format!("GRANT {privilege} ON {table}"),
                ));
            }
        }
    }
    let sequence: Option<bool> = if changes_present {
        client
            .row(
                "SELECT has_sequence_privilege(s, 'USAGE')
                   FROM pg_get_serial_sequence($1, 'id') AS s",
                &[&CHANGES],
            )?
            .get(0)
    } else {
        None
    };
    if sequence == Some(false) {
        missing.push(MissingGrant::new(
            format!("may not use the id sequence of {CHANGES}"),
            format!("GRANT USAGE ON ALL SEQUENCES IN SCHEMA {SCHEMA}"),
        ));
    }
    Ok(missing)
}

/// Whether any cleanup ever ran here.
pub fn exists(client: &mut (impl Query + GenericClient)) -> Result<bool> {
    table_exists_in(client, SCHEMA, RUNS_TABLE)
}

/// Records a new run as started. Runs still marked started belong to a ruleiq-db that died
/// (we hold the migration lock, so none is running): they are marked interrupted and
/// returned, so the report can say what this run finishes.
pub fn begin_run(
    session: &mut Session,
    run_id: Uuid,
    schema_version: i32,
    policy: &Policy,
) -> Result<Vec<String>> {
    let policy_json = serde_json::to_value(policy)?;
    session.transaction("recording the cleanup run", |tx| {
        let interrupted = tx.rows(
            &format!(
                "UPDATE {RUNS} SET status = 'interrupted' WHERE status = 'started'
                 RETURNING run_id::text"
            ),
            &[],
        )?;
        tx.exec(
            &format!("INSERT INTO {RUNS} (run_id, schema_version, policy) VALUES ($1, $2, $3)"),
            &[&run_id, &schema_version, &policy_json],
        )?;
        Ok(interrupted.iter().map(|r| r.get(0)).collect())
    })
}

pub fn finish_run(session: &mut Session, run_id: Uuid) -> Result<()> {
    session.retried("recording the cleanup run as finished", |client| {
        client.exec(
            &format!(
                "UPDATE {RUNS} SET status = 'finished', finished_at = now(),
                        rows_changed = (SELECT count(*) FROM {CHANGES} WHERE run_id = $1)
                  WHERE run_id = $1"
            ),
            &[&run_id],
        )?;
        Ok(())
    })
}

/// What the audit knows about a run.
#[derive(Debug, Clone)]
pub struct Run {
    pub status: String,
    pub records: i64,
    pub unrestored: i64,
}

pub fn find_run(client: &mut (impl Query + ?Sized), run_id: Uuid) -> Result<Option<Run>> {
    let row = client.row_opt(
        &format!(
            "SELECT r.status,
                    (SELECT count(*) FROM {CHANGES} c WHERE c.run_id = r.run_id),
                    (SELECT count(*) FROM {CHANGES} c WHERE c.run_id = r.run_id AND c.restored_at IS NULL)
               FROM {RUNS} r WHERE r.run_id = $1"
        ),
        &[&run_id],
    )?;
    Ok(row.map(|r| Run {
        status: r.get(0),
        records: r.get(1),
        unrestored: r.get(2),
    }))
}

/// The latest runs, newest first, for error messages: "id (status, started …)".
pub fn recent_runs(client: &mut (impl Query + ?Sized), limit: i64) -> Result<Vec<String>> {
    let rows = client.rows(
        &format!(
            "SELECT run_id::text || ' (' || status || ', started ' || to_char(started_at, 'YYYY-MM-DD HH24:MI:SS') || ')'
               FROM {RUNS} ORDER BY started_at DESC LIMIT $1"
        ),
        &[&limit],
    )?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Per (constraint, table, action), how many rows the run changed.
pub fn run_rules(
    client: &mut (impl Query + ?Sized),
    run_id: Uuid,
) -> Result<Vec<(String, String, String, i64)>> {
    let rows = client.rows(
        &format!(
            "SELECT u.name, c.table_name, u.action, count(*)
               FROM {CHANGES} c, unnest(c.constraint_names, c.actions) AS u(name, action)
              WHERE c.run_id = $1
              GROUP BY 1, 2, 3 ORDER BY min(c.id)"
        ),
        &[&run_id],
    )?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect())
}

pub fn mark_undone(session: &mut Session, run_id: Uuid) -> Result<()> {
    session.retried("recording the cleanup run as undone", |client| {
        client.exec(
            &format!("UPDATE {RUNS} SET undone_at = now() WHERE run_id = $1"),
            &[&run_id],
        )?;
        Ok(())
    })
}

/// Tables changed by a run so far and how many rows each, from its audit records (each batch
/// commits its rows and their records together, so these are exactly the committed changes).
pub fn changed_tables(
    client: &mut (impl Query + ?Sized),
    run_id: Uuid,
) -> Result<Vec<(String, i64)>> {
    let rows = client.rows(
        &format!(
            "SELECT table_name, count(*) FROM {CHANGES} WHERE run_id = $1
              GROUP BY table_name ORDER BY min(id)"
        ),
        &[&run_id],
    )?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Marks a run that stopped on an error, so the next run does not take it for a live one.
pub fn mark_interrupted(client: &mut (impl Query + ?Sized), run_id: Uuid) -> Result<()> {
    client.exec(
        &format!(
            "UPDATE {RUNS} SET status = 'interrupted' WHERE run_id = $1 AND status = 'started'"
        ),
        &[&run_id],
    )?;
    Ok(())
}
