//! The statistics and catalog queries behind the health picture.

use super::{
    Bloat, Connections, Health, IndexSize, SlowQueries, SlowStatement, StateCount, TableSize,
    UnusedIndex,
};
use crate::catalog::TABLES;
use crate::db::Query;
use anyhow::Result;
use postgres::Client;

/// How many statements the slow list shows.
const SLOW_LIMIT: i64 = 10;

/// Autovacuum, untuned, should have run before dead rows pass this many days without one.
const STALE_AUTOVACUUM_DAYS: f64 = 7.0;

pub fn collect(client: &mut Client) -> Result<Health> {
    let tables = table_sizes(client)?;
    let unused_indexes = tables
        .iter()
        .flat_map(|t| {
            t.indexes
                .iter()
                .filter(|i| i.scans == 0)
                .map(|i| UnusedIndex {
                    table: t.table.clone(),
                    index: i.index.clone(),
                    bytes: i.bytes,
                    unique: i.unique,
                })
        })
        .collect();
    Ok(Health {
        connections: connections(client)?,
        stats_reset: client
            .row(
                "SELECT to_char(stats_reset AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS UTC')
                   FROM pg_stat_database WHERE datname = current_database()",
                &[],
            )?
            .get(0),
        bloat: bloat(client)?,
        tables,
        unused_indexes,
        slow_queries: slow_queries(client)?,
    })
}

fn connections(client: &mut Client) -> Result<Connections> {
    let settings = client.row(
        "SELECT current_setting('max_connections')::int4,
                current_setting('superuser_reserved_connections')::int4,
                count(*),
                count(*) FILTER (WHERE datname = current_database())
           FROM pg_stat_activity WHERE backend_type = 'client backend'",
        &[],
    )?;
    // A role without pg_read_all_stats sees no state for other roles' sessions.
    let by_state = client
        .rows(
            "SELECT coalesce(state, 'not visible to this role'), count(*)
               FROM pg_stat_activity WHERE backend_type = 'client backend'
              GROUP BY 1 ORDER BY 2 DESC, 1",
            &[],
        )?
        .iter()
        .map(|r| StateCount {
            state: r.get(0),
            count: r.get(1),
        })
        .collect();
    Ok(Connections {
        max_connections: settings.get(0),
        superuser_reserved: settings.get(1),
        total: settings.get(2),
        this_database: settings.get(3),
        by_state,
    })
}

const TABLES_SQL: &str = r"
SELECT t.name,
       c.reltuples::int8,
       pg_table_size(c.oid),
       pg_indexes_size(c.oid),
       pg_total_relation_size(c.oid),
       coalesce(s.n_live_tup, 0),
       coalesce(s.n_dead_tup, 0),
       to_char(s.last_autovacuum AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS UTC')
  FROM unnest($1::text[]) WITH ORDINALITY AS t(name, position)
  JOIN pg_class c ON c.oid = to_regclass(format('%I.%I', 'public', t.name))
  LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
 ORDER BY t.position";

const INDEXES_SQL: &str = r"
SELECT t.name,
       ic.relname::text,
       pg_relation_size(i.indexrelid),
       coalesce(s.idx_scan, 0),
       i.indisunique
  FROM unnest($1::text[]) AS t(name)
  JOIN pg_index i ON i.indrelid = to_regclass(format('%I.%I', 'public', t.name))
  JOIN pg_class ic ON ic.oid = i.indexrelid
  LEFT JOIN pg_stat_user_indexes s ON s.indexrelid = i.indexrelid
 ORDER BY t.name, ic.relname";

/// ruleIQ's tables that exist here, in the catalog's order, with their indexes.
fn table_sizes(client: &mut Client) -> Result<Vec<TableSize>> {
    let names: Vec<&str> = TABLES.to_vec();
    let mut tables: Vec<TableSize> = client
        .rows(TABLES_SQL, &[&names])?
        .iter()
        .map(|r| TableSize {
            table: r.get(0),
            rows_estimate: r.get(1),
            table_bytes: r.get(2),
            indexes_bytes: r.get(3),
            total_bytes: r.get(4),
            live_rows: r.get(5),
            dead_rows: r.get(6),
            last_autovacuum: r.get(7),
            indexes: Vec::new(),
        })
        .collect();
    for r in client.rows(INDEXES_SQL, &[&names])? {
        let table: String = r.get(0);
        if let Some(t) = tables.iter_mut().find(|t| t.table == table) {
            t.indexes.push(IndexSize {
                index: r.get(1),
                bytes: r.get(2),
                scans: r.get(3),
                unique: r.get(4),
            });
        }
    }
    Ok(tables)
}

/// Flags a table when its dead rows passed the point where autovacuum (with the server's
/// settings) should already have vacuumed it, when autovacuum is off for it, or when it has
/// dead rows and no autovacuum for a week.
const BLOAT_SQL: &str = r"
SELECT t.name,
       s.n_live_tup,
       s.n_dead_tup,
       to_char(s.last_autovacuum AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS UTC'),
       extract(epoch FROM now() - greatest(s.last_autovacuum, s.last_vacuum))::float8 / 86400,
       current_setting('autovacuum_vacuum_threshold')::float8
         + current_setting('autovacuum_vacuum_scale_factor')::float8 * s.n_live_tup,
       coalesce(c.reloptions::text[] @> ARRAY['autovacuum_enabled=false'], false)
         OR NOT current_setting('autovacuum')::bool
  FROM unnest($1::text[]) WITH ORDINALITY AS t(name, position)
  JOIN pg_class c ON c.oid = to_regclass(format('%I.%I', 'public', t.name))
  JOIN pg_stat_user_tables s ON s.relid = c.oid
 WHERE s.n_dead_tup > 0
 ORDER BY t.position";

fn bloat(client: &mut Client) -> Result<Vec<Bloat>> {
    let names: Vec<&str> = TABLES.to_vec();
    let mut flagged = Vec::new();
    for r in client.rows(BLOAT_SQL, &[&names])? {
        let live: i64 = r.get(1);
        let dead: i64 = r.get(2);
        let last_autovacuum: Option<String> = r.get(3);
        let days_since_vacuum: Option<f64> = r.get(4);
        let trigger: f64 = r.get(5);
        let autovacuum_off: bool = r.get(6);
        let ratio = dead as f64 / (live + dead).max(1) as f64;
        let mut reasons = Vec::new();
        if autovacuum_off {
            reasons.push("autovacuum is disabled for it".to_string());
        }
        if dead as f64 > trigger {
            reasons.push(format!(
                "{dead} dead rows ({:.0} %), past the {trigger:.0} at which autovacuum should have vacuumed it",
                ratio * 100.0
            ));
        }
        match days_since_vacuum {
            None => reasons.push("never vacuumed".to_string()),
            Some(days) if days > STALE_AUTOVACUUM_DAYS => {
                reasons.push(format!("not vacuumed for {days:.0} days"))
            }
            Some(_) => {}
        }
        // Dead rows alone, below autovacuum's trigger, are ordinary churn.
        let worth_saying = autovacuum_off || dead as f64 > trigger;
        if worth_saying {
            flagged.push(Bloat {
                table: r.get(0),
                live_rows: live,
                dead_rows: dead,
                dead_ratio: (ratio * 1000.0).round() / 1000.0,
                last_autovacuum,
                reason: reasons.join("; "),
            });
        }
    }
    Ok(flagged)
}

const ENABLE_HINT: &str = "add pg_stat_statements to shared_preload_libraries in postgresql.conf (a restart is needed), then run CREATE EXTENSION pg_stat_statements; in this database";

fn slow_queries(client: &mut Client) -> Result<SlowQueries> {
    let schema = crate::db::introspect::extension_schema(client, "pg_stat_statements")?;
    let preloaded: bool = client
        .row(
            "SELECT 'pg_stat_statements' = ANY(string_to_array(replace(current_setting('shared_preload_libraries'), ' ', ''), ','))",
            &[],
        )?
        .get(0);
    let Some(schema) = schema else {
        let note = if preloaded {
            "pg_stat_statements is loaded but not installed in this database: run CREATE EXTENSION pg_stat_statements;".to_string()
        } else {
            format!("pg_stat_statements is not installed: {ENABLE_HINT}")
        };
        return Ok(SlowQueries {
            available: false,
            note,
            statements: Vec::new(),
        });
    };
    let sql = format!(
        "SELECT query, calls, mean_exec_time, total_exec_time, rows
           FROM {}.pg_stat_statements
          WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
          ORDER BY mean_exec_time DESC
          LIMIT $1",
        crate::catalog::sql::quote_ident(&schema)
    );
    // Installed but not preloaded, the view raises an error; that is a state to report.
    let rows = match client.rows(&sql, &[&SLOW_LIMIT]) {
        Ok(rows) => rows,
        Err(error) => {
            return Ok(SlowQueries {
                available: false,
                note: format!(
                    "pg_stat_statements cannot be read ({}): {ENABLE_HINT}",
                    error
                        .as_db_error()
                        .map_or_else(|| error.to_string(), |e| e.message().to_string())
                ),
                statements: Vec::new(),
            })
        }
    };
    let statements = rows
        .iter()
        .map(|r| SlowStatement {
            query: shown_text(r.get::<_, Option<String>>(0).as_deref().unwrap_or("")),
            calls: r.get(1),
            mean_ms: (r.get::<_, f64>(2) * 100.0).round() / 100.0,
            total_ms: (r.get::<_, f64>(3) * 100.0).round() / 100.0,
            rows: r.get(4),
        })
        .collect();
    Ok(SlowQueries {
        available: true,
        note: "statements of this database by mean execution time since pg_stat_statements was last reset; constants appear as $1, $2, …".into(),
        statements,
    })
}

/// A statement as the report shows it: one line, cut short, and withheld entirely when it
/// mentions a password (utility statements such as ALTER ROLE are kept with their literals).
fn shown_text(query: &str) -> String {
    if query.to_ascii_lowercase().contains("password") {
        return "(text withheld: the statement mentions a password)".into();
    }
    let one_line = query.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &one_line[..cut]),
        None => one_line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_text_is_one_line_cut_short_and_never_shows_a_password() {
        assert_eq!(
            shown_text("SELECT *\n  FROM users\tWHERE id = $1"),
            "SELECT * FROM users WHERE id = $1"
        );
        assert!(shown_text("ALTER ROLE app PASSWORD 'hunter2'").contains("withheld"));
        assert!(!shown_text("ALTER ROLE app PASSWORD 'hunter2'").contains("hunter2"));
        let long = "x".repeat(500);
        assert_eq!(shown_text(&long).chars().count(), 201);
    }
}
