//! check-constraints on a table big enough to be scanned in page ranges on two sessions: the
//! same counts and samples as one scan would give.

mod common;
use common::{TestDb, EVIDENCE_COLUMNS, FIXTURE_OWNER};

/// Wide evidence rows: `rows` of them, one in `every` with a status the constraint refuses
/// ('Done'), the others 'collected'. Ids fall as pages rise, so the smallest violating keys sit
/// on the table's last pages and the fixture's on its first: the samples of both ranges count.
fn insert_wide_evidence(db: &TestDb, rows: i64, every: i64) {
    db.execute(&format!(
        "INSERT INTO evidence_items {EVIDENCE_COLUMNS}
         SELECT ('60000000-0000-0000-0000-' || lpad(({rows} - n)::text, 12, '0'))::uuid, {FIXTURE_OWNER},
                'wide ' || n, 'note', 'T.1', repeat(md5(n::text), 45),
                CASE WHEN n % {every} = 0 THEN 'Done' ELSE 'collected' END, now(), now()
           FROM generate_series(1, {rows}) AS n"
    ));
}

#[test]
fn a_table_scanned_in_page_ranges_gives_exact_counts_and_the_smallest_keys() {
    let db = TestDb::dirty_legacy();
    let baseline: i64 = db.scalar_i64(
        "SELECT count(*) FROM evidence_items WHERE (status IN ('not_started','in_progress','collected','approved','rejected')) IS FALSE",
    );
    insert_wide_evidence(&db, 12_000, 7);
    // Big enough that the checker splits it (SPLIT_ABOVE is 16 MiB).
    assert!(
        db.scalar_i64("SELECT pg_relation_size('evidence_items')") >= 16 * 1024 * 1024,
        "the table is too small to be split"
    );
    let expected: i64 = db.scalar_i64(
        "SELECT count(*) FROM evidence_items WHERE (status IN ('not_started','in_progress','collected','approved','rejected')) IS FALSE",
    );
    assert_eq!(expected, baseline + 12_000 / 7);
    let mut client = db.client();
    let smallest: Vec<String> = client
        .query(
            "SELECT id::text FROM evidence_items
              WHERE (status IN ('not_started','in_progress','collected','approved','rejected')) IS FALSE
              ORDER BY id::text COLLATE \"C\" LIMIT 10",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    // The smallest violating key is on the table's second half, the largest on its first.
    let page_of = |order: &str| {
        db.scalar_i64(&format!(
            "SELECT (ctid::text::point)[0]::int8 FROM evidence_items WHERE status = 'Done' ORDER BY id::text COLLATE \"C\" {order} LIMIT 1"
        ))
    };
    let pages = db.scalar_i64("SELECT pg_relation_size('evidence_items') / 8192");
    assert!(page_of("ASC") > pages / 2 && page_of("DESC") < pages / 2);

    let (code, report, stderr) = db.run_json(&["check-constraints", "--dry-run"]);
    assert_eq!(code, 3, "{stderr}");
    let found = report["constraints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "chk_evidence_status")
        .unwrap()
        .clone();
    assert_eq!(found["violations"], expected);
    assert_eq!(found["sample"], serde_json::json!(smallest));
}
