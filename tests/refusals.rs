//! Refusals (exit 4) name their kind in the failure document's `reason`, for programs; other
//! failures leave it null.

use crate::common;
use common::TestDb;

/// Runs with `--format json`, asserts exit 4, and returns the failure document.
fn refused(db: &TestDb, args: &[&str]) -> serde_json::Value {
    let (code, report, stderr) = db.run_json(args);
    assert_eq!(code, 4, "{args:?}: {report:#}\n{stderr}");
    assert_eq!(report["exit_code"], 4, "{report:#}");
    assert_eq!(report["ok"], false, "{report:#}");
    assert!(stderr.contains("ruleiq-db: refused: "), "{stderr}");
    report
}

#[test]
fn a_rollback_without_yes_off_a_terminal_is_not_confirmed() {
    let db = TestDb::new();
    db.migrate_to(8);
    let report = refused(&db, &["rollback"]);
    assert_eq!(report["reason"], "not_confirmed", "{report:#}");
    assert!(report["error"].as_str().unwrap().contains("pass --yes"));
    assert_eq!(
        db.scalar_i64("SELECT max(version)::int8 FROM refinery_schema_history"),
        8
    );
}

#[test]
fn a_target_that_does_not_exist_is_an_unknown_target() {
    let db = TestDb::new();
    let report = refused(&db, &["migrate", "--target", "99"]);
    assert_eq!(report["reason"], "unknown_target", "{report:#}");
    assert!(report["error"]
        .as_str()
        .unwrap()
        .contains("--target 99 does not exist"));
    let report = refused(&db, &["migrate", "--dry-run", "--target", "99"]);
    assert_eq!(report["reason"], "unknown_target", "{report:#}");
}

#[test]
fn an_edited_migration_in_the_history_is_edited_history() {
    let db = TestDb::new();
    db.migrate_to(2);
    db.execute("UPDATE refinery_schema_history SET checksum = '1' WHERE version = 2");
    let before = db.rows("SELECT version, name, checksum FROM refinery_schema_history");
    let report = refused(&db, &["migrate"]);
    assert_eq!(report["reason"], "edited_history", "{report:#}");
    assert!(report["error"]
        .as_str()
        .unwrap()
        .contains("cannot be trusted"));
    let after = db.rows("SELECT version, name, checksum FROM refinery_schema_history");
    assert_eq!(after, before);
    assert_eq!(after.len(), 2);
    assert_eq!(after[1]["checksum"].as_deref(), Some("1"));
}

#[test]
fn both_spellings_of_a_renamed_column_are_a_rename_conflict() {
    let db = TestDb::new();
    db.migrate_to(8);
    db.execute("ALTER TABLE business_profiles ADD COLUMN handles_persona boolean");
    let report = refused(&db, &["--yes", "rollback"]);
    assert_eq!(report["reason"], "rename_conflict", "{report:#}");
    assert!(report["error"]
        .as_str()
        .unwrap()
        .contains("business_profiles: both handles_persona and handles_personal_data"));
}

#[test]
fn another_migrator_holding_the_lock_is_lock_busy() {
    let db = TestDb::new();
    let _holder = db.hold_migration_lock();
    let report = refused(&db, &["--lock-wait", "1s", "migrate"]);
    assert_eq!(report["reason"], "lock_busy", "{report:#}");
    assert_eq!(report["applied"], serde_json::json!([]), "{report:#}");
}

#[test]
fn a_constraint_the_catalog_lacks_is_an_unknown_constraint() {
    let db = TestDb::new();
    let report = refused(&db, &["check-constraints", "--constraint", "nope"]);
    assert_eq!(report["reason"], "unknown_constraint", "{report:#}");
}

#[test]
fn a_failure_that_is_not_a_refusal_has_a_null_reason() {
    let run = common::run_bare(
        &[
            "--format",
            "json",
            "--database-url",
            "postgres://u@127.0.0.1:1/x?connect_timeout=3",
            "status",
        ],
        &[],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    let report = run.json();
    assert_eq!(report["exit_code"], 1, "{report:#}");
    assert!(report["reason"].is_null(), "{report:#}");
    assert!(report.as_object().unwrap().contains_key("reason"));
}

#[test]
fn rules_that_need_a_decision_are_named_in_cleanups_own_report() {
    let db = TestDb::dirty_legacy();
    let (code, report, stderr) = db.run_json(&["cleanup", "--dry-run"]);
    assert_eq!(code, 4, "{report:#}\n{stderr}");
    assert_eq!(report["command"], "cleanup");
    assert_eq!(report["reason"], "needs_decision", "{report:#}");
    assert!(!report["needs_decision"].as_array().unwrap().is_empty());
    assert!(stderr.contains("ruleiq-db: refused: "), "{stderr}");
}
