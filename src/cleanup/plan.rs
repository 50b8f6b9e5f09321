//! How the policy repairs one table: which rules rewrite its rows, in what order, which
//! delete or skip, and what each stage reads and writes. `statements.rs` renders the plan as
//! SQL.
//!
//! All the rules that rewrite a table's rows are chained into one UPDATE, each stage seeing
//! the row as the stages before it left it. That is what makes the rules interact correctly:
//! normalising 'Approved' to 'approved' produces an approval-workflow violation, which the
//! next stage (demote or backfill) repairs in the same statement. It is also required from
//! version 8 on: a NOT VALID CHECK is enforced on every UPDATE, so an update that repaired one
//! constraint of a row while leaving another broken would be rejected.
//!
//! Rows a `delete` rule removes go first, in their own batches.

use super::bound::Bound;
use super::fixes::{self, Fix};
use super::policy::{Action, Policy, RulePolicy};
use crate::catalog::constraints::Rule;
use crate::catalog::PRIMARY_KEY;
use crate::constraints::check::DatabaseSpelling;
use crate::db::introspect::{self, ColumnType};
use crate::db::Query;
use anyhow::{bail, Context, Result};
use postgres::GenericClient;
use std::collections::BTreeSet;

/// The repair of one table.
#[derive(Debug, Clone)]
pub struct TablePlan {
    pub table: &'static str,
    pub(super) pk_type: String,
    pub(super) spelling: DatabaseSpelling,
    /// Rules that rewrite rows, in the order they apply.
    pub stages: Vec<RulePolicy>,
    /// Rules that remove rows.
    pub deletes: Vec<RulePolicy>,
    /// Rules the policy skips: counted, left alone.
    pub skipped: Vec<RulePolicy>,
    /// Per stage, the columns it writes: (current name, actual name).
    pub(super) stage_writes: Vec<Vec<(&'static str, String)>>,
    /// Every column some stage writes.
    pub(super) written: Vec<(&'static str, String)>,
    /// Actual names of every column the stages read or write, carried from stage to stage.
    pub(super) carried: Vec<String>,
    /// The policy's values the stages use, in the order of the text[] parameter that carries
    /// them (see [`Bound`]).
    pub values: Vec<String>,
    /// Every column of the table (actual name) and its SQL type, with and without modifier.
    pub(super) types: Vec<ColumnType>,
}

/// The order of a table's stages. A value rule (map, default, set_null) writes what its own
/// constraint accepts, which another rule may still judge: 'Approved' → 'approved' is exactly
/// what the approval workflow looks at. demote and backfill write values every rule accepts
/// (the policy checks a demote value against the status list). So value rules go first, and
/// the workflow rule sees their result.
fn stage_rank(rule: &RulePolicy) -> u8 {
    match rule.constraint.rule {
        Rule::OneOf { .. } | Rule::Positive { .. } => 0,
        Rule::RequiredWhen { .. } => 1,
        Rule::ForeignKey { .. } => 2,
    }
}

/// Plans every table the policy has rules for and that exists in this database, reading how
/// the database spells their columns and the columns' types.
pub fn build(policy: &Policy, client: &mut (impl Query + GenericClient)) -> Result<Vec<TablePlan>> {
    let spelling = DatabaseSpelling::read(client, &tables_read(policy))?;
    let mut types = Vec::new();
    for table in planned_tables(policy, &spelling) {
        types.push((table, introspect::column_types(client, table)?));
    }
    plan_all(policy, &spelling, types)
}

/// Plans `policy` for a database spelled `spelling`, with `types`, the columns of each table
/// [`planned_tables`] names. Reads nothing from the database.
pub fn plan_all(
    policy: &Policy,
    spelling: &DatabaseSpelling,
    types: Vec<(&'static str, Vec<ColumnType>)>,
) -> Result<Vec<TablePlan>> {
    let mut plans = Vec::new();
    for (table, columns) in types {
        plans.push(TablePlan::new(
            table,
            rules_on(policy, spelling, table),
            spelling,
            columns,
        )?);
    }
    Ok(plans)
}

/// The tables the policy's rules read: their own, and foreign keys' parents.
pub fn tables_read(policy: &Policy) -> Vec<&'static str> {
    crate::catalog::constraints::tables_read(policy.rules.iter().map(|rule| rule.constraint))
}

/// The tables that get a plan: those that exist and have a rule to apply.
pub fn planned_tables(policy: &Policy, spelling: &DatabaseSpelling) -> Vec<&'static str> {
    tables_read(policy)
        .into_iter()
        .filter(|table| spelling.has_table(table) && !rules_on(policy, spelling, table).is_empty())
        .collect()
}

fn rules_on(policy: &Policy, spelling: &DatabaseSpelling, table: &str) -> Vec<RulePolicy> {
    policy
        .rules
        .iter()
        .filter(|r| r.constraint.table == table)
        .filter(|r| match r.constraint.rule {
            // As the checker: a link to a table that does not exist yet is not checked.
            Rule::ForeignKey { parent, .. } => spelling.has_table(parent),
            _ => true,
        })
        .cloned()
        .collect()
}

impl TablePlan {
    /// The plan of `table` for `rules` (all on it), in a database spelled `spelling` whose
    /// table has the columns `types`. Reads nothing from the database.
    pub fn new(
        table: &'static str,
        rules: Vec<RulePolicy>,
        spelling: &DatabaseSpelling,
        types: Vec<ColumnType>,
    ) -> Result<TablePlan> {
        let pk_type = key_type(&types, table)?;
        let mut stages: Vec<RulePolicy> = Vec::new();
        let mut deletes = Vec::new();
        let mut skipped = Vec::new();
        for rule in rules {
            match rule.action {
                Action::Skip => skipped.push(rule),
                Action::Delete => deletes.push(rule),
                _ => stages.push(rule),
            }
        }
        stages.sort_by_key(stage_rank);

        let actual = |current: &str| spelling.actual_name(table, current);
        let mut stage_writes = Vec::new();
        let mut written: Vec<(&'static str, String)> = Vec::new();
        let mut carried: BTreeSet<String> = BTreeSet::new();
        let collect = Bound::new("", Vec::new(), table, spelling, &types);
        for rule in &stages {
            let Fix::Update(writes) = fixes::fix(rule, &|c| c.to_string(), &collect) else {
                unreachable!("stages update")
            };
            let mut columns = Vec::new();
            for (current, _) in writes {
                let Some(name) = actual(current) else {
                    bail!(
                        "{} ({}) writes {table}.{current}, which does not exist at this schema version",
                        rule.constraint.name,
                        rule.action
                    );
                };
                if !columns.iter().any(|(c, _)| *c == current) {
                    columns.push((current, name.clone()));
                }
                if !written.iter().any(|(c, _)| *c == current) {
                    written.push((current, name.clone()));
                }
                carried.insert(name);
            }
            stage_writes.push(columns);
            for current in rule
                .constraint
                .columns()
                .into_iter()
                .chain(fixes::extra_reads(rule))
            {
                if let Some(name) = actual(current) {
                    carried.insert(name);
                }
            }
        }
        Ok(TablePlan {
            table,
            pk_type,
            spelling: spelling.clone(),
            stages,
            deletes,
            skipped,
            stage_writes,
            written,
            carried: carried.into_iter().collect(),
            values: collect.values.into_inner(),
            types,
        })
    }

    /// The values bound to a statement whose stages read them from `$n::text[]`; None when
    /// no stage writes a policy value (the statement then has no such parameter).
    pub fn bound_values(&self) -> Option<&Vec<String>> {
        (!self.values.is_empty()).then_some(&self.values)
    }

    /// How this database spells a column of the table (by current name), if it has it.
    pub fn actual_column(&self, current: &str) -> Option<String> {
        self.spelling.actual_name(self.table, current)
    }

    /// The columns the update stages write: (current name, actual name).
    pub fn written_columns(&self) -> &[(&'static str, String)] {
        &self.written
    }

    /// The tables the rules read besides this one (foreign keys' parents).
    pub fn parents(&self) -> Vec<&'static str> {
        let mut parents = Vec::new();
        for rule in self.rules() {
            if let Rule::ForeignKey { parent, .. } = rule.constraint.rule {
                if !parents.contains(&parent) {
                    parents.push(parent);
                }
            }
        }
        parents
    }

    /// The table's column (actual name) and SQL type.
    pub fn column_type(&self, actual: &str) -> Option<&str> {
        self.types
            .iter()
            .find(|c| c.name == actual)
            .map(|c| c.sql_type.as_str())
    }

    /// Per stage that writes policy values: the rule, the column they go into (actual name)
    /// and the values (what map, default, demote and backfill can write there).
    pub fn written_values(&self) -> Vec<(&RulePolicy, String, Vec<String>)> {
        let mut out = Vec::new();
        for (rule, columns) in self.stages.iter().zip(&self.stage_writes) {
            let mut values: Vec<String> = rule.value.iter().map(fixes::value_text).collect();
            if rule.action == Action::Map {
                if let Rule::OneOf {
                    values: allowed, ..
                } = rule.constraint.rule
                {
                    values.extend(allowed.iter().map(|v| v.to_string()));
                }
                values.extend(rule.synonyms.iter().map(|(_, to)| to.clone()));
            }
            let mut seen = std::collections::HashSet::new();
            values.retain(|v| seen.insert(v.clone()));
            let own = own_column(rule);
            let Some((_, actual)) = columns.iter().find(|(c, _)| *c == own) else {
                continue;
            };
            if !values.is_empty() {
                out.push((rule, actual.clone(), values));
            }
        }
        out
    }

    /// Every rule of the table: stages, deletes, skipped; the index is the rule's number in
    /// the SQL (`o0`, `o1`, …).
    pub fn rules(&self) -> Vec<&RulePolicy> {
        self.stages
            .iter()
            .chain(&self.deletes)
            .chain(&self.skipped)
            .collect()
    }
}

fn own_column(rule: &RulePolicy) -> &'static str {
    match rule.constraint.rule {
        Rule::OneOf { column, .. }
        | Rule::Positive { column }
        | Rule::RequiredWhen { column, .. }
        | Rule::ForeignKey { column, .. } => column,
    }
}

/// The SQL type of a table's primary key, from its [`introspect::column_types`].
pub fn key_type(types: &[ColumnType], table: &str) -> Result<String> {
    types
        .iter()
        .find(|c| c.name == PRIMARY_KEY)
        .map(|c| c.sql_type.clone())
        .with_context(|| format!("{table} has no column {PRIMARY_KEY}"))
}
