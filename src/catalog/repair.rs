//! Migration 008, rendered from the rename map and the constraint catalog.

use super::constraints::{Constraint, Rule, CATALOG};
use super::migrations::REPAIR_VERSION;
use super::renames::{Rename, RENAMES};
use super::sql::{qualified, quote_ident, quote_literal};

/// SQLSTATE 008 raises when a table has both the legacy and the full column name.
pub const RENAME_CONFLICT_SQLSTATE: &str = "RQ001";

pub use super::sql::PlannedStatement;

/// 008's statements, in order: one LOCK of every table it changes, state-aware renames, then
/// each constraint added NOT VALID (only when absent, so a hand-added constraint does not stop
/// the repair), then the compatibility schema (docs/design.md §7): in the same transaction as the
/// renames, so there is no instant in which old code finds neither its column names nor the
/// views. `migrate --no-compat` drops it after 008 commits; 008's text never depends on flags.
pub fn statements() -> Vec<PlannedStatement> {
    statements_from(CATALOG)
}

/// 008's statements from `catalog`, of which it renders only the entries it adds itself.
pub fn statements_from(catalog: &[Constraint]) -> Vec<PlannedStatement> {
    let own: Vec<&Constraint> = catalog
        .iter()
        .filter(|c| c.migration == REPAIR_VERSION)
        .collect();
    let tables = tables_in_lock_order(&own);
    let lock = PlannedStatement {
        sql: format!(
            "LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
            tables
                .iter()
                .map(|t| qualified(t))
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
    let constraints = own.iter().map(|c| match c.rule {
        Rule::ForeignKey { .. } => PlannedStatement {
            sql: adopt_or_add_foreign_key(c),
            lock: format!(
                "{} (brief, no scan); an existing foreign key on the same column is renamed instead (ACCESS EXCLUSIVE, already held)",
                c.add_lock()
            ),
        },
        _ => PlannedStatement {
            sql: add_when_absent(c, &format!("    {};", c.add_not_valid_sql())),
            lock: c.add_lock(),
        },
    });
    std::iter::once(lock)
        .chain(renames)
        .chain(constraints)
        .chain(super::compat::create_statements())
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
fn tables_in_lock_order(own: &[&Constraint]) -> Vec<&'static str> {
    let mut tables: Vec<&'static str> = Vec::new();
    for table in own
        .iter()
        .map(|c| c.table)
        .chain(RENAMES.iter().map(|r| r.table))
    {
        if !tables.contains(&table) {
            tables.push(table);
        }
    }
    let is_parent = |table: &str| own.iter().any(|c| c.parent() == Some(table));
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

/// How 008 marks a foreign key it adopted: a comment on the constraint naming its old name. The
/// database itself then remembers what to give back on rollback, and `status` can say where the
/// catalog constraint came from.
pub const ADOPTED_PREFIX: &str = "ruleiq-db: adopted from ";

/// A DO block that runs `body` only when the catalog constraint does not exist yet, so a
/// constraint added by hand (or by an earlier, interrupted repair) does not stop 008.
fn add_when_absent(c: &Constraint, body: &str) -> String {
    format!(
        "DO $repair$\nDECLARE\n  existing text;\nBEGIN\n  IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = {table}::regclass AND conname = {name}) THEN\n{body}\n  END IF;\nEND\n$repair$",
        table = quote_literal(&qualified(c.table)),
        name = quote_literal(c.name),
    )
}

/// Production already has a foreign key on each column the catalog's foreign keys cover (under
/// Alembic's name). A second one would double the cost of every write, so 008 adopts an existing
/// key with the same single column, parent table and parent column: renamed to the catalog's
/// name (a catalog change, no scan) and marked with [`ADOPTED_PREFIX`]. Only when none exists is
/// the key added NOT VALID. Runs after the renames, so the column has its full name here.
fn adopt_or_add_foreign_key(c: &Constraint) -> String {
    let Rule::ForeignKey {
        column,
        parent,
        parent_column,
    } = c.rule
    else {
        unreachable!("only foreign keys are adopted")
    };
    let body = format!(
        "    SELECT k.conname INTO existing FROM pg_constraint k\n     WHERE k.conrelid = {table}::regclass AND k.contype = 'f' AND k.confrelid = {parent}::regclass\n       AND k.conkey = ARRAY[(SELECT attnum FROM pg_attribute WHERE attrelid = k.conrelid AND attname = {column})]\n       AND k.confkey = ARRAY[(SELECT attnum FROM pg_attribute WHERE attrelid = k.confrelid AND attname = {parent_column})]\n     ORDER BY k.conname LIMIT 1;\n    IF existing IS NULL THEN\n      {add};\n    ELSE\n      EXECUTE format('ALTER TABLE public.%I RENAME CONSTRAINT %I TO %I', {table_name}, existing, {name});\n      EXECUTE format('COMMENT ON CONSTRAINT %I ON public.%I IS %L', {name}, {table_name}, {prefix} || existing);\n    END IF;",
        table = quote_literal(&qualified(c.table)),
        parent = quote_literal(&qualified(parent)),
        column = quote_literal(column),
        parent_column = quote_literal(parent_column),
        add = c.add_not_valid_sql(),
        table_name = quote_literal(c.table),
        name = quote_literal(c.name),
        prefix = quote_literal(ADOPTED_PREFIX),
    );
    add_when_absent(c, &body)
}

/// 008's down for a catalog foreign key: an adopted key gets its old name back and stays (it
/// was production's before 008); a key 008 added is dropped.
pub fn give_back_or_drop_foreign_key(c: &Constraint) -> String {
    format!(
        "DO $repair$\nDECLARE\n  note text;\nBEGIN\n  SELECT obj_description(oid, 'pg_constraint') INTO note FROM pg_constraint\n   WHERE conrelid = {table}::regclass AND conname = {name};\n  IF note LIKE {pattern} THEN\n    EXECUTE format('COMMENT ON CONSTRAINT %I ON public.%I IS NULL', {name}, {table_name});\n    EXECUTE format('ALTER TABLE public.%I RENAME CONSTRAINT %I TO %I', {table_name}, {name}, substr(note, {skip}));\n  ELSE\n    {drop};\n  END IF;\nEND\n$repair$",
        table = quote_literal(&qualified(c.table)),
        name = quote_literal(c.name),
        table_name = quote_literal(c.table),
        pattern = quote_literal(&format!("{ADOPTED_PREFIX}%")),
        skip = ADOPTED_PREFIX.len() + 1,
        drop = c.drop_sql(),
    )
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
    let regclass = quote_literal(&qualified(table));
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
        qt = qualified(table),
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
        assert_eq!(sql.matches("RENAME CONSTRAINT").count(), 2);
        let compat = split_statements(&super::super::compat::script(
            &super::super::compat::create_statements(),
        ))
        .len();
        assert_eq!(
            split_statements(&sql).len(),
            1 + RENAMES.len() + CATALOG.len() + compat
        );
    }

    /// 008's whole text, pinned: a change shows in review, and a database at version 8 would
    /// refuse a build whose 008 differs (edited_history).
    #[test]
    fn the_text_of_008_is_pinned() {
        insta::assert_snapshot!("v8_repair_schema_up", up_sql());
    }

    /// The catalog is additive: a constraint a later migration adds (here a made-up 009 on
    /// generated_policies) changes nothing in 008, neither its statements nor its lock order.
    #[test]
    fn a_constraint_of_a_later_migration_leaves_008_alone() {
        let mut catalog = CATALOG.to_vec();
        catalog.push(Constraint {
            name: "chk_policy_title_present",
            table: "generated_policies",
            rule: Rule::Positive { column: "version" },
            migration: REPAIR_VERSION + 1,
        });
        let with: Vec<String> = statements_from(&catalog)
            .into_iter()
            .map(|s| s.sql)
            .collect();
        let without: Vec<String> = statements().into_iter().map(|s| s.sql).collect();
        assert_eq!(with, without);
        assert!(!with.iter().any(|s| s.contains("chk_policy_title_present")));
    }

    #[test]
    fn every_table_is_locked_first_children_before_the_parent() {
        let own: Vec<&Constraint> = CATALOG.iter().collect();
        assert_eq!(
            tables_in_lock_order(&own),
            [
                "evidence_items",
                "assessment_sessions",
                "generated_policies",
                "business_profiles"
            ]
        );
        assert!(up_sql().lines().nth(1).unwrap().starts_with(
            "LOCK TABLE public.\"evidence_items\", public.\"assessment_sessions\", public.\"generated_policies\", public.\"business_profiles\" IN ACCESS EXCLUSIVE MODE"
        ));
    }
}
