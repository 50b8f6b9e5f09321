//! VALIDATE of different tables' constraints runs concurrently: a lock on one table holds up
//! only that table's constraints; and a dry run's estimate times them as they will run, the
//! smaller table's sample beside a scan of the bigger one on a second connection.

use crate::common;
use common::TestDb;
use std::time::{Duration, Instant};

/// The two constraints made NOT VALID again, on different tables; the first in catalog order
/// is on the table the test locks, so a one-after-another validation would wait behind it.
const LOCKED: (&str, &str) = ("evidence_items", "chk_evidence_status");
const FREE: (&str, &str) = ("business_profiles", "chk_employee_count_positive");

/// A version-8 database (no rows) whose `LOCKED` and `FREE` constraints are NOT VALID.
fn version_8_with_two_not_valid_constraints() -> TestDb {
    let db = TestDb::new();
    db.migrate_to(8);
    with_two_not_valid_constraints(db)
}

/// The same, with the repaired fixture's rows in both tables: something for a sample to read.
fn version_8_with_rows_and_two_not_valid_constraints() -> TestDb {
    let db = TestDb::clean_legacy();
    db.migrate_to(8);
    with_two_not_valid_constraints(db)
}

/// `db` with its `LOCKED` and `FREE` constraints made NOT VALID again.
fn with_two_not_valid_constraints(db: TestDb) -> TestDb {
    let mut client = db.client();
    for (table, name) in [LOCKED, FREE] {
        let definition: String = client
            .query_one(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = $1",
                &[&name],
            )
            .unwrap()
            .get(0);
        client
            .batch_execute(&format!(
                "ALTER TABLE {table} DROP CONSTRAINT {name};
                 ALTER TABLE {table} ADD CONSTRAINT {name} {definition} NOT VALID;"
            ))
            .unwrap();
    }
    db
}

fn is_valid(client: &mut postgres::Client, name: &str) -> bool {
    client
        .query_one(
            "SELECT convalidated FROM pg_constraint WHERE conname = $1",
            &[&name],
        )
        .unwrap()
        .get(0)
}

/// Takes, in a transaction left open, the lock VALIDATE needs on the locked table.
fn hold_validates_lock(holder: &mut postgres::Client) -> postgres::Transaction<'_> {
    let mut tx = holder.transaction().unwrap();
    tx.batch_execute(&format!(
        "LOCK TABLE {} IN SHARE UPDATE EXCLUSIVE MODE",
        LOCKED.0
    ))
    .unwrap();
    tx
}

/// Starts `check-constraints` (which validates) with these flags, JSON on stdout.
fn spawn_check(db: &TestDb, flags: &[&str]) -> std::process::Child {
    db.command()
        .args(["--format", "json", "--ignore-blockers"])
        .args(flags)
        .arg("check-constraints")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn a_lock_on_one_table_does_not_hold_up_another_tables_validate() {
    let db = version_8_with_two_not_valid_constraints();
    let mut watcher = db.client();
    assert!(!is_valid(&mut watcher, LOCKED.1) && !is_valid(&mut watcher, FREE.1));

    // SHARE UPDATE EXCLUSIVE conflicts with VALIDATE's own lock, not with the check's reads.
    let mut holder = db.client();
    let tx = hold_validates_lock(&mut holder);
    let child = spawn_check(
        &db,
        &[
            "--lock-timeout",
            "200ms",
            "--validate-lock-timeout",
            "200ms",
        ],
    );

    let started = Instant::now();
    let mut free_validated_while_locked = false;
    while started.elapsed() < Duration::from_secs(5) {
        if is_valid(&mut watcher, FREE.1) {
            free_validated_while_locked = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Hold on a little longer: the locked table's VALIDATE must still be waiting.
    std::thread::sleep(Duration::from_millis(500));
    let locked_valid_while_locked = is_valid(&mut watcher, LOCKED.1);
    tx.commit().unwrap();

    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        free_validated_while_locked,
        "{} was not validated while {} was locked; stderr:\n{stderr}",
        FREE.1, LOCKED.0
    );
    assert!(
        !locked_valid_while_locked,
        "the lock did not hold VALIDATE up"
    );
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Catalog order, whichever finished first.
    assert_eq!(report["validated"], serde_json::json!([LOCKED.1, FREE.1]));
    assert!(is_valid(&mut watcher, LOCKED.1) && is_valid(&mut watcher, FREE.1));
    assert!(
        stderr.contains("retrying"),
        "the locked table's VALIDATE should have waited and retried: {stderr}"
    );
}

/// VALIDATE's lock conflicts with no application query, so it may wait longer than
/// --lock-timeout (long enough for PostgreSQL to cancel an autovacuum in its way) instead of
/// giving up and retrying.
#[test]
fn validate_waits_past_the_short_lock_timeout_for_a_lock_the_application_never_queues_behind() {
    let db = version_8_with_two_not_valid_constraints();
    let mut holder = db.client();
    let tx = hold_validates_lock(&mut holder);
    let child = spawn_check(&db, &["--lock-timeout", "50ms", "--lock-retries", "1"]);
    // Longer than --lock-timeout, well within --validate-lock-timeout's default.
    std::thread::sleep(Duration::from_millis(700));
    tx.commit().unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("retrying"), "{stderr}");
    let mut watcher = db.client();
    assert!(is_valid(&mut watcher, LOCKED.1) && is_valid(&mut watcher, FREE.1));
}

/// A role (password `pw`) with one connection slot that reads every table and owns `owning`
/// (VALIDATE needs the owner).
fn single_slot_role(db: &TestDb, owning: &[&str]) -> String {
    let role = format!("single_{}", &db.name[2..10]);
    let owns: String = owning
        .iter()
        .map(|table| format!("ALTER TABLE {table} OWNER TO {role};"))
        .collect();
    db.execute(&format!(
        "CREATE ROLE {role} LOGIN PASSWORD 'pw' CONNECTION LIMIT 1;
         GRANT USAGE ON SCHEMA public TO {role};
         GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role};
         {owns}"
    ));
    role
}

#[test]
fn a_role_with_one_connection_slot_still_checks_and_validates_everything() {
    let db = version_8_with_two_not_valid_constraints();
    let role = single_slot_role(&db, &[LOCKED.0, FREE.0]);
    let out = db
        .cli_as(&role, "pw")
        .arg("check-constraints")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["validated"], serde_json::json!([LOCKED.1, FREE.1]));
    assert!(
        stderr.contains("no session of its own"),
        "the second table's VALIDATE should have run on the main session: {stderr}"
    );
    let mut watcher = db.client();
    assert!(is_valid(&mut watcher, LOCKED.1) && is_valid(&mut watcher, FREE.1));
}

/// Whether a dry run's estimate says it timed the smaller table's VALIDATE beside the bigger's.
fn timed_beside(report: &serde_json::Value) -> bool {
    report["estimate"]["basis"]
        .as_str()
        .expect("basis")
        .contains("ran on a second connection")
}

#[test]
fn a_dry_run_times_the_smaller_tables_validate_beside_the_biggers_and_leaves_no_session() {
    let db = version_8_with_rows_and_two_not_valid_constraints();
    let (code, report, stderr) = db.run_json(&["check-constraints", "--dry-run"]);
    assert_eq!(code, 0, "{stderr}");
    let steps: Vec<&str> = report["estimate"]["validate"]
        .as_array()
        .expect("validate steps")
        .iter()
        .map(|s| s["constraint"].as_str().unwrap())
        .collect();
    assert_eq!(steps, [LOCKED.1, FREE.1], "{report:#}");
    assert!(timed_beside(&report), "{report:#}");
    // The competing scan's connection is gone, its transaction with it, and nothing was
    // validated: a dry run.
    let others = db.scalar_i64(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
    );
    assert_eq!(others, 0, "a session of the dry run outlived it");
    let mut watcher = db.client();
    assert!(!is_valid(&mut watcher, LOCKED.1) && !is_valid(&mut watcher, FREE.1));
}

#[test]
fn without_a_second_connection_a_dry_run_times_every_validate_alone() {
    let db = version_8_with_rows_and_two_not_valid_constraints();
    let role = single_slot_role(&db, &[]);
    let out = db
        .cli_as(&role, "pw")
        .args(["check-constraints", "--dry-run"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let steps = report["estimate"]["validate"].as_array().expect("steps");
    assert_eq!(steps.len(), 2, "{report:#}");
    assert!(steps.iter().all(|s| s["ms"].as_u64().unwrap() > 0));
    assert!(!timed_beside(&report), "{report:#}");
}
