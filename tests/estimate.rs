//! The estimates of `check-constraints --dry-run`, `cleanup --dry-run` and `migrate --dry-run`
//! (docs/design.md §11): present, positive, explained, and the path each check scan takes
//! follows the data. No test asserts a duration: the machine decides those; the benchmark holds
//! the band.

use crate::common;
use common::{TestDb, EVIDENCE_COLUMNS, EXAMPLE_POLICY, FIXTURE_OWNER};
use serde_json::Value;

/// `n` evidence rows after the fixture's; `status_sql` is an SQL expression of the row number g.
pub fn bulk_evidence(db: &TestDb, n: i32, status_sql: &str) {
    db.execute(&format!(
        "INSERT INTO evidence_items {EVIDENCE_COLUMNS}
         SELECT ('e0000000-0000-0000-0000-' || lpad(g::text, 12, '0'))::uuid, {FIXTURE_OWNER},
                'bulk', 'note', 'T.1', 'bulk row', {status_sql}, now(), now()
           FROM generate_series(1, {n}) g;
         ANALYZE evidence_items"
    ));
}

fn assert_explained(estimate: &Value, total: &Value) {
    let ms = estimate["total_ms"].as_u64().expect("total_ms");
    assert!(ms > 0, "{estimate:#}");
    assert_eq!(
        total.as_u64(),
        Some(ms),
        "estimate_ms is the estimate's total"
    );
    let basis = estimate["basis"].as_str().unwrap();
    assert!(basis.len() > 40, "{basis}");
    assert!(estimate["sampling_ms"].as_f64().unwrap() >= 0.0);
}

#[test]
fn check_constraints_dry_run_puts_the_check_at_what_it_took() {
    let db = TestDb::dirty_legacy();
    let (code, report, stderr) = db.run_json(&["check-constraints", "--dry-run"]);
    assert_eq!(code, 3, "{stderr}");
    let estimate = &report["estimate"];
    assert_explained(estimate, &report["estimate_ms"]);
    assert!(
        estimate["basis"]
            .as_str()
            .unwrap()
            .contains("as this dry run timed it in full"),
        "{estimate:#}"
    );
    assert_eq!(
        estimate["check_ms"].as_u64(),
        Some(estimate["total_ms"].as_u64().unwrap()),
        "nothing is NOT VALID at version 7: the check is all of it"
    );
    assert_eq!(
        estimate["sampling_ms"].as_f64(),
        Some(0.0),
        "the check ran in full: nothing of it is sampled again"
    );
    // Its scans as the check ran them: every constraint in exactly one, each on its path.
    let mut scanned: Vec<String> = Vec::new();
    for scan in estimate["scans"].as_array().unwrap() {
        assert!(
            ["index", "sequential"].contains(&scan["path"].as_str().unwrap()),
            "{scan}"
        );
        assert!(scan["ms"].as_u64().is_some(), "{scan}");
        for name in scan["constraints"].as_array().unwrap() {
            scanned.push(name.as_str().unwrap().to_string());
        }
    }
    scanned.sort();
    let mut catalog: Vec<String> = ruleiq_db::catalog::constraints::names()
        .iter()
        .map(|n| n.to_string())
        .collect();
    catalog.sort();
    assert_eq!(scanned, catalog, "{estimate:#}");
    let (_, text, _) = db.run(&["check-constraints", "--dry-run"]);
    assert!(text.contains("estimated duration: "), "{text}");
}

#[test]
fn cleanup_dry_run_estimates_the_run_and_each_recount_scan_on_its_path() {
    let db = TestDb::dirty_legacy();
    bulk_evidence(&db, 4000, "'collected'");
    let (code, report, stderr) = db.run_json(&["cleanup", "--dry-run", "--policy", EXAMPLE_POLICY]);
    assert_eq!(code, 0, "{stderr}");
    let estimate = &report["estimate"];
    assert_explained(estimate, &report["estimate_ms"]);
    assert!(estimate["basis"]
        .as_str()
        .unwrap()
        .contains("EXPLAIN ANALYZE"));
    let rows = report["total_rows"].as_u64().unwrap();
    assert!(rows > 0);
    assert!(
        estimate["basis"]
            .as_str()
            .unwrap()
            .contains(&format!("{rows} rows written")),
        "{estimate:#}"
    );
    assert!(estimate["repair_ms"].as_u64().unwrap() > 0);
    // No VALIDATE to estimate: nothing of the caveat about them.
    let basis = estimate["basis"].as_str().unwrap();
    assert!(
        basis.ends_with("a busy server, takes longer") && !basis.contains("VALIDATE, beside"),
        "{basis}"
    );
    let scans = estimate["scans"].as_array().unwrap();
    // evidence_items' CHECKs together, business_profiles' together, one per foreign key.
    assert_eq!(scans.len(), 4, "{scans:#?}");
    assert!(estimate["sessions"].as_u64().unwrap() >= 1);
    let evidence = scans
        .iter()
        .find(|s| s["table"] == "evidence_items")
        .unwrap();
    assert_eq!(evidence["path"], "index", "{evidence}");
    assert!(evidence["index_page_share"].as_f64().unwrap() <= 0.5);
    for scan in scans {
        assert!(scan["ms"].as_u64().is_some(), "{scan}");
    }
}

#[test]
fn migrate_dry_run_estimates_the_preflight_and_each_validate() {
    let db = TestDb::dirty_legacy();
    // The fixture's violations block 008: the estimate is of the run once they are repaired.
    let (code, report, stderr) = db.run_json(&["migrate", "--dry-run"]);
    assert_eq!(code, 3, "{stderr}");
    let estimate = &report["estimate"];
    assert_explained(estimate, &report["estimate_ms"]);
    assert!(estimate["preflight_ms"].as_u64().unwrap() > 0);
    assert!(!estimate["scans"].as_array().unwrap().is_empty());
    // The preflight ran in full in this dry run: its scans are reported as they went, and
    // none of them was sampled first.
    let basis = estimate["basis"].as_str().unwrap();
    assert!(
        basis.contains("the preflight at") && !basis.contains("the samples said"),
        "{basis}"
    );
    let steps = estimate["validate"].as_array().unwrap();
    assert!(!steps.is_empty());
    for step in steps {
        assert!(step["ms"].as_u64().unwrap() > 0, "{step}");
    }
    // Where the VALIDATEs' estimates have erred, the basis says so (docs/design.md §11).
    assert!(
        basis.contains("with the tables in memory")
            && basis.contains("a small table's VALIDATE, beside the biggest's on a busy server"),
        "{basis}"
    );
}

/// A VALIDATE's sample (`sample::run_from_scan_start`) reads the run of pages it is given from
/// where the table's scans start, stops there, and moves that start on by what it read, so
/// that the next run reads pages no earlier run left in shared buffers (docs/design.md §11).
#[test]
fn a_validate_sample_reads_its_run_from_the_scan_start_and_moves_it_on() {
    use ruleiq_db::constraints::sample::{execution, run_from_scan_start, scan_start, stop_window};
    let db = TestDb::new();
    // Bigger than a quarter of shared buffers, so that its scans read through a ring and start
    // where the last one left off (PostgreSQL's synchronized scans).
    let buffers =
        db.scalar_i64("SELECT setting::bigint FROM pg_settings WHERE name = 'shared_buffers'");
    let rows = buffers / 4 * 5 + 5_000;
    db.execute(&format!(
        "CREATE TABLE public.wide AS SELECT g AS id, repeat('x', 1500) AS pad
           FROM generate_series(1, {rows}) g"
    ));
    db.execute("VACUUM (ANALYZE) public.wide");
    let pages = pages_of(&db, "wide");
    let mut client = db.client();
    assert!(pages > buffers / 4, "{pages} pages, {buffers} buffers");
    let sql = run_from_scan_start("public.wide", "(t.id > 0) IS FALSE");
    let run = 200;
    let mut tx = client.transaction().unwrap();
    tx.batch_execute(
        "SET LOCAL synchronize_seqscans = on; SET LOCAL max_parallel_workers_per_gather = 0",
    )
    .unwrap();
    let mut starts = Vec::new();
    for _ in 0..3 {
        let start = scan_start(&mut tx, "public.wide").unwrap().unwrap();
        let (from, before) = stop_window(start, run, pages);
        let sampled = execution(&mut tx, &sql, &[&from, &before]).unwrap();
        // The run's pages and the one it stopped on, not the table.
        assert!(
            (run as f64..=run as f64 + 2.0).contains(&sampled.pages),
            "read {} pages from page {start}",
            sampled.pages
        );
        starts.push(start);
    }
    // Each run starts about where the one before stopped: the start is reported every 16 pages.
    for pair in starts.windows(2) {
        let moved = (pair[1] - pair[0]).rem_euclid(pages);
        assert!(
            (run - 16..=run).contains(&moved),
            "starts {starts:?} in {pages} pages"
        );
    }
    // Started past where the run would end, it wraps round to the table's first pages.
    let (from, before) = stop_window(pages - 50, run, pages);
    assert_eq!(from, format!("({},0)", run - 50));
    assert_eq!(before, format!("({},0)", pages - 50));
    // A run of the whole table reads it all.
    let (from, before) = stop_window(0, pages, pages);
    let whole = execution(&mut tx, &sql, &[&from, &before]).unwrap();
    assert!(whole.pages >= pages as f64, "{} of {pages}", whole.pages);
    tx.commit().unwrap();
}

/// The biggest table's first VALIDATE sample is read twice untimed before it is timed (a dry
/// run's first samples ran slow under load, docs/design.md §11), and those pages count in what
/// the basis says the samples read: on tables this small every run reads its whole table, so
/// the count is exact.
#[test]
fn migrate_dry_run_reads_the_first_validate_sample_twice_before_timing_it() {
    let db = TestDb::dirty_legacy();
    // evidence_items the biggest table, by a few pages: copies of its rows under new ids.
    db.execute(
        "INSERT INTO public.evidence_items
         SELECT (pg_catalog.jsonb_populate_record(NULL::public.evidence_items,
                 pg_catalog.to_jsonb(e) || pg_catalog.jsonb_build_object('id', pg_catalog.gen_random_uuid()))).*
           FROM public.evidence_items AS e, pg_catalog.generate_series(1, 20)",
    );
    let (code, report, stderr) = db.run_json(&["migrate", "--dry-run"]);
    assert_eq!(code, 3, "{stderr}");
    let estimate = &report["estimate"];
    let steps = estimate["validate"].as_array().unwrap();
    let names: Vec<&str> = steps
        .iter()
        .map(|s| s["constraint"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "chk_evidence_status",
            "chk_employee_count_positive",
            "chk_data_sensitivity",
            "chk_approval_workflow"
        ],
        "{estimate:#}"
    );
    let (evidence, profiles) = (
        pages_of(&db, "evidence_items"),
        pages_of(&db, "business_profiles"),
    );
    assert!(evidence > profiles, "{evidence} and {profiles} pages");
    assert!(
        evidence <= 128,
        "{evidence} pages: a sample would read part of the table"
    );
    // Two timed runs of each of the four, and two settling runs of evidence's first.
    let expected = 2 * (2 * evidence + 2 * profiles) + 2 * evidence;
    let basis = estimate["basis"].as_str().unwrap();
    assert!(
        basis.contains(&format!("on a sample of {expected} of the ")),
        "expected {expected} pages sampled ({evidence} evidence, {profiles} profile pages): {basis}"
    );
}

/// The pages of `public.table`, as the server counts them.
fn pages_of(db: &TestDb, table: &str) -> i64 {
    db.scalar_i64(&format!(
        "SELECT pg_relation_size('public.{table}') / current_setting('block_size')::bigint"
    ))
}
