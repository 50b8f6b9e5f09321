//! Migration 008, rendered from the rename map and the constraint catalog.

use super::constraints::{Rule, CATALOG};
use super::renames::{Rename, RENAMES};
use super::sql::{quote_ident, quote_literal};

/// SQLSTATE 008 raises when a table has both the legacy and the full column name.
pub const RENAME_CONFLICT_SQLSTATE: &str = "RQ001";

/// One statement of a plan (008's, a down migration's, …) and the lock it takes.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PlannedStatement {
    pub sql: String,
    pub lock: String,
}

/// 008's statements, in order: one LOCK of every table it changes, state-aware renames, then
/// each constraint added NOT VALID (only when absent, so a hand-added constraint does not stop
/// the repair).
pub fn statements() -> Vec<PlannedStatement> {
    let tables = tables_in_lock_order();
    let lock = PlannedStatement {
        sql: format!(
            "LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
            tables
                .iter()
                .map(|t| quote_ident(t))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        lock: format!(
            "ACCESS EXCLUSIVE on {}, taken in this order first and held until 008 commits (brief: what follows changes the catalog only)",
            tables.join(", ")
        ),
    };
    let renames = RENAMES.iter().map(|r| PlannedStatement {
        sql: rename_statement(r),
        lock: format!("ACCESS EXCLUSIVE on {} (catalog change only)", r.table),
    });
    let constraints = CATALOG.iter().map(|c| PlannedStatement {
        sql: format!(
            "DO $repair$\nBEGIN\n  IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = {table}::regclass AND conname = {name}) THEN\n    {add};\n  END IF;\nEND\n$repair$",
            table = quote_literal(&quote_ident(c.table)),
            name = quote_literal(c.name),
            add = c.add_not_valid_sql(),
        ),
        lock: c.add_lock(),
    });
    std::iter::once(lock)
        .chain(renames)
        .chain(constraints)
        .collect()
}

/// Every table 008 renames a column of or adds a constraint to, referencing tables before the
/// tables they reference.
///
/// Why up front and in this order: taken one statement at a time, the renames lock
/// business_profiles and then ADD CONSTRAINT waits for evidence_items, while an application
/// INSERT into evidence_items holds that table and waits, for its foreign-key check, on
/// business_profiles: a deadlock, which PostgreSQL breaks after deadlock_timeout (1 s) by
/// failing one side, the application's statement or the whole repair. Foreign-key checks lock
/// the child then the parent; locking in the same order, before anything else is held, leaves
/// no cycle.
fn tables_in_lock_order() -> Vec<&'static str> {
    let mut tables: Vec<&'static str> = Vec::new();
    for table in CATALOG
        .iter()
        .map(|c| c.table)
        .chain(RENAMES.iter().map(|r| r.table))
    {
        if !tables.contains(&table) {
            tables.push(table);
        }
    }
    let is_parent = |table: &str| {
        CATALOG
            .iter()
            .any(|c| matches!(c.rule, Rule::ForeignKey { parent, .. } if parent == table))
    };
    tables.sort_by_key(|t| is_parent(t));
    tables
}

/// The full text of migration 008.
pub fn up_sql() -> String {
    let mut sql = String::from(
        "-- 008 repair_schema: generated from ruleiq-db's rename map and constraint catalog.\n",
    );
    for statement in statements() {
        sql.push_str(&statement.sql);
        sql.push_str(";\n");
    }
    sql
}

/// A rename that happens only when the legacy column exists and the full one does not; both
/// present stops the migration (nothing is changed: the transaction rolls back).
fn rename_statement(r: &Rename) -> String {
    state_aware_rename(r.table, r.legacy, r.current)
}

/// `ALTER TABLE … RENAME COLUMN from TO to`, done only when `from` exists and `to` does not;
/// nothing when only `to` exists; both present raises [`RENAME_CONFLICT_SQLSTATE`]. 008 renames
/// legacy to full names with it, and 008's down renames them back.
pub fn state_aware_rename(table: &str, from: &str, to: &str) -> String {
    let regclass = quote_literal(&quote_ident(table));
    let has = |column: &str| {
        format!(
            "EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = {regclass}::regclass AND attname = {} AND NOT attisdropped)",
            quote_literal(column)
        )
    };
    format!(
        "DO $repair$\nBEGIN\n  IF {has_from} AND {has_to} THEN\n    RAISE EXCEPTION 'rename conflict: table % has both % and %', {t}, {f}, {o} USING ERRCODE = '{code}';\n  ELSIF {has_from} THEN\n    ALTER TABLE {qt} RENAME COLUMN {qf} TO {qo};\n  END IF;\nEND\n$repair$",
        has_from = has(from),
        has_to = has(to),
        t = quote_literal(table),
        f = quote_literal(from),
        o = quote_literal(to),
        code = RENAME_CONFLICT_SQLSTATE,
        qt = quote_ident(table),
        qf = quote_ident(from),
        qo = quote_ident(to),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::sql::split_statements;

    #[test]
    fn the_migration_text_holds_every_rename_and_constraint() {
        let sql = up_sql();
        for r in RENAMES {
            assert!(sql.contains(&format!(
                "RENAME COLUMN \"{}\" TO \"{}\"",
                r.legacy, r.current
            )));
        }
        for c in CATALOG {
            assert!(sql.contains(&c.add_not_valid_sql()), "{}", c.name);
        }
        assert_eq!(
            split_statements(&sql).len(),
            1 + RENAMES.len() + CATALOG.len()
        );
    }

    #[test]
    fn every_table_is_locked_first_children_before_the_parent() {
        assert_eq!(
            tables_in_lock_order(),
            [
                "evidence_items",
                "assessment_sessions",
                "generated_policies",
                "business_profiles"
            ]
        );
        assert!(up_sql().lines().nth(1).unwrap().starts_with(
            "LOCK TABLE \"evidence_items\", \"assessment_sessions\", \"generated_policies\", \"business_profiles\" IN ACCESS EXCLUSIVE MODE"
        ));
    }
}
