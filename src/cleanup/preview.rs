//! What the policy would do, computed by the same stage chain the batches run, without
//! changing anything: per rule the violating rows, the rows it reaches only through an earlier
//! stage, and a few examples of old → new values.

use super::plan::TablePlan;
use super::policy::Action;
use crate::catalog::constraints::Constraint;
use crate::constraints::indexed;
use crate::constraints::spelling::DatabaseSpelling;
use anyhow::{Context, Result};
use postgres::GenericClient;
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

/// Previews every table's plan; `for_run` (not a dry run): also fills each plan's key table,
/// without the examples only a dry run shows.
pub fn preview(
    client: &mut impl GenericClient,
    plans: &[TablePlan],
    for_run: bool,
) -> Result<Vec<TablePreview>> {
    let mut previews = Vec::new();
    let tables: Vec<&str> = plans.iter().map(|p| p.table).collect();
    let spelling = DatabaseSpelling::read(client, &tables)?;
    for plan in plans {
        let constraints: Vec<&'static Constraint> =
            plan.rules().iter().map(|r| r.constraint).collect();
        // The checker's shortcut: an index narrows the scan to the rows that can violate.
        let narrowing = indexed::narrowing(client, plan.table, &constraints, &spelling)?;
        let mut params: Vec<&(dyn postgres::types::ToSql + Sync)> = match plan.bound_values() {
            Some(values) => vec![values],
            None => Vec::new(),
        };
        let narrowed = narrowing.as_ref().map(|n| {
            params.push(&n.values);
            n.condition("t", params.len())
        });
        if narrowed.is_some() {
            client.batch_execute(indexed::NARROWED_SETTINGS)?;
        }
        let row = client
            .query_one(
                plan.preview_sql(for_run, narrowed.as_deref()).as_str(),
                &params,
            )
            .with_context(|| format!("previewing the cleanup of {}", plan.table))?;
        if narrowed.is_some() {
            client.batch_execute(indexed::UNNARROWED_SETTINGS)?;
        }
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
