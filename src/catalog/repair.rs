//! Migration 008, rendered from the rename map and the constraint catalog.

use super::constraints::CATALOG;
use super::renames::{Rename, RENAMES};
use super::sql::{quote_ident, quote_literal};

/// SQLSTATE 008 raises when a table has both the legacy and the full column name.
pub const RENAME_CONFLICT_SQLSTATE: &str = "RQ001";

/// One statement of 008 and the lock it takes.
#[derive(Debug, Clone)]
pub struct PlannedStatement {
    pub sql: String,
    pub lock: String,
}

/// 008's statements, in order: state-aware renames, then each constraint added NOT VALID
/// (only when absent, so a hand-added constraint does not stop the repair).
pub fn statements() -> Vec<PlannedStatement> {
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
    renames.chain(constraints).collect()
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
        assert_eq!(split_statements(&sql).len(), RENAMES.len() + CATALOG.len());
    }
}
