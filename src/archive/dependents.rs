//! The user's own objects that a rollback would strand. A view keeps pointing at a table by
//! identity, not by name: after the table is moved into ruleiq_archive it would silently read the
//! archive, and a view on a column blocks dropping it. A function's body may name the table too.
//! So before a rollback changes anything, every view, materialized view and function that
//! depends on a table it would move or a column it would drop is found, and the rollback refuses.
//!
//! ruleiq-db's own compatibility schema is not the user's: 008's down drops it first.

use super::Action;
use crate::catalog::sql::APP_SCHEMA;
use crate::db::Query;
use crate::refusal::Refusal;
use anyhow::Result;
use serde::Serialize;
use std::collections::BTreeSet;

/// The schema of ruleiq-db's compatibility views (docs/design.md §7).
pub const COMPAT_SCHEMA: &str = "ruleiq_compat";

/// An object of the user's that depends on something a rollback would archive.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Dependent {
    /// `schema.name`; a function adds its argument types.
    pub name: String,
    /// `view`, `materialized view`, `function` or `procedure`.
    pub kind: String,
    /// The table or `table.column` it depends on.
    pub on: String,
}

/// The dependents of what these archive actions would move or drop. Tables or columns that do
/// not exist are skipped (the rollback itself reports those).
///
/// Views and materialized views are found through pg_depend (their rewrite rules), exactly.
/// Functions: pg_depend knows the tables of a SQL function with a `BEGIN ATOMIC` body and of one
/// that returns the table's row type; the body of any other function (PL/pgSQL, or SQL in a
/// string) is only text to PostgreSQL, so it is searched for the table's name as a whole word
/// (and, for a column, the column's name too). That search is a heuristic: it may name a
/// function that only mentions the word, and cannot see a name built at run time.
pub fn find(client: &mut (impl Query + ?Sized), actions: &[Action]) -> Result<Vec<Dependent>> {
    let mut found = BTreeSet::new();
    for action in actions {
        let (table, column) = match action {
            Action::Run => continue,
            Action::MoveTable { table } => (table, None),
            Action::CopyColumn { table, column } => (table, Some(column)),
        };
        let on = match column {
            Some(c) => format!("{table}.{c}"),
            None => table.clone(),
        };
        let rows = client.rows(
            r"WITH target AS (
                  SELECT c.oid, c.reltype,
                         (SELECT a.attnum FROM pg_attribute a
                           WHERE a.attrelid = c.oid AND a.attname = $2 AND NOT a.attisdropped) AS attnum
                    FROM pg_class c WHERE c.oid = to_regclass(format('%I.%I', $6::text, $1::text))
              ),
              own AS (
                  SELECT objid FROM pg_depend WHERE classid = 'pg_proc'::regclass AND deptype = 'e'
              )
              SELECT format('%I.%I', n.nspname, v.relname),
                     CASE v.relkind WHEN 'm' THEN 'materialized view' ELSE 'view' END
                FROM target t
                JOIN pg_depend d ON d.refclassid = 'pg_class'::regclass AND d.refobjid = t.oid
                JOIN pg_rewrite r ON d.classid = 'pg_rewrite'::regclass AND r.oid = d.objid
                JOIN pg_class v ON v.oid = r.ev_class
                JOIN pg_namespace n ON n.oid = v.relnamespace
               WHERE v.oid <> t.oid AND n.nspname <> $3
                 AND ($2::text IS NULL OR d.refobjsubid = t.attnum)
              UNION
              SELECT format('%I.%I(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)),
                     CASE p.prokind WHEN 'p' THEN 'procedure' ELSE 'function' END
                FROM target t
                JOIN pg_depend d ON d.classid = 'pg_proc'::regclass
                 AND ((d.refclassid = 'pg_class'::regclass AND d.refobjid = t.oid
                       AND ($2::text IS NULL OR d.refobjsubid = t.attnum))
                   OR ($2::text IS NULL AND d.refclassid = 'pg_type'::regclass AND d.refobjid = t.reltype))
                JOIN pg_proc p ON p.oid = d.objid
                JOIN pg_namespace n ON n.oid = p.pronamespace
               WHERE n.nspname <> $3 AND p.oid NOT IN (SELECT objid FROM own)
              UNION
              SELECT format('%I.%I(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)),
                     CASE p.prokind WHEN 'p' THEN 'procedure' ELSE 'function' END
                FROM target t, pg_proc p
                JOIN pg_namespace n ON n.oid = p.pronamespace
                JOIN pg_language l ON l.oid = p.prolang
               WHERE l.lanname NOT IN ('internal', 'c')
                 AND n.nspname NOT IN ('pg_catalog', 'information_schema', $3)
                 AND p.oid NOT IN (SELECT objid FROM own)
                 AND p.prosrc ~* $4
                 AND ($2::text IS NULL OR p.prosrc ~* $5)
                 AND ($2::text IS NULL OR t.attnum IS NOT NULL)",
            &[
                table,
                &column,
                &COMPAT_SCHEMA,
                &word_pattern(table),
                &word_pattern(column.map_or("", String::as_str)),
                &APP_SCHEMA,
            ],
        )?;
        for r in rows {
            found.insert(Dependent {
                name: r.get(0),
                kind: r.get(1),
                on: on.clone(),
            });
        }
    }
    Ok(found.into_iter().collect())
}

/// A regular expression (PostgreSQL's ARE) matching `name` as a whole word.
fn word_pattern(name: &str) -> String {
    let mut pattern = String::from(r"\m");
    for c in name.chars() {
        if !c.is_alphanumeric() && c != '_' {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push_str(r"\M");
    pattern
}

/// Refuses (exit 4) when any of the user's objects depends on what these actions archive,
/// naming each one; `outcome` tells what became of the rollback (`nothing was changed`).
pub fn refuse_dependents(
    client: &mut (impl Query + ?Sized),
    actions: &[Action],
    outcome: &str,
) -> Result<()> {
    let found = find(client, actions)?;
    if found.is_empty() {
        return Ok(());
    }
    let listed: Vec<String> = found
        .iter()
        .map(|d| format!("{} ({}, on {})", d.name, d.kind, d.on))
        .collect();
    Refusal::Dependents(format!(
        "the rollback would strand objects of yours that depend on what it archives: {}. A view or function would keep reading the table moved into schema {} (or block dropping the column). Drop them (or change them not to use it) first, and recreate them after; {outcome}",
        listed.join(", "),
        super::SCHEMA
    ))
    .fail()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_matched_as_whole_words_with_metacharacters_escaped() {
        assert_eq!(word_pattern("evidence_items"), r"\mevidence_items\M");
        assert_eq!(word_pattern("a.b$c"), r"\ma\.b\$c\M");
    }
}
