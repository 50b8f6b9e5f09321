//! The SQL of a [`TablePlan`]: the preview, the key tables the batches walk, and the update
//! and delete batches, each one statement. Every identifier is quoted and every policy value is
//! a bound parameter; the snapshots in `statements/tests.rs` show what changes in review.

use super::audit::CHANGES;
use super::bound::Bound;
use super::fixes::{self, Fix};
use super::plan::TablePlan;
use super::policy::RulePolicy;
use super::rowjson;
use crate::catalog::sql::{qualified, quote_ident, quote_literal};
use crate::catalog::PRIMARY_KEY;

/// Prefix of the session's temporary tables of the keys a cleanup works through, one per table.
pub const KEYS_TABLE_PREFIX: &str = "ruleiq_cleanup_keys_";

/// Examples per rule in a preview.
pub const EXAMPLES: usize = 3;

impl TablePlan {
    /// The parameter number the stage chain reads values from, after `fixed` parameters.
    fn values_param(&self, fixed: usize) -> String {
        format!("${}::text[]", fixed + 1)
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
        let bind = Bound::new(
            values_param,
            self.values.clone(),
            self.table,
            &self.spelling,
            &self.types,
        );
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
    /// The session's temporary table of the keys of this table's violating rows, filled from
    /// a real run's preview (see [`TablePlan::preview_rows_sql`]).
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

    /// Adds a chunk of previewed keys (`$1`, as text) to the key table.
    pub fn insert_keys_sql(&self) -> String {
        format!(
            "INSERT INTO {} (pk) SELECT unnest($1::text[])::{}",
            self.keys_table(),
            self.pk_type
        )
    }

    /// Indexes the filled key table for the batches' keyset walk.
    pub fn index_keys_table_sql(&self) -> String {
        format!(
            "CREATE UNIQUE INDEX ON {kt} (pk); ANALYZE {kt}",
            kt = self.keys_table()
        )
    }

    /// How many keys the key table holds.
    pub fn count_keys_sql(&self) -> String {
        format!("SELECT count(*) FROM {}", self.keys_table())
    }

    /// The key at position `$1` (0-based) in key order, as text: where a session's share of
    /// the keys begins.
    pub fn key_at_sql(&self) -> String {
        format!(
            "SELECT k.pk::text FROM {} AS k ORDER BY k.pk OFFSET $1 LIMIT 1",
            self.keys_table()
        )
    }

    /// The keys from `$1` (inclusive) to `$2` (exclusive; NULL: to the end), after `$3` (NULL:
    /// from the start), at most `$4` of them, in key order, as text: a chunk of another
    /// session's share, read to be written into that session's own key table.
    pub fn keys_between_sql(&self) -> String {
        format!(
            "SELECT k.pk::text FROM {} AS k
              WHERE k.pk >= CAST($1::text AS {ty})
                AND ($2::text IS NULL OR k.pk < CAST($2::text AS {ty}))
                AND ($3::text IS NULL OR k.pk > CAST($3::text AS {ty}))
              ORDER BY k.pk LIMIT $4",
            self.keys_table(),
            ty = self.pk_type
        )
    }

    /// Drops from the key table the keys from `$1` (inclusive) to `$2` (exclusive; NULL: to
    /// the end): the shares handed to other sessions.
    pub fn drop_keys_between_sql(&self) -> String {
        format!(
            "DELETE FROM {} AS k
              WHERE k.pk >= CAST($1::text AS {ty})
                AND ($2::text IS NULL OR k.pk < CAST($2::text AS {ty}))",
            self.keys_table(),
            ty = self.pk_type
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
            table = qualified(self.table),
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

    /// A dry run's preview, one read-only statement: for each rule its violating rows and the
    /// rows it reaches only through an earlier stage, the rows that would change, and a few
    /// examples per rule. Result columns: total, then per rule (rows, cascaded, examples jsonb).
    /// Parameter `$1`: [`TablePlan::bound_values`], when there are any.
    /// `narrowed`: a condition ANDed to the scan's own that every violating row meets (an
    /// index's shortcut, see `constraints::indexed`).
    pub fn preview_sql(&self, narrowed: Option<&str>) -> String {
        let rules = self.rules();
        let mut select = self.staged_select("t");
        for (i, rule) in rules.iter().enumerate() {
            if i < self.stages.len() {
                let k = i + 1;
                let columns = &self.stage_writes[i];
                select.push(format!(
                    "{} AS b{i}, {} AS a{i}",
                    rowjson::columns_object(columns, &Self::stage_alias(i)),
                    rowjson::columns_object(columns, &Self::stage_alias(k))
                ));
            } else {
                select.push(format!(
                    "{} AS b{i}, NULL::jsonb AS a{i}",
                    rowjson::columns_object(&self.rule_columns(rule), "t")
                ));
            }
        }
        let mut outer = vec![format!("count(*) FILTER (WHERE {})", Self::changes("s"))];
        for i in 0..rules.len() {
            outer.push(format!("count(*) FILTER (WHERE s.o{i})"));
            outer.push(format!(
                "count(*) FILTER (WHERE {} AND NOT s.o{i})",
                self.acts(i, "s")
            ));
            outer.push(format!(
                "(SELECT coalesce(jsonb_agg(to_jsonb(e) ORDER BY e.pk), '[]'::jsonb) FROM (\
                 SELECT DISTINCT ON (x.b{i}, NOT x.o{i}) x.pk::text AS pk, x.b{i} AS before, x.a{i} AS after, NOT x.o{i} AS cascaded \
                 FROM staged AS x WHERE {} ORDER BY x.b{i}, NOT x.o{i}, x.pk LIMIT {EXAMPLES}) AS e)",
                self.acts(i, "x")
            ));
        }
        format!(
            "WITH staged AS MATERIALIZED (\n{}\n)\nSELECT {}\nFROM staged AS s",
            self.staged_scan(&select, narrowed),
            outer.join(",\n  ")
        )
    }

    /// A real run's preview: the same scan as [`TablePlan::preview_sql`], one row per row a rule
    /// touches, so that its keys can go into the key table. Only reads (a statement that also
    /// wrote them would never get PostgreSQL's parallel workers). Result columns: the key as
    /// text, whether the row changes or goes, then per rule (breaks it now, the rule acts on it).
    /// Parameter `$1`: [`TablePlan::bound_values`], when there are any.
    pub fn preview_rows_sql(&self, narrowed: Option<&str>) -> String {
        let rules = self.rules();
        let mut outer = vec!["s.pk::text".to_string(), Self::changes("s")];
        for i in 0..rules.len() {
            outer.push(format!("s.o{i}"));
            outer.push(self.acts(i, "s"));
        }
        format!(
            "SELECT {}\nFROM (\n{}\n) AS s",
            outer.join(", "),
            self.staged_scan(&self.staged_select("t"), narrowed)
        )
    }

    /// The scan both previews read: `select` over the table's rows that break one of its
    /// rules, through the stages, narrowed by `narrowed` when an index can answer.
    fn staged_scan(&self, select: &[String], narrowed: Option<&str>) -> String {
        format!(
            "  SELECT {}\n  FROM {} AS t{}\n  WHERE ({}){}",
            select.join(",\n    "),
            qualified(self.table),
            self.stage_chain(&self.values_param(0)),
            self.any_violated(&self.rules(), "t"),
            narrowed.map_or_else(String::new, |n| format!(" AND {n}")),
        )
    }

    /// What both previews read of a row: its key, per rule whether it breaks it now (`o`) and
    /// whether the rule's stage rewrites it (`x`), whether a delete rule removes it, and the
    /// written columns before and after the stages.
    fn staged_select(&self, alias: &str) -> Vec<String> {
        let rules = self.rules();
        let deleting: Vec<&RulePolicy> = self.deletes.iter().collect();
        let mut select = vec![format!("{} AS pk", self.pk(alias))];
        for (i, rule) in rules.iter().enumerate() {
            select.push(format!("{} AS o{i}", self.violated(rule, alias)));
        }
        select.push(format!("{} AS del", self.any_violated(&deleting, alias)));
        select.push(format!(
            "{} AS old_values",
            rowjson::columns_object(&self.written, alias)
        ));
        select.push(format!(
            "{} AS new_values",
            rowjson::columns_object(&self.written, &self.last_alias())
        ));
        for (i, rule) in rules.iter().enumerate() {
            if i < self.stages.len() {
                select.push(format!("h{}.hit AS x{i}", i + 1));
            } else {
                select.push(format!("{} AS x{i}", self.violated(rule, alias)));
            }
        }
        select
    }

    /// Whether a previewed row (`alias`) changes or goes.
    fn changes(alias: &str) -> String {
        format!("{alias}.del OR {alias}.old_values IS DISTINCT FROM {alias}.new_values")
    }

    /// Whether rule `i` acts on a previewed row (`alias`): a row that a delete rule removes is
    /// not rewritten by the stages.
    fn acts(&self, i: usize, alias: &str) -> String {
        if i < self.stages.len() {
            format!("{alias}.x{i} AND NOT {alias}.del")
        } else {
            format!("{alias}.x{i}")
        }
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
        let names = tagged_array(&stages, "c.h", |r| r.constraint.name);
        let actions = tagged_array(&stages, "c.h", |r| r.action.as_str());
        // What the audit and the counts need comes back with each changed row: joining
        // `changed` to `diffed` again is a nested loop over two CTEs the planner cannot
        // estimate (5,000 × 5,000 comparisons, seconds per batch).
        let flags: String = (0..stages.len())
            .map(|i| format!(", d.o{i}, d.h{i}"))
            .collect();
        let mut counts = Vec::new();
        for i in 0..stages.len() {
            counts.push(format!("(SELECT count(*) FROM changed AS c WHERE c.o{i})"));
            counts.push(format!(
                "(SELECT count(*) FROM changed AS c WHERE c.h{i} AND NOT c.o{i})"
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
  RETURNING u.{pk_col} AS pk, d.old_diff, d.new_diff{flags}
), audited AS (
  INSERT INTO {CHANGES} (run_id, table_name, pk, constraint_names, actions, old_values, new_values)
  SELECT $1::uuid, {table_literal}, c.pk::text, {names}, {actions}, c.old_diff, c.new_diff
  FROM changed AS c
  RETURNING 1
)
SELECT (SELECT count(*) FROM keys),
  (SELECT k.pk::text FROM keys AS k ORDER BY k.pk DESC LIMIT 1),
  (SELECT count(*) FROM audited){counts}",
            head = self.batch_head(&stages),
            table = qualified(self.table),
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
        let names = tagged_array(&deletes, "g.h", |r| r.constraint.name);
        let actions = tagged_array(&deletes, "g.h", |r| r.action.as_str());
        // As in the update phase, each deleted row brings back what the audit needs.
        let returned: String = (0..deletes.len()).map(|i| format!(", d.h{i}")).collect();
        let counts: String = (0..deletes.len())
            .map(|i| format!(",\n  (SELECT count(*) FROM gone AS g WHERE g.h{i}), 0::bigint"))
            .collect();
        Some(format!(
            "{head}, doomed AS (
  SELECT {pk} AS pk, {row} AS old_row, {flags}
  FROM picked AS t
), gone AS (
  DELETE FROM {table} AS u USING doomed AS d
  WHERE u.{pk_col} = d.pk
  RETURNING u.{pk_col} AS pk, d.old_row{returned}
), audited AS (
  INSERT INTO {CHANGES} (run_id, table_name, pk, constraint_names, actions, old_values, new_values)
  SELECT $1::uuid, {table_literal}, g.pk::text, {names}, {actions}, g.old_row, NULL
  FROM gone AS g
  RETURNING 1
)
SELECT (SELECT count(*) FROM keys),
  (SELECT k.pk::text FROM keys AS k ORDER BY k.pk DESC LIMIT 1),
  (SELECT count(*) FROM audited){counts}",
            head = self.batch_head(&deletes),
            table = qualified(self.table),
            pk = self.pk("t"),
            pk_col = quote_ident(PRIMARY_KEY),
            row = rowjson::row_with_current_names(self.table, &self.spelling, "t"),
            flags = flags.join(", "),
            table_literal = quote_literal(self.table),
        ))
    }
}

/// A privilege a statement needs on a table, read from the statement itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Needs {
    /// `SELECT … FOR UPDATE` (or another row lock) on the table: UPDATE on at least one column.
    Lock(String),
    /// `UPDATE` of the table: UPDATE on the table, or on each column it sets.
    Update(String),
    Delete(String),
    Insert(String),
}

/// What running `sql` (one of the statements this module writes) needs of the role besides
/// reading, for each table as the statement names it: the tables it locks rows of
/// (`FROM x AS a … FOR UPDATE OF a`), updates, deletes from and inserts into. Read from the
/// statement's words, so the proof checks what the batches really run.
pub fn privileges_needed(sql: &str) -> Vec<Needs> {
    let spaced: String = sql
        .chars()
        .map(|c| if matches!(c, '(' | ')' | ',') { ' ' } else { c })
        .collect();
    let words: Vec<&str> = spaced.split_whitespace().collect();
    let upper = |i: usize| {
        words
            .get(i)
            .map(|w| w.to_ascii_uppercase())
            .unwrap_or_default()
    };
    let mut aliases: Vec<(&str, &str)> = Vec::new();
    let mut needs = Vec::new();
    for i in 0..words.len() {
        match upper(i).as_str() {
            "FROM" if upper(i + 2) == "AS" => {
                if let (Some(table), Some(alias)) = (words.get(i + 1), words.get(i + 3)) {
                    aliases.push((alias, table));
                }
            }
            "OF" if upper(i.wrapping_sub(1)) == "UPDATE" || upper(i.wrapping_sub(1)) == "SHARE" => {
                if let Some((_, table)) = words
                    .get(i + 1)
                    .and_then(|alias| aliases.iter().rev().find(|(a, _)| a == alias))
                {
                    needs.push(Needs::Lock(table.to_string()));
                }
            }
            "UPDATE" if upper(i.wrapping_sub(1)) != "FOR" && upper(i.wrapping_sub(1)) != "KEY" => {
                if let Some(table) = words.get(i + 1) {
                    needs.push(Needs::Update(table.to_string()));
                }
            }
            "DELETE" if upper(i + 1) == "FROM" => {
                if let Some(table) = words.get(i + 2) {
                    needs.push(Needs::Delete(table.to_string()));
                }
            }
            "INSERT" if upper(i + 1) == "INTO" => {
                if let Some(table) = words.get(i + 2) {
                    needs.push(Needs::Insert(table.to_string()));
                }
            }
            _ => {}
        }
    }
    needs.dedup();
    needs
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

#[cfg(test)]
mod tests;
