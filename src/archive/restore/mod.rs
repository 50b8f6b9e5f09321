//! Putting back what a rollback archived. When a migration creates again a table or a column that
//! a rollback moved or copied into ruleiq_archive, the newest such archive's rows (or values) go
//! back inside the migration's own transaction, so a round trip 8 → 6 → 8 loses nothing; then the
//! archive is dropped, so that a later round trip can never bring stale data back a second time.
//!
//! Migrations run in version order and a table is created before whatever references it, so
//! restoring at the end of each migration, in the order its statements create things, puts
//! parents back before their children.
//!
//! [`plan`] decides, read-only, what a migration would put back; [`execute`] puts it back.

pub mod execute;
pub mod plan;

pub use execute::{archived, restore, Archived, Restored};
pub use plan::{absent, created_by, planned, Created, Planned};
