//! The standbys the server feeds and where each stands, from `pg_stat_replication`: listed for
//! `status`, measured by the throttle.

use crate::db::Query;
use anyhow::Result;
use postgres::Client;
use serde::Serialize;

/// A standby as `status` lists it. The lags are what the standby last reported; a standby that
/// has reached the server's WAL shows 0 (PostgreSQL shows NULL once it is idle).
#[derive(Debug, Clone, Serialize)]
pub struct Standby {
    /// Its `application_name` (the standby's `cluster_name` or `primary_conninfo` sets it).
    pub name: String,
    /// startup, catchup, streaming or stopping.
    pub state: Option<String>,
    pub sync_state: Option<String>,
    pub client_addr: Option<String>,
    pub write_lag_ms: Option<u64>,
    pub flush_lag_ms: Option<u64>,
    pub replay_lag_ms: Option<u64>,
    /// Bytes of WAL the server has written and the standby has not replayed yet.
    pub replay_lag_bytes: Option<u64>,
}

/// One walsender's row, positions as byte offsets.
#[derive(Debug, Clone)]
pub(super) struct Sender {
    pub(super) name: String,
    pub(super) state: Option<String>,
    pub(super) sync_state: Option<String>,
    pub(super) client_addr: Option<String>,
    pub(super) write: Option<u64>,
    pub(super) flush: Option<u64>,
    pub(super) replay: Option<u64>,
    pub(super) write_lag_ms: Option<u64>,
    pub(super) flush_lag_ms: Option<u64>,
    pub(super) replay_lag_ms: Option<u64>,
}

/// Where the server's WAL ends, and the standbys it feeds. Walsenders of a base backup and
/// of logical replication are not standbys and are left out. On a standby (cascading
/// replication) the reference is the WAL it has replayed.
pub(super) fn senders(client: &mut Client) -> Result<(u64, Vec<Sender>)> {
    let reference = end_of_wal(client)?;
    let rows = client.rows(
        "SELECT coalesce(nullif(r.application_name, ''), 'pid ' || r.pid), r.state::text, r.sync_state::text, r.client_addr::text,
                pg_wal_lsn_diff(r.write_lsn, '0/0')::int8,
                pg_wal_lsn_diff(r.flush_lsn, '0/0')::int8,
                pg_wal_lsn_diff(r.replay_lsn, '0/0')::int8,
                (extract(epoch FROM r.write_lag) * 1000)::int8,
                (extract(epoch FROM r.flush_lag) * 1000)::int8,
                (extract(epoch FROM r.replay_lag) * 1000)::int8
           FROM pg_stat_replication AS r
           LEFT JOIN pg_replication_slots AS s ON s.active_pid = r.pid
          WHERE r.state IS DISTINCT FROM 'backup' AND s.slot_type IS DISTINCT FROM 'logical'
          ORDER BY r.application_name, r.pid",
        &[],
    )?;
    let unsigned = |v: Option<i64>| v.map(|n| n.max(0) as u64);
    let list = rows
        .iter()
        .map(|r| Sender {
            name: r.get(0),
            state: r.get(1),
            sync_state: r.get(2),
            client_addr: r.get(3),
            write: unsigned(r.get(4)),
            flush: unsigned(r.get(5)),
            replay: unsigned(r.get(6)),
            write_lag_ms: unsigned(r.get(7)),
            flush_lag_ms: unsigned(r.get(8)),
            replay_lag_ms: unsigned(r.get(9)),
        })
        .collect();
    Ok((reference, list))
}

/// Where the server's WAL ends: on a primary everything inserted, committed or not, flushed or
/// not (with `synchronous_commit = off` a commit is flushed up to 200 ms later, and still has
/// to reach the standbys); on a standby what it has replayed.
pub(super) fn end_of_wal(client: &mut Client) -> Result<u64> {
    let row = client.row(
        "SELECT pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
                                     ELSE pg_current_wal_insert_lsn() END, '0/0')::int8,
                pg_is_in_recovery(),
                current_setting('wal_block_size')::int8,
                (SELECT setting::int8 FROM pg_settings WHERE name = 'wal_segment_size')",
        &[],
    )?;
    let position = row.get::<_, i64>(0).max(0) as u64;
    if row.get::<_, bool>(1) {
        return Ok(position);
    }
    Ok(record_end(
        position,
        row.get::<_, i64>(2) as u64,
        row.get::<_, i64>(3) as u64,
    ))
}

/// The insert position points past the header of a page nothing is written on yet, where a
/// standby that replayed everything stands at the page's start: count from there.
fn record_end(insert: u64, block: u64, segment: u64) -> u64 {
    // MAXALIGN'd sizes of XLogLongPageHeaderData and XLogPageHeaderData.
    const LONG_HEADER: u64 = 40;
    const SHORT_HEADER: u64 = 24;
    if segment > 0 && insert % segment == LONG_HEADER {
        insert - LONG_HEADER
    } else if block > 0 && insert % block == SHORT_HEADER {
        insert - SHORT_HEADER
    } else {
        insert
    }
}

/// The standbys of the server `client` is connected to (for `status`).
pub fn standbys(client: &mut Client) -> Result<Vec<Standby>> {
    let (reference, list) = senders(client)?;
    // A lag PostgreSQL no longer shows (NULL) is 0 when the standby has reached the reference.
    let lag = |shown: Option<u64>, position: Option<u64>| {
        shown.or_else(|| position.filter(|p| *p >= reference).map(|_| 0))
    };
    Ok(list
        .into_iter()
        .map(|s| Standby {
            write_lag_ms: lag(s.write_lag_ms, s.write),
            flush_lag_ms: lag(s.flush_lag_ms, s.flush),
            replay_lag_ms: lag(s.replay_lag_ms, s.replay),
            replay_lag_bytes: s.replay.map(|p| reference.saturating_sub(p)),
            name: s.name,
            state: s.state,
            sync_state: s.sync_state,
            client_addr: s.client_addr,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_of_wal_on_a_fresh_page_is_the_page_start() {
        let (block, segment) = (8192, 16 << 20);
        assert_eq!(record_end(3 * 8192 + 24, block, segment), 3 * 8192);
        assert_eq!(record_end((16 << 20) + 40, block, segment), 16 << 20);
        assert_eq!(record_end(3 * 8192 + 100, block, segment), 3 * 8192 + 100);
    }
}
