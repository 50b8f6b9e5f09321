//! How the policy repairs one table, and the SQL that does it.
//!
//! All the rules that rewrite a table's rows are chained into one UPDATE, each stage seeing
//! the row as the stages before it left it. That is what makes the rules interact correctly:
//! normalising 'Approved' to 'approved' produces an approval-workflow violation, which the
//! next stage (demote or backfill) repairs in the same statement. It is also required from
//! version 8 on: a NOT VALID CHECK is enforced on every UPDATE, so an update that repaired one
//! constraint of a row while leaving another broken would be rejected.
//!
//! Rows a `delete` rule removes go first, in their own batches.

use super::audit::CHANGES;
use super::fixes::{self, Bind, Fix};
use super::policy::{Action, Policy, RulePolicy};
use super::rowjson;
use crate::catalog::constraints::Rule;
use crate::catalog::sql::{quote_ident, quote_literal};
use crate::catalog::PRIMARY_KEY;
use crate::constraints::check::DatabaseSpelling;
use anyhow::{bail, Context, Result};
use postgres::GenericClient;
use std::cell::RefCell;
use std::collections::BTreeSet;

/// Prefix of the session's temporary tables of the keys a cleanup works through, one per table.
pub const KEYS_TABLE_PREFIX: &str = "ruleiq_cleanup_keys_";

/// Examples per rule in a preview.
pub const EXAMPLES: usize = 3;

/// The repair of one table.
#[derive(Debug, Clone)]
pub struct TablePlan {
    pub table: &'static str,
    pk_type: String,
    spelling: DatabaseSpelling,
    /// Rules that rewrite rows, in the order they apply.
    pub stages: Vec<RulePolicy>,
    /// Rules that remove rows.
    pub deletes: Vec<RulePolicy>,
    /// Rules the policy skips: counted, left alone.
    pub skipped: Vec<RulePolicy>,
    /// Per stage, the columns it writes: (current name, actual name).
    stage_writes: Vec<Vec<(&'static str, String)>>,
    /// Every column some stage writes.
    written: Vec<(&'static str, String)>,
    /// Actual names of every column the stages read or write, carried from stage to stage.
    carried: Vec<String>,
    /// The policy's values the stages use, in the order of the text[] parameter that carries
    /// them (see [`Bound`]).
    pub values: Vec<String>,
    /// (actual name, SQL type) of every column of the table.
    types: Vec<(String, String)>,
    /// (actual name, SQL type without its modifier): what a bound value is cast to. Not
    /// `varchar(5)`: an explicit cast to that would cut a longer value short without a word,
    /// where the assignment to the column refuses it.
    base_types: Vec<(String, String)>,
}

/// Policy values as elements of one bound `text[]` parameter, each cast to the type of the
/// column it is written into: no policy text is ever part of a statement's text. Asking for a
/// value not yet in the list appends it (how [`TablePlan::new`] collects them).
struct Bound<'a> {
    /// The parameter, e.g. `$4::text[]`.
    array: &'a str,
    values: RefCell<Vec<String>>,
    table: &'static str,
    spelling: &'a DatabaseSpelling,
    /// (actual name, SQL type without modifier).
    types: &'a [(String, String)],
}

impl Bound<'_> {
    fn index(&self, text: &str) -> usize {
        let mut values = self.values.borrow_mut();
        match values.iter().position(|v| v == text) {
            Some(i) => i + 1,
            None => {
                values.push(text.to_string());
                values.len()
            }
        }
    }
}

impl Bind for Bound<'_> {
    fn value(&self, column: &str, text: &str) -> String {
        let i = self.index(text);
        let column_type = self
            .spelling
            .actual_name(self.table, column)
            .and_then(|actual| self.types.iter().find(|(n, _)| *n == actual))
            .map_or("text", |(_, t)| t.as_str());
        format!("CAST(({})[{i}] AS {column_type})", self.array)
    }

    fn key(&self, text: &str) -> String {
        format!("({})[{}]", self.array, self.index(text))
    }
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

/// Plans every table the policy has rules for and that exists in this database.
pub fn build(policy: &Policy, client: &mut impl GenericClient) -> Result<Vec<TablePlan>> {
    let mut tables: Vec<&'static str> = Vec::new();
    for rule in &policy.rules {
        let c = rule.constraint;
        for table in std::iter::once(c.table).chain(match c.rule {
            Rule::ForeignKey { parent, .. } => Some(parent),
            _ => None,
        }) {
            if !tables.contains(&table) {
                tables.push(table);
            }
        }
    }
    let spelling = DatabaseSpelling::read(client, &tables)?;
    let mut plans = Vec::new();
    for table in tables {
        let rules: Vec<RulePolicy> = policy
            .rules
            .iter()
            .filter(|r| r.constraint.table == table)
            .filter(|r| match r.constraint.rule {
                // As the checker: a link to a table that does not exist yet is not checked.
                Rule::ForeignKey { parent, .. } => spelling.has_table(parent),
                _ => true,
            })
            .cloned()
            .collect();
        if rules.is_empty() || !spelling.has_table(table) {
            continue;
        }
        plans.push(TablePlan::new(table, rules, &spelling, client)?);
    }
    Ok(plans)
}

impl TablePlan {
    fn new(
        table: &'static str,
        rules: Vec<RulePolicy>,
        spelling: &DatabaseSpelling,
        client: &mut impl GenericClient,
    ) -> Result<TablePlan> {
        let types = column_types(client, table)?;
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
        let base_types = base_types(client, table)?;
        let collect = Bound {
            array: "",
            values: RefCell::new(Vec::new()),
            table,
            spelling,
            types: &base_types,
        };
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
            base_types,
        })
    }

    /// The values bound to a statement whose stages read them from `$n::text[]`; None when
    /// no stage writes a policy value (the statement then has no such parameter).
    pub fn bound_values(&self) -> Option<&Vec<String>> {
        (!self.values.is_empty()).then_some(&self.values)
    }

    /// The parameter number the stage chain reads values from, after `fixed` parameters.
    fn values_param(&self, fixed: usize) -> String {
        format!("${}::text[]", fixed + 1)
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
            .find(|(n, _)| n == actual)
            .map(|(_, t)| t.as_str())
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
            values.dedup();
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

    fn col(&self, alias: &str, current: &str) -> String {
        match self.spelling.actual_name(self.table, current) {
            Some(name) => format!("{alias}.{}", quote_ident(&name)),
            None => "NULL".into(),
        }
    }

    fn violated(&self, rule: &RulePolicy, alias: &str) -> String {
        rule.constraint.violation_condition(&self.spelling, alias)
    }

    fn any_violated(&self, rules: &[&RulePolicy], alias: &str) -> String {
        if rules.is_empty() {
            return "FALSE".into();
        }
        rules
            .iter()
            .map(|r| format!("({})", self.violated(r, alias)))
            .collect::<Vec<_>>()
            .join(" OR ")
    }

    fn stage_alias(k: usize) -> String {
        if k == 0 {
            "t".into()
        } else {
            format!("s{k}")
        }
    }

    fn last_alias(&self) -> String {
        Self::stage_alias(self.stages.len())
    }

    /// The LATERAL chain from the row `t` through each stage: `h{k}.hit` says whether stage k
    /// applied, `s{k}` is the row after it. `OFFSET 0` keeps the planner from inlining a stage
    /// into every expression that reads it: without it, `map`'s CASE (regexp and all) runs
    /// once per later reference instead of once per row.
    fn stage_chain(&self, values_param: &str) -> String {
        let bind = Bound {
            array: values_param,
            values: RefCell::new(self.values.clone()),
            table: self.table,
            spelling: &self.spelling,
            types: &self.base_types,
        };
        let mut sql = String::new();
        for (i, rule) in self.stages.iter().enumerate() {
            let (k, input) = (i + 1, Self::stage_alias(i));
            sql.push_str(&format!(
                "\n  CROSS JOIN LATERAL (SELECT {} AS hit OFFSET 0) AS h{k}",
                self.violated(rule, &input)
            ));
            let Fix::Update(writes) = fixes::fix(rule, &|c| self.col(&input, c), &bind) else {
                unreachable!("stages update")
            };
            let columns: Vec<String> = self
                .carried
                .iter()
                .map(|actual| {
                    let q = quote_ident(actual);
                    let write = writes.iter().find(|(current, _)| {
                        self.spelling.actual_name(self.table, current).as_deref()
                            == Some(actual.as_str())
                    });
                    match write {
                        Some((_, expr)) => {
                            format!("CASE WHEN h{k}.hit THEN {expr} ELSE {input}.{q} END AS {q}")
                        }
                        None => format!("{input}.{q} AS {q}"),
                    }
                })
                .collect();
            sql.push_str(&format!(
                "\n  CROSS JOIN LATERAL (SELECT {} OFFSET 0) AS s{k}",
                columns.join(", ")
            ));
        }
        debug_assert_eq!(
            bind.values.borrow().len(),
            self.values.len(),
            "values collected in new()"
        );
        sql
    }

    fn pk(&self, alias: &str) -> String {
        format!("{alias}.{}", quote_ident(PRIMARY_KEY))
    }

    /// `$2` is the last primary key of the previous batch, as text (NULL for the first).
    /// The session's temporary table of the keys of this table's violating rows, filled by
    /// the preview's scan (see [`TablePlan::preview_sql`]).
    fn keys_table(&self) -> String {
        format!(
            "pg_temp.{}",
            quote_ident(&format!("{KEYS_TABLE_PREFIX}{}", self.table))
        )
    }

    /// Creates the empty key table; run in the preview's transaction, before its scan.
    pub fn create_keys_table_sql(&self) -> String {
        format!(
            "DROP TABLE IF EXISTS {kt}; CREATE TEMP TABLE {} (pk {})",
            quote_ident(&format!("{KEYS_TABLE_PREFIX}{}", self.table)),
            self.pk_type,
            kt = self.keys_table(),
        )
    }

    /// Indexes the filled key table for the batches' keyset walk.
    pub fn index_keys_table_sql(&self) -> String {
        format!(
            "CREATE UNIQUE INDEX ON {kt} (pk); ANALYZE {kt}",
            kt = self.keys_table()
        )
    }

    /// The next slice of the collected keys after the last key of the previous batch (`$2`),
    /// at most `$3` of them. Batches visit just those rows through the primary key, instead of
    /// each batch walking the key order of the whole table to find its next violating rows
    /// (random reads of every page, over and over).
    fn key_slice(&self) -> String {
        format!(
            "keys AS (
  SELECT k.pk FROM {} AS k
  WHERE $2::text IS NULL OR k.pk > CAST($2::text AS {})
  ORDER BY k.pk LIMIT $3
)",
            self.keys_table(),
            self.pk_type
        )
    }

    /// The start of every batch statement: the next slice of keys, and their rows that still
    /// break one of `rules`, locked in key order.
    fn batch_head(&self, rules: &[&RulePolicy]) -> String {
        format!(
            "WITH {keys}, picked AS (
  SELECT t.* FROM {table} AS t
  WHERE {pk} IN (SELECT k.pk FROM keys AS k) AND ({violating})
  ORDER BY {pk}
  FOR UPDATE OF t
)",
            keys = self.key_slice(),
            table = quote_ident(self.table),
            pk = self.pk("t"),
            violating = self.any_violated(rules, "t"),
        )
    }

    /// The columns a rule reads on its own table, for showing what a delete or skip is about.
    fn rule_columns(&self, rule: &RulePolicy) -> Vec<(&'static str, String)> {
        rule.constraint
            .columns()
            .into_iter()
            .filter_map(|c| {
                self.spelling
                    .actual_name(self.table, c)
                    .map(|actual| (c, actual))
            })
            .collect()
    }

    /// One read-only statement: for each rule its violating rows and the rows it reaches only
    /// through an earlier stage, the rows that would change, and a few examples per rule.
    /// Result columns: total, then per rule (rows, cascaded, examples jsonb).
    /// `for_run` (a real run, not a dry run): the same scan also stores the keys of the rows
    /// it saw in the key table, which the batches then walk (no second scan to find them), and
    /// the examples, which only a dry run shows, are not computed.
    /// Parameter `$1`: [`TablePlan::bound_values`], when there are any.
    /// `narrowed`: a condition ANDed to the scan's own that every violating row meets (an
    /// index's shortcut, see `constraints::indexed`).
    pub fn preview_sql(&self, for_run: bool, narrowed: Option<&str>) -> String {
        let rules = self.rules();
        let deleting: Vec<&RulePolicy> = self.deletes.iter().collect();
        let mut select = vec![format!("{} AS pk", self.pk("t"))];
        for (i, rule) in rules.iter().enumerate() {
            select.push(format!("{} AS o{i}", self.violated(rule, "t")));
        }
        select.push(format!("{} AS del", self.any_violated(&deleting, "t")));
        select.push(format!(
            "{} AS old_values",
            rowjson::columns_object(&self.written, "t")
        ));
        select.push(format!(
            "{} AS new_values",
            rowjson::columns_object(&self.written, &self.last_alias())
        ));
        for (i, rule) in rules.iter().enumerate() {
            if i < self.stages.len() {
                let k = i + 1;
                let columns = &self.stage_writes[i];
                select.push(format!(
                    "h{k}.hit AS x{i}, {} AS b{i}, {} AS a{i}",
                    rowjson::columns_object(columns, &Self::stage_alias(i)),
                    rowjson::columns_object(columns, &Self::stage_alias(k))
                ));
            } else {
                select.push(format!(
                    "{} AS x{i}, {} AS b{i}, NULL::jsonb AS a{i}",
                    self.violated(rule, "t"),
                    rowjson::columns_object(&self.rule_columns(rule), "t")
                ));
            }
        }
        let mut outer = vec![
            "count(*) FILTER (WHERE s.del OR s.old_values IS DISTINCT FROM s.new_values)"
                .to_string(),
        ];
        for i in 0..rules.len() {
            // A row that a delete rule removes is not rewritten by the stages.
            let acts = |alias: &str| {
                if i < self.stages.len() {
                    format!("{alias}.x{i} AND NOT {alias}.del")
                } else {
                    format!("{alias}.x{i}")
                }
            };
            outer.push(format!("count(*) FILTER (WHERE s.o{i})"));
            outer.push(format!(
                "count(*) FILTER (WHERE {} AND NOT s.o{i})",
                acts("s")
            ));
            if for_run {
                outer.push("'[]'::jsonb".to_string());
                continue;
            }
            outer.push(format!(
                "(SELECT coalesce(jsonb_agg(to_jsonb(e) ORDER BY e.pk), '[]'::jsonb) FROM (\
                 SELECT DISTINCT ON (x.b{i}, NOT x.o{i}) x.pk::text AS pk, x.b{i} AS before, x.a{i} AS after, NOT x.o{i} AS cascaded \
                 FROM staged AS x WHERE {} ORDER BY x.b{i}, NOT x.o{i}, x.pk LIMIT {EXAMPLES}) AS e)",
                acts("x")
            ));
        }
        let keep = if for_run {
            format!(
                ",\nkept AS (INSERT INTO {} (pk) SELECT k.pk FROM staged AS k RETURNING 1)",
                self.keys_table()
            )
        } else {
            String::new()
        };
        format!(
            "WITH staged AS MATERIALIZED (\n  SELECT {}\n  FROM {} AS t{}\n  WHERE ({}){}\n){keep}\nSELECT {}\nFROM staged AS s",
            select.join(",\n    "),
            quote_ident(self.table),
            self.stage_chain(&self.values_param(0)),
            self.any_violated(&rules, "t"),
            narrowed.map_or_else(String::new, |n| format!(" AND {n}")),
            outer.join(",\n  ")
        )
    }

    /// One batch of the update phase, one statement: lock up to `$3` violating rows after the
    /// key `$2`, rewrite them through the stages, and record each changed row in the audit
    /// for run `$1`. Result columns: picked, last pk, audited, then per stage (rows, cascaded).
    /// Parameter `$4`: [`TablePlan::bound_values`], when there are any.
    pub fn update_batch_sql(&self) -> Option<String> {
        if self.stages.is_empty() {
            return None;
        }
        let stages: Vec<&RulePolicy> = self.stages.iter().collect();
        let last = self.last_alias();
        let mut select = vec![format!("{} AS pk", self.pk("t"))];
        for (i, rule) in stages.iter().enumerate() {
            select.push(format!(
                "{} AS o{i}, h{}.hit AS h{i}",
                self.violated(rule, "t"),
                i + 1
            ));
        }
        select.push(format!(
            "{} AS old_values",
            rowjson::columns_object(&self.written, "t")
        ));
        select.push(format!(
            "{} AS new_values",
            rowjson::columns_object(&self.written, &last)
        ));
        for (j, (_, actual)) in self.written.iter().enumerate() {
            select.push(format!("{last}.{} AS n{j}", quote_ident(actual)));
        }
        let set: Vec<String> = self
            .written
            .iter()
            .enumerate()
            .map(|(j, (_, actual))| format!("{} = d.n{j}", quote_ident(actual)))
            .collect();
        let names = tagged_array(&stages, "d.h", |r| r.constraint.name);
        let actions = tagged_array(&stages, "d.h", |r| r.action.as_str());
        let mut counts = Vec::new();
        for i in 0..stages.len() {
            counts.push(format!(
                "(SELECT count(*) FROM diffed AS d JOIN changed AS c ON c.pk = d.pk WHERE d.o{i})"
            ));
            counts.push(format!(
                "(SELECT count(*) FROM diffed AS d JOIN changed AS c ON c.pk = d.pk WHERE d.h{i} AND NOT d.o{i})"
            ));
        }
        Some(format!(
            "{head}, staged AS MATERIALIZED (
  SELECT {select}
  FROM picked AS t{chain}
), diffed AS (
  SELECT s.*,
    (SELECT jsonb_object_agg(o.key, o.value) FROM jsonb_each(s.old_values) AS o
      WHERE o.value IS DISTINCT FROM s.new_values -> o.key) AS old_diff,
    (SELECT jsonb_object_agg(n.key, n.value) FROM jsonb_each(s.new_values) AS n
      WHERE n.value IS DISTINCT FROM s.old_values -> n.key) AS new_diff
  FROM staged AS s
), changed AS (
  UPDATE {table} AS u SET {set}
  FROM diffed AS d
  WHERE u.{pk_col} = d.pk AND d.new_diff IS NOT NULL
  RETURNING u.{pk_col} AS pk
), audited AS (
  INSERT INTO {CHANGES} (run_id, table_name, pk, constraint_names, actions, old_values, new_values)
  SELECT $1::uuid, {table_literal}, d.pk::text, {names}, {actions}, d.old_diff, d.new_diff
  FROM diffed AS d JOIN changed AS c ON c.pk = d.pk
  RETURNING 1
)
SELECT (SELECT count(*) FROM keys),
  (SELECT k.pk::text FROM keys AS k ORDER BY k.pk DESC LIMIT 1),
  (SELECT count(*) FROM audited){counts}",
            head = self.batch_head(&stages),
            table = quote_ident(self.table),
            pk_col = quote_ident(PRIMARY_KEY),
            select = select.join(",\n    "),
            chain = self.stage_chain(&self.values_param(3)),
            set = set.join(", "),
            table_literal = quote_literal(self.table),
            counts = counts
                .iter()
                .map(|c| format!(",\n  {c}"))
                .collect::<String>(),
        ))
    }

    /// One batch of the delete phase: lock up to `$3` rows after `$2` that a delete rule
    /// removes, record each whole, delete them. Result columns: picked, last pk, audited, then
    /// per delete rule (rows, 0).
    pub fn delete_batch_sql(&self) -> Option<String> {
        if self.deletes.is_empty() {
            return None;
        }
        let deletes: Vec<&RulePolicy> = self.deletes.iter().collect();
        let flags: Vec<String> = deletes
            .iter()
            .enumerate()
            .map(|(i, r)| format!("{} AS h{i}", self.violated(r, "t")))
            .collect();
        let names = tagged_array(&deletes, "d.h", |r| r.constraint.name);
        let actions = tagged_array(&deletes, "d.h", |r| r.action.as_str());
        let counts: String = (0..deletes.len())
            .map(|i| {
                format!(
                    ",\n  (SELECT count(*) FROM doomed AS d JOIN gone AS g ON g.pk = d.pk WHERE d.h{i}), 0::bigint"
                )
            })
            .collect();
        Some(format!(
            "{head}, doomed AS (
  SELECT {pk} AS pk, {row} AS old_row, {flags}
  FROM picked AS t
), gone AS (
  DELETE FROM {table} AS u USING doomed AS d
  WHERE u.{pk_col} = d.pk
  RETURNING u.{pk_col} AS pk
), audited AS (
  INSERT INTO {CHANGES} (run_id, table_name, pk, constraint_names, actions, old_values, new_values)
  SELECT $1::uuid, {table_literal}, d.pk::text, {names}, {actions}, d.old_row, NULL
  FROM doomed AS d JOIN gone AS g ON g.pk = d.pk
  RETURNING 1
)
SELECT (SELECT count(*) FROM keys),
  (SELECT k.pk::text FROM keys AS k ORDER BY k.pk DESC LIMIT 1),
  (SELECT count(*) FROM audited){counts}",
            head = self.batch_head(&deletes),
            table = quote_ident(self.table),
            pk = self.pk("t"),
            pk_col = quote_ident(PRIMARY_KEY),
            row = rowjson::row_with_current_names(self.table, &self.spelling, "t"),
            flags = flags.join(", "),
            table_literal = quote_literal(self.table),
        ))
    }
}

/// `array_remove(ARRAY[CASE WHEN {flag}{i} THEN '<label>' END, …]::text[], NULL)`: the labels
/// of the rules that applied to a row.
fn tagged_array(rules: &[&RulePolicy], flag: &str, label: impl Fn(&RulePolicy) -> &str) -> String {
    let items: Vec<String> = rules
        .iter()
        .enumerate()
        .map(|(i, r)| format!("CASE WHEN {flag}{i} THEN {} END", quote_literal(label(r))))
        .collect();
    format!("array_remove(ARRAY[{}]::text[], NULL)", items.join(", "))
}

fn own_column(rule: &RulePolicy) -> &'static str {
    match rule.constraint.rule {
        Rule::OneOf { column, .. }
        | Rule::Positive { column }
        | Rule::RequiredWhen { column, .. }
        | Rule::ForeignKey { column, .. } => column,
    }
}

/// The SQL type of a table's primary key, from its [`column_types`].
pub fn key_type(types: &[(String, String)], table: &str) -> Result<String> {
    types
        .iter()
        .find(|(name, _)| name == PRIMARY_KEY)
        .map(|(_, t)| t.clone())
        .with_context(|| format!("{table} has no column {PRIMARY_KEY}"))
}

/// (column, SQL type without its modifier) of every column of a table.
fn base_types(client: &mut impl GenericClient, table: &str) -> Result<Vec<(String, String)>> {
    let rows = client.query(
        "SELECT attname::text, format_type(atttypid, NULL) FROM pg_attribute
          WHERE attrelid = to_regclass(quote_ident($1)) AND attnum > 0 AND NOT attisdropped
          ORDER BY attnum",
        &[&table],
    )?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// (column, SQL type) of every column of a table.
pub fn column_types(client: &mut impl GenericClient, table: &str) -> Result<Vec<(String, String)>> {
    let rows = client.query(
        "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute
          WHERE attrelid = to_regclass(quote_ident($1)) AND attnum > 0 AND NOT attisdropped
          ORDER BY attnum",
        &[&table],
    )?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}
