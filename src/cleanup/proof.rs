//! Cleanup is proven before it starts (docs/design.md §3): everything that would make a batch fail
//! for a reason known in advance is checked against the live database before the first one,
//! so a run never stops half-way on something it could have seen.
//!
//! - the server takes writes (not a standby, not read-only);
//! - the role may read every table the plan reads, and create the session's key tables;
//! - every value the policy writes fits its column: type, and length for `varchar(n)`;
//! - the role holds every privilege the batch statements need, read from the statements
//!   themselves (`statements::privileges_needed`: a row lock needs UPDATE, so does an UPDATE,
//!   a DELETE needs DELETE, the audit INSERT needs INSERT), and may write the audit trail
//!   (create schema `ruleiq_audit` when it does not exist yet).
//!
//! NOT NULL is `decisions.rs`'s: NULL is the only value a rule writes that a column can refuse.

use super::audit;
use super::plan::TablePlan;
use super::preview::TablePreview;
use super::statements::{privileges_needed, Needs};
use crate::catalog::sql::{qualified, quote_ident};
use crate::db::Query;
use crate::refusal::Refusal;
use anyhow::{bail, Result};
use postgres::GenericClient;

/// Before the preview: the role may read every table the plan reads, and (for a real run)
/// create the temporary tables of keys the batches walk.
pub fn prove_reads(
    client: &mut (impl Query + ?Sized),
    plans: &[TablePlan],
    real_run: bool,
) -> Result<()> {
    let mut tables: Vec<&str> = Vec::new();
    for plan in plans {
        for table in std::iter::once(plan.table).chain(plan.parents()) {
            if !tables.contains(&table) {
                tables.push(table);
            }
        }
    }
    let mut problems = Vec::new();
    for table in tables {
        if !table_privilege(client, table, "SELECT", &[])? {
            problems.push(missing("SELECT", table));
        }
    }
    if real_run {
        let temp: bool = client
            .row(
                "SELECT has_database_privilege(current_database(), 'TEMPORARY')",
                &[],
            )?
            .get(0);
        if !temp {
            problems.push(
                "may not create temporary tables in this database (privilege TEMPORARY), where the run keeps the keys it works through".into(),
            );
        }
    }
    refuse_if_any(client, problems)
}

/// Every value the policy writes must fit its column as the live database has it: its type
/// (an integer cannot hold 3000000000) and its length (`varchar(5)` cannot hold
/// 'not_started'; PostgreSQL would otherwise fail the batch, or an explicit cast truncate the
/// value silently). An error in the policy, as docs/design.md §3's other policy errors: exit 1.
pub fn prove_values(
    client: &mut (impl Query + GenericClient),
    plans: &[TablePlan],
    source: &str,
) -> Result<()> {
    for plan in plans {
        for (rule, actual, values) in plan.written_values() {
            let Some(column_type) = plan.column_type(&actual) else {
                continue;
            };
            let limit = crate::db::introspect::column_max_length(client, plan.table, &actual)?;
            for value in values {
                let what = || {
                    format!(
                        "invalid cleanup policy {source}: {}: '{value}' does not fit {}.{actual} ({column_type})",
                        rule.constraint.name, plan.table
                    )
                };
                if let Err(e) = client.row(
                    &format!("SELECT CAST($1::text AS {column_type})"),
                    &[&value],
                ) {
                    return Err(anyhow::Error::from(e).context(what()));
                }
                let length = value.chars().count();
                if let Some(limit) = limit.filter(|limit| length > *limit) {
                    bail!(
                        "{}: it is {length} characters long and the column holds at most {limit}; nothing was changed",
                        what()
                    );
                }
            }
        }
    }
    Ok(())
}

/// After the preview, before the first change: the role holds every privilege the statements
/// the run will execute need, and may write the audit trail.
pub fn prove_writes(
    client: &mut (impl Query + GenericClient),
    plans: &[TablePlan],
    previews: &[TablePreview],
) -> Result<()> {
    let mut problems: Vec<String> = Vec::new();
    let mut any_change = false;
    for (plan, preview) in plans.iter().zip(previews) {
        let acts = |range: std::ops::Range<usize>| {
            preview.rules[range].iter().any(|r| r.rows + r.cascaded > 0)
        };
        let stages = plan.stages.len();
        let will_run = [
            (plan.update_batch_sql(), acts(0..stages)),
            (
                plan.delete_batch_sql(),
                acts(stages..stages + plan.deletes.len()),
            ),
        ];
        let columns: Vec<String> = plan
            .written_columns()
            .iter()
            .map(|(_, actual)| actual.clone())
            .collect();
        for (sql, runs) in will_run {
            let Some(sql) = sql.filter(|_| runs) else {
                continue;
            };
            any_change = true;
            for needs in privileges_needed(&sql) {
                if let Some(problem) = lacking(client, &needs, plan.table, &columns)? {
                    if !problems.contains(&problem) {
                        problems.push(problem);
                    }
                }
            }
        }
    }
    if any_change {
        for m in audit::missing_grants(client)? {
            let problem = format!("{} ({} TO {ROLE})", m.cannot, m.grant);
            if !problems.iter().any(|p| p.starts_with(&m.cannot)) {
                problems.push(problem);
            }
        }
    }
    refuse_if_any(client, problems)
}

/// What the role lacks for `needs`, if anything. A table of the application's is named as the
/// plan names it (`table`); an audit table that does not exist yet is the audit's to create
/// (`audit::missing_grants`).
fn lacking(
    client: &mut (impl Query + ?Sized),
    needs: &Needs,
    table: &str,
    columns: &[String],
) -> Result<Option<String>> {
    let (privilege, object, check, why) = match needs {
        Needs::Lock(o) => (
            "UPDATE",
            o,
            "has_any_column_privilege(r, 'UPDATE')",
            " (the batches lock its rows FOR UPDATE before they change them)",
        ),
        Needs::Update(o) => ("UPDATE", o, UPDATE_CHECK, ""),
        Needs::Delete(o) => ("DELETE", o, "has_table_privilege(r, 'DELETE')", ""),
        Needs::Insert(o) => ("INSERT", o, "has_table_privilege(r, 'INSERT')", ""),
    };
    // The audit trail's schema may be one the role cannot even look into (to_regclass would
    // fail there): what it needs on the audit is `audit::missing_grants`'s to say.
    if object.starts_with(&format!("{}.", crate::catalog::audit::SCHEMA)) {
        return Ok(None);
    }
    let held: bool = client
        .row(
            &format!("SELECT r IS NULL OR ({check}) FROM to_regclass($1) AS r"),
            &[object, &columns],
        )?
        .get(0);
    if held {
        return Ok(None);
    }
    let shown = if *object == qualified(table) {
        table.to_string()
    } else {
        object.to_string()
    };
    Ok(Some(format!(
        "may not {privilege} table {shown}{why} (GRANT {privilege} ON {shown} TO {ROLE})"
    )))
}

/// UPDATE on the table, or on each of the columns the update sets (a column grant is all the
/// batches need); `$2` the columns.
const UPDATE_CHECK: &str = "has_table_privilege(r, 'UPDATE')
    OR (cardinality($2::text[]) > 0
        AND (SELECT bool_and(has_column_privilege(r, c, 'UPDATE')) FROM unnest($2::text[]) AS c))";

/// Stands for the role's name in a problem's GRANT until `refuse_if_any` knows it.
const ROLE: &str = "<role>";

fn missing(privilege: &str, table: &str) -> String {
    format!("may not {privilege} table {table} (GRANT {privilege} ON {table} TO {ROLE})")
}

/// Whether the role holds `privilege` on `table`; for UPDATE, holding it on each of `columns`
/// is as good (a column grant is all the batches need).
fn table_privilege(
    client: &mut (impl Query + ?Sized),
    table: &str,
    privilege: &str,
    columns: &[String],
) -> Result<bool> {
    Ok(client
        .row(
            "SELECT r IS NOT NULL AND (has_table_privilege(r, $2)
                    OR (cardinality($3::text[]) > 0
                        AND (SELECT bool_and(has_column_privilege(r, c, $2)) FROM unnest($3::text[]) AS c)))
               FROM to_regclass($1) AS r",
            &[&qualified(table), &privilege, &columns],
        )?
        .get(0))
}

fn refuse_if_any(client: &mut (impl Query + ?Sized), problems: Vec<String>) -> Result<()> {
    if problems.is_empty() {
        return Ok(());
    }
    let role: String = client.row("SELECT current_user::text", &[])?.get(0);
    let grantee = quote_ident(&role);
    let problems: Vec<String> = problems.iter().map(|p| p.replace(ROLE, &grantee)).collect();
    Err(Refusal::MissingGrants(format!(
        "cleanup cannot be carried out as planned, so it does not start: role {grantee} {}; nothing was changed",
        problems.join("; ")
    ))
    .into())
}
