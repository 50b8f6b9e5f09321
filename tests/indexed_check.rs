//! The check narrows a table's CHECK scan through an index the database has (indexed.rs): the
//! findings must be exactly those of the plain scan, with the index and without it.

use crate::common;

use common::TestDb;
use ruleiq_db::catalog::constraints::{find, Constraint};
use ruleiq_db::constraints::check::DatabaseSpelling;
use ruleiq_db::constraints::indexed;
use serde_json::Value;
use std::collections::BTreeMap;

fn findings(db: &TestDb) -> Value {
    let (code, report, stderr) = db.run_json(&["check-constraints", "--dry-run"]);
    assert_eq!(code, 3, "{stderr}");
    report["constraints"].clone()
}

fn evidence_checks() -> Vec<&'static Constraint> {
    vec![
        find("chk_evidence_status").unwrap(),
        find("chk_approval_workflow").unwrap(),
    ]
}

fn narrowing(db: &TestDb) -> Option<indexed::Narrowing> {
    let mut client = db.client();
    let spelling = DatabaseSpelling::read(&mut client, &["evidence_items"]).unwrap();
    indexed::narrowing(&mut client, "evidence_items", &evidence_checks(), &spelling).unwrap()
}

#[test]
fn the_indexed_path_and_the_plain_scan_find_the_same_rows() {
    let db = TestDb::dirty_legacy();
    // Live and old violating rows both: live counts must survive the narrowing too.
    db.execute("UPDATE evidence_items SET updated_at = now() - interval '30 days'");
    db.execute(
        "UPDATE evidence_items SET updated_at = now()
          WHERE id IN (SELECT id FROM evidence_items WHERE status NOT IN ('collected') ORDER BY id LIMIT 3)",
    );
    let narrowed = narrowing(&db).expect("idx_evidence_items_status narrows the evidence scan");
    // The fixture's own spellings outside the list, and 'approved' for the approval rule;
    // never an allowed value that cannot break either rule.
    assert!(narrowed.values.contains(&"approved".to_string()));
    assert!(!narrowed.values.contains(&"collected".to_string()));
    assert!(narrowed.values.len() >= 2, "{:?}", narrowed.values);
    let with_index = findings(&db);

    db.execute("DROP INDEX idx_evidence_items_status");
    db.execute("DROP INDEX IF EXISTS idx_evidence_items_user_status");
    assert_eq!(narrowing(&db), None, "no index leads with status now");
    let without_index = findings(&db);
    assert_eq!(with_index, without_index);
    let live: i64 = with_index
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["live_violations"].as_i64().unwrap())
        .sum();
    assert!(
        live > 0,
        "the fixture must have live violations: {with_index}"
    );
}

#[test]
fn an_index_that_cannot_answer_is_not_used() {
    let db = TestDb::dirty_legacy();
    db.execute("DROP INDEX idx_evidence_items_status");
    // A partial index misses rows, and one under another collation orders them differently.
    db.execute("CREATE INDEX partial_status ON evidence_items (status) WHERE status <> 'pending'");
    db.execute(r#"CREATE INDEX c_status ON evidence_items (status COLLATE "C")"#);
    assert_eq!(narrowing(&db), None);
    db.execute("CREATE INDEX plain_status ON evidence_items (status)");
    assert!(narrowing(&db).is_some());
}

/// The path of each evidence constraint's scan, and the findings. The paths are read from
/// `cleanup --dry-run`'s estimate, whose recount plans the check's scans as the check does
/// (`check-constraints --dry-run` puts its estimate at what its own run took, without planning
/// them again).
fn evidence_paths(db: &TestDb) -> (BTreeMap<String, String>, Value) {
    let (code, report, stderr) = db.run_json(&["check-constraints", "--dry-run"]);
    assert_eq!(code, 3, "{stderr}");
    let (code, planned, stderr) =
        db.run_json(&["cleanup", "--dry-run", "--policy", common::EXAMPLE_POLICY]);
    assert_eq!(code, 0, "{stderr}");
    let mut paths = BTreeMap::new();
    for scan in planned["estimate"]["scans"].as_array().unwrap() {
        if scan["table"] != "evidence_items" {
            continue;
        }
        for name in scan["constraints"].as_array().unwrap() {
            let path = scan["path"].as_str().unwrap().to_string();
            paths.insert(name.as_str().unwrap().to_string(), path);
        }
    }
    assert_eq!(paths.len(), 2, "{planned:#}");
    (paths, report["constraints"].clone())
}

fn both(path: &str) -> BTreeMap<String, String> {
    evidence_checks()
        .iter()
        .map(|c| (c.name.to_string(), path.to_string()))
        .collect()
}

#[test]
fn a_table_whose_candidate_rows_lie_on_few_pages_is_read_through_the_index() {
    let db = TestDb::dirty_legacy();
    // Thousands of rows no constraint can catch: the fixture's candidates sit on a page or two.
    crate::estimate::bulk_evidence(&db, 6000, "'collected'");
    let narrowed = narrowing(&db).expect("an index leads with status");
    assert!(narrowed.pays(), "share {}", narrowed.share);
    let (paths, with_index) = evidence_paths(&db);
    assert_eq!(paths, both("index"), "one scan through the index for both");
    db.execute("DROP INDEX idx_evidence_items_status");
    db.execute("DROP INDEX IF EXISTS idx_evidence_items_user_status");
    let (paths, without_index) = evidence_paths(&db);
    assert_eq!(paths, both("sequential"));
    assert_eq!(
        with_index, without_index,
        "the same findings on either path"
    );
}

#[test]
fn candidates_on_most_pages_are_read_in_one_pass_and_the_rare_ones_apart() {
    let db = TestDb::dirty_legacy();
    // A third approved (each a candidate for the approval rule), on every page: fewer rows
    // than the statistics' limit, but the index would lead to every page. The fixture's
    // statuses outside the list sit on a page or two.
    crate::estimate::bulk_evidence(
        &db,
        6000,
        "CASE WHEN g % 3 = 0 THEN 'approved' ELSE 'collected' END",
    );
    let narrowed = narrowing(&db).expect("an index leads with status");
    assert!(!narrowed.pays(), "share {}", narrowed.share);
    assert!(narrowed.share > 0.9, "share {}", narrowed.share);
    let (paths, apart) = evidence_paths(&db);
    let expected: BTreeMap<String, String> = [
        ("chk_approval_workflow", "sequential"),
        ("chk_evidence_status", "index"),
    ]
    .iter()
    .map(|(c, p)| (c.to_string(), p.to_string()))
    .collect();
    assert_eq!(paths, expected, "the status rule apart, through the index");
    let violations = |name: &str| {
        apart
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .unwrap()["violations"]
            .as_u64()
            .unwrap()
    };
    // The bulk's approved rows carry no approval date: every one of them is found.
    assert!(violations("chk_approval_workflow") >= 2000);
    assert!(violations("chk_evidence_status") >= 1);
    db.execute("DROP INDEX idx_evidence_items_status");
    db.execute("DROP INDEX IF EXISTS idx_evidence_items_user_status");
    let (paths, without_index) = evidence_paths(&db);
    assert_eq!(paths, both("sequential"));
    assert_eq!(apart, without_index, "the same findings on either path");
}
