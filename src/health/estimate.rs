//! How long `migrate`'s scans should take: the preflight and each VALIDATE read whole tables, so
//! their duration is roughly the bytes they read over the rate this server reads at. The rate
//! is measured, not assumed: one timed sequential read of a sample of the largest table.

use crate::catalog::constraints::{Constraint, Rule};
use crate::db::Query;
use anyhow::Result;
use postgres::Client;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How much of the largest table the measurement reads.
const SAMPLE_BYTES: i64 = 16 * 1024 * 1024;

const PAGE_BYTES: i64 = 8192;

#[derive(Debug, Serialize)]
pub struct Estimate {
    /// Preflight plus every VALIDATE, in milliseconds.
    pub total_ms: u64,
    /// What the numbers rest on, in words.
    pub basis: String,
    /// The measured sequential read rate (MB/s); null when there was nothing to read.
    pub scan_rate_mb_s: Option<f64>,
    /// Null when the preflight does not run (008 not pending).
    pub preflight_ms: Option<u64>,
    pub validate: Vec<StepEstimate>,
}

#[derive(Debug, Serialize)]
pub struct StepEstimate {
    pub constraint: &'static str,
    /// Bytes the VALIDATE reads (the table, and for a foreign key its parent too).
    pub bytes: i64,
    pub ms: u64,
}

/// Estimates the preflight (when `preflight`) and the VALIDATE of each of `validate`.
pub fn estimate(
    client: &mut Client,
    preflight: bool,
    validate: &[&'static Constraint],
) -> Result<Estimate> {
    if validate.is_empty() && !preflight {
        return Ok(Estimate {
            total_ms: 0,
            basis:
                "nothing to scan: no preflight, and every catalog constraint is valid or not due"
                    .into(),
            scan_rate_mb_s: None,
            preflight_ms: None,
            validate: Vec::new(),
        });
    }
    let mut names: Vec<&str> = validate.iter().flat_map(|c| c.tables_read()).collect();
    names.sort_unstable();
    names.dedup();
    let sizes: BTreeMap<String, (i64, f64)> = client
        .rows(
            "SELECT t.name, pg_relation_size(c.oid), c.reltuples::float8
               FROM unnest($1::text[]) AS t(name)
               JOIN pg_class c ON c.oid = to_regclass(format('%I.%I', 'public', t.name))",
            &[&names],
        )?
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();
    let bytes_of = |table: &str| sizes.get(table).map_or(0, |s| s.0);
    let round_trip = round_trip(client)?;
    let largest = sizes
        .iter()
        .max_by_key(|(_, (bytes, _))| *bytes)
        .map(|(name, (bytes, tuples))| (name.clone(), *bytes, *tuples));
    let (rate, sample_text) = match largest {
        Some((table, bytes, tuples)) if bytes > 0 => {
            let (read, took) = measure(client, &table, bytes, tuples)?;
            let seconds = took.saturating_sub(round_trip).as_secs_f64().max(1e-5);
            let rate = read as f64 / seconds;
            (
                Some(rate),
                format!(
                    "one timed sequential read of {} of {table} ({:.1} ms)",
                    super::picture::human_bytes(read),
                    took.as_secs_f64() * 1000.0
                ),
            )
        }
        _ => (None, String::new()),
    };
    let cost = |bytes: i64| -> f64 {
        let scan = rate.map_or(0.0, |r| bytes as f64 / r);
        (round_trip.as_secs_f64() + scan) * 1000.0
    };
    let steps: Vec<StepEstimate> = validate
        .iter()
        .map(|c| {
            let bytes: i64 = c.tables_read().map(bytes_of).sum();
            StepEstimate {
                constraint: c.name,
                bytes,
                ms: cost(bytes).ceil() as u64,
            }
        })
        .collect();
    // The checker reads each table once for all its CHECKs, and each foreign key by an
    // anti-join that reads child and parent.
    let preflight_ms = preflight.then(|| {
        let mut check_tables: Vec<&str> = validate
            .iter()
            .filter(|c| !matches!(c.rule, Rule::ForeignKey { .. }))
            .map(|c| c.table)
            .collect();
        check_tables.sort_unstable();
        check_tables.dedup();
        let checks: f64 = check_tables.iter().map(|t| cost(bytes_of(t))).sum();
        let keys: f64 = validate
            .iter()
            .filter(|c| matches!(c.rule, Rule::ForeignKey { .. }))
            .map(|c| cost(c.tables_read().map(bytes_of).sum()))
            .sum();
        (checks + keys).ceil() as u64
    });
    let total_ms = preflight_ms.unwrap_or(0) + steps.iter().map(|s| s.ms).sum::<u64>();
    Ok(Estimate {
        total_ms,
        basis: if rate.is_some() {
            format!(
                "table sizes (pg_relation_size) over the read rate of {sample_text}, plus one round trip ({:.1} ms) per scan. \
                 Each scan is counted one after another (the preflight's two connections may overlap); \
                 a table that is not in memory, or a busy server, reads slower",
                round_trip.as_secs_f64() * 1000.0
            )
        } else {
            format!(
                "table sizes (pg_relation_size): the tables are empty, so each scan costs one round trip ({:.1} ms)",
                round_trip.as_secs_f64() * 1000.0
            )
        },
        scan_rate_mb_s: rate.map(|r| (r / 1_000_000.0 * 10.0).round() / 10.0),
        preflight_ms,
        validate: steps,
    })
}

/// The fastest of three `SELECT 1`: what any statement costs before it reads a page.
fn round_trip(client: &mut Client) -> Result<Duration> {
    let mut best = Duration::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        client.row("SELECT 1", &[])?;
        best = best.min(started.elapsed());
    }
    Ok(best)
}

/// Reads up to [`SAMPLE_BYTES`] of `table` from its start, the way a sequential scan does, and
/// returns the bytes read and the time it took.
fn measure(client: &mut Client, table: &str, bytes: i64, tuples: f64) -> Result<(i64, Duration)> {
    let quoted = crate::catalog::sql::qualified(table);
    let sample = bytes.min(SAMPLE_BYTES);
    let version: i32 = client
        .row("SELECT current_setting('server_version_num')::int4", &[])?
        .get(0);
    let sql = if version >= 140_000 {
        // A TID range scan reads exactly the first pages (PostgreSQL 14 and later).
        let pages = (sample / PAGE_BYTES).max(1);
        format!("SELECT count(*) FROM {quoted} WHERE ctid < '({pages},0)'::tid")
    } else if tuples > 0.0 {
        let rows = ((tuples * sample as f64 / bytes as f64).ceil() as i64).max(1);
        format!("SELECT count(*) FROM (SELECT 1 FROM {quoted} LIMIT {rows}) AS sample")
    } else {
        format!("SELECT count(*) FROM {quoted}")
    };
    let read = if version >= 140_000 || tuples > 0.0 {
        sample
    } else {
        bytes
    };
    let started = Instant::now();
    client.row(&sql, &[])?;
    Ok((read, started.elapsed()))
}
