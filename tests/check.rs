mod common;
use common::TestDb;

#[test]
fn fixture_counts() {
    let db = TestDb::dirty_legacy();
    let (code, report, stderr) = db.run_json(&["check-constraints", "--dry-run"]);
    println!("{report:#}\n{stderr}");
    assert_eq!(code, 3);
    let (_, out, _) = db.run(&["check-constraints", "--dry-run"]);
    println!("{out}");
    let (code, report, stderr) = db.run_json(&["migrate"]);
    println!("{report:#}\n{stderr}");
    assert_eq!(code, 3);
}
