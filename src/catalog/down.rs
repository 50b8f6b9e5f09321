//! Down migrations: migrations/down, one per up migration.
