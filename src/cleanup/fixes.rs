//! What each action writes, as SQL expressions over one row. `plan.rs` chains them.

use super::policy::{backfill_cast, backfill_sources, Action, PolicyValue, RulePolicy};
use crate::catalog::constraints::Rule;
use crate::catalog::sql::quote_literal;

/// What one rule does to a row that breaks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fix {
    /// New values: (column by current name, SQL expression over the row).
    Update(Vec<(&'static str, String)>),
    Delete,
    Leave,
}

/// The columns of the row besides the rule's own that a fix reads, by current name.
pub fn extra_reads(rule: &RulePolicy) -> Vec<&'static str> {
    match (rule.action, rule.constraint.rule) {
        (Action::Backfill, Rule::RequiredWhen { required, .. }) => required
            .iter()
            .flat_map(|column| {
                backfill_sources(rule.constraint.table, column)
                    .unwrap_or_default()
                    .iter()
                    .copied()
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The fix of `rule`; `col` spells a column (by current name) of the row being fixed.
pub fn fix(rule: &RulePolicy, col: &dyn Fn(&str) -> String) -> Fix {
    let c = rule.constraint;
    let literal = || {
        rule.value
            .as_ref()
            .map(sql_literal)
            .expect("validated: value")
    };
    match (rule.action, c.rule) {
        (Action::Skip, _) => Fix::Leave,
        (Action::Delete, _) => Fix::Delete,
        (Action::SetNull, rule_kind) => Fix::Update(vec![(own_column(rule_kind), "NULL".into())]),
        (Action::Default, rule_kind) => Fix::Update(vec![(own_column(rule_kind), literal())]),
        (Action::Map, Rule::OneOf { column, values }) => {
            Fix::Update(vec![(column, map_expression(rule, &col(column), values))])
        }
        (Action::Demote, Rule::RequiredWhen { column, .. }) => {
            Fix::Update(vec![(column, literal())])
        }
        (
            Action::Backfill,
            Rule::RequiredWhen {
                column, required, ..
            },
        ) => {
            let filled: Vec<(&'static str, String)> = required
                .iter()
                .map(|r| {
                    let sources = backfill_sources(c.table, r).expect("validated: sources");
                    let candidates: Vec<String> = std::iter::once(col(r))
                        .chain(sources.iter().map(|s| match backfill_cast(c.table, s) {
                            Some(cast) => format!("{}::{cast}", col(s)),
                            None => col(s),
                        }))
                        .collect();
                    (*r, format!("coalesce({})", candidates.join(", ")))
                })
                .collect();
            // A row whose approval cannot be filled (no owner) is demoted instead.
            let complete = filled
                .iter()
                .map(|(_, e)| format!("{e} IS NOT NULL"))
                .collect::<Vec<_>>()
                .join(" AND ");
            let mut writes: Vec<(&'static str, String)> = filled
                .iter()
                .map(|(r, e)| {
                    (
                        *r,
                        format!("CASE WHEN {complete} THEN {e} ELSE {} END", col(r)),
                    )
                })
                .collect();
            writes.push((
                column,
                format!(
                    "CASE WHEN {complete} THEN {} ELSE {} END",
                    col(column),
                    literal()
                ),
            ));
            Fix::Update(writes)
        }
        (action, _) => unreachable!("validated: {action} applies to {}", c.name),
    }
}

fn own_column(rule: Rule) -> &'static str {
    match rule {
        Rule::OneOf { column, .. }
        | Rule::Positive { column }
        | Rule::RequiredWhen { column, .. }
        | Rule::ForeignKey { column, .. } => column,
    }
}

pub fn sql_literal(value: &PolicyValue) -> String {
    match value {
        PolicyValue::Text(text) => quote_literal(text),
        PolicyValue::Integer(n) => n.to_string(),
    }
}

/// `policy::canonical` in SQL.
pub fn normalised_sql(expr: &str) -> String {
    format!("btrim(regexp_replace(lower({expr}), '[[:space:]_-]+', '_', 'g'), '_')")
}

/// Allowed values first (so a synonym can never shadow one), then synonyms, else `value`.
fn map_expression(rule: &RulePolicy, column: &str, values: &[&str]) -> String {
    let mut sql = format!("CASE {}", normalised_sql(column));
    let pairs = values
        .iter()
        .map(|v| (v.to_string(), v.to_string()))
        .chain(rule.synonyms.iter().cloned());
    for (from, to) in pairs {
        sql.push_str(&format!(
            " WHEN {} THEN {}",
            normalised_sql(&quote_literal(&from)),
            quote_literal(&to)
        ));
    }
    let fallback = rule
        .value
        .as_ref()
        .map(sql_literal)
        .expect("validated: value");
    sql.push_str(&format!(" ELSE {fallback} END"));
    sql
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cleanup::policy::Policy;

    fn plain(column: &str) -> String {
        format!("r.{column}")
    }

    #[test]
    fn each_builtin_rule_fixes_its_own_columns() {
        let policy = Policy::builtin();
        let fix_of = |name: &str| fix(policy.rule(name).unwrap(), &plain);
        let Fix::Update(status) = fix_of("chk_evidence_status") else {
            panic!("map updates")
        };
        assert_eq!(status[0].0, "status");
        assert!(status[0].1.contains("THEN 'collected'"), "{}", status[0].1);
        assert!(status[0].1.ends_with("ELSE 'not_started' END"));
        assert_eq!(
            fix_of("chk_employee_count_positive"),
            Fix::Update(vec![("employee_count", "NULL".into())])
        );
        assert_eq!(
            fix_of("chk_approval_workflow"),
            Fix::Update(vec![("status", "'collected'".into())])
        );
        assert_eq!(
            fix_of("fk_assessment_business_profile"),
            Fix::Update(vec![("business_profile_id", "NULL".into())])
        );
    }

    #[test]
    fn backfill_fills_from_the_row_and_demotes_what_it_cannot_fill() {
        let mut rule = Policy::builtin()
            .rule("chk_approval_workflow")
            .unwrap()
            .clone();
        rule.action = Action::Backfill;
        assert_eq!(
            extra_reads(&rule),
            vec!["updated_at", "created_at", "user_id"]
        );
        let Fix::Update(writes) = fix(&rule, &plain) else {
            panic!("backfill updates")
        };
        let columns: Vec<&str> = writes.iter().map(|(c, _)| *c).collect();
        assert_eq!(columns, vec!["approved_at", "approved_by", "status"]);
        assert!(writes[0]
            .1
            .contains("coalesce(r.approved_at, r.updated_at, r.created_at)"));
        assert!(writes[2].1.ends_with("ELSE 'collected' END"));
    }

    #[test]
    fn delete_and_skip_are_not_updates() {
        let mut rule = Policy::builtin()
            .rule("fk_generated_policy_business_profile")
            .unwrap()
            .clone();
        rule.action = Action::Delete;
        assert_eq!(fix(&rule, &plain), Fix::Delete);
        rule.action = Action::Skip;
        assert_eq!(fix(&rule, &plain), Fix::Leave);
    }
}
