//! The backends this process opened, so that looking for sessions in the way (docs/design.md §9)
//! never names one of ruleiq-db's own connections.

use super::query::Query;
use postgres::Client;
use std::sync::Mutex;

/// Backends this process opened (pid and start time, so a reused pid is not mistaken for
/// ours). Filled by [`remember`] from `db::connect`.
static OWN_SESSIONS: Mutex<Vec<(i32, f64)>> = Mutex::new(Vec::new());

/// Records the backend behind a new connection as this process's own, so that the checker's
/// extra connections (and any other of ours) are never named as blockers. Best effort.
pub fn remember(client: &mut Client) {
    let row = client.row(
        "SELECT pg_backend_pid(), extract(epoch FROM backend_start)::float8
           FROM pg_catalog.pg_stat_activity WHERE pid = pg_backend_pid()",
        &[],
    );
    if let (Ok(row), Ok(mut own)) = (row, OWN_SESSIONS.lock()) {
        own.push((row.get(0), row.get(1)));
    }
}

/// Pids and start times of every backend this process opened.
pub fn all() -> (Vec<i32>, Vec<f64>) {
    let own = OWN_SESSIONS.lock().map(|o| o.clone()).unwrap_or_default();
    own.into_iter().unzip()
}
