//! `cleanup --undo RUN_ID`: put back what a run changed, newest record first.
//!
//! A row is restored only if it still holds exactly what the cleanup wrote (for a deleted
//! row: if its primary key is still free). Anything else is a conflict: the application
//! changed the row since, and overwriting that change would lose data, so the row is left
//! alone and reported. Restored records are marked (`restored_at`), so undo can run again
//! after conflicts are resolved, and never restores a record twice.

use super::audit::CHANGES;
use super::batches::Batching;
use super::batches::Pacing;
use super::plan::key_type;
use super::rowjson;
use crate::catalog::constraints::{Constraint, Rule, CATALOG};
use crate::catalog::sql::{qualified, quote_ident, quote_literal};
use crate::catalog::{PRIMARY_KEY, TABLES};
use crate::constraints::check::{constraint_presence, ConstraintState, DatabaseSpelling};
use crate::db::introspect::column_types;
use crate::db::{self, Query, Session};
use crate::progress::Log;
use anyhow::{bail, Context, Result};
use postgres::error::SqlState;
use postgres::Client;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// How many conflicts a report lists (all are counted).
pub const CONFLICTS_LISTED: usize = 100;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Conflict {
    pub table: String,
    pub pk: String,
    pub constraints: Vec<String>,
    pub reason: String,
    /// What the cleanup left in the row (null for a deleted row).
    pub expected: serde_json::Value,
    /// What the row holds now, in the same columns (null when it is gone).
    pub current: serde_json::Value,
}

#[derive(Debug, Clone, Default)]
pub struct UndoOutcome {
    pub restored: u64,
    pub conflicts: Vec<Conflict>,
    pub total_conflicts: u64,
}

/// Restores what run `run_id` changed, in batches sized by `batching` and paced by the session
/// for the standbys.
pub fn undo(session: &mut Session, run_id: Uuid, mut batching: Batching) -> Result<UndoOutcome> {
    let log = session.log().clone();
    let client = session.client();
    // The run has just written its records; with the statistics still saying the audit table
    // is empty, the planner joins it by scanning it once per record (measured: 20 s batches).
    client.batch(&format!("ANALYZE {CHANGES}"))?;
    // Groups of records, the most recently written first: a table's updates and its deletes.
    let groups = client.rows(
        &format!(
            "SELECT table_name, new_values IS NULL AS deleted, count(*)
               FROM {CHANGES} WHERE run_id = $1 AND restored_at IS NULL
              GROUP BY 1, 2 ORDER BY max(id) DESC"
        ),
        &[&run_id],
    )?;
    let guarded = guarded_links(client)?;
    let mut outcome = UndoOutcome::default();
    let mut pacing = Pacing {
        run_id,
        batching: &mut batching,
        stop: None,
    };
    for group in groups {
        let table: String = group.get(0);
        let deleted: bool = group.get(1);
        let count: i64 = group.get(2);
        let Some(table) = TABLES.iter().copied().find(|t| *t == table) else {
            bail!("the audit of run {run_id} names table {table}, which ruleIQ does not have");
        };
        let client = session.client();
        let spelling = DatabaseSpelling::read(client, &[table])?;
        if !spelling.has_table(table) {
            bail!("cannot restore {count} rows of {table}: the table does not exist any more");
        }
        let sql = if deleted {
            reinsert_sql(client, table, &spelling, &guarded)?
        } else {
            restore_sql(client, table, &spelling, &guarded)?
        };
        let what = format!(
            "undo {table} ({})",
            if deleted {
                "deleted rows"
            } else {
                "changed rows"
            }
        );
        let bar = log.bar(count as u64, &what);
        let restored_before = outcome.restored;
        let (batches, longest) =
            run_batches(session, &sql, &mut pacing, &what, &bar, &mut outcome)?;
        bar.finish_and_clear();
        log.line(&format!(
            "{what}: {} of {count} records restored in {batches} batches, the longest {} ms",
            outcome.restored - restored_before,
            longest.as_millis()
        ));
    }
    Ok(outcome)
}

fn run_batches(
    session: &mut Session,
    sql: &str,
    pacing: &mut Pacing<'_>,
    what: &str,
    bar: &indicatif::ProgressBar,
    outcome: &mut UndoOutcome,
) -> Result<(u64, std::time::Duration)> {
    let log = session.log().clone();
    let run_id = pacing.run_id;
    let mut before: Option<i64> = None;
    let (mut batches, mut longest) = (0, std::time::Duration::ZERO);
    loop {
        session.pace()?;
        let started = std::time::Instant::now();
        let size = pacing.batching.size;
        let row = session
            .retried(what, |client| {
                match client.row(sql, &[&run_id, &before, &size]) {
                    Err(e) if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) => {
                        restore_as_they_were(client, sql, run_id, before, size, what, &log)
                    }
                    other => other.map_err(anyhow::Error::from),
                }
            })
            .map_err(|e| explain(e, what))?;
        let picked: i64 = row.get(0);
        let restored: i64 = row.get(2);
        let conflicts: serde_json::Value = row.get(3);
        let conflicts: Vec<Conflict> = serde_json::from_value(conflicts)?;
        outcome.restored += restored as u64;
        outcome.total_conflicts += conflicts.len() as u64;
        let room = CONFLICTS_LISTED.saturating_sub(outcome.conflicts.len());
        outcome.conflicts.extend(conflicts.into_iter().take(room));
        bar.inc(picked as u64);
        batches += 1;
        let took = started.elapsed();
        longest = longest.max(took);
        if picked < size {
            return Ok((batches, longest));
        }
        before = row.get(1);
        pacing.batching.adapt(took, true);
    }
}

/// Restores rows whose link dangles (re-inserted, or their link put back) as they were before
/// the cleanup. Such links exist only because they got in past an enforced foreign key (a
/// restore with triggers off, as production's orphans did), so PostgreSQL refuses them on a
/// plain INSERT or UPDATE. Undo means the exact original, so they go back the way they came
/// in: with triggers off for this one transaction (`session_replication_role = replica`, which
/// needs a superuser or, from PostgreSQL 15, a grant of SET on that parameter).
fn restore_as_they_were(
    client: &mut Client,
    sql: &str,
    run_id: Uuid,
    before: Option<i64>,
    size: i64,
    what: &str,
    log: &Log,
) -> Result<postgres::Row> {
    let mut tx = client.transaction()?;
    tx.batch("SET LOCAL session_replication_role = replica")
        .map_err(anyhow::Error::from)
        .context(format!(
            "{what}: the rows' old links dangle, which a foreign key the table enforces refuses, so only a role that may set session_replication_role (a superuser) can put them back as they were; nothing of this batch was restored"
        ))?;
    let row = tx.row(sql, &[&run_id, &before, &size])?;
    tx.commit()?;
    log.line(&format!(
        "{what}: restored rows whose link dangles as they were before the cleanup, with triggers off for that transaction"
    ));
    Ok(row)
}

fn explain(error: anyhow::Error, what: &str) -> anyhow::Error {
    match db::sql_state(&error) {
        Some(code)
            if *code == SqlState::CHECK_VIOLATION || *code == SqlState::FOREIGN_KEY_VIOLATION =>
        {
            error.context(format!(
                "{what}: the database now enforces a constraint the old values break (after `migrate`, undo needs `rollback` first); this batch was rolled back"
            ))
        }
        _ => error.context(format!("{what}: the batch failed and was rolled back")),
    }
}

/// The audit records of one batch: run `$1`, ids below `$2` (none for the first batch), `$3`
/// of them, newest first.
fn records_cte(table: &str, deleted: bool) -> String {
    format!(
        "SELECT a.id, a.pk, a.constraint_names, a.old_values, a.new_values
     FROM {CHANGES} AS a
    WHERE a.run_id = $1::uuid AND a.table_name = {t} AND a.new_values IS {null} NULL
      AND a.restored_at IS NULL AND ($2::bigint IS NULL OR a.id < $2::bigint)
    ORDER BY a.id DESC LIMIT $3",
        t = quote_literal(table),
        null = if deleted { "" } else { "NOT" },
    )
}

/// A condition over a judged audit record `j`: every catalog foreign key the database enforces
/// on `table` accepts the record's old value (NULL, or a parent row that exists), and the
/// reason for a conflict when it does not. Production enforces its foreign keys, so a link that
/// was orphaned before the cleanup (rows restored with triggers off) cannot be put back: such a
/// row stays repaired and is reported, its old values kept in the audit.
fn parents_present(
    client: &mut Client,
    table: &'static str,
    guarded: &[&'static Constraint],
) -> Result<(String, String)> {
    let mut checks = Vec::new();
    let mut reasons = Vec::new();
    for c in guarded.iter().filter(|c| c.table == table) {
        let Rule::ForeignKey {
            column,
            parent,
            parent_column,
        } = c.rule
        else {
            continue;
        };
        let parent_type = key_type(&column_types(client, parent)?, parent)?;
        let old = format!("j.old_values ->> {}", quote_literal(column));
        let check = format!(
            "({old} IS NULL OR EXISTS (SELECT 1 FROM {} AS par WHERE par.{} = CAST({old} AS {parent_type})))",
            qualified(parent),
            quote_ident(parent_column)
        );
        reasons.push(format!(
            "WHEN NOT {check} THEN {}",
            quote_literal(&format!(
                "foreign key {} rejects the old {column}: no {parent} row has it any more (the row stays repaired; the audit keeps its old values)",
                c.name
            ))
        ));
        checks.push(check);
    }
    if checks.is_empty() {
        return Ok(("true".into(), String::new()));
    }
    Ok((checks.join(" AND "), reasons.join(" ")))
}

/// The catalog foreign keys whose old links undo must find a parent for, read once per undo:
/// those the database enforces, unless this role may turn triggers off and so puts such rows
/// back exactly as they were instead (see `restore_as_they_were`).
fn guarded_links(client: &mut Client) -> Result<Vec<&'static Constraint>> {
    if may_restore_dangling_links(client)? {
        return Ok(Vec::new());
    }
    let presence = constraint_presence(client)?;
    Ok(CATALOG
        .iter()
        .filter(|c| matches!(c.rule, Rule::ForeignKey { .. }))
        .filter(|c| {
            presence
                .get(c.name)
                .is_some_and(|p| p.state != ConstraintState::Absent)
        })
        .collect())
}

/// Whether this role may set `session_replication_role`: a superuser, or from PostgreSQL 15 a
/// role granted SET on it.
fn may_restore_dangling_links(client: &mut Client) -> Result<bool> {
    let version: i32 = client
        .row("SELECT current_setting('server_version_num')::int", &[])?
        .get(0);
    // has_parameter_privilege exists from 15 on; naming it on 13 or 14 fails the whole query.
    let sql = if version >= 150_000 {
        "SELECT rolsuper OR has_parameter_privilege('session_replication_role', 'SET')
           FROM pg_roles WHERE rolname = current_user"
    } else {
        "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
    };
    Ok(client.row(sql, &[])?.get(0))
}

/// Restores changed columns where the row still holds what the cleanup wrote.
fn restore_sql(
    client: &mut Client,
    table: &'static str,
    spelling: &DatabaseSpelling,
    guarded: &[&'static Constraint],
) -> Result<String> {
    let pk_type = key_type(&column_types(client, table)?, table)?;
    let (parents_ok, parent_reasons) = parents_present(client, table, guarded)?;
    let q = qualified(table);
    let pk = quote_ident(PRIMARY_KEY);
    // Every column a cleanup can write: the columns the table's constraints read.
    let mut writable: Vec<(&'static str, String)> = Vec::new();
    for c in CATALOG.iter().filter(|c| c.table == table) {
        for current in c.columns() {
            if let Some(actual) = spelling.actual_name(table, current) {
                if !writable.iter().any(|(w, _)| *w == current) {
                    writable.push((current, actual));
                }
            }
        }
    }
    let set: Vec<String> = writable
        .iter()
        .map(|(current, actual)| {
            let a = quote_ident(actual);
            format!(
                "{a} = CASE WHEN j.old_values ? {} THEN p.{a} ELSE u.{a} END",
                quote_literal(current)
            )
        })
        .collect();
    let now_holds =
        "(SELECT jsonb_object_agg(k, l.cur -> k) FROM jsonb_object_keys(r.new_values) AS k)";
    Ok(format!(
        "WITH recs AS (
  {recs}
), locked AS (
  SELECT t.{pk}, {cur} AS cur FROM {q} AS t
  WHERE t.{pk} = ANY (ARRAY(SELECT CAST(r.pk AS {pk_type}) FROM recs AS r))
  FOR UPDATE OF t
), seen AS (
  SELECT r.*, l.{pk} AS tid, {now_holds} AS now_holds,
         (l.{pk} IS NOT NULL AND {now_holds} = r.new_values) AS unchanged
  FROM recs AS r LEFT JOIN locked AS l ON l.{pk} = CAST(r.pk AS {pk_type})
), judged AS (
  SELECT j.*, j.unchanged AND {parents_ok} AS ok FROM seen AS j
), restored AS (
  UPDATE {q} AS u SET {set}
  FROM judged AS j CROSS JOIN LATERAL jsonb_populate_record(NULL::{q}, {old}) AS p
  WHERE j.ok AND u.{pk} = j.tid
  RETURNING u.{pk} AS pk
), marked AS (
  UPDATE {CHANGES} AS a SET restored_at = now()
  WHERE a.id = ANY (ARRAY(SELECT j.id FROM judged AS j JOIN restored AS x ON x.pk = j.tid))
  RETURNING a.id
)
SELECT (SELECT count(*) FROM recs), (SELECT min(id) FROM recs), (SELECT count(*) FROM marked),
  (SELECT coalesce(jsonb_agg(jsonb_build_object(
      'table', {t}, 'pk', j.pk, 'constraints', j.constraint_names,
      'reason', CASE WHEN j.tid IS NULL THEN 'the row was deleted after the cleanup'
                     WHEN NOT j.unchanged THEN 'the row was changed after the cleanup'
                     {parent_reasons} END,
      'expected', j.new_values, 'current', j.now_holds) ORDER BY j.id), '[]'::jsonb)
   FROM judged AS j WHERE NOT j.ok)",
        recs = records_cte(table, false),
        cur = rowjson::row_with_current_names(table, spelling, "t"),
        old = rowjson::with_actual_names("j.old_values", table, spelling),
        set = set.join(", "),
        t = quote_literal(table),
    ))
}

/// Inserts deleted rows back where their primary key is still free.
fn reinsert_sql(
    client: &mut Client,
    table: &'static str,
    spelling: &DatabaseSpelling,
    guarded: &[&'static Constraint],
) -> Result<String> {
    let types = column_types(client, table)?;
    let pk_type = key_type(&types, table)?;
    let (parents_ok, parent_reasons) = parents_present(client, table, guarded)?;
    let q = qualified(table);
    let pk = quote_ident(PRIMARY_KEY);
    let columns: Vec<String> = types.iter().map(|c| quote_ident(&c.name)).collect();
    let from_p: Vec<String> = columns.iter().map(|c| format!("p.{c}")).collect();
    Ok(format!(
        "WITH recs AS (
  {recs}
), present AS (
  SELECT t.{pk} FROM {q} AS t
  WHERE t.{pk} = ANY (ARRAY(SELECT CAST(r.pk AS {pk_type}) FROM recs AS r))
  FOR KEY SHARE OF t
), seen AS (
  SELECT r.*, CAST(r.pk AS {pk_type}) AS key,
         NOT EXISTS (SELECT 1 FROM present AS x WHERE x.{pk} = CAST(r.pk AS {pk_type})) AS free
  FROM recs AS r
), judged AS (
  SELECT j.*, j.free AND {parents_ok} AS ok FROM seen AS j
), restored AS (
  INSERT INTO {q} ({columns})
  SELECT {from_p} FROM judged AS j CROSS JOIN LATERAL jsonb_populate_record(NULL::{q}, {old}) AS p
  WHERE j.ok
  RETURNING {pk} AS pk
), marked AS (
  UPDATE {CHANGES} AS a SET restored_at = now()
  WHERE a.id = ANY (ARRAY(SELECT j.id FROM judged AS j JOIN restored AS x ON x.pk = j.key))
  RETURNING a.id
)
SELECT (SELECT count(*) FROM recs), (SELECT min(id) FROM recs), (SELECT count(*) FROM marked),
  (SELECT coalesce(jsonb_agg(jsonb_build_object(
      'table', {t}, 'pk', j.pk, 'constraints', j.constraint_names,
      'reason', CASE WHEN NOT j.free THEN 'a row with this primary key exists again'
                     {parent_reasons} END,
      'expected', NULL::jsonb, 'current', NULL::jsonb) ORDER BY j.id), '[]'::jsonb)
   FROM judged AS j WHERE NOT j.ok)",
        recs = records_cte(table, true),
        old = rowjson::with_actual_names("j.old_values", table, spelling),
        columns = columns.join(", "),
        from_p = from_p.join(", "),
        t = quote_literal(table),
    ))
}
