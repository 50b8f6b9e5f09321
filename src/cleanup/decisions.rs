//! Rules cleanup will not carry out on its own (docs/design.md §3, "needs a decision").
//!
//! The built-in policy clears a value with `set_null` where the constraint allows NULL. Where
//! the live column is NOT NULL (production's `business_profiles.employee_count` and
//! `generated_policies.business_profil`), doing so would fail on the first batch; and choosing
//! another value, or deleting the row, would be inventing data. So such a rule is listed with
//! its options and the run stops before changing anything, until a policy file decides.
//! A policy file that itself asks for `set_null` there is refused outright.

use super::plan::TablePlan;
use super::policy::{Action, Policy};
use super::preview::TablePreview;
use crate::catalog::constraints::{Constraint, Rule};
use crate::db::Query;
use crate::refusal::Refusal;
use crate::units;
use anyhow::Result;
use postgres::GenericClient;
use serde::Serialize;

/// Where the example policy shows how to decide.
pub const EXAMPLE_POLICY: &str = "fixtures/cleanup-policy.example.yaml";

/// One rule waiting for the DBA's decision (report key `needs_decision`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NeedsDecision {
    pub constraint: String,
    pub table: String,
    /// The column as this database spells it.
    pub column: String,
    pub reason: String,
    /// What a policy file may choose instead, e.g. `default: VALUE`, `delete`, `skip`.
    pub options: Vec<String>,
}

impl NeedsDecision {
    /// The one plain sentence the human report prints.
    pub fn sentence(&self) -> String {
        format!(
            "{}: {}.{} is NOT NULL, so its rows cannot be set to NULL; decide in a policy file: {} (see {EXAMPLE_POLICY})",
            self.constraint,
            self.table,
            self.column,
            or_list(&self.options)
        )
    }
}

/// "default: VALUE, or skip"; "delete, or skip".
fn or_list(options: &[String]) -> String {
    match options.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{}, or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// The choices a policy file has for `c` instead of NULL.
pub fn options_for(c: &Constraint) -> Vec<String> {
    let mut options = Vec::new();
    if Action::Default.applies_to(c) {
        options.push("default: VALUE".to_string());
    }
    if Action::Delete.applies_to(c) {
        options.push("delete".to_string());
    }
    options.push("skip".to_string());
    options
}

/// The rules that would write NULL into a NOT NULL column. A built-in one with rows to repair
/// is returned as needing a decision; one the policy file asked for is refused (exit 4).
pub fn find(
    client: &mut (impl Query + GenericClient),
    policy: &Policy,
    plans: &[TablePlan],
    previews: &[TablePreview],
) -> Result<Vec<NeedsDecision>> {
    let mut needed = Vec::new();
    let mut refused = Vec::new();
    for (plan, preview) in plans.iter().zip(previews) {
        for (rule, seen) in plan.rules().into_iter().zip(&preview.rules) {
            if rule.action != Action::SetNull {
                continue;
            }
            let c = rule.constraint;
            let current = own_column(c);
            let Some(actual) = plan.actual_column(current) else {
                continue;
            };
            if !crate::db::introspect::column_is_not_null(client, plan.table, &actual)? {
                continue;
            }
            let options = options_for(c);
            if policy.decided(c.name) {
                refused.push(format!(
                    "{} asks set_null for {}, but {}.{actual} is NOT NULL: its rows cannot be set to NULL; choose {} instead",
                    policy.source.as_deref().unwrap_or("the policy"),
                    c.name,
                    plan.table,
                    or_list(&options)
                ));
                continue;
            }
            let rows = seen.rows + seen.cascaded;
            if rows == 0 {
                continue;
            }
            needed.push(NeedsDecision {
                constraint: c.name.to_string(),
                table: plan.table.to_string(),
                column: actual.clone(),
                reason: format!(
                    "{} {}; the built-in action set_null would write NULL into {}.{actual}, which is NOT NULL, and cleanup does not invent a value or delete rows on its own",
                    units::count(rows, "row breaks", "rows break"),
                    c.name,
                    plan.table
                ),
                options,
            });
        }
    }
    if !refused.is_empty() {
        let message = format!("{}; nothing was changed", refused.join("; "));
        return Refusal::PolicyNotFeasible(message).fail();
    }
    Ok(needed)
}

fn own_column(c: &Constraint) -> &'static str {
    match c.rule {
        Rule::OneOf { column, .. }
        | Rule::Positive { column }
        | Rule::RequiredWhen { column, .. }
        | Rule::ForeignKey { column, .. } => column,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::constraints::find as constraint;

    #[test]
    fn options_are_those_that_apply_to_the_constraint() {
        assert_eq!(
            options_for(constraint("chk_employee_count_positive").unwrap()),
            vec!["default: VALUE", "skip"]
        );
        assert_eq!(
            options_for(constraint("fk_generated_policy_business_profile").unwrap()),
            vec!["delete", "skip"]
        );
    }

    #[test]
    fn the_sentence_names_column_and_choices() {
        let d = NeedsDecision {
            constraint: "chk_employee_count_positive".into(),
            table: "business_profiles".into(),
            column: "employee_count".into(),
            reason: String::new(),
            options: options_for(constraint("chk_employee_count_positive").unwrap()),
        };
        assert_eq!(
            d.sentence(),
            "chk_employee_count_positive: business_profiles.employee_count is NOT NULL, so its rows cannot be set to NULL; decide in a policy file: default: VALUE, or skip (see fixtures/cleanup-policy.example.yaml)"
        );
    }
}
