//! Rows and column values in the audit are JSON objects keyed by the *current* column names
//! (post-008), whatever the database spells them, so a record reads the same at version 7 and
//! 8 and can be restored at either.

use crate::catalog::renames::RENAMES;
use crate::catalog::sql::{quote_ident, quote_literal};
use crate::constraints::check::DatabaseSpelling;

/// The renamed columns of `table` that this database still spells the legacy way:
/// (current, legacy).
fn legacy_spelled(table: &str, spelling: &DatabaseSpelling) -> Vec<(&'static str, &'static str)> {
    RENAMES
        .iter()
        .filter(|r| r.table == table)
        .filter(|r| spelling.actual_name(table, r.current).as_deref() == Some(r.legacy))
        .map(|r| (r.current, r.legacy))
        .collect()
}

/// SQL for the whole row `alias` of `table` as jsonb with current names.
pub fn row_with_current_names(table: &str, spelling: &DatabaseSpelling, alias: &str) -> String {
    let pairs: Vec<(&str, &str)> = legacy_spelled(table, spelling)
        .into_iter()
        .map(|(current, legacy)| (legacy, current))
        .collect();
    rename_keys(&format!("to_jsonb({alias})"), &pairs)
}

/// SQL turning the jsonb `expr` keyed by current names into one keyed by this database's
/// names (what `jsonb_populate_record` needs).
pub fn with_actual_names(expr: &str, table: &str, spelling: &DatabaseSpelling) -> String {
    rename_keys(expr, &legacy_spelled(table, spelling))
}

/// SQL renaming the keys of a jsonb object: (from, to) pairs, one pass over its entries.
fn rename_keys(expr: &str, pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return expr.to_string();
    }
    let whens: String = pairs
        .iter()
        .map(|(from, to)| format!(" WHEN {} THEN {}", quote_literal(from), quote_literal(to)))
        .collect();
    format!(
        "(SELECT jsonb_object_agg(CASE e.key{whens} ELSE e.key END, e.value) FROM jsonb_each({expr}) AS e)"
    )
}

/// SQL for a jsonb object of some columns of row `alias`: current name → value.
pub fn columns_object(columns: &[(&str, String)], alias: &str) -> String {
    if columns.is_empty() {
        return "'{}'::jsonb".into();
    }
    let pairs: Vec<String> = columns
        .iter()
        .map(|(current, actual)| {
            format!(
                "{}, {alias}.{}",
                quote_literal(current),
                quote_ident(actual)
            )
        })
        .collect();
    format!("jsonb_build_object({})", pairs.join(", "))
}
