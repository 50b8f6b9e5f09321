//! `status --health`: the picture a DBA wants before touching production — connections against
//! `max_connections`, the size of each ruleIQ table and its indexes, indexes nothing has
//! scanned, the slowest statements (`pg_stat_statements`) and tables that look bloated.
//! Read-only: plain catalog and statistics queries.
//!
//! `collect.rs` asks the server, `render.rs` draws the tables.

mod collect;
mod render;

pub use collect::collect;
pub use render::human_bytes;

use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Health {
    pub connections: Connections,
    /// When this database's statistics were last reset (null: never since the cluster began).
    pub stats_reset: Option<String>,
    pub tables: Vec<TableSize>,
    /// Indexes with no scan since the statistics were reset.
    pub unused_indexes: Vec<UnusedIndex>,
    pub slow_queries: SlowQueries,
    /// Tables whose dead rows or autovacuum history suggest bloat.
    pub bloat: Vec<Bloat>,
}

#[derive(Debug, Serialize)]
pub struct Connections {
    pub max_connections: i32,
    pub superuser_reserved: i32,
    /// Client sessions on the whole server.
    pub total: i64,
    /// Client sessions on this database.
    pub this_database: i64,
    pub by_state: Vec<StateCount>,
}

#[derive(Debug, Serialize)]
pub struct StateCount {
    pub state: String,
    pub count: i64,
}

#[derive(Debug, Serialize)]
pub struct TableSize {
    pub table: String,
    /// The planner's row estimate (`reltuples`; -1 before the first ANALYZE).
    pub rows_estimate: i64,
    /// Heap, TOAST and maps (`pg_table_size`).
    pub table_bytes: i64,
    pub indexes_bytes: i64,
    pub total_bytes: i64,
    pub live_rows: i64,
    pub dead_rows: i64,
    pub last_autovacuum: Option<String>,
    pub indexes: Vec<IndexSize>,
}

#[derive(Debug, Serialize)]
pub struct IndexSize {
    pub index: String,
    pub bytes: i64,
    pub scans: i64,
    /// Primary key or unique: it enforces a rule, so it is needed even when never scanned.
    pub unique: bool,
}

#[derive(Debug, Serialize)]
pub struct UnusedIndex {
    pub table: String,
    pub index: String,
    pub bytes: i64,
    pub unique: bool,
}

#[derive(Debug, Serialize)]
pub struct SlowQueries {
    /// Whether `pg_stat_statements` could be read in this database.
    pub available: bool,
    /// Why not, and how to enable it; or a remark about what is shown.
    pub note: String,
    pub statements: Vec<SlowStatement>,
}

#[derive(Debug, Serialize)]
pub struct SlowStatement {
    /// The normalised text (`$1` for constants), on one line, cut at 200 characters.
    pub query: String,
    pub calls: i64,
    pub mean_ms: f64,
    pub total_ms: f64,
    pub rows: i64,
}

#[derive(Debug, Serialize)]
pub struct Bloat {
    pub table: String,
    pub live_rows: i64,
    pub dead_rows: i64,
    /// Dead rows as a share of all rows (0..1).
    pub dead_ratio: f64,
    pub last_autovacuum: Option<String>,
    pub reason: String,
}
