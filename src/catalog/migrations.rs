//! The embedded migrations: `migrations/up` through refinery's `embed_migrations!`. 008 is a
//! `.rs` migration that renders from the catalog.

use refinery::Migration;

refinery::embed_migrations!("migrations/up");

/// Every embedded migration, in version order.
pub fn all() -> Vec<Migration> {
    let mut list = migrations::runner().get_migrations().clone();
    list.sort();
    list
}

/// The highest embedded version.
pub fn latest_version() -> i32 {
    all().last().map_or(0, |m| m.version())
}

/// The embedded migration with this version.
pub fn get(version: i32) -> Option<Migration> {
    all().into_iter().find(|m| m.version() == version)
}

/// The refinery runner over the embedded migrations.
pub fn runner() -> refinery::Runner {
    migrations::runner()
}

/// The version at which the repair (renames and constraints) happens.
pub const REPAIR_VERSION: i32 = 8;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_run_one_to_eight_without_gaps() {
        let versions: Vec<i32> = all().iter().map(|m| m.version()).collect();
        assert_eq!(versions, (1..=8).collect::<Vec<_>>());
        assert_eq!(latest_version(), REPAIR_VERSION);
        assert_eq!(get(8).unwrap().name(), "repair_schema");
    }
}
