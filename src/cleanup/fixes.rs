//! What each action writes, as SQL expressions over one row. `statements.rs` chains them,
//! in the stages `plan.rs` decides.

use super::policy::{backfill_cast, backfill_sources, canonical, Action, PolicyValue, RulePolicy};
use crate::catalog::constraints::Rule;

/// How a fix spells the policy's values (its `value`, synonyms, the allowed values it maps
/// to) in SQL. Never as text spliced into the statement: always a bound parameter (docs/design.md
/// §3), so a synonym such as `x\'); DROP TABLE users; --` is data whatever the server's
/// `standard_conforming_strings`.
pub trait Bind {
    /// The value `text` as written into `column` (current name), of that column's type.
    fn value(&self, column: &str, text: &str) -> String;
    /// `text` as a text comparison key.
    fn key(&self, text: &str) -> String;
}

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

/// The fix of `rule`; `col` spells a column (by current name) of the row being fixed, `bind`
/// the policy's values.
pub fn fix(rule: &RulePolicy, col: &dyn Fn(&str) -> String, bind: &dyn Bind) -> Fix {
    let c = rule.constraint;
    let literal = |column: &str| {
        let value = rule.value.as_ref().expect("validated: value");
        bind.value(column, &value_text(value))
    };
    match (rule.action, c.rule) {
        (Action::Skip, _) => Fix::Leave,
        (Action::Delete, _) => Fix::Delete,
        (Action::SetNull, rule_kind) => Fix::Update(vec![(own_column(rule_kind), "NULL".into())]),
        (Action::Default, rule_kind) => {
            let column = own_column(rule_kind);
            Fix::Update(vec![(column, literal(column))])
        }
        (Action::Map, Rule::OneOf { column, values }) => Fix::Update(vec![(
            column,
            map_expression(rule, column, &col(column), values, bind),
        )]),
        (Action::Demote, Rule::RequiredWhen { column, .. }) => {
            Fix::Update(vec![(column, literal(column))])
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
                    literal(column)
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

/// A policy value as the text its parameter carries (cast to the column's type in SQL).
pub fn value_text(value: &PolicyValue) -> String {
    match value {
        PolicyValue::Text(text) => text.clone(),
        PolicyValue::Integer(n) => n.to_string(),
    }
}

/// `policy::canonical` in SQL.
pub fn normalised_sql(expr: &str) -> String {
    format!("btrim(regexp_replace(lower({expr}), '[[:space:]_-]+', '_', 'g'), '_')")
}

/// Allowed values first (so a synonym can never shadow one), then synonyms, else `value`.
/// The spellings are compared in canonical form, computed here once rather than per row.
fn map_expression(
    rule: &RulePolicy,
    column: &str,
    spelled: &str,
    values: &[&str],
    bind: &dyn Bind,
) -> String {
    let mut sql = format!("CASE {}", normalised_sql(spelled));
    let pairs = values
        .iter()
        .map(|v| (v.to_string(), v.to_string()))
        .chain(rule.synonyms.iter().cloned());
    let mut seen = std::collections::HashSet::new();
    for (from, to) in pairs {
        let key = canonical(&from);
        // The first spelling wins, as CASE would take it; a repeat would only cost a branch.
        if seen.contains(&key) {
            continue;
        }
        sql.push_str(&format!(
            " WHEN {} THEN {}",
            bind.key(&key),
            bind.value(column, &to)
        ));
        seen.insert(key);
    }
    let fallback = rule.value.as_ref().expect("validated: value");
    sql.push_str(&format!(
        " ELSE {} END",
        bind.value(column, &value_text(fallback))
    ));
    sql
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cleanup::policy::Policy;

    fn plain(column: &str) -> String {
        format!("r.{column}")
    }

    /// Spells values as `<column:value>` / `<key>`, to read which value went where.
    struct Shown;

    impl Bind for Shown {
        fn value(&self, column: &str, text: &str) -> String {
            format!("<{column}:{text}>")
        }
        fn key(&self, text: &str) -> String {
            format!("<{text}>")
        }
    }

    #[test]
    fn each_builtin_rule_fixes_its_own_columns() {
        let policy = Policy::builtin();
        let fix_of = |name: &str| fix(policy.rule(name).unwrap(), &plain, &Shown);
        let Fix::Update(status) = fix_of("chk_evidence_status") else {
            panic!("map updates")
        };
        assert_eq!(status[0].0, "status");
        assert!(
            status[0]
                .1
                .contains("WHEN <pending_review> THEN <status:collected>"),
            "{}",
            status[0].1
        );
        assert!(status[0].1.ends_with("ELSE <status:not_started> END"));
        assert_eq!(
            fix_of("chk_employee_count_positive"),
            Fix::Update(vec![("employee_count", "NULL".into())])
        );
        assert_eq!(
            fix_of("chk_approval_workflow"),
            Fix::Update(vec![("status", "<status:collected>".into())])
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
        let Fix::Update(writes) = fix(&rule, &plain, &Shown) else {
            panic!("backfill updates")
        };
        let columns: Vec<&str> = writes.iter().map(|(c, _)| *c).collect();
        assert_eq!(columns, vec!["approved_at", "approved_by", "status"]);
        assert!(writes[0]
            .1
            .contains("coalesce(r.approved_at, r.updated_at, r.created_at)"));
        assert!(writes[2].1.ends_with("ELSE <status:collected> END"));
    }

    #[test]
    fn no_policy_text_reaches_the_sql_but_through_bind() {
        let mut rule = Policy::builtin()
            .rule("chk_evidence_status")
            .unwrap()
            .clone();
        let evil = "x\\'); DROP TABLE users; --";
        rule.synonyms.insert(0, (evil.into(), "collected".into()));
        let Fix::Update(writes) = fix(&rule, &plain, &Shown) else {
            panic!("map updates")
        };
        let sql = &writes[0].1;
        assert!(!sql.contains("DROP"), "{sql}");
        assert!(sql.contains(&format!("<{}>", canonical(evil))), "{sql}");
        // Without the markers only the row's own column and SQL keywords are left.
        let mut bare = sql.clone();
        while let (Some(a), Some(b)) = (bare.find('<'), bare.find('>')) {
            bare.replace_range(a..=b, "?");
        }
        assert!(
            !bare.contains("collected") && !bare.contains("pending"),
            "{bare}"
        );
    }

    #[test]
    fn delete_and_skip_are_not_updates() {
        let mut rule = Policy::builtin()
            .rule("fk_generated_policy_business_profile")
            .unwrap()
            .clone();
        rule.action = Action::Delete;
        assert_eq!(fix(&rule, &plain, &Shown), Fix::Delete);
        rule.action = Action::Skip;
        assert_eq!(fix(&rule, &plain, &Shown), Fix::Leave);
    }
}
