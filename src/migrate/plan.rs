//! What a migrate run would do, without doing it: the pending migrations, their statements with
//! the locks they take, the sessions those locks would wait for, and how long the scans take.

use crate::catalog::constraints::{Constraint, CATALOG};
use crate::catalog::migrations::{self, REPAIR_VERSION};
use crate::catalog::repair::{self, PlannedStatement};
use crate::catalog::sql::{lock_taken, split_statements};
use crate::constraints::check;
use crate::db::blockers::{Scope, Takes};
use crate::health::estimate::{self, Estimate};
use anyhow::Result;
use postgres::Client;
use refinery::Migration;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct PlannedMigration {
    pub version: i32,
    pub name: String,
    pub statements: Vec<PlannedStatement>,
}

/// The embedded migrations above `from`, up to and including `to`, in order.
pub fn pending(from: i32, to: i32) -> Vec<Migration> {
    migrations::all()
        .into_iter()
        .filter(|m| m.version() > from && m.version() <= to)
        .collect()
}

/// The statements of a migration with the locks they take.
pub fn plan_of(migration: &Migration, no_compat: bool) -> PlannedMigration {
    let statements = if migration.version() == REPAIR_VERSION {
        let mut list: Vec<PlannedStatement> = repair::statements()
            .into_iter()
            .map(|s| PlannedStatement {
                sql: s.sql,
                lock: s.lock,
            })
            .collect();
        if no_compat {
            list.extend(
                crate::catalog::compat::drop_statements()
                    .into_iter()
                    .map(|s| PlannedStatement {
                        sql: s.sql,
                        lock: format!(
                            "{} — after 008 commits, one transaction (--no-compat)",
                            s.lock
                        ),
                    }),
            );
        }
        list.extend(CATALOG.iter().map(|c| PlannedStatement {
            sql: c.validate_sql(),
            lock: format!(
                "{} — after 008 commits, one transaction each",
                c.validate_lock()
            ),
        }));
        list
    } else {
        split_statements(migration.sql().unwrap_or_default())
            .into_iter()
            .map(|sql| PlannedStatement {
                lock: lock_taken(&sql),
                sql,
            })
            .collect()
    };
    PlannedMigration {
        version: migration.version(),
        name: migration.name().to_string(),
        statements,
    }
}

/// The tables the planned statements lock, for the blocker wait before the first of them.
pub fn blocker_scope(plans: &[PlannedMigration]) -> Scope {
    Scope::of_statements(
        "migrate",
        plans
            .iter()
            .flat_map(|p| p.statements.iter().map(|s| s.sql.as_str())),
        Takes::AccessExclusive,
    )
}

/// The estimate of what a run would scan: the preflight when 008 is pending, and the VALIDATE
/// of every catalog constraint that is not valid yet (a valid one is left alone).
pub fn look_ahead(client: &mut Client, includes_repair: bool, to: i32) -> Result<Estimate> {
    let states = check::constraint_states(client)?;
    // 008 adds the absent ones NOT VALID; after it, migrate validates whatever is NOT VALID.
    let validated = |state: check::ConstraintState| match state {
        check::ConstraintState::Absent => includes_repair,
        check::ConstraintState::NotValid => true,
        check::ConstraintState::Valid => false,
    };
    let validate: Vec<_> = if to >= REPAIR_VERSION {
        CATALOG
            .iter()
            .filter(|c| validated(states[c.name]))
            .collect()
    } else {
        Vec::new()
    };
    // The preflight scans what the database does not already hold valid (preflight.rs).
    let checked: Vec<&'static Constraint> = CATALOG
        .iter()
        .filter(|c| includes_repair && states[c.name] != check::ConstraintState::Valid)
        .collect();
    estimate::estimate(
        client,
        estimate::Work::Migrate {
            preflight: includes_repair,
        },
        &checked,
        &validate,
        None,
    )
}
