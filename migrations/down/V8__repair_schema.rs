// 008 down: generated from the constraint catalog and the rename map, like 008 itself, so the
// repair and its reversal cannot drift apart. First the compatibility schema goes (its views
// name the full column names, which the renames below take away; views hold no rows), then the
// six constraints (IF EXISTS: a
// constraint that never validated or was dropped by hand does not stop the rollback; a foreign
// key 008 adopted gets its old name back and stays), then each
// column gets its legacy name back, state-aware like the up: renamed only when the full name
// exists and the legacy one does not; both present stops the step with nothing changed.

use crate::catalog::compat;
use crate::catalog::constraints::{Rule, CATALOG};
use crate::catalog::renames::RENAMES;
use crate::catalog::repair::{give_back_or_drop_foreign_key, state_aware_rename, PlannedStatement};

/// The statements of 008's down, in order, with the locks they take.
pub fn statements() -> Vec<PlannedStatement> {
    // Only what 008 added: a constraint of a later migration is that migration's to drop.
    let drops = CATALOG
        .iter()
        .filter(|c| c.migration == crate::catalog::migrations::REPAIR_VERSION)
        .rev()
        .map(|c| match c.rule {
        Rule::ForeignKey { parent, .. } => PlannedStatement {
            sql: give_back_or_drop_foreign_key(c),
            lock: format!(
                "ACCESS EXCLUSIVE on {}; SHARE ROW EXCLUSIVE on {parent} (brief, catalog change only)",
                c.table
            ),
        },
        _ => PlannedStatement {
            sql: c.drop_sql(),
            lock: format!("ACCESS EXCLUSIVE on {} (brief, catalog change only)", c.table),
        },
    });
    let renames = RENAMES.iter().map(|r| PlannedStatement {
        sql: state_aware_rename(r.table, r.current, r.legacy),
        lock: format!("ACCESS EXCLUSIVE on {} (catalog change only)", r.table),
    });
    compat::drop_statements()
        .into_iter()
        .chain(drops)
        .chain(renames)
        .collect()
}

/// The full text of 008's down.
pub fn migration() -> String {
    let mut sql = String::from(
        "-- 008 down: generated from ruleiq-db's constraint catalog and rename map.\n",
    );
    for statement in statements() {
        sql.push_str(&statement.sql);
        sql.push_str(";\n");
    }
    sql
}
