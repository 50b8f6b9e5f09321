//! What one build of ruleiq-db knows as a value: its migrations and the constraint catalog,
//! each constraint tagged with the migration that adds it. The migrate engine reads this value
//! rather than the embedded lists directly, so that a test can hand it a later migration (a
//! ninth, with a constraint of its own) and show the way such a migration goes.

use super::constraints::{Constraint, CATALOG};
use super::migrations;
use refinery::Migration;

/// The migrations and the constraints they add.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// Every migration, in version order.
    pub migrations: Vec<Migration>,
    /// Every catalog constraint, each tagged with its migration.
    pub constraints: &'static [Constraint],
}

impl Catalog {
    /// What this build embeds: `migrations/up` and the constraint catalog.
    pub fn embedded() -> Catalog {
        Catalog {
            migrations: migrations::all(),
            constraints: CATALOG,
        }
    }

    /// The newest migration's version (0 when there is none).
    pub fn latest(&self) -> i32 {
        self.migrations
            .iter()
            .map(|m| m.version())
            .max()
            .unwrap_or(0)
    }

    /// The migration with this version.
    pub fn get(&self, version: i32) -> Option<&Migration> {
        self.migrations.iter().find(|m| m.version() == version)
    }

    /// The migrations above `from`, up to and including `to`, in order.
    pub fn pending(&self, from: i32, to: i32) -> Vec<Migration> {
        let mut list: Vec<Migration> = self
            .migrations
            .iter()
            .filter(|m| m.version() > from && m.version() <= to)
            .cloned()
            .collect();
        list.sort();
        list
    }

    /// The constraints the migration of `version` adds.
    pub fn added_by(&self, version: i32) -> Vec<&'static Constraint> {
        self.constraints
            .iter()
            .filter(|c| c.migration == version)
            .collect()
    }

    /// The constraints any of `migrations` adds, in catalog order.
    pub fn added_by_any(&self, migrations: &[Migration]) -> Vec<&'static Constraint> {
        self.constraints
            .iter()
            .filter(|c| migrations.iter().any(|m| m.version() == c.migration))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_catalog_ends_at_008_which_adds_every_constraint() {
        let catalog = Catalog::embedded();
        assert_eq!(catalog.latest(), migrations::latest_version());
        assert_eq!(catalog.added_by(8).len(), CATALOG.len());
        assert!(catalog.added_by(7).is_empty());
        let pending = catalog.pending(6, 8);
        assert_eq!(
            pending.iter().map(|m| m.version()).collect::<Vec<_>>(),
            [7, 8]
        );
        assert_eq!(catalog.added_by_any(&pending).len(), CATALOG.len());
        assert!(catalog.added_by_any(&catalog.pending(0, 7)).is_empty());
    }
}
