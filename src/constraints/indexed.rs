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
    /// The table's pages when the share was counted: with the share, what the scan's bitmap
    /// holds (see [`Narrowing::exact_bitmap_kb`]).
    pub table_pages: i64,
}

/// Above this share of the rows, reading them through the index is no shortcut.
const MAX_ROW_SHARE: f64 = 0.5;

/// Planner settings while a narrowed scan runs, and after it. The planner costs the bitmap
/// heap scan's page reads as random I/O and, at 2M rows, chose a parallel sequential scan for
/// 11 % of the rows (980 ms) over the parallel bitmap heap scan (460 ms, measured on the
/// generated data at scale 1): the rows were asked for because they are few
/// ([`MAX_ROW_SHARE`]), so the index is taken.
const NARROWED_SETTINGS: &str = "SET LOCAL enable_seqscan = off";
pub const UNNARROWED_SETTINGS: &str =
    "SET LOCAL enable_seqscan TO DEFAULT; SET LOCAL work_mem TO DEFAULT";

/// Raises `work_mem`, for the narrowed scan's transaction only, to what keeps its bitmap exact
/// (`$1`, in kB), never lowering it. Past `work_mem` a bitmap heap scan's bitmap turns lossy:
/// it keeps whole pages instead of rows, and every row of such a page is evaluated again. At
/// 10M evidence rows the candidates lie on about 240,000 pages, which PostgreSQL's default
/// 4 MB cannot hold exactly; on the default data at scale 1, with `work_mem` cut to a fifth to
/// match, the narrowed scan went from 409 to 524 ms (39,144 pages lossy; docs/performance.md).
const EXACT_BITMAP_SETTING: &str = "SELECT set_config('work_mem',
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
    /// Sets up the transaction for the narrowed scan, every caller alike: the index taken
    /// ([`NARROWED_SETTINGS`]) and a bitmap that stays exact ([`EXACT_BITMAP_SETTING`]).
    /// [`UNNARROWED_SETTINGS`] undoes both after the scan.
    pub fn enter(&self, client: &mut (impl Query + ?Sized)) -> Result<()> {
        client.batch(NARROWED_SETTINGS)?;
        client.row(EXACT_BITMAP_SETTING, &[&self.exact_bitmap_kb()])?;
        Ok(())
    }

    /// The `work_mem`, in kB, that keeps the bitmap exact over the candidate pages (see
    /// [`EXACT_BITMAP_SETTING`]).
    pub fn exact_bitmap_kb(&self) -> i64 {
        let bytes = self.table_pages.max(0) as f64 * self.share * BITMAP_BYTES_PER_PAGE;
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
/// driving columns, no usable index, or too many distinct values. Only the narrowing of all of
/// them is judged and sampled (cleanup's preview reads them together or not at all).
pub fn narrowing(
    client: &mut (impl Query + ?Sized),
    table: &'static str,
    checks: &[&'static Constraint],
    spelling: &DatabaseSpelling,
) -> Result<Option<Narrowing>> {
    let mut together = together_of(&candidates(client, table, checks, spelling)?);
    settle(client, table, std::iter::once(&mut together))?;
    Ok(together.map(|(n, _)| n))
}

/// How a table's CHECKs can be narrowed through an index: all of them together, and each by
/// itself.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Narrowings {
    /// All of them at once (the union of their values), when they share a driving column.
    pub together: Option<Narrowing>,
    /// Each by itself, in the order the checks were given.
    pub each: Vec<Option<Narrowing>>,
}

/// How a table's CHECKs are read, from [`Narrowings::reading`].
#[derive(Debug, Clone, PartialEq)]
pub enum Reading {
    /// All of them in one scan through the index.
    Together(Narrowing),
    /// Each of these (by position among the checks) in a scan of its own through the index;
    /// the others, if any, in one sequential pass.
    Apart(Vec<(usize, Narrowing)>),
    /// All of them in one sequential pass.
    Pass,
}

/// Above this share of the table's pages, a CHECK that an index narrows by itself stays in the
/// sequential pass its table needs anyway rather than being read apart.
///
/// Read apart, its rows cost a page fetched by the bitmap heap scan each (about 9 µs from the
/// OS page cache on the benchmark's machine, against about 3 µs a page in the pass); left in
/// the pass, its condition is evaluated on every row. On copies of the mature data (the
/// approval rule's candidates on nearly every page), `check-constraints --dry-run` with the
/// status rule read apart, medians of eight alternated runs: no status outside the list,
/// 1,042 → 915 ms; 8,000 on 4.4 % of the pages, 951 → 915 ms; the benchmark's 20,250 on 12.5 %,
/// 940 → 960 ms, no gain (docs/performance.md).
pub const MAX_APART_PAGE_SHARE: f64 = 0.05;

impl Narrowings {
    /// What reads least: all the CHECKs through the index, when that pays; else those an index
    /// narrows to few pages by themselves apart, the rest in one pass; else one pass.
    pub fn reading(&self) -> Reading {
        if let Some(together) = self.together.as_ref().filter(|n| n.pays()) {
            return Reading::Together(together.clone());
        }
        let apart: Vec<(usize, Narrowing)> = self
            .each
            .iter()
            .enumerate()
            .filter_map(|(i, n)| {
                n.as_ref()
                    .filter(|n| n.share <= MAX_APART_PAGE_SHARE)
                    .map(|n| (i, n.clone()))
            })
            .collect();
        let pass_remains = apart.len() < self.each.len();
        let apart_share: f64 = apart.iter().map(|(_, n)| n.share).sum();
        if apart.is_empty() || (!pass_remains && apart_share > MAX_PAGE_SHARE) {
            return Reading::Pass;
        }
        Reading::Apart(apart)
    }
}

/// [`Narrowings`] of `checks`: each CHECK's driving column, an index leading with it, the
/// values that can break it (walking the index), and the share of pages holding them, all
/// counted on one sample of the table's pages.
pub fn narrowings(
    client: &mut (impl Query + ?Sized),
    table: &'static str,
    checks: &[&'static Constraint],
    spelling: &DatabaseSpelling,
) -> Result<Narrowings> {
    let mut each = candidates(client, table, checks, spelling)?;
    // A lone CHECK is its own "together": sampled once, copied after.
    let lone = checks.len() == 1;
    let mut together = if lone { None } else { together_of(&each) };
    settle(
        client,
        table,
        each.iter_mut().chain(std::iter::once(&mut together)),
    )?;
    let each: Vec<Option<Narrowing>> = each.into_iter().map(|e| e.map(|(n, _)| n)).collect();
    let together = if lone {
        each[0].clone()
    } else {
        together.map(|(n, _)| n)
    };
    Ok(Narrowings { together, each })
}

/// A narrowing not yet judged (share 1, no pages), beside its column's actual name, which the
/// statistics know it by.
type Candidate = Option<(Narrowing, String)>;

/// Each of `checks` by itself: its driving column, an index leading with it, and the values
/// that can break it (walking the index), in the order the checks were given.
fn candidates(
    client: &mut (impl Query + ?Sized),
    table: &'static str,
    checks: &[&'static Constraint],
    spelling: &DatabaseSpelling,
) -> Result<Vec<Candidate>> {
    let drivers: Vec<Option<(&'static str, Candidates)>> =
        checks.iter().map(|c| driver(c)).collect();
    let mut each: Vec<Candidate> = vec![None; checks.len()];
    let mut columns: Vec<&'static str> = drivers.iter().flatten().map(|(c, _)| *c).collect();
    columns.sort_unstable();
    columns.dedup();
    for current in columns {
        let Some(actual) = spelling.actual_name(table, current) else {
            continue;
        };
        let Some(type_name) = leading_btree_type(client, table, &actual)? else {
            continue;
        };
        let driven: Vec<usize> = (0..checks.len())
            .filter(|&i| drivers[i].as_ref().is_some_and(|(c, _)| *c == current))
            .collect();
        let distinct: Vec<&'static Constraint> = driven
            .iter()
            .filter(|&&i| matches!(drivers[i], Some((_, Candidates::Distinct))))
            .map(|&i| checks[i])
            .collect();
        let Some(failing) = failing_values(client, table, current, &actual, &distinct, spelling)?
        else {
            continue;
        };
        // One list per Distinct check, in the order they are driven.
        let mut failing = failing.into_iter();
        for &i in &driven {
            let mut values = match drivers[i] {
                Some((_, Candidates::Fixed(value))) => vec![value.to_string()],
                _ => failing.next().unwrap_or_default(),
            };
            values.sort();
            let narrowing = Narrowing {
                column: quote_ident(&actual),
                type_name: type_name.clone(),
                values,
                share: 1.0,
                table_pages: 0,
            };
            each[i] = Some((narrowing, actual.clone()));
        }
    }
    Ok(each)
}

/// Judges `candidates` in place: one the statistics put above [`MAX_ROW_SHARE`] of the rows is
/// dropped, and the share of pages of those left is counted on one sample of the table.
fn settle<'a>(
    client: &mut (impl Query + ?Sized),
    table: &str,
    candidates: impl IntoIterator<Item = &'a mut Candidate>,
) -> Result<()> {
    let mut kept: Vec<&mut Narrowing> = Vec::new();
    for slot in candidates {
        let too_many = match slot.as_ref() {
            Some((n, actual)) => {
                estimated_row_share(client, table, actual, &n.values)? > MAX_ROW_SHARE
            }
            None => false,
        };
        if too_many {
            *slot = None;
        }
        if let Some((n, _)) = slot {
            kept.push(n);
        }
    }
    let (shares, table_pages) = sampled_page_shares(client, table, &kept)?;
    for (narrowing, share) in kept.into_iter().zip(shares) {
        narrowing.share = share;
        narrowing.table_pages = table_pages;
    }
    Ok(())
}

/// All the checks at once: when every one is narrowed on the same column, the union of their
/// values.
fn together_of(each: &[Candidate]) -> Candidate {
    let (first, actual) = each.first()?.as_ref()?;
    let mut values = Vec::new();
    for candidate in each {
        let (n, _) = candidate
            .as_ref()
            .filter(|(n, _)| n.column == first.column)?;
        values.extend(n.values.iter().cloned());
    }
    values.sort();
    values.dedup();
    Some((
        Narrowing {
            values,
            ..first.clone()
        },
        actual.clone(),
    ))
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

/// For each of `checks`, the column's present values that break it, walking the index one
/// distinct value at a time; None when there are more than [`MAX_DISTINCT`].
fn failing_values(
    client: &mut (impl Query + ?Sized),
    table: &'static str,
    current: &str,
    actual: &str,
    checks: &[&'static Constraint],
    spelling: &DatabaseSpelling,
) -> Result<Option<Vec<Vec<String>>>> {
    if checks.is_empty() {
        return Ok(Some(Vec::new()));
    }
    let as_value = ValueSpelling {
        inner: spelling,
        table,
        column: current,
        value: "d.v",
    };
    let fails: Vec<String> = checks
        .iter()
        .map(|c| format!("coalesce({}, false)", c.violation_condition(&as_value, "t")))
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
             SELECT d.v::text, {} FROM d WHERE d.v IS NOT NULL LIMIT $1",
            fails.join(", ")
        ),
        &[&(MAX_DISTINCT + 1)],
    )?;
    if rows.len() as i64 > MAX_DISTINCT {
        return Ok(None);
    }
    Ok(Some(
        (0..checks.len())
            .map(|i| {
                rows.iter()
                    .filter(|r| r.get::<_, bool>(i + 1))
                    .map(|r| r.get(0))
                    .collect()
            })
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

/// For each narrowing, the share of the table's pages (among those holding rows) with a row
/// it keeps, counted on one sample of the pages ([`sample`]): the statistics tell how many such
/// rows there are, not whether they lie together (a young table's approved rows, in runs) or on
/// nearly every page (a mature table's). And the table's pages.
fn sampled_page_shares(
    client: &mut (impl Query + ?Sized),
    table: &str,
    narrowings: &[&mut Narrowing],
) -> Result<(Vec<f64>, i64)> {
    if narrowings.is_empty() {
        return Ok((Vec::new(), 0));
    }
    let sample = Sample::of(client, table)?;
    let hits: Vec<String> = (1..=narrowings.len())
        .map(|k| format!("count(*) FILTER (WHERE p.hit{k})::float8"))
        .collect();
    let per_page: Vec<String> = narrowings
        .iter()
        .enumerate()
        .map(|(k, n)| format!("bool_or({}) AS hit{}", n.condition("t", k + 1), k + 1))
        .collect();
    let mut params: Vec<&dyn crate::db::Param> =
        narrowings.iter().map(|n| &n.values as _).collect();
    params.push(&sample.percent);
    let row = client.row(
        &format!(
            "SELECT count(*)::float8, {}
               FROM (SELECT {}
                       FROM {} AS t {}
                      GROUP BY {}) AS p",
            hits.join(", "),
            per_page.join(", "),
            qualified(table),
            sample::clause(narrowings.len() + 1),
            super::scan_progress::block_column("t"),
        ),
        &params,
    )?;
    let pages: f64 = row.get(0);
    let shares = (1..=narrowings.len())
        .map(|k| {
            let hits: f64 = row.get(k);
            if pages > 0.0 {
                hits / pages
            } else {
                0.0
            }
        })
        .collect();
    Ok((shares, sample.pages as i64))
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
            table_pages: 0,
        }
    }

    fn on_pages(share: f64, table_pages: i64) -> Narrowing {
        Narrowing {
            table_pages,
            ..narrowing(share)
        }
    }

    fn with_values(values: &[&str], share: f64) -> Narrowing {
        Narrowing {
            values: values.iter().map(|v| v.to_string()).collect(),
            ..narrowing(share)
        }
    }

    #[test]
    fn checks_an_index_narrows_together_are_read_together() {
        let found = Narrowings {
            together: Some(with_values(&["approved", "done"], 0.23)),
            each: vec![
                Some(with_values(&["done"], 0.12)),
                Some(with_values(&["approved"], 0.2)),
            ],
        };
        assert_eq!(
            found.reading(),
            Reading::Together(with_values(&["approved", "done"], 0.23))
        );
    }

    #[test]
    fn a_check_on_few_pages_is_read_apart_from_the_pass_the_others_need() {
        // Mature data: the approval rule's candidates on nearly every page, a few statuses
        // outside the list on a few of them.
        let found = Narrowings {
            together: Some(with_values(&["approved", "done"], 0.97)),
            each: vec![
                Some(with_values(&["done"], 0.04)),
                Some(with_values(&["approved"], 0.96)),
            ],
        };
        assert_eq!(
            found.reading(),
            Reading::Apart(vec![(0, with_values(&["done"], 0.04))])
        );
        // The same statuses on an eighth of the pages (the benchmark's planting) cost more
        // apart than they save in the pass.
        let spread = Narrowings {
            each: vec![
                Some(with_values(&["done"], 0.125)),
                Some(with_values(&["approved"], 0.96)),
            ],
            ..found.clone()
        };
        assert_eq!(spread.reading(), Reading::Pass);
        // No index for the others, or none at all: the same, and a plain pass.
        let no_index_for_the_rest = Narrowings {
            together: None,
            each: vec![Some(with_values(&["done"], 0.01)), None],
        };
        assert!(matches!(no_index_for_the_rest.reading(), Reading::Apart(a) if a.len() == 1));
        let nothing = Narrowings {
            together: None,
            each: vec![None, None],
        };
        assert_eq!(nothing.reading(), Reading::Pass);
    }

    #[test]
    fn checks_on_many_pages_stay_in_one_pass() {
        // Each above the bound apart.
        let found = Narrowings {
            together: Some(with_values(&["approved", "done"], 0.9)),
            each: vec![
                Some(with_values(&["done"], 0.3)),
                Some(with_values(&["approved"], 0.8)),
            ],
        };
        assert_eq!(found.reading(), Reading::Pass);
        // Each on few pages, but apart they would read more than one pass is worth.
        let many_apart = Narrowings {
            together: None,
            each: vec![Some(with_values(&["a"], 0.05)); 11],
        };
        assert_eq!(many_apart.reading(), Reading::Pass);
        let two_apart = Narrowings {
            together: None,
            each: vec![Some(with_values(&["a"], 0.05)); 2],
        };
        assert!(matches!(two_apart.reading(), Reading::Apart(a) if a.len() == 2));
    }

    #[test]
    fn the_bitmap_gets_room_for_its_pages_within_a_bound() {
        // 10M evidence rows: about 1M pages, candidates on a fifth of them.
        let ten_million = on_pages(0.23, 1_000_000).exact_bitmap_kb();
        assert!((20_000..=24_000).contains(&ten_million), "{ten_million} kB");
        // More than PostgreSQL's default 4 MB, which turned 39,144 of 47,377 pages lossy at a
        // fifth of it.
        assert!(ten_million > 4 * 1024);
        assert_eq!(on_pages(1.0, 100_000_000).exact_bitmap_kb(), MAX_BITMAP_KB);
        assert_eq!(on_pages(0.5, 0).exact_bitmap_kb(), 64);
    }
}
