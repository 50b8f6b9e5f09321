//! Down migrations: migrations/down, one file per up migration with the same file name. The
//! SQL files are compiled in; 008's down is a `.rs` file that renders from the catalog, like
//! 008 itself. What a down drops is not dropped: `rollback` archives it (see `crate::archive`).

use super::sql::PlannedStatement;
use super::sql::{lock_taken, split_statements};

#[path = "../../migrations/down/V8__repair_schema.rs"]
mod v8_repair_schema;

/// One down migration as shipped in migrations/down.
struct Down {
    version: i32,
    file: &'static str,
    source: Source,
}

enum Source {
    Sql(&'static str),
    Rendered(fn() -> Vec<PlannedStatement>),
}

macro_rules! sql_down {
    ($version:literal, $file:literal) => {
        Down {
            version: $version,
            file: $file,
            source: Source::Sql(include_str!(concat!("../../migrations/down/", $file))),
        }
    };
}

const DOWNS: &[Down] = &[
    sql_down!(1, "V1__initial_migration.sql"),
    sql_down!(2, "V2__base_schema.sql"),
    sql_down!(3, "V3__core_tables.sql"),
    sql_down!(4, "V4__add_integration_configs.sql"),
    sql_down!(5, "V5__add_business_profile_data_sensitivity.sql"),
    sql_down!(6, "V6__add_performance_indexes.sql"),
    sql_down!(7, "V7__add_evidence_metadata.sql"),
    Down {
        version: 8,
        file: "V8__repair_schema.rs",
        source: Source::Rendered(v8_repair_schema::statements),
    },
];

/// The full text of the down migration of `version`, if there is one.
pub fn down_sql(version: i32) -> Option<String> {
    let down = DOWNS.iter().find(|d| d.version == version)?;
    Some(match down.source {
        Source::Sql(text) => text.to_string(),
        Source::Rendered(_) => v8_repair_schema::migration(),
    })
}

/// The statements of the down migration of `version`, in order, each with the lock it takes.
pub fn statements(version: i32) -> Option<Vec<PlannedStatement>> {
    let down = DOWNS.iter().find(|d| d.version == version)?;
    Some(match down.source {
        Source::Sql(text) => split_statements(text)
            .into_iter()
            .map(|sql| PlannedStatement {
                lock: lock_taken(&sql),
                sql,
            })
            .collect(),
        Source::Rendered(render) => render(),
    })
}

/// The file names of the compiled-in down migrations, in version order.
pub fn file_names() -> Vec<&'static str> {
    DOWNS.iter().map(|d| d.file).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::constraints::CATALOG;
    use crate::catalog::migrations;
    use crate::catalog::renames::RENAMES;
    use std::collections::BTreeSet;
    use std::path::Path;

    fn files_in(folder: &str) -> BTreeSet<String> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(folder);
        std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn every_up_migration_has_a_down_file_with_the_same_name() {
        let up = files_in("migrations/up");
        let down = files_in("migrations/down");
        let missing: Vec<_> = up.difference(&down).collect();
        let orphans: Vec<_> = down.difference(&up).collect();
        assert!(
            missing.is_empty(),
            "up migrations without a down file: {missing:?}"
        );
        assert!(
            orphans.is_empty(),
            "down files without an up migration: {orphans:?}"
        );
        let compiled: BTreeSet<String> = file_names().into_iter().map(String::from).collect();
        assert_eq!(
            compiled, down,
            "every file in migrations/down is compiled in"
        );
    }

    #[test]
    fn every_embedded_migration_has_down_statements_under_its_own_name() {
        for m in migrations::all() {
            let down = DOWNS.iter().find(|d| d.version == m.version()).unwrap();
            assert!(
                down.file
                    .starts_with(&format!("V{}__{}.", m.version(), m.name())),
                "{} does not match V{} {}",
                down.file,
                m.version(),
                m.name()
            );
            let statements = statements(m.version()).unwrap();
            assert!(!statements.is_empty(), "V{} down is empty", m.version());
            assert_eq!(
                split_statements(&down_sql(m.version()).unwrap()).len(),
                statements.len()
            );
        }
        assert!(down_sql(migrations::latest_version() + 1).is_none());
    }

    #[test]
    fn repair_down_drops_each_constraint_and_renames_each_column_back() {
        let sql = down_sql(8).unwrap();
        for c in CATALOG {
            assert!(sql.contains(&c.drop_sql()), "{}", c.name);
        }
        assert_eq!(sql.matches("RENAME CONSTRAINT").count(), 2);
        for r in RENAMES {
            assert!(sql.contains(&format!(
                "RENAME COLUMN \"{}\" TO \"{}\"",
                r.current, r.legacy
            )));
        }
        let compat = crate::catalog::compat::drop_statements();
        assert_eq!(
            statements(8).unwrap().len(),
            compat.len() + CATALOG.len() + RENAMES.len()
        );
        assert!(sql.starts_with(&format!(
            "-- 008 down: generated from ruleiq-db's constraint catalog and rename map.\n{}",
            crate::catalog::compat::script(&compat)
        )));
    }
}
