//! Looking once: every session and prepared transaction of this database, judged against what
//! the command is about to lock.

use super::blocker::seconds;
use super::{Blocker, Limits, Scope, MOMENT};
use crate::db::Query;
use crate::db::MIGRATION_LOCK_KEY;
use anyhow::Result;
use postgres::Client;

/// Every live session of this database with what it holds on the scope's tables.
const SESSIONS_SQL: &str = r"
WITH touched AS (
    SELECT t.name, to_regclass(format('%I.%I', 'public', t.name)) AS rel
      FROM unnest($1::text[]) AS t(name)
     WHERE to_regclass(format('%I.%I', 'public', t.name)) IS NOT NULL
),
own AS (
    SELECT * FROM unnest($2::int4[], $3::float8[]) AS o(pid, started)
)
SELECT a.pid,
       coalesce(a.application_name, ''),
       coalesce(a.state, ''),
       a.backend_type,
       extract(epoch FROM now() - a.xact_start)::float8,
       extract(epoch FROM now() - a.state_change)::float8,
       to_char(a.query_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS UTC'),
       upper(substring(a.query FROM '^\s*([A-Za-z]+)')),
       coalesce(a.backend_type = 'autovacuum worker' AND a.query LIKE '%(to prevent wraparound)%', false),
       EXISTS (SELECT 1 FROM pg_locks l
                WHERE l.pid = a.pid AND l.locktype = 'advisory' AND l.granted
                  AND ((l.classid::bigint << 32) | l.objid::bigint) = $4),
       coalesce(array_agg(t.name ORDER BY t.name, l.mode) FILTER (WHERE t.name IS NOT NULL), '{}'),
       coalesce(array_agg(l.mode ORDER BY t.name, l.mode) FILTER (WHERE t.name IS NOT NULL), '{}'),
       coalesce(array_agg(l.granted ORDER BY t.name, l.mode) FILTER (WHERE t.name IS NOT NULL), '{}')
  FROM pg_stat_activity a
  LEFT JOIN pg_locks l ON l.pid = a.pid AND l.locktype = 'relation'
  LEFT JOIN touched t ON t.rel = l.relation
 WHERE a.datname = current_database()
   AND a.pid <> pg_backend_pid()
   AND a.backend_type <> 'parallel worker'
   AND NOT EXISTS (SELECT 1 FROM own
                    WHERE own.pid = a.pid
                      AND abs(own.started - extract(epoch FROM a.backend_start)) < 0.001)
 GROUP BY a.pid, a.application_name, a.state, a.backend_type, a.xact_start, a.state_change,
          a.query_start, a.query, a.backend_start
 ORDER BY a.pid";

/// Prepared transactions of this database with their relation locks on the scope's tables
/// (a prepared transaction's locks have no pid; they share its virtual transaction id).
const PREPARED_SQL: &str = r"
WITH touched AS (
    SELECT t.name, to_regclass(format('%I.%I', 'public', t.name)) AS rel
      FROM unnest($1::text[]) AS t(name)
     WHERE to_regclass(format('%I.%I', 'public', t.name)) IS NOT NULL
)
SELECT p.gid,
       p.owner::text,
       extract(epoch FROM now() - p.prepared)::float8,
       to_char(p.prepared AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS UTC'),
       coalesce(array_agg(t.name ORDER BY t.name, l.mode) FILTER (WHERE t.name IS NOT NULL), '{}'),
       coalesce(array_agg(l.mode ORDER BY t.name, l.mode) FILTER (WHERE t.name IS NOT NULL), '{}')
  FROM pg_prepared_xacts p
  LEFT JOIN pg_locks x ON x.locktype = 'transactionid' AND x.transactionid = p.transaction
                      AND x.pid IS NULL
  LEFT JOIN pg_locks l ON l.locktype = 'relation' AND l.pid IS NULL
                      AND l.virtualtransaction = x.virtualtransaction
  LEFT JOIN touched t ON t.rel = l.relation
 WHERE p.database = current_database()
 GROUP BY p.gid, p.owner, p.prepared
 ORDER BY p.prepared";

/// One session as the catalog shows it, before deciding whether it blocks.
#[derive(Debug, Clone)]
struct Session {
    pid: i32,
    application_name: String,
    state: String,
    backend_type: String,
    xact_age: Option<f64>,
    state_age: Option<f64>,
    query_start: Option<String>,
    keyword: Option<String>,
    wraparound: bool,
    holds_migration_lock: bool,
    /// (table, mode, granted) on the scope's tables.
    locks: Vec<(String, String, bool)>,
}

/// Looks once: everything that would make `scope`'s command wait right now.
pub fn find(client: &mut Client, scope: &Scope, limits: &Limits) -> Result<Vec<Blocker>> {
    let (own_pids, own_starts) = crate::db::own_sessions::all();
    let rows = client.rows(
        SESSIONS_SQL,
        &[&scope.tables, &own_pids, &own_starts, &MIGRATION_LOCK_KEY],
    )?;
    let mut found = Vec::new();
    for row in rows {
        let tables: Vec<String> = row.get(10);
        let modes: Vec<String> = row.get(11);
        let granted: Vec<bool> = row.get(12);
        let session = Session {
            pid: row.get(0),
            application_name: row.get(1),
            state: row.get(2),
            backend_type: row.get(3),
            xact_age: row.get(4),
            state_age: row.get(5),
            query_start: row.get(6),
            keyword: row.get(7),
            wraparound: row.get(8),
            holds_migration_lock: row.get(9),
            locks: tables
                .into_iter()
                .zip(modes)
                .zip(granted)
                .map(|((t, m), g)| (t, m, g))
                .collect(),
        };
        if let Some(blocker) = judge(&session, scope, limits) {
            found.push(blocker);
        }
    }
    for row in client.rows(PREPARED_SQL, &[&scope.tables])? {
        let gid: String = row.get(0);
        let owner: String = row.get(1);
        let tables: Vec<String> = row.get(4);
        let modes: Vec<String> = row.get(5);
        let conflicting = scope.takes.conflicting_modes();
        let lock = tables
            .into_iter()
            .zip(modes)
            .find(|(_, m)| conflicting.contains(&m.as_str()));
        let mut reasons = vec![format!(
            "prepared transaction of role {owner}: it holds its locks until someone runs COMMIT PREPARED or ROLLBACK PREPARED '{gid}'"
        )];
        if let Some((table, _)) = &lock {
            reasons.insert(
                0,
                format!("holds a lock {} needs on {table}", scope.command),
            );
        }
        found.push(Blocker {
            pid: None,
            application_name: String::new(),
            state: "prepared".into(),
            age_s: round(row.get(2)),
            lock: lock.as_ref().map(|(_, m)| m.clone()),
            table: lock.map(|(t, _)| t),
            reasons,
            query_start: row.get(3),
            statement: None,
            gid: Some(gid),
        });
    }
    Ok(found)
}

/// Whether one session blocks, and why.
fn judge(session: &Session, scope: &Scope, limits: &Limits) -> Option<Blocker> {
    let moment = MOMENT.as_secs_f64();
    let xact_age = session.xact_age.unwrap_or(0.0);
    let state_age = session.state_age.unwrap_or(0.0);
    let conflicting = scope.takes.conflicting_modes();
    let is_autovacuum = session.backend_type == "autovacuum worker";
    // An ordinary autovacuum cancels itself when a lock request conflicts with it; only the
    // anti-wraparound one makes a command wait.
    if is_autovacuum && !session.wraparound {
        return None;
    }
    // Another ruleiq-db that holds the migration lock and nothing on our tables (a dry run, a
    // status, one waiting its turn) cannot make this one wait.
    if session.holds_migration_lock && session.locks.is_empty() {
        return None;
    }
    let mut reasons = Vec::new();
    let held = session
        .locks
        .iter()
        .find(|(_, mode, granted)| *granted && conflicting.contains(&mode.as_str()));
    let queued = session.locks.iter().find(|(_, _, granted)| !*granted);
    let mut lock = None;
    if is_autovacuum {
        if let Some((table, mode, _)) = session.locks.first() {
            reasons.push(format!(
                "anti-wraparound autovacuum of {table}: it does not give way to {}",
                scope.command
            ));
            lock = Some((table.clone(), mode.clone()));
        }
    } else if let Some((table, mode, _)) = held.filter(|_| xact_age >= moment) {
        reasons.push(format!("holds a lock {} needs on {table}", scope.command));
        lock = Some((table.clone(), mode.clone()));
    } else if let Some((table, mode, _)) = queued.filter(|_| state_age >= moment) {
        reasons.push(format!(
            "is queued for a lock on {table}; {} would queue behind it",
            scope.command
        ));
        lock = Some((table.clone(), format!("{mode} (waiting)")));
    }
    if !is_autovacuum {
        if session.state.starts_with("idle in transaction") && state_age >= moment {
            reasons.push(format!("idle in transaction for {}", seconds(state_age)));
        }
        if session.xact_age.is_some() && xact_age >= limits.blocker_age.as_secs_f64() {
            reasons.push(format!(
                "transaction open longer than --blocker-age {}",
                seconds(limits.blocker_age.as_secs_f64())
            ));
        }
    }
    if reasons.is_empty() {
        return None;
    }
    Some(Blocker {
        pid: Some(session.pid),
        application_name: session.application_name.clone(),
        state: if session.state.is_empty() {
            session.backend_type.clone()
        } else {
            session.state.clone()
        },
        age_s: round(xact_age),
        lock: lock.as_ref().map(|(_, m)| m.clone()),
        table: lock.map(|(t, _)| t),
        reasons,
        query_start: session.query_start.clone(),
        statement: session.keyword.clone(),
        gid: None,
    })
}

fn round(seconds: f64) -> f64 {
    (seconds * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::blockers::Takes;
    use std::time::Duration;

    fn session(
        state: &str,
        xact_age: f64,
        state_age: f64,
        locks: &[(&str, &str, bool)],
    ) -> Session {
        Session {
            pid: 42,
            application_name: "app".into(),
            state: state.into(),
            backend_type: "client backend".into(),
            xact_age: Some(xact_age),
            state_age: Some(state_age),
            query_start: None,
            keyword: Some("UPDATE".into()),
            wraparound: false,
            holds_migration_lock: false,
            locks: locks
                .iter()
                .map(|(t, m, g)| (t.to_string(), m.to_string(), *g))
                .collect(),
        }
    }

    fn limits() -> Limits {
        Limits {
            blocker_age: Duration::from_secs(60),
            wait: Duration::from_secs(2),
        }
    }

    fn ddl() -> Scope {
        Scope::new(
            "migrate",
            vec!["business_profiles".into()],
            Takes::AccessExclusive,
        )
    }

    #[test]
    fn a_short_transaction_of_the_application_is_not_a_blocker() {
        let s = session(
            "active",
            0.05,
            0.05,
            &[("business_profiles", "RowExclusiveLock", true)],
        );
        assert_eq!(judge(&s, &ddl(), &limits()), None);
    }

    #[test]
    fn a_lock_held_for_a_moment_blocks_ddl_but_not_row_writes() {
        let s = session(
            "idle in transaction",
            3.0,
            3.0,
            &[("business_profiles", "RowExclusiveLock", true)],
        );
        let b = judge(&s, &ddl(), &limits()).unwrap();
        assert_eq!(b.table.as_deref(), Some("business_profiles"));
        assert_eq!(b.lock.as_deref(), Some("RowExclusiveLock"));
        assert_eq!(b.reasons.len(), 2, "{:?}", b.reasons);
        let cleanup = Scope::new(
            "cleanup",
            vec!["business_profiles".into()],
            Takes::RowExclusive,
        );
        let b = judge(&s, &cleanup, &limits()).unwrap();
        assert_eq!(b.lock, None, "ROW EXCLUSIVE does not conflict with itself");
        assert!(b.reasons[0].starts_with("idle in transaction"));
    }

    #[test]
    fn an_old_transaction_counts_anywhere_and_an_ordinary_autovacuum_never() {
        let s = session("active", 120.0, 0.1, &[]);
        let b = judge(&s, &ddl(), &limits()).unwrap();
        assert!(b.reasons[0].contains("--blocker-age"), "{:?}", b.reasons);
        let mut vacuum = session(
            "active",
            500.0,
            500.0,
            &[("business_profiles", "ShareUpdateExclusiveLock", true)],
        );
        vacuum.backend_type = "autovacuum worker".into();
        assert_eq!(judge(&vacuum, &ddl(), &limits()), None);
        vacuum.wraparound = true;
        let b = judge(&vacuum, &ddl(), &limits()).unwrap();
        assert!(b.reasons[0].contains("anti-wraparound"), "{:?}", b.reasons);
    }

    #[test]
    fn another_ruleiq_db_holding_only_the_migration_lock_is_not_a_blocker() {
        let mut s = session("idle in transaction", 5.0, 5.0, &[]);
        s.holds_migration_lock = true;
        assert_eq!(judge(&s, &ddl(), &limits()), None);
    }
}
