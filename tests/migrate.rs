//! `migrate` against a real PostgreSQL: the foundation's guarantees.

use crate::common;
use common::{latest, TestDb};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Read;
use std::time::{Duration, Instant};

const CATALOG_NAMES: [&str; 6] = [
    "chk_evidence_status",
    "chk_employee_count_positive",
    "chk_data_sensitivity",
    "chk_approval_workflow",
    "fk_assessment_business_profile",
    "fk_generated_policy_business_profile",
];

fn columns(db: &TestDb, table: &str) -> Vec<String> {
    db.client()
        .query(
            "SELECT column_name::text FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position",
            &[&table],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn valid_constraints(db: &TestDb) -> Vec<String> {
    db.client()
        .query(
            "SELECT conname::text FROM pg_constraint WHERE convalidated AND conname = ANY($1) ORDER BY 1",
            &[&CATALOG_NAMES.to_vec()],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Every row of every ruleIQ table as JSON, keyed by table then id, with legacy names mapped to
/// the full ones so that version 7 and version 8 snapshots compare.
fn all_rows(db: &TestDb) -> BTreeMap<String, BTreeMap<String, Value>> {
    let mut client = db.client();
    let mut out = BTreeMap::new();
    for table in ruleiq_db::catalog::TABLES {
        let rows = client
            .query(&format!("SELECT id::text, to_jsonb(t) FROM {table} t"), &[])
            .unwrap();
        let mut by_id = BTreeMap::new();
        for row in rows {
            let mut value: Value = row.get(1);
            if let Value::Object(map) = &mut value {
                for r in ruleiq_db::catalog::renames::RENAMES
                    .iter()
                    .filter(|r| r.table == *table)
                {
                    if let Some(v) = map.remove(r.legacy) {
                        map.insert(r.current.to_string(), v);
                    }
                }
            }
            by_id.insert(row.get::<_, String>(0), value);
        }
        out.insert(table.to_string(), by_id);
    }
    out
}

/// `status`'s `adopted_from` of each catalog constraint, by name.
fn adopted_from(db: &TestDb) -> BTreeMap<String, Value> {
    let (_, status, _) = db.run_json(&["status"]);
    status["constraints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["adopted_from"].clone(),
            )
        })
        .collect()
}

#[test]
fn fresh_database_reaches_the_newest_version_with_full_names_and_six_valid_constraints() {
    let db = TestDb::new();
    let (code, report, stderr) = db.run_json(&["migrate"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["command"], "migrate");
    assert_eq!(report["ok"], true);
    assert_eq!(report["from_version"], 0);
    assert_eq!(report["to_version"], latest());
    assert_eq!(report["schema_version"], latest());
    assert_eq!(
        report["applied"].as_array().unwrap().len(),
        latest() as usize
    );
    assert!(report["applied"][0]["duration_ms"].is_u64());
    // The four CHECKs are added NOT VALID and validated; the two foreign keys 003 created are
    // adopted as they are (valid already), not added a second time.
    assert_eq!(report["validated"].as_array().unwrap().len(), 4);
    // What each step took, beside the dry run's estimate of the same steps: the preflight's
    // scan and each VALIDATE, in the order `validated` names them.
    assert!(report["preflight"]["duration_ms"].is_u64(), "{report:#}");
    let timed: Vec<&Value> = report["validate_ms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["constraint"])
        .collect();
    let validated: Vec<&Value> = report["validated"].as_array().unwrap().iter().collect();
    assert_eq!(timed, validated);
    assert!(report["validate_ms"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["ms"].is_u64()));
    for r in ruleiq_db::catalog::renames::RENAMES {
        let present = columns(&db, r.table);
        assert!(
            present.contains(&r.current.to_string()) && !present.contains(&r.legacy.to_string()),
            "{}.{} not renamed to {}: {present:?}",
            r.table,
            r.legacy,
            r.current
        );
    }
    assert_eq!(valid_constraints(&db).len(), 6);
    for (table, fk) in [
        ("assessment_sessions", "fk_assessment_business_profile"),
        ("generated_policies", "fk_generated_policy_business_profile"),
    ] {
        let on_column = db.client()
            .query(
                "SELECT k.conname::text FROM pg_constraint k JOIN pg_attribute a
                    ON a.attrelid = k.conrelid AND a.attnum = ANY (k.conkey)
                  WHERE k.conrelid = $1::text::regclass AND k.contype = 'f' AND a.attname = 'business_profile_id'",
                &[&table],
            )
            .unwrap()
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>();
        assert_eq!(
            on_column,
            [fk],
            "exactly one foreign key on {table}.business_profile_id"
        );
    }
    let adopted = adopted_from(&db);
    assert_eq!(
        adopted["fk_assessment_business_profile"],
        "assessment_sessions_business_profil_fkey"
    );
    assert_eq!(
        adopted["fk_generated_policy_business_profile"],
        "generated_policies_business_profil_fkey"
    );
    assert_eq!(adopted["chk_evidence_status"], Value::Null);
    // Nothing left to do the second time.
    let (code, report, _) = db.run_json(&["migrate"]);
    assert_eq!(code, 0);
    assert_eq!(report["applied"].as_array().unwrap().len(), 0);
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM refinery_schema_history"),
        i64::from(latest())
    );
}

#[test]
fn clean_version_7_keeps_every_row_and_value_under_the_new_names() {
    let db = TestDb::clean_legacy();
    let before = all_rows(&db);
    assert!(
        before.values().all(|rows| !rows.is_empty()),
        "every table has rows"
    );
    let (code, report, stderr) = db.run_json(&["migrate"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["from_version"], 7);
    assert_eq!(report["applied"][0]["version"], 8);
    assert_eq!(all_rows(&db), before);
    assert_eq!(valid_constraints(&db).len(), 6);
}

#[test]
fn dirty_version_7_stops_with_exit_3_and_changes_nothing() {
    let db = TestDb::dirty_legacy();
    let before = db.dump();
    let (code, report, stderr) = db.run_json(&["migrate"]);
    assert_eq!(code, 3, "{stderr}");
    assert_eq!(report["ok"], false);
    // 19 violating rows in all; the 3 orphans lie under foreign keys production already
    // enforces (valid, adopted by 008 as they are), which the preflight does not scan again.
    assert_eq!(report["preflight"]["total_violations"], 16);
    assert_eq!(
        report["preflight"]["already_enforced"],
        serde_json::json!([
            "fk_assessment_business_profile",
            "fk_generated_policy_business_profile"
        ])
    );
    let blocked: Vec<&str> = report["blocked_by"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        blocked,
        [
            "chk_evidence_status",
            "chk_employee_count_positive",
            "chk_data_sensitivity",
            "chk_approval_workflow"
        ]
    );
    assert!(stderr.contains("cleanup"), "points to cleanup: {stderr}");
    db.assert_unchanged(&before);
}

#[test]
fn orphans_under_foreign_keys_production_enforces_do_not_stop_the_repair() {
    // Clean but for the fixture's three orphans, which a restore with triggers disabled left
    // under production's valid foreign keys: 008 adopts those keys as they are and adds
    // nothing over these rows, so migrate goes on; check-constraints still counts them.
    let db = TestDb::dirty_legacy();
    db.execute(
        "UPDATE evidence_items SET status = 'collected' WHERE status NOT IN ('not_started','in_progress','collected','approved','rejected');
         UPDATE evidence_items SET approved_at = now(), approved_by = user_id::text WHERE status = 'approved';
         UPDATE business_profiles SET employee_count = 1 WHERE employee_count <= 0;
         UPDATE business_profiles SET data_sensitivity = 'High' WHERE data_sensitivity NOT IN ('Low','Medium','High','Critical');",
    );
    let (code, report, stderr) = db.run_json(&["migrate"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["preflight"]["total_violations"], 0);
    assert!(
        stderr.contains("already valid in the database, not scanned again"),
        "{stderr}"
    );
    assert_eq!(valid_constraints(&db).len(), 6);
    let orphans = db.scalar_i64(
        "SELECT count(*) FROM assessment_sessions a WHERE business_profile_id IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM business_profiles p WHERE p.id = a.business_profile_id)",
    );
    assert_eq!(orphans, 2, "the rows are as they were");
    let (code, check, stderr) = db.run_json(&["check-constraints", "--dry-run"]);
    assert_eq!(code, 3, "{stderr}");
    assert_eq!(check["total_violations"], 3);
}

#[test]
fn a_column_renamed_by_hand_is_accepted_and_both_names_are_refused() {
    let db = TestDb::clean_legacy();
    db.execute(
        "ALTER TABLE business_profiles RENAME COLUMN handles_persona TO handles_personal_data",
    );
    let (code, _, stderr) = db.run(&["migrate"]);
    assert_eq!(code, 0, "{stderr}");
    let bp = columns(&db, "business_profiles");
    assert!(
        bp.contains(&"handles_personal_data".to_string())
            && bp.contains(&"processes_payments".to_string())
    );

    let db = TestDb::clean_legacy();
    db.execute("ALTER TABLE assessment_sessions ADD COLUMN questions_answered JSONB");
    let before = db.dump();
    let (code, _, stderr) = db.run(&["migrate"]);
    assert_eq!(code, 4, "{stderr}");
    assert!(
        stderr.contains("assessment_sessions")
            && stderr.contains("questions_answe")
            && stderr.contains("questions_answered"),
        "{stderr}"
    );
    db.assert_unchanged(&before);
}

#[test]
fn two_migrates_at_once_apply_each_version_once() {
    let db = TestDb::new();
    // Hold the migration lock so that both start waiting, then let them race for it.
    let mut holder = db.hold_migration_lock();
    let spawn = || db.spawn(&["--format", "json", "migrate"]);
    let (a, b) = (spawn(), spawn());
    // Both have tried the lock once and found it taken (and so say they wait).
    common::poll_until(Duration::from_secs(60), || {
        db.scalar_i64(&format!(
            "SELECT count(*) FROM pg_stat_activity
              WHERE datname = '{}' AND state = 'idle' AND query LIKE '%pg_try_advisory_lock%'",
            db.name
        )) >= 2
    });
    holder
        .execute(
            "SELECT pg_advisory_unlock($1)",
            &[&ruleiq_db::db::MIGRATION_LOCK_KEY],
        )
        .unwrap();
    let mut applied_counts = Vec::new();
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        assert!(stderr.contains("waiting for another ruleiq-db"), "{stderr}");
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        applied_counts.push(report["applied"].as_array().unwrap().len());
    }
    applied_counts.sort();
    assert_eq!(applied_counts, vec![0, latest() as usize]);
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM refinery_schema_history"),
        i64::from(latest())
    );
    assert_eq!(
        db.scalar_i64("SELECT count(DISTINCT version) FROM refinery_schema_history"),
        8
    );
}

#[test]
fn a_second_migrator_gives_up_with_exit_4_after_the_wait_bound() {
    let db = TestDb::new();
    let _holder = db.hold_migration_lock();
    let (code, _, stderr) = db.run(&["--lock-wait", "1s", "migrate"]);
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("holds the migration lock"), "{stderr}");
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"),
        0
    );
}

#[test]
fn a_second_migrate_waits_for_a_session_and_is_refused_until_it_ends() {
    use ruleiq_db::db::Session;
    let db = TestDb::new();
    let safety = common::test_safety();
    let log = ruleiq_db::progress::Log::new(true, true);
    let session = Session::begin(db.target(), db.client(), safety, log).unwrap();
    let started = Instant::now();
    let (code, _, stderr) = db.run(&["--lock-wait", "1s", "migrate"]);
    assert_eq!(code, 4, "{stderr}");
    assert!(started.elapsed() >= Duration::from_secs(1), "it waited");
    assert!(stderr.contains("waiting for another ruleiq-db"), "{stderr}");
    assert!(
        stderr.contains("still holds the migration lock"),
        "{stderr}"
    );
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"),
        0
    );
    // Ending the session closes its connection, which releases the lock.
    drop(session);
    let (code, _, stderr) = db.run(&["--lock-wait", "5s", "migrate"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM refinery_schema_history"),
        i64::from(latest())
    );
}

#[test]
fn a_locked_table_is_retried_and_other_sessions_never_queue_long() {
    let db = TestDb::clean_legacy();
    // Another session reads business_profiles in a long transaction: 008's rename cannot get
    // its ACCESS EXCLUSIVE lock until it ends.
    let mut blocker = db.client();
    let mut tx = blocker.transaction().unwrap();
    tx.execute("LOCK TABLE business_profiles IN ACCESS SHARE MODE", &[])
        .unwrap();

    let mut migrate = db.spawn(&[
        "--format",
        "json",
        "--ignore-blockers",
        "--lock-timeout",
        "300ms",
        "migrate",
    ]);

    // Meanwhile the application keeps reading. While migrate waits for its lock, these reads
    // queue behind it, but for no longer than lock_timeout before migrate backs off.
    let mut app = db.client();
    let started = Instant::now();
    let mut worst = Duration::ZERO;
    while started.elapsed() < Duration::from_secs(4) {
        let t = Instant::now();
        app.query("SELECT count(*) FROM business_profiles", &[])
            .unwrap();
        worst = worst.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(20));
    }
    tx.commit().unwrap();
    let status = migrate.wait().unwrap();
    let mut stderr = String::new();
    migrate
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("retrying"),
        "migrate said it retried: {stderr}"
    );
    // Without lock_timeout the reads would have queued for the whole 4 s the blocker held on;
    // the bound is loose on purpose (shared machine), the behaviour is what is tested.
    assert!(
        worst < Duration::from_millis(2500),
        "a read queued for {worst:?}"
    );
    assert_eq!(valid_constraints(&db).len(), 6);
}

#[test]
fn migrate_waits_for_a_report_holding_its_tables_rather_than_queue_and_give_up() {
    let db = TestDb::clean_legacy();
    // A report idle in transaction on evidence_items, old enough to count as long; it
    // commits 700 ms after migrate starts.
    let mut report = db.client();
    report
        .batch_execute("BEGIN; LOCK TABLE evidence_items IN ACCESS SHARE MODE")
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));

    // One attempt only, with a lock_timeout far shorter than the report: an attempt made
    // while the report is open gives up and migrate fails. It succeeds only by waiting for
    // the report to end before asking for 008's locks (at most a second, less than 700 ms
    // here).
    let migrate = db.spawn(&[
        "--ignore-blockers",
        "--lock-timeout",
        "100ms",
        "--lock-retries",
        "1",
        "migrate",
    ]);
    let committing = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(700));
        report.batch_execute("COMMIT").unwrap();
    });
    let out = migrate.wait_with_output().unwrap();
    committing.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("gave up"), "{stderr}");
    assert_eq!(valid_constraints(&db).len(), 6);
}

#[test]
fn dry_run_changes_nothing_not_even_the_history_table() {
    let db = TestDb::new();
    let before = db.dump();
    let (code, report, stderr) = db.run_json(&["migrate", "--dry-run"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["dry_run"], true);
    let plan = report["plan"].as_array().unwrap();
    assert_eq!(plan.len(), latest() as usize);
    let repair = &plan[7];
    assert_eq!(repair["name"], "repair_schema");
    let locks: Vec<&str> = repair["statements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["lock"].as_str().unwrap())
        .collect();
    assert!(locks.iter().any(|l| l.starts_with("ACCESS EXCLUSIVE")));
    assert!(locks
        .iter()
        .any(|l| l.starts_with("SHARE UPDATE EXCLUSIVE")));
    db.assert_unchanged(&before);
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM pg_tables WHERE tablename = 'refinery_schema_history'"),
        0
    );

    let db = TestDb::dirty_legacy();
    let before = db.dump();
    let (code, report, _) = db.run_json(&["migrate", "--dry-run"]);
    assert_eq!(code, 3, "the preflight's verdict shows in the exit code");
    assert_eq!(report["preflight"]["ok"], false);
    db.assert_unchanged(&before);
}

#[test]
fn refuses_an_edited_migration_and_changes_nothing() {
    let db = TestDb::new();
    db.migrate_to(3);
    db.execute("UPDATE refinery_schema_history SET checksum = '42' WHERE version = 2");
    let before = db.dump();
    let (code, _, stderr) = db.run(&["migrate"]);
    assert_eq!(code, 4, "{stderr}");
    assert!(
        stderr.contains("V2") && stderr.contains("edited"),
        "{stderr}"
    );
    db.assert_unchanged(&before);
}

#[test]
fn refuses_a_target_that_does_not_exist_or_lies_below_the_current_version() {
    let db = TestDb::new();
    db.migrate_to(5);
    let (code, _, stderr) = db.run(&["migrate", "--target", "9"]);
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("does not exist"), "{stderr}");
    let (code, _, stderr) = db.run(&["migrate", "--target", "3"]);
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("rollback"), "{stderr}");
}

#[test]
fn refuses_a_database_with_tables_but_no_history_and_points_to_baseline() {
    let db = TestDb::new();
    db.execute("CREATE TABLE users (id uuid PRIMARY KEY)");
    let (code, _, stderr) = db.run(&["migrate"]);
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("baseline"), "{stderr}");
}

#[test]
fn connection_failures_exit_1_with_one_line_naming_the_host_not_the_password() {
    let db = TestDb::new();
    let cases = [
        (
            "postgres://u:sekrit-pw@localhost:notaport/x",
            "invalid database URL",
        ),
        (
            "postgres://u:sekrit-pw@127.0.0.1:1/x?connect_timeout=3",
            "127.0.0.1:1",
        ),
    ];
    for (url, expected) in cases {
        let run = common::run_bare(&["--database-url", url, "status"], &[]);
        let stderr = &run.stderr;
        assert_eq!(run.code, 1, "{url}: {stderr}");
        assert!(stderr.contains(expected), "{url}: {stderr}");
        assert!(!stderr.contains("sekrit-pw"), "password leaked: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
    let wrong = db.url.replacen(":", "#", 2).replacen("#", ":", 1);
    let (user_part, rest) = wrong.split_once('#').unwrap();
    let (_, host_part) = rest.split_once('@').unwrap();
    let wrong = format!("{user_part}:wrong-sekrit@{host_part}");
    let run = common::run_bare(&["--database-url", &wrong, "status"], &[]);
    let stderr = &run.stderr;
    assert_eq!(run.code, 1, "{stderr}");
    assert!(
        stderr.contains("127.0.0.1") && stderr.contains("password authentication failed"),
        "{stderr}"
    );
    assert!(!stderr.contains("wrong-sekrit"), "{stderr}");
}

#[test]
fn pg_environment_variables_are_used_without_a_url() {
    let db = TestDb::new();
    let url = url_parts(&db.url);
    let run = common::run_bare(
        &["--format", "json", "migrate"],
        &[
            ("PGHOST", "127.0.0.1"),
            ("PGPORT", &url.port),
            ("PGUSER", &url.user),
            ("PGPASSWORD", &url.password),
            ("PGDATABASE", &db.name),
            ("PGSSLMODE", "disable"),
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM refinery_schema_history"),
        8
    );
}

#[test]
fn without_a_url_the_local_socket_is_used_as_libpq_does() {
    let Some((socket_dir, port)) = common::local_socket() else {
        // An external server: its socket is not ours to know.
        eprintln!("skipped: RULEIQ_TEST_DATABASE_URL names the server, whose socket is unknown");
        return;
    };
    let db = TestDb::new();
    let out = common::binary()
        .env_remove("PGPASSWORD")
        .env("PGHOST", &socket_dir)
        .env("PGPORT", port.to_string())
        .env("PGUSER", "postgres")
        .env("PGDATABASE", &db.name)
        .args(["--format", "json", "migrate", "--target", "2"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // No password is given and TCP needs one (scram-sha-256): only the socket (trust) works.
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["to_version"], 2);
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM refinery_schema_history"),
        2
    );
}

struct UrlParts {
    user: String,
    password: String,
    port: String,
}

fn url_parts(url: &str) -> UrlParts {
    let rest = url.strip_prefix("postgres://").unwrap();
    let (auth, rest) = rest.split_once('@').unwrap();
    let (user, password) = auth.split_once(':').unwrap();
    let hostport = rest.split('/').next().unwrap();
    let port = hostport.rsplit_once(':').unwrap().1.to_string();
    UrlParts {
        user: user.into(),
        password: password.into(),
        port,
    }
}

#[test]
fn status_reports_migrations_constraints_and_drift() {
    let db = TestDb::dirty_legacy();
    let (code, report, _) = db.run_json(&["status"]);
    assert_eq!(code, 0);
    assert_eq!(report["schema_version"], 7);
    let states: Vec<&str> = report["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states,
        ["applied", "applied", "applied", "applied", "applied", "applied", "applied", "pending"]
    );
    // At 7 the CHECKs are absent and each catalog foreign key is production's own, under
    // Alembic's name; the truncations 008 keeps are listed for information.
    let states: Vec<(&str, &str)> = report["constraints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["state"].as_str().unwrap(),
                c["adopted_from"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("absent", ""),
            ("absent", ""),
            ("absent", ""),
            ("absent", ""),
            ("valid", "assessment_sessions_business_profil_fkey"),
            ("valid", "generated_policies_business_profil_fkey")
        ]
    );
    let truncations: Vec<String> = report["known_truncations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            format!(
                "{}.{}",
                t["table"].as_str().unwrap(),
                t["column"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(truncations.len(), 11, "{truncations:?}");
    assert!(truncations.contains(&"compliance_frameworks.applicable_indu".to_string()));
    db.execute(
        "ALTER TABLE generated_policies RENAME COLUMN business_profil TO business_profile_id",
    );
    let (_, report, _) = db.run_json(&["status"]);
    let drift = serde_json::to_string(&report["drift"]).unwrap();
    assert!(
        drift.contains("generated_policies.business_profil") && drift.contains("renamed by hand"),
        "{drift}"
    );
}

/// 008 adopts a foreign key production already has even when it is NOT VALID (validating it
/// afterwards), adds one where none exists, and its rollback gives back exactly what was there.
#[test]
fn foreign_keys_are_adopted_when_present_validated_when_not_valid_and_added_when_absent() {
    let db = TestDb::clean_legacy();
    db.execute(
        "ALTER TABLE assessment_sessions DROP CONSTRAINT assessment_sessions_business_profil_fkey;
         ALTER TABLE assessment_sessions ADD CONSTRAINT assessment_sessions_business_profil_fkey
           FOREIGN KEY (business_profil) REFERENCES business_profiles(id) NOT VALID;
         ALTER TABLE generated_policies DROP CONSTRAINT generated_policies_business_profil_fkey;",
    );
    let (code, report, stderr) = db.run_json(&["migrate"]);
    assert_eq!(code, 0, "{stderr}");
    let validated: Vec<&str> = report["validated"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        validated.contains(&"fk_assessment_business_profile"),
        "{validated:?}"
    );
    assert!(
        validated.contains(&"fk_generated_policy_business_profile"),
        "{validated:?}"
    );
    assert_eq!(valid_constraints(&db).len(), 6);
    let adopted = adopted_from(&db);
    assert_eq!(
        adopted["fk_assessment_business_profile"],
        "assessment_sessions_business_profil_fkey"
    );
    assert_eq!(adopted["fk_generated_policy_business_profile"], Value::Null);
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND conrelid = 'generated_policies'::regclass AND conkey = ARRAY[(SELECT attnum FROM pg_attribute WHERE attrelid = 'generated_policies'::regclass AND attname = 'business_profile_id')]"),
        1
    );

    let (code, _, stderr) = db.run(&["--yes", "rollback"]);
    assert_eq!(code, 0, "{stderr}");
    let names: Vec<String> = db
        .client()
        .query(
            "SELECT conname::text FROM pg_constraint WHERE contype = 'f'
               AND conrelid IN ('assessment_sessions'::regclass, 'generated_policies'::regclass)
               AND conname LIKE '%business_profil%' ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    // The adopted key is back under its own name (validated now); the added one is gone.
    assert_eq!(names, ["assessment_sessions_business_profil_fkey"]);
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM pg_description d JOIN pg_constraint c ON c.oid = d.objoid WHERE c.conname = 'assessment_sessions_business_profil_fkey'"),
        0,
        "the adoption mark goes with the rollback"
    );
}

#[test]
fn a_dry_run_the_preflight_blocks_still_shows_what_008_will_do() {
    let db = TestDb::dirty_legacy();
    let before = db.dump();
    let (code, report, stderr) = db.run_json(&["migrate", "--dry-run"]);
    assert_eq!(code, 3, "{stderr}");
    assert_eq!(report["preflight"]["ok"], false);
    assert!(!report["blocked_by"].as_array().unwrap().is_empty());
    let plan = report["plan"]
        .as_array()
        .unwrap_or_else(|| panic!("no plan in {report:#}"));
    assert_eq!(plan.len(), (latest() - 7) as usize);
    assert_eq!(plan[0]["version"], 8);
    let statements = plan[0]["statements"].as_array().unwrap();
    assert!(statements
        .iter()
        .any(|s| s["sql"].as_str().unwrap().starts_with("LOCK TABLE")));
    assert!(statements
        .iter()
        .all(|s| !s["lock"].as_str().unwrap().is_empty()));
    assert!(statements.iter().any(|s| s["sql"]
        .as_str()
        .unwrap()
        .contains("VALIDATE CONSTRAINT \"chk_evidence_status\"")));

    let (code, table, stderr) = db.run(&["migrate", "--dry-run"]);
    assert_eq!(code, 3, "{stderr}");
    assert!(table.contains("V8 repair_schema"), "{table}");
    assert!(table.contains("ACCESS EXCLUSIVE"), "{table}");
    assert!(table.contains("Blocked by:"), "{table}");
    db.assert_unchanged(&before);
}

#[test]
fn a_preflight_cut_off_by_the_server_says_so_and_that_nothing_was_applied() {
    let db = TestDb::new();
    db.migrate_to(7);
    // The preflight reads evidence_items; a lock held on it keeps the preflight waiting
    // (with a lock timeout long enough) until its backends are terminated, as a restart would.
    let mut holder = db.client();
    holder
        .batch_execute("BEGIN; LOCK TABLE public.evidence_items IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let child = db.spawn(&["--format", "json", "--lock-timeout", "10min", "migrate"]);
    let mut admin = db.client();
    common::wait_until(
        &mut admin,
        "SELECT EXISTS (SELECT 1 FROM pg_stat_activity
                         WHERE datname = current_database() AND application_name = 'ruleiq-db'
                           AND wait_event_type = 'Lock')",
        "the preflight waits for the lock",
    );
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE datname = current_database() AND application_name = 'ruleiq-db'",
            &[],
        )
        .unwrap();
    let out = child.wait_with_output().unwrap();
    holder.batch_execute("ROLLBACK").unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let error = report["error"].as_str().unwrap();
    assert!(
        error.contains("the preflight before 008")
            && error.contains("did not finish")
            && error.contains("nothing of 008 was applied and the database stays at version 7"),
        "{error}"
    );
    // PostgreSQL's own words stay, whichever of the preflight's connections noticed first.
    assert!(
        error.contains("terminating connection") || error.contains("connection closed"),
        "{error}"
    );
    assert_eq!(
        db.scalar_i64("SELECT max(version)::int8 FROM refinery_schema_history"),
        7
    );
}

/// A database that the build before the search_path fix migrated (or adopted) carries that
/// build's checksums of 001–007; their text changed only by naming every object with its
/// schema, so the history is not refused as edited. Any other checksum still is.
#[test]
fn a_history_recorded_before_names_were_qualified_is_not_refused() {
    let db = TestDb::new();
    db.migrate_to(7);
    let earlier = &ruleiq_db::catalog::migrations::CHECKSUMS_BEFORE_QUALIFYING[..7];
    for &(version, checksum) in earlier {
        db.execute(&format!(
            "UPDATE refinery_schema_history SET checksum = '{checksum}' WHERE version = {version}"
        ));
    }
    let (code, doc, stderr) = db.run_json(&["status"]);
    assert_eq!(code, 0, "{doc}\n{stderr}");
    let (code, doc, stderr) = db.run_json(&["migrate"]);
    assert_eq!(code, 0, "{doc}\n{stderr}");
    assert_eq!(doc["schema_version"], latest());
    db.execute("UPDATE refinery_schema_history SET checksum = '42' WHERE version = 3");
    let (code, doc, _) = db.run_json(&["rollback", "--to", "7", "--yes"]);
    assert_eq!(code, 4, "{doc}");
    assert_eq!(doc["reason"], "edited_history");
}
