//! What a command has done so far, kept outside its report so that a failure half-way can still
//! say it (docs/design.md §2: a failure carries `schema_version`, `applied`, `reverted`, `run_id`).
//!
//! Commands record each step as soon as it commits; the failure document reads the record.

use crate::report::MigrationRun;
use serde::Serialize;
use std::sync::{Arc, Mutex};

/// The steps committed so far. `schema_version` is None until the history has been read.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Done {
    pub schema_version: Option<i32>,
    pub applied: Vec<MigrationRun>,
    pub reverted: Vec<MigrationRun>,
    pub run_id: Option<String>,
}

/// Shared by a command's context and whoever prints its failure. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Journal(Arc<Mutex<Done>>);

impl Journal {
    fn with(&self, change: impl FnOnce(&mut Done)) {
        // A poisoned lock means a panic elsewhere; the record is still the best we have.
        let mut done = self.0.lock().unwrap_or_else(|p| p.into_inner());
        change(&mut done);
    }

    /// The version the database is at now (read from, or just written to, the history).
    pub fn version(&self, version: i32) {
        self.with(|d| d.schema_version = Some(version));
    }

    /// A migration committed: the database is now at its version.
    pub fn applied(&self, run: &MigrationRun) {
        self.with(|d| {
            d.schema_version = Some(run.version);
            d.applied.push(run.clone());
        });
    }

    /// A migration reverted: the database is now at `now_at`.
    pub fn reverted(&self, run: &MigrationRun, now_at: i32) {
        self.with(|d| {
            d.schema_version = Some(now_at);
            d.reverted.push(run.clone());
        });
    }

    /// A cleanup run (or its undo) has started and is recorded under this id.
    pub fn run_id(&self, id: &str) {
        self.with(|d| d.run_id = Some(id.to_string()));
    }

    pub fn snapshot(&self) -> Done {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
