//! Samples of a table's pages, read to decide and to estimate before the real work, each a
//! fixed share of the pages. A sample that decides ([`clause`]) is picked at random but the same
//! on every run (`REPEATABLE`), so a decision taken on it does not flicker between runs on the
//! same data; a sample that is timed is a run of contiguous pages, read in order as the whole
//! scan reads them ([`Sample::middle_run`], [`run_from_scan_start`]).

use crate::db::{introspect, Query};
use anyhow::{Context, Result};
use std::time::Duration;

/// The share of a table's pages a sample reads: about 1 %, so all samples together (a timed
/// one runs twice, and reads at least [`MIN_TIMED_PAGES`]) stay under 5 % of the pages the work
/// they decide or estimate reads (docs/design.md §11): 4 % for the benchmark's migration, with
/// the two settling runs before the first timed one (`cost::SETTLING_RUNS`). Where a small
/// table is all there is to validate, its samples read up to half of what its VALIDATEs read:
/// a few milliseconds.
const SHARE: f64 = 0.01;

/// Below this many pages a sample reads the whole table: there, 1 % would be a page or two,
/// too few to say anything, and the whole table costs no more than a round trip.
const MIN_PAGES: f64 = 128.0;

/// A timed sample reads at least this many pages (8 MiB), or a quarter of its table if that is
/// less. 1 % of business_profiles at 200k rows is 128 pages, read in half a millisecond: within
/// one time slice of the operating system, so on a busy server it rarely meets the load its
/// VALIDATE will, and its estimate swung threefold between dry runs (36–104 ms for the same
/// VALIDATE, docs/performance.md). A thousand pages take a few milliseconds; 1 % of
/// evidence_items at 2M rows is more already.
const MIN_TIMED_PAGES: f64 = 1024.0;

/// The most of a table a timed sample reads to reach [`MIN_TIMED_PAGES`]: run twice, a quarter
/// costs half of the VALIDATE it estimates, a few milliseconds on a table that small.
const MAX_TIMED_SHARE: f64 = 0.25;

/// A table's size in pages, and the percentage of them its sample reads.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub pages: f64,
    pub percent: f64,
}

impl Sample {
    pub fn of(client: &mut (impl Query + ?Sized), table: &str) -> Result<Sample> {
        let pages = introspect::table_sizes(client, &[table])?.pages(table) as f64;
        Ok(Sample::of_pages(pages))
    }

    /// The sample of a table of `pages` pages.
    pub fn of_pages(pages: f64) -> Sample {
        let percent = if pages <= MIN_PAGES {
            100.0
        } else {
            (100.0 * (pages * SHARE).max(MIN_PAGES) / pages).min(100.0)
        };
        Sample { pages, percent }
    }

    /// The sample of a table of `pages` pages that is timed to estimate a scan of it: as
    /// [`Sample::of_pages`], but at least [`MIN_TIMED_PAGES`] (at most a quarter of the table),
    /// so that it runs long enough to share the server with its load.
    pub fn timed_of_pages(pages: f64) -> Sample {
        let least = Sample::of_pages(pages);
        if least.percent >= 100.0 {
            return least;
        }
        let wanted = MIN_TIMED_PAGES.min(pages * MAX_TIMED_SHARE);
        Sample {
            pages,
            percent: least.percent.max(100.0 * wanted / pages),
        }
    }

    /// The share of the table the sample stands for (0–1].
    pub fn fraction(&self) -> f64 {
        self.percent / 100.0
    }

    /// The TIDs bounding `fraction` of the table's pages, a contiguous run from its middle,
    /// as text for [`tid_range`]; the whole table when it is that small.
    pub fn middle_run(&self, fraction: f64) -> (String, String) {
        let pages = self.pages.max(0.0) as i64;
        let run = self.run_pages(fraction);
        if run >= pages {
            // Past the last page too: the table may have grown since its size was read.
            return ("(0,0)".to_string(), past_any_page());
        }
        let start = (pages - run) / 2;
        (format!("({start},0)"), format!("({},0)", start + run))
    }

    /// The pages a run of `fraction` of the table reads, counted from wherever it starts.
    pub fn run_pages(&self, fraction: f64) -> i64 {
        let pages = self.pages.max(0.0) as i64;
        ((self.pages * fraction).ceil() as i64).clamp(1, pages.max(1))
    }
}

/// The first page a sequential scan of `table` (qualified) starts at now: where the last
/// synchronized scan of it reported it had got to (`synchronize_seqscans`, for a table bigger
/// than a quarter of shared buffers; the first page otherwise), found by reading its first row.
/// None for a table with no rows.
pub fn scan_start(client: &mut (impl Query + ?Sized), table: &str) -> Result<Option<i64>> {
    // A TID's text, "(block,offset)", is a point's: its x is the block.
    let row = client.row_opt(
        &format!("SELECT (t.ctid::text::point)[0]::int8 FROM {table} AS t LIMIT 1"),
        &[],
    )?;
    Ok(row.map(|row| row.get(0)))
}

/// The TIDs, as text for [`run_from_scan_start`], between which a run of `run` pages that starts
/// at page `start` of a table of `pages` pages stops: at page `start + run`, or, past the last
/// page, that many pages into the table again. A run of the whole table never stops early.
pub fn stop_window(start: i64, run: i64, pages: i64) -> (String, String) {
    if run >= pages {
        return (past_any_page(), past_any_page());
    }
    let end = start + run;
    if end < pages {
        (format!("({end},0)"), past_any_page())
    } else {
        (format!("({},0)", end - pages), format!("({start},0)"))
    }
}

/// A TID past the last page any table can have, as text: an open end of a range.
fn past_any_page() -> String {
    format!("({},0)", i64::from(u32::MAX >> 1))
}

/// `SELECT count(*)` of a sequential scan of `table` (qualified, as `t`) that evaluates
/// `condition` on every row from where the scan starts ([`scan_start`]) and stops at the first
/// row within the TIDs in text parameters `$1` (from) and `$2` (before) ([`stop_window`]): a run
/// of pages read as a VALIDATE reads them, through the bulk-read ring a big table's sequential
/// scan gets. `LIMIT 1` ends the scan at the first row that passes, and only a row in the
/// window passes: `condition` must never be NULL (a rule's violation condition ends in
/// `IS FALSE`).
pub fn run_from_scan_start(table: &str, condition: &str) -> String {
    format!(
        "SELECT count(*) FROM (SELECT 1 FROM {table} AS t WHERE ({condition}) IS NULL \
         OR (t.ctid >= $1::text::tid AND t.ctid < $2::text::tid) LIMIT 1) AS s"
    )
}

/// The condition that keeps `alias`'s rows within the TIDs in text parameters `$first` and
/// `$first + 1`, read as a TID range scan (PostgreSQL 14 and later: earlier, a filter).
pub fn tid_range(alias: &str, first: usize) -> String {
    format!(
        "{alias}.ctid >= ${first}::text::tid AND {alias}.ctid < ${}::text::tid",
        first + 1
    )
}

/// The `TABLESAMPLE` clause after a table in FROM, reading the percentage from parameter
/// `$param`.
pub fn clause(param: usize) -> String {
    format!("TABLESAMPLE SYSTEM (${param}::float4) REPEATABLE (0)")
}

/// What a statement took on the server, and the pages it read.
#[derive(Debug, Clone, Copy)]
pub struct Execution {
    pub time: Duration,
    /// Pages found in shared buffers or read into them, by the whole plan.
    pub pages: f64,
}

/// Runs `sql` under `EXPLAIN (ANALYZE, BUFFERS, TIMING OFF)` and returns the server's own
/// execution time (no network, no planning, no row shipping, just the work) and the pages read.
pub fn execution(
    client: &mut (impl Query + ?Sized),
    sql: &str,
    params: &[&dyn crate::db::Param],
) -> Result<Execution> {
    let row = client.row(
        &format!("EXPLAIN (ANALYZE, BUFFERS, TIMING OFF, COSTS OFF, FORMAT JSON) {sql}"),
        params,
    )?;
    let plan: serde_json::Value = row.get(0);
    let ms = plan[0]["Execution Time"]
        .as_f64()
        .context("EXPLAIN ANALYZE gave no execution time")?;
    let top = &plan[0]["Plan"];
    let blocks = |key: &str| top[key].as_f64().unwrap_or(0.0);
    Ok(Execution {
        time: Duration::from_secs_f64(ms / 1000.0),
        pages: blocks("Shared Hit Blocks") + blocks("Shared Read Blocks"),
    })
}

/// [`execution`]'s time alone.
pub fn execution_time(
    client: &mut (impl Query + ?Sized),
    sql: &str,
    params: &[&dyn crate::db::Param],
) -> Result<Duration> {
    Ok(execution(client, sql, params)?.time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_of_pages_sits_in_the_middle_and_a_small_table_is_read_whole() {
        let big = Sample {
            pages: 10_000.0,
            percent: 1.28,
        };
        assert_eq!(
            big.middle_run(big.fraction()),
            ("(4936,0)".to_string(), "(5064,0)".to_string())
        );
        let small = Sample {
            pages: 50.0,
            percent: 100.0,
        };
        let (from, to) = small.middle_run(small.fraction());
        assert_eq!(from, "(0,0)");
        assert!(to != "(50,0)", "past the last page: {to}");
    }

    #[test]
    fn a_timed_sample_reads_enough_pages_to_last_but_at_most_a_quarter_of_a_small_table() {
        // business_profiles at 200k rows: 1,024 of its 9,524 pages instead of 128.
        let profiles = Sample::timed_of_pages(9_524.0);
        assert!((profiles.fraction() * 9_524.0 - 1_024.0).abs() < 1e-6);
        // evidence_items at 2M rows: its 1 % is more than the minimum already.
        let evidence = Sample::timed_of_pages(168_000.0);
        assert_eq!(evidence.percent, Sample::of_pages(168_000.0).percent);
        // A 2,000-page table: a quarter, not half of it.
        assert!((Sample::timed_of_pages(2_000.0).fraction() - 0.25).abs() < 1e-9);
        // Small enough to be read whole either way.
        assert_eq!(Sample::timed_of_pages(100.0).percent, 100.0);
    }

    #[test]
    fn a_run_from_the_scan_start_stops_after_its_pages_and_wraps_past_the_last() {
        let never = format!("({},0)", u32::MAX >> 1);
        let big = Sample {
            pages: 10_000.0,
            percent: 1.28,
        };
        let run = big.run_pages(big.fraction());
        assert_eq!(run, 128);
        assert_eq!(
            stop_window(0, run, 10_000),
            ("(128,0)".to_string(), never.clone())
        );
        // Started near the end: it stops 28 pages into the table again, and not on the pages
        // it started on.
        assert_eq!(
            stop_window(9_900, run, 10_000),
            ("(28,0)".to_string(), "(9900,0)".to_string())
        );
        // A run of the whole table never stops early.
        let small = Sample {
            pages: 50.0,
            percent: 100.0,
        };
        assert_eq!(
            stop_window(10, small.run_pages(small.fraction()), 50),
            (never.clone(), never)
        );
    }
}
