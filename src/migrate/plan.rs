//! What a migrate run would do, without doing it: the pending migrations, their statements with
//! the locks they take, the sessions those locks would wait for, and how long the scans take.

use crate::catalog::constraints::Constraint;
use crate::catalog::migrations::REPAIR_VERSION;
use crate::catalog::repair::{self, PlannedStatement};
use crate::catalog::sql::{lock_taken, split_statements};
use crate::catalog::Catalog;
use crate::constraints::presence::{self, ConstraintState};
use crate::db::blockers::{Scope, Takes};
use crate::db::config::Target;
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

/// The statements of a migration with the locks they take, and the VALIDATE of each constraint
/// it adds, which migrate runs after it commits.
pub fn plan_of(catalog: &Catalog, migration: &Migration, no_compat: bool) -> PlannedMigration {
    let mut statements = if migration.version() == REPAIR_VERSION {
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
    statements.extend(catalog.added_by(migration.version()).into_iter().map(|c| {
        PlannedStatement {
            sql: c.validate_sql(),
            lock: format!(
                "{} — after {:03} commits, one transaction each",
                c.validate_lock(),
                migration.version()
            ),
        }
    }));
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

/// The estimate of what a run would scan: the preflight when a pending migration adds
/// constraints (over those the database does not already hold valid, as preflight.rs scans),
/// and the VALIDATE of each constraint that will be there NOT VALID (one a pending migration
/// adds, or one already NOT VALID of a migration up to `to`; a valid one is left alone).
/// `preflight_timed`: the dry run runs the preflight in full next and puts it at what it
/// took ([`Estimate::check_timed`]), so its scans are not sampled here.
pub fn look_ahead(
    client: &mut Client,
    target: &Target,
    catalog: &Catalog,
    pending: &[Migration],
    to: i32,
    preflight_timed: bool,
) -> Result<Estimate> {
    let adding = catalog.added_by_any(pending);
    let states = presence::presence_of(client, &catalog.constraints.iter().collect::<Vec<_>>())?;
    let validate: Vec<&'static Constraint> = catalog
        .constraints
        .iter()
        .filter(|c| c.migration <= to)
        .filter(|c| match states[c.name].state {
            ConstraintState::Absent => adding.iter().any(|a| a.name == c.name),
            ConstraintState::NotValid => true,
            ConstraintState::Valid => false,
        })
        .collect();
    let checked: Vec<&'static Constraint> = if preflight_timed {
        Vec::new()
    } else {
        adding
            .iter()
            .copied()
            .filter(|c| states[c.name].state != ConstraintState::Valid)
            .collect()
    };
    estimate::estimate(
        client,
        Some(target),
        estimate::Work::Migrate {
            preflight: !adding.is_empty(),
        },
        &checked,
        &validate,
        None,
    )
}
