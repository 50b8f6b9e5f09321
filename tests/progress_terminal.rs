//! Progress bars show on a terminal, with an ETA, and never in a machine-readable run: a
//! `--format json` run's stderr carries log lines only, terminal or not.

use crate::common;
use common::TestDb;

/// A version-8 database whose chk_employee_count_positive is NOT VALID (and nothing violates
/// it), so that `check-constraints` both scans and validates.
fn version_8_with_a_not_valid_check() -> TestDb {
    let db = TestDb::new();
    db.migrate_to(8);
    let mut client = db.client();
    let definition: String = client
        .query_one(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'chk_employee_count_positive'",
            &[],
        )
        .unwrap()
        .get(0);
    client
        .batch_execute(&format!(
            "ALTER TABLE business_profiles DROP CONSTRAINT chk_employee_count_positive;
             ALTER TABLE business_profiles ADD CONSTRAINT chk_employee_count_positive {definition} NOT VALID;"
        ))
        .unwrap();
    db
}

/// Runs the binary with `args` under a pseudo-terminal (util-linux `script`) and returns
/// everything it wrote there, stdout and stderr together; None when `script` is missing.
fn on_a_terminal(db: &TestDb, args: &[&str]) -> Option<String> {
    let out = db.on_a_pty(args).env("TERM", "xterm").output().ok()?;
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn a_terminal_shows_bars_with_an_eta_except_in_a_json_run() {
    let db = version_8_with_a_not_valid_check();
    let Some(table) = on_a_terminal(&db, &["check-constraints", "--dry-run"]) else {
        eprintln!("skipped: no `script` to give the binary a terminal");
        return;
    };
    assert!(
        table.contains("checking constraints") && table.contains("left)"),
        "no progress bar with an ETA on a terminal:\n{table}"
    );

    let json = on_a_terminal(&db, &["--format", "json", "check-constraints"]).unwrap();
    assert!(
        !json.contains("checking constraints") && !json.contains("validating constraints"),
        "a JSON run drew a progress bar:\n{json}"
    );
    // The report itself is there, and the work was done.
    let start = json.find('{').expect("a JSON report");
    let report: serde_json::Value = serde_json::from_str(json[start..].trim()).unwrap();
    assert_eq!(
        report["validated"],
        serde_json::json!(["chk_employee_count_positive"])
    );
}

/// The scans return each violating row's block only when a bar is drawn: the findings must be
/// the same either way, counts, live counts and samples.
#[test]
fn a_drawn_bar_changes_no_finding() {
    use ruleiq_db::catalog::constraints::CATALOG;
    use ruleiq_db::constraints::check;
    use ruleiq_db::progress::Log;

    let db = TestDb::dirty_legacy();
    let all: Vec<_> = CATALOG.iter().collect();
    let run = |log: &Log| {
        let mut client = db.client();
        let findings = check::check(&db.target(), &mut client, &all, log).unwrap();
        serde_json::to_value(findings).unwrap()
    };
    let drawn = Log {
        quiet: true,
        bars: true,
    };
    let with_blocks = run(&drawn);
    let without = run(&Log::silent());
    assert_eq!(with_blocks, without);
    let total: u64 = without
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["violations"].as_u64().unwrap())
        .sum();
    assert!(total > 0, "the dirty fixture violates: {without}");
}
