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

/// Checksums that the build before the search_path fix recorded for 001–008 (by `migrate` or
/// `baseline`). Their text changed since only in naming every object with its schema
/// (`public.users` for `users`, docs/design.md §3, "Hostile ground"): the same objects with the
/// same effect. A history holding one of these is the history of that migration, so a database
/// adopted or migrated by that build is not refused as edited.
pub const CHECKSUMS_BEFORE_QUALIFYING: [(i32, &str); 8] = [
    (1, "5078948157938598537"),
    (2, "12070065689127644164"),
    (3, "13598157945434317805"),
    (4, "14734316856663216274"),
    (5, "991508195998127686"),
    (6, "166911869560175253"),
    (7, "14490043779195095233"),
    (8, "12619424515930984423"),
];

/// Whether `checksum`, recorded for `migration`, stands for it: its own checksum, or the one an
/// earlier build recorded for the same migration before its names were qualified.
pub fn checksum_matches(migration: &Migration, checksum: &str) -> bool {
    checksum == migration.checksum().to_string()
        || CHECKSUMS_BEFORE_QUALIFYING
            .iter()
            .any(|&(version, old)| version == migration.version() && old == checksum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_earlier_builds_checksum_stands_for_its_migration_and_no_other() {
        let v1 = get(1).unwrap();
        let v2 = get(2).unwrap();
        assert!(checksum_matches(&v1, &v1.checksum().to_string()));
        assert!(checksum_matches(&v1, "5078948157938598537"));
        assert!(!checksum_matches(&v2, "5078948157938598537"));
        assert!(!checksum_matches(&v1, "1"));
    }

    #[test]
    fn versions_run_one_to_eight_without_gaps() {
        let versions: Vec<i32> = all().iter().map(|m| m.version()).collect();
        assert_eq!(versions, (1..=8).collect::<Vec<_>>());
        assert_eq!(latest_version(), REPAIR_VERSION);
        assert_eq!(get(8).unwrap().name(), "repair_schema");
    }
}
