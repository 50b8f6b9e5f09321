//! What the policy would do, computed by the same stage chain the batches run, without
//! changing anything: per rule the violating rows, the rows it reaches only through an earlier
//! stage, and a few examples of old → new values.

use super::plan::TablePlan;
use super::policy::Action;
use crate::catalog::constraints::Constraint;
use crate::constraints::indexed;
use crate::constraints::spelling::DatabaseSpelling;
use crate::db::{query, Param, Query};
use anyhow::{Context, Result};
use postgres::fallible_iterator::FallibleIterator;
use postgres::{GenericClient, Row, Transaction};
use serde::Serialize;

/// One row as a rule would change it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Example {
    pub pk: String,
    /// The columns the rule writes (or, for delete and skip, reads), before it applies.
    pub before: serde_json::Value,
    /// After it applies; null for a deleted or skipped row.
    pub after: serde_json::Value,
    /// True when the row breaks this rule only because an earlier rule rewrote it.
    pub cascaded: bool,
}

#[derive(Debug, Clone)]
pub struct RulePreview {
    pub constraint: &'static Constraint,
    pub action: Action,
    /// Rows that break the constraint now: exactly what `check-constraints` counts.
    pub rows: u64,
    /// Rows the rule will also repair because an earlier rule on the table rewrote them into
    /// a violation of this one.
    pub cascaded: u64,
    pub examples: Vec<Example>,
}

#[derive(Debug, Clone)]
pub struct TablePreview {
    pub table: &'static str,
    /// Distinct rows that would change or go.
    pub total: u64,
    pub rules: Vec<RulePreview>,
}

/// A dry run's preview of every table's plan, with examples.
pub fn preview(
    client: &mut (impl Query + GenericClient),
    plans: &[TablePlan],
) -> Result<Vec<TablePreview>> {
    let tables: Vec<&str> = plans.iter().map(|p| p.table).collect();
    let spelling = DatabaseSpelling::read(client, &tables)?;
    let mut previews = Vec::new();
    for plan in plans {
        let row = narrowed_scan(client, plan, &spelling, |client, sql, params| {
            let sql = plan.preview_sql(sql);
            client
                .row(sql.as_str(), params)
                .map_err(anyhow::Error::from)
        })?;
        let rules = plan
            .rules()
            .into_iter()
            .enumerate()
            .map(|(i, rule)| -> Result<RulePreview> {
                let examples: serde_json::Value = row.get(3 + 3 * i);
                Ok(RulePreview {
                    constraint: rule.constraint,
                    action: rule.action,
                    rows: row.get::<_, i64>(1 + 3 * i) as u64,
                    cascaded: row.get::<_, i64>(2 + 3 * i) as u64,
                    examples: serde_json::from_value(examples)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        previews.push(TablePreview {
            table: plan.table,
            total: row.get::<_, i64>(0) as u64,
            rules,
        });
    }
    Ok(previews)
}

/// Keys go into the key table this many at a time.
const KEY_CHUNK: usize = 10_000;

/// A real run's preview: counts every table's rows as [`preview`] does (without examples) and
/// writes the keys of the rows the rules touch into the plans' key tables, in `keys`' session.
///
/// The rows are read on `reader`, a second session that shares the snapshot of `keys`' open
/// transaction, and stream from it while their keys are written in chunks, so memory stays
/// flat and the scans are plain reads, which PostgreSQL may give parallel workers (a statement
/// that also wrote the keys, as this used to, never gets them). Without a second session
/// (`None`: the server had no connection to spare) the rows are read on `keys` itself, a
/// table at a time, and its keys held until the table's scan ends.
pub fn collect(
    keys: &mut Transaction<'_>,
    reader: Option<&mut Transaction<'_>>,
    plans: &[TablePlan],
) -> Result<Vec<TablePreview>> {
    let tables: Vec<&str> = plans.iter().map(|p| p.table).collect();
    match reader {
        Some(reader) => {
            let spelling = DatabaseSpelling::read(reader, &tables)?;
            plans
                .iter()
                .map(|plan| {
                    tally_table(reader, plan, &spelling, |tally| tally.flush(keys, plan))?
                        .finish(keys, plan)
                })
                .collect()
        }
        // The scan holds `keys` until it ends: its keys are written after.
        None => {
            let spelling = DatabaseSpelling::read(keys, &tables)?;
            plans
                .iter()
                .map(|plan| tally_table(keys, plan, &spelling, |_| Ok(()))?.finish(keys, plan))
                .collect()
        }
    }
}

/// Counts one table's previewed rows on `scanner`, handing the tally to `write_keys` each time
/// it holds [`KEY_CHUNK`] keys.
fn tally_table(
    scanner: &mut Transaction<'_>,
    plan: &TablePlan,
    spelling: &DatabaseSpelling,
    mut write_keys: impl FnMut(&mut Tally) -> Result<()>,
) -> Result<Tally> {
    let mut tally = Tally::new(plan);
    stream_rows(scanner, plan, spelling, |row| {
        tally.add(row);
        if tally.keys.len() >= KEY_CHUNK {
            write_keys(&mut tally)?;
        }
        Ok(())
    })?;
    Ok(tally)
}

/// Streams the rows of `plan`'s [`TablePlan::preview_rows_sql`] on `scanner` into `each`.
fn stream_rows(
    scanner: &mut Transaction<'_>,
    plan: &TablePlan,
    spelling: &DatabaseSpelling,
    mut each: impl FnMut(&Row) -> Result<()>,
) -> Result<()> {
    narrowed_scan(scanner, plan, spelling, |scanner, narrowed, params| {
        let sql = plan.preview_rows_sql(narrowed);
        let mut rows = query::stream(scanner, sql.as_str(), params)?;
        while let Some(row) = rows.next()? {
            each(&row)?;
        }
        Ok(())
    })
}

/// Runs `scan` with the plan's bound values, narrowed by an index when one can answer and that
/// reads less (the checker's shortcut: see `constraints::indexed`): `scan` gets the narrowing
/// condition for the SQL and the parameters.
fn narrowed_scan<C: Query + GenericClient, T>(
    client: &mut C,
    plan: &TablePlan,
    spelling: &DatabaseSpelling,
    scan: impl FnOnce(&mut C, Option<&str>, &[&dyn Param]) -> Result<T>,
) -> Result<T> {
    let constraints: Vec<&'static Constraint> = plan.rules().iter().map(|r| r.constraint).collect();
    let narrowing = indexed::narrowing(client, plan.table, &constraints, spelling)?
        .filter(indexed::Narrowing::pays);
    let mut params: Vec<&dyn Param> = match plan.bound_values() {
        Some(values) => vec![values],
        None => Vec::new(),
    };
    let narrowed = narrowing.as_ref().map(|n| {
        params.push(&n.values);
        n.condition("t", params.len())
    });
    if let Some(n) = &narrowing {
        n.enter(client)?;
    }
    let result = scan(client, narrowed.as_deref(), &params)
        .with_context(|| format!("previewing the cleanup of {}", plan.table))?;
    if narrowed.is_some() {
        client.batch(indexed::UNNARROWED_SETTINGS)?;
    }
    Ok(result)
}

/// A real run's preview of one table, row by row: the counts, and the keys not yet written.
struct Tally {
    total: u64,
    /// Per rule: rows that break it now, rows it reaches only through an earlier stage.
    per_rule: Vec<(u64, u64)>,
    keys: Vec<String>,
}

impl Tally {
    fn new(plan: &TablePlan) -> Tally {
        Tally {
            total: 0,
            per_rule: vec![(0, 0); plan.rules().len()],
            keys: Vec::new(),
        }
    }

    /// One row of [`TablePlan::preview_rows_sql`].
    fn add(&mut self, row: &Row) {
        let flag = |i: usize| row.get::<_, Option<bool>>(i) == Some(true);
        if flag(1) {
            self.total += 1;
        }
        for (i, (rows, cascaded)) in self.per_rule.iter_mut().enumerate() {
            if flag(2 + 2 * i) {
                *rows += 1;
            } else if flag(3 + 2 * i) {
                *cascaded += 1;
            }
        }
        self.keys.push(row.get(0));
    }

    fn flush(&mut self, client: &mut (impl Query + ?Sized), plan: &TablePlan) -> Result<()> {
        if !self.keys.is_empty() {
            client
                .exec(plan.insert_keys_sql().as_str(), &[&self.keys])
                .with_context(|| format!("keeping the keys of {} for the batches", plan.table))?;
            self.keys.clear();
        }
        Ok(())
    }

    /// Writes the keys still held and gives the table's preview.
    fn finish(
        mut self,
        client: &mut (impl Query + ?Sized),
        plan: &TablePlan,
    ) -> Result<TablePreview> {
        self.flush(client, plan)?;
        let rules = plan
            .rules()
            .into_iter()
            .zip(self.per_rule)
            .map(|(rule, (rows, cascaded))| RulePreview {
                constraint: rule.constraint,
                action: rule.action,
                rows,
                cascaded,
                examples: Vec::new(),
            })
            .collect();
        Ok(TablePreview {
            table: plan.table,
            total: self.total,
            rules,
        })
    }
}
