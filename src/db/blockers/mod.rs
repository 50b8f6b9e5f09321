//! What would make a changing command wait for a lock, found before it asks for one: sessions
//! holding (or queued for) a conflicting lock on the tables it touches, old transactions,
//! sessions idle in a transaction, prepared transactions, and an anti-wraparound autovacuum
//! (the one autovacuum that does not give way to a lock request).
//!
//! ruleiq-db never ends another session: a real run waits for the blockers to go, then refuses.
//! Nothing here reads a query's text beyond its first keyword, so no parameter value or
//! password can reach a report or stderr.
//!
//! `scope.rs` says what a command is about to lock, `find.rs` looks for the sessions that would
//! make it wait and judges each, `wait.rs` is a real run's waiting and refusing, and
//! `blocker.rs` describes one blocker for stderr, refusals and reports.

mod blocker;
mod find;
mod scope;
mod wait;

pub use blocker::{write_table, Blocker};
pub use find::find;
pub use scope::{tables_named, Scope, Takes};
pub use wait::wait_until_clear;

use std::time::Duration;

/// How long a lock or an idle transaction must have lasted before it counts. The application's
/// ordinary transactions come and go within it; a real run polls, so one that is merely caught
/// in the act is gone at the next look.
pub const MOMENT: Duration = Duration::from_secs(1);

/// The limits a look uses.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A transaction open longer than this is a blocker wherever it holds its locks.
    pub blocker_age: Duration,
    /// How long a real run waits for the blockers to go.
    pub wait: Duration,
}
