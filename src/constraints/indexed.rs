//! Lets an index the database already has narrow a table's CHECK scan to the rows that can
//! violate, instead of reading the whole heap.
//!
//! A CHECK of the form `column IN (list)` can only be broken by a row whose column holds a
//! value outside the list, and `column <> value OR (…)` only by a row whose column equals the
//! value. When every CHECK of a table has such a "driving" column, the same one, and a plain
//! btree index leads with it, the check first lists the column's distinct values by walking
//! the index (one descent per value: a loose index scan, a handful of index pages however big
//! the table), keeps those that can break a constraint (decided by the catalog's own
//! condition), and then reads only rows holding them: `WHERE (conditions) AND column =
//! ANY(values)`, through the index (a bitmap heap scan, see [`NARROWED_SETTINGS`]) when that
//! reads less than the plain scan: the statistics put those rows at half the table or less,
//! and a sample of the table's pages finds them on few enough pages ([`Narrowing::pays`]).
//! Every violating row is still read and counted, so counts, samples and live counts are
//! exactly what the plain scan gives.

use super::sample::{self, Sample};
use super::spelling::DatabaseSpelling;
use crate::catalog::constraints::{ColumnSpelling, Constraint, Rule};
use crate::catalog::sql::{qualified, quote_ident, APP_SCHEMA};
use crate::db::Query;
use anyhow::Result;

/// More distinct values than this and the index stops being a shortcut: one descent per value.
const MAX_DISTINCT: i64 = 1000;

/// Which values of its driving column can break a constraint.
enum Candidates {
    /// Only this one (`RequiredWhen`'s `equals`).
    Fixed(&'static str),
    /// Whichever present values fail the catalog's condition (`OneOf`).
    Distinct,
}

/// The column a constraint's violating rows must hold a non-NULL value in, by current name.
fn driver(c: &Constraint) -> Option<(&'static str, Candidates)> {
    match c.rule {
        Rule::OneOf { column, .. } => Some((column, Candidates::Distinct)),
        Rule::RequiredWhen { column, equals, .. } => Some((column, Candidates::Fixed(equals))),
        Rule::Positive { .. } | Rule::ForeignKey { .. } => None,
    }
}

/// The rows a table's CHECK scan can be narrowed to: `column` (quoted, actual name) holding
/// one of `values`, cast to `type_name`.
#[derive(Debug, Clone, PartialEq)]
pub struct Narrowing {
    pub column: String,
    pub type_name: String,
    pub values: Vec<String>,
    /// The share of the table's pages that hold such rows (0–1), counted on a sample of its
    /// pages: what the narrowed scan reads, against the plain scan's whole table.
    pub share: f64,
}

/// Above this share of the rows, reading them through the index is no shortcut.
const MAX_ROW_SHARE: f64 = 0.5;

/// Planner settings while a narrowed scan runs, and after it. The planner costs the bitmap
/// heap scan's page reads as random I/O and, at 2M rows, chose a parallel sequential scan for
/// 11 % of the rows (980 ms) over the parallel bitmap heap scan (460 ms, measured on the
/// generated data at scale 1): the rows were asked for because they are few
/// ([`MAX_ROW_SHARE`]), so the index is taken.
pub const NARROWED_SETTINGS: &str = "SET LOCAL enable_seqscan = off";
pub const UNNARROWED_SETTINGS: &str =
    "SET LOCAL enable_seqscan TO DEFAULT; SET LOCAL work_mem TO DEFAULT";

/// Raises `work_mem`, for the narrowed scan's transaction only, to what keeps its bitmap exact
/// (`$1`, in kB), never lowering it. Past `work_mem` a bitmap heap scan's bitmap turns lossy:
/// it keeps whole pages instead of rows, and every row of such a page is evaluated again. At
/// 10M evidence rows the candidates lie on about 240,000 pages, which PostgreSQL's default
/// 4 MB cannot hold exactly; on the default data at scale 1, with `work_mem` cut to a fifth to
/// match, the narrowed scan went from 409 to 524 ms (39,144 pages lossy; docs/performance.md).
pub const EXACT_BITMAP_SETTING: &str = "SELECT set_config('work_mem',
        greatest($1::int8, pg_size_bytes(current_setting('work_mem')) / 1024)::text || 'kB', true)";

/// What an exact bitmap needs per page it holds, with room to spare: a page's entry (its
/// number and one bit per possible row) and the hash table around it.
const BITMAP_BYTES_PER_PAGE: f64 = 96.0;

/// The most the narrowed scan raises `work_mem` to, in kB: one bitmap, on one process (the
/// leader builds it for any workers). 64 MB holds about 700,000 pages, 5.5 GB of candidate
/// pages.
const MAX_BITMAP_KB: i64 = 64 * 1024;

/// Above this share of the table's pages holding a candidate row, the plain scan reads less.
///
/// The narrowed scan reads the index and then, page by page, only the candidate rows; the plain
/// scan reads every page in order, with read-ahead, and evaluates every row. Half the pages is a
/// chosen bound, not a tuned one: the benchmark's two data sets fall far on either side of it
/// (evidence_items' candidates on 23 % of the pages in `default`, where the narrowed scan is
/// what keeps the check near the hand-written SQL, and on 97 % in `mature`, where it read
/// nearly every page one by one; docs/performance.md, issue 30).
pub const MAX_PAGE_SHARE: f64 = 0.5;

impl Narrowing {
    /// The `work_mem`, in kB, that keeps the bitmap exact over the candidate pages of a table
    /// of `pages` pages (see [`EXACT_BITMAP_SETTING`]).
    pub fn exact_bitmap_kb(&self, pages: i64) -> i64 {
        let bytes = pages.max(0) as f64 * self.share * BITMAP_BYTES_PER_PAGE;
        ((bytes / 1024.0).ceil() as i64).clamp(64, MAX_BITMAP_KB)
    }

    /// Whether the narrowed scan reads less than the plain one (see [`MAX_PAGE_SHARE`]).
    pub fn pays(&self) -> bool {
        self.share <= MAX_PAGE_SHARE
    }

    /// The condition to AND to the scan's own, reading text-array parameter `$param`.
    pub fn condition(&self, alias: &str, param: usize) -> String {
        format!(
            "{alias}.{} = ANY(${param}::text[]::{}[])",
            self.column, self.type_name
        )
    }
}

/// Spells one column as an expression (a candidate value), the rest as the database does.
struct ValueSpelling<'a> {
    inner: &'a DatabaseSpelling,
    table: &'a str,
    column: &'a str,
    value: &'a str,
}

impl ColumnSpelling for ValueSpelling<'_> {
    fn column(&self, table: &str, current_name: &str) -> String {
        if table == self.table && current_name == self.column {
            self.value.to_string()
        } else {
            self.inner.column(table, current_name)
        }
    }
}

/// How `checks` (the CHECK constraints of `table`, scanned together) can be narrowed through
/// an index, or None when they cannot: a constraint without a driving column, different
/// driving columns, no usable index, or too many distinct values.
pub fn narrowing(
    client: &mut (impl Query + ?Sized),
    table: &'static str,
    checks: &[&'static Constraint],
    spelling: &DatabaseSpelling,
) -> Result<Option<Narrowing>> {
    let mut column = None;
    let mut fixed = Vec::new();
    let mut distinct = Vec::new();
    for c in checks {
        let Some((driving, candidates)) = driver(c) else {
            return Ok(None);
        };
        if column.is_some_and(|col| col != driving) {
            return Ok(None);
        }
        column = Some(driving);
        match candidates {
            Candidates::Fixed(value) => fixed.push(value.to_string()),
            Candidates::Distinct => distinct.push(*c),
        }
    }
    let Some(current) = column else {
        return Ok(None);
    };
    let Some(actual) = spelling.actual_name(table, current) else {
        return Ok(None);
    };
    let Some(type_name) = leading_btree_type(client, table, &actual)? else {
        return Ok(None);
    };
    let mut values = fixed;
    if !distinct.is_empty() {
        let Some(found) = failing_values(client, table, current, &actual, &distinct, spelling)?
        else {
            return Ok(None);
        };
        values.extend(found);
    }
    values.sort();
    values.dedup();
    if estimated_row_share(client, table, &actual, &values)? > MAX_ROW_SHARE {
        return Ok(None);
    }
    let mut narrowing = Narrowing {
        column: quote_ident(&actual),
        type_name,
        values,
        share: 1.0,
    };
    narrowing.share = sampled_page_share(client, table, &narrowing)?;
    Ok(Some(narrowing))
}

/// The column's type when a valid, complete btree index leads with it and orders it the way
/// the column compares (its collation, the type's default operator class): the index that
/// `ORDER BY column` and `column = ANY(…)` can use.
fn leading_btree_type(
    client: &mut (impl Query + ?Sized),
    table: &str,
    column: &str,
) -> Result<Option<String>> {
    let row = client.row_opt(
        "SELECT format_type(a.atttypid, a.atttypmod)
           FROM pg_index i
           JOIN pg_class ic ON ic.oid = i.indexrelid
           JOIN pg_am am ON am.oid = ic.relam
           JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
           JOIN pg_opclass oc ON oc.oid = i.indclass[0]
          WHERE i.indrelid = to_regclass($1) AND a.attname = $2::text::name
            AND am.amname = 'btree' AND i.indisvalid AND i.indisready AND i.indislive
            AND i.indpred IS NULL AND oc.opcdefault AND i.indcollation[0] = a.attcollation
          LIMIT 1",
        &[&qualified(table), &column],
    )?;
    Ok(row.map(|r| r.get(0)))
}

/// The column's present values that break one of `checks`, walking the index one distinct
/// value at a time; None when there are more than [`MAX_DISTINCT`].
fn failing_values(
    client: &mut (impl Query + ?Sized),
    table: &'static str,
    current: &str,
    actual: &str,
    checks: &[&'static Constraint],
    spelling: &DatabaseSpelling,
) -> Result<Option<Vec<String>>> {
    let as_value = ValueSpelling {
        inner: spelling,
        table,
        column: current,
        value: "d.v",
    };
    let fails: Vec<String> = checks
        .iter()
        .map(|c| format!("({})", c.violation_condition(&as_value, "t")))
        .collect();
    let col = format!("t.{}", quote_ident(actual));
    let tbl = qualified(table);
    let rows = client.rows(
        &format!(
            "WITH RECURSIVE d(v) AS (
                 (SELECT {col} FROM {tbl} AS t WHERE {col} IS NOT NULL ORDER BY {col} LIMIT 1)
               UNION ALL
                 SELECT (SELECT {col} FROM {tbl} AS t WHERE {col} > d.v ORDER BY {col} LIMIT 1)
                   FROM d WHERE d.v IS NOT NULL)
             SELECT d.v::text, coalesce({}, false) FROM d WHERE d.v IS NOT NULL LIMIT $1",
            fails.join(" OR ")
        ),
        &[&(MAX_DISTINCT + 1)],
    )?;
    if rows.len() as i64 > MAX_DISTINCT {
        return Ok(None);
    }
    Ok(Some(
        rows.iter()
            .filter(|r| r.get::<_, bool>(1))
            .map(|r| r.get(0))
            .collect(),
    ))
}

/// The share of rows holding one of `values`, from the planner's statistics (a guess of 1 % per
/// value they do not list).
fn estimated_row_share(
    client: &mut (impl Query + ?Sized),
    table: &str,
    column: &str,
    values: &[String],
) -> Result<f64> {
    let row = client.row(
        "SELECT coalesce(sum(m.f) FILTER (WHERE m.v = ANY($3)), 0)::float8,
                count(*) FILTER (WHERE m.v = ANY($3))
           FROM pg_stats s, unnest(s.most_common_vals::text::text[], s.most_common_freqs) AS m(v, f)
          WHERE s.schemaname = $4::text::name AND s.tablename = $1::text::name
            AND s.attname = $2::text::name",
        &[&table, &column, &values, &APP_SCHEMA],
    )?;
    let listed: f64 = row.get(0);
    let found = row.get::<_, i64>(1).max(0) as usize;
    let unlisted = values.len().saturating_sub(found) as f64;
    Ok((listed + 0.01 * unlisted).min(1.0))
}

/// The share of the table's pages (among those holding rows) with a row the narrowing keeps,
/// counted on a sample of the pages ([`sample`]): the statistics tell how many such rows there
/// are, not whether they lie together (a young table's approved rows, in runs) or on nearly
/// every page (a mature table's).
fn sampled_page_share(
    client: &mut (impl Query + ?Sized),
    table: &str,
    narrowing: &Narrowing,
) -> Result<f64> {
    let sample = Sample::of(client, table)?;
    let row = client.row(
        &format!(
            "SELECT count(*)::float8, count(*) FILTER (WHERE p.hit)::float8
               FROM (SELECT bool_or({}) AS hit
                       FROM {} AS t {}
                      GROUP BY {}) AS p",
            narrowing.condition("t", 1),
            qualified(table),
            sample::clause(2),
            super::scan_progress::block_column("t"),
        ),
        &[&narrowing.values, &sample.percent],
    )?;
    let (pages, hits): (f64, f64) = (row.get(0), row.get(1));
    Ok(if pages > 0.0 { hits / pages } else { 0.0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn narrowing(share: f64) -> Narrowing {
        Narrowing {
            column: "\"status\"".into(),
            type_name: "character varying".into(),
            values: vec!["approved".into()],
            share,
        }
    }

    #[test]
    fn the_bitmap_gets_room_for_its_pages_within_a_bound() {
        // 10M evidence rows: about 1M pages, candidates on a fifth of them.
        let ten_million = narrowing(0.23).exact_bitmap_kb(1_000_000);
        assert!((20_000..=24_000).contains(&ten_million), "{ten_million} kB");
        // More than PostgreSQL's default 4 MB, which turned 39,144 of 47,377 pages lossy at a
        // fifth of it.
        assert!(ten_million > 4 * 1024);
        assert_eq!(narrowing(1.0).exact_bitmap_kb(100_000_000), MAX_BITMAP_KB);
        assert_eq!(narrowing(0.5).exact_bitmap_kb(0), 64);
    }
}
