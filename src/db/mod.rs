//! Infrastructure: where to connect (`config`, `tls`), connecting, the safety mechanics every
//! changing command shares (the advisory lock, `lock_timeout`, retry when a table lock is not
//! granted in time, waiting for the sessions that would block its table locks, pacing for the
//! standbys), standbys, and the catalog questions engines ask of a live database.
//!
//! Nothing here knows the constraint catalog or the rename map: that is domain knowledge. The
//! blocker look knows only the list of ruleIQ tables (`catalog::TABLES`), to name those a
//! statement locks.

pub mod blockers;
pub mod config;
pub mod connect;
pub mod connection;
pub mod env;
pub mod interrupt;
pub mod introspect;
pub mod lock;
pub mod own_sessions;
pub mod pooler;
pub mod probe;
pub mod query;
pub mod replication;
pub mod retry;
pub mod session;
pub mod snapshot;
pub mod tls;
pub mod who;

pub use connect::{connect, connect_to_change, take_notes};
pub use connection::Connection;
pub use introspect::{columns_of, table_exists};
pub use lock::{acquire_migration_lock, set_lock_timeout, MIGRATION_LOCK_KEY};
pub use query::{Param, Query};
pub use retry::{
    is_lock_timeout, is_statement_timeout, retry_on_lock_timeout, sql_state, RetryPolicy,
};
pub use session::{Retrying, Safety, Session, Worker};
