//! Archiving what a rollback would drop, into schema ruleiq_archive, and putting it back.
//!
//! The down migrations say what the earlier schema lacks (`DROP TABLE t`, `ALTER TABLE t DROP
//! COLUMN c`); this module makes sure no data goes with it. Before such a statement runs, the
//! rollback engine ([`revert`]) asks [`plan::classify`] what it drops: a table is renamed and
//! moved into ruleiq_archive instead of dropped; a column is first copied there (primary key
//! and column), by [`execute`]. Before anything changes, [`dependents`] finds the user's views
//! and functions that would be stranded; when a later migration creates the table or column
//! again, [`restore`] puts the archived rows or values back.
//!
//! - [`names`]: the schema, the archive names and their comments.
//! - `tokens`: the few words of SQL that tell what a statement drops or creates.
//! - [`plan`]: read-only, what a down statement archives and what a `--dry-run` shows.
//! - [`execute`]: the archiving itself, inside a step's transaction.
//! - [`revert`]: rollback's engine, one transaction per migration reverted.

pub mod dependents;
pub mod execute;
pub mod names;
pub mod plan;
pub mod restore;
pub mod revert;
mod tokens;

pub use execute::run_statement;
pub use names::{Stamp, SCHEMA};
pub use plan::{classify, planned_lock, preview, Action, Archived};
