//! Looking before taking a lock (docs/design.md §9): `status --health`, the blockers every changing
//! command looks for before its first table lock, and `migrate --dry-run`'s estimate.

use crate::common;

use common::TestDb;
use postgres::Client;
use serde_json::Value;
use std::time::{Duration, Instant};

const USER: &str = "10000000-0000-0000-0000-000000000001";
const PROFILE: &str = "20000000-0000-0000-0000-000000000001";

/// The flags production's business_profiles requires (NOT NULL, no defaults), at version 7.
const PROFILE_FLAGS: &str =
    "handles_persona, processes_payme, stores_health_d, provides_financ, operates_critic, has_internation";

/// Rows every constraint accepts: one user and one business profile. The only place this file
/// writes ruleIQ rows, so it is the one place to adapt when the schema's shape changes.
fn seed_clean_rows(db: &TestDb) {
    db.execute(&format!(
        "INSERT INTO users (id, email, hashed_password) VALUES ('{USER}', 'ada@example.com', 'x');
         INSERT INTO business_profiles (id, user_id, company_name, industry, employee_count, data_sensitivity, {PROFILE_FLAGS})
         VALUES ('{PROFILE}', '{USER}', 'Clean Ltd', 'software', 10, 'High', true, false, false, false, false, false);"
    ));
}

/// `n` users (to make dead rows by deleting them).
fn insert_users(db: &TestDb, n: i32) {
    db.execute(&format!(
        "INSERT INTO users (id, email, hashed_password)
         SELECT gen_random_uuid(), 'user' || g || '@example.com', 'x' FROM generate_series(1, {n}) AS g"
    ));
}

/// `n` more business profiles that break no constraint, each of a user of its own (production
/// allows one profile per user).
fn insert_profiles(db: &TestDb, n: i32) {
    db.execute(&format!(
        "WITH owners AS (
           INSERT INTO users (id, email, hashed_password)
           SELECT gen_random_uuid(), 'owner' || g || '-' || gen_random_uuid() || '@example.com', 'x'
             FROM generate_series(1, {n}) AS g
           RETURNING id)
         INSERT INTO business_profiles (id, user_id, company_name, industry, employee_count, data_sensitivity, {PROFILE_FLAGS})
         SELECT gen_random_uuid(), id, 'Company', 'software', 10, 'High', true, false, false, false, false, false
           FROM owners"
    ));
}

/// A clean version-7 database: 008 is pending and its preflight passes.
fn clean_at_7(db: TestDb) -> TestDb {
    db.migrate_to(7);
    seed_clean_rows(&db);
    db
}

/// Waits until session `pid` has sat idle in its transaction for longer than the moment
/// ruleiq-db allows ordinary transactions.
fn wait_until_idle_for_a_moment(db: &TestDb, pid: i32) {
    let moment = ruleiq_db::db::blockers::MOMENT.as_secs_f64();
    common::wait_until(
        &mut db.client(),
        &format!(
            "SELECT coalesce(bool_or(state = 'idle in transaction'
                                     AND now() - state_change > {moment} * interval '1 second'), false)
               FROM pg_stat_activity WHERE pid = {pid}"
        ),
        "the holder has been idle in its transaction for a moment",
    );
}

/// A session that ran `sql` in an open transaction and has sat idle in it for a moment (what
/// ruleiq-db counts as a blocker); returns it and its pid. The transaction ends with it.
fn idle_in_transaction(db: &TestDb, sql: &str) -> (Client, i32) {
    let mut holder = db.client();
    let pid: i32 = holder
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    holder.batch_execute(&format!("BEGIN; {sql}")).unwrap();
    wait_until_idle_for_a_moment(db, pid);
    (holder, pid)
}

fn blockers(report: &Value) -> &Vec<Value> {
    report["blockers"]
        .as_array()
        .unwrap_or_else(|| panic!("no blockers list in {report:#}"))
}

#[test]
fn an_idle_transaction_holding_a_profile_row_is_named_waited_for_and_refused() {
    let db = clean_at_7(TestDb::new());
    let mut holder = db.client();
    let pid: i32 = holder
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    holder
        .batch_execute("SET application_name = 'billing-worker'; BEGIN")
        .unwrap();
    holder
        .batch_execute(
            "SELECT id FROM business_profiles WHERE company_name = 'Clean Ltd' FOR UPDATE",
        )
        .unwrap();
    wait_until_idle_for_a_moment(&db, pid);

    let before = db.dump();
    let (code, plan, stderr) = db.run_json(&["migrate", "--dry-run"]);
    assert_eq!(code, 0, "{stderr}");
    let named = blockers(&plan);
    assert_eq!(named.len(), 1, "{named:#?}");
    let b = &named[0];
    assert_eq!(b["pid"], pid);
    assert_eq!(b["application_name"], "billing-worker");
    assert_eq!(b["state"], "idle in transaction");
    assert_eq!(b["table"], "business_profiles");
    assert_eq!(b["lock"], "RowShareLock");
    assert!(b["age_s"].as_f64().unwrap() >= 1.0, "{b}");
    assert_eq!(b["statement"], "SELECT", "only the first keyword: {b}");
    assert!(
        plan["estimate_ms"].as_u64().is_some(),
        "a dry run estimates: {plan:#}"
    );
    db.assert_unchanged(&before);

    let started = Instant::now();
    let (code, refusal, stderr) = db.run_json(&["--lock-wait", "2s", "migrate"]);
    assert_eq!(code, 4, "{stderr}");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "it waited for the blocker to go"
    );
    assert!(
        stderr.contains(&format!("pid {pid} (billing-worker)")),
        "{stderr}"
    );
    assert!(stderr.contains("idle in transaction"), "{stderr}");
    assert!(stderr.contains("query started"), "{stderr}");
    assert!(
        !stderr.contains("Clean Ltd") && !refusal.to_string().contains("Clean Ltd"),
        "the query's text never shows: {stderr}"
    );
    assert!(!stderr.contains(db.url.split('@').next().unwrap()));
    assert_eq!(refusal["exit_code"], 4);
    assert_eq!(blockers(&refusal)[0]["pid"], pid);
    assert!(
        refusal["error"]
            .as_str()
            .unwrap()
            .contains("nothing was changed"),
        "{refusal:#}"
    );
    db.assert_unchanged(&before);
    let alive: bool = db
        .client()
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)",
            &[&pid],
        )
        .unwrap()
        .get(0);
    assert!(alive, "ruleiq-db never ends another session");

    holder.batch_execute("COMMIT").unwrap();
    let (code, done, stderr) = db.run_json(&["migrate"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(done["schema_version"], 8);
}

#[test]
fn a_blocker_that_goes_while_migrate_waits_lets_it_through() {
    let db = clean_at_7(TestDb::new());
    let (mut holder, pid) =
        idle_in_transaction(&db, "UPDATE business_profiles SET industry = industry");
    let mut migrate = db
        .command()
        .args(["--lock-wait", "60s", "migrate"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Until migrate has named the blocker, it has not gone past looking.
    let mut stderr = migrate.stderr.take().unwrap();
    let mut said = String::new();
    let mut buffer = [0u8; 4096];
    while !said.contains(&format!("pid {pid}")) {
        let n = std::io::Read::read(&mut stderr, &mut buffer).unwrap();
        assert!(n > 0, "migrate ended without naming the blocker: {said}");
        said.push_str(&String::from_utf8_lossy(&buffer[..n]));
    }
    let not_yet: i64 = db.scalar_i64("SELECT count(*) FROM refinery_schema_history");
    assert_eq!(not_yet, 7, "nothing applied while the blocker is there");
    holder.batch_execute("COMMIT").unwrap();
    let status = migrate.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert_eq!(status.code(), Some(0), "{said}{rest}");
    assert!(rest.contains("no blockers left"), "{said}{rest}");
    assert_eq!(
        db.scalar_i64("SELECT max(version)::int8 FROM refinery_schema_history"),
        8
    );
}

#[test]
fn the_applications_short_transactions_do_not_make_migrate_refuse() {
    let db = clean_at_7(TestDb::new());
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let app = scope.spawn(|| {
            let mut app = db.client();
            let mut done = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut tx = app.transaction().unwrap();
                tx.execute(
                    "UPDATE business_profiles SET industry = industry WHERE id = $1::text::uuid",
                    &[&PROFILE],
                )
                .unwrap();
                tx.commit().unwrap();
                done += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            done
        });
        let (code, _, stderr) = db.run(&["--lock-wait", "3s", "migrate"]);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let done = app.join().unwrap();
        assert_eq!(code, 0, "{stderr}");
        assert!(done > 0, "the application wrote during the run");
        assert!(!stderr.contains("waits"), "{stderr}");
    });
}

/// Rolls a prepared transaction back even when the test fails, so its database can be dropped.
struct Prepared<'a> {
    db: &'a TestDb,
    gid: String,
}

impl Drop for Prepared<'_> {
    fn drop(&mut self) {
        let _ = self
            .db
            .client()
            .batch_execute(&format!("ROLLBACK PREPARED '{}'", self.gid));
    }
}

#[test]
fn a_prepared_transaction_is_named_and_refused_until_it_is_resolved() {
    let db = TestDb::new_tuned();
    let allowed = db.scalar_i64("SELECT current_setting('max_prepared_transactions')::int8");
    if allowed == 0 {
        eprintln!("skipped: the test server has max_prepared_transactions = 0");
        return;
    }
    let db = clean_at_7(db);
    let gid = format!("ruleiq-test-{}", db.name);
    db.execute(&format!(
        "BEGIN; UPDATE business_profiles SET industry = industry; PREPARE TRANSACTION '{gid}'"
    ));
    let prepared = Prepared { db: &db, gid };

    let before = db.dump();
    let (code, plan, stderr) = db.run_json(&["migrate", "--dry-run"]);
    assert_eq!(code, 0, "{stderr}");
    let named = blockers(&plan);
    assert_eq!(named.len(), 1, "{named:#?}");
    assert_eq!(named[0]["pid"], Value::Null);
    assert_eq!(named[0]["gid"], prepared.gid.as_str());
    assert_eq!(named[0]["state"], "prepared");
    assert_eq!(named[0]["table"], "business_profiles");
    assert_eq!(named[0]["lock"], "RowExclusiveLock");

    let (code, refusal, stderr) = db.run_json(&["--lock-wait", "1s", "migrate"]);
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains(&prepared.gid), "{stderr}");
    assert_eq!(blockers(&refusal)[0]["gid"], prepared.gid.as_str());
    db.assert_unchanged(&before);

    drop(prepared);
    let (code, _, stderr) = db.run(&["migrate"]);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn cleanup_and_rollback_dry_runs_list_blockers_too() {
    let db = clean_at_7(TestDb::new());
    let (mut holder, pid) = idle_in_transaction(&db, "LOCK TABLE evidence_items IN SHARE MODE");
    let (code, report, stderr) = db.run_json(&["cleanup", "--dry-run"]);
    assert_eq!(code, 0, "{stderr}");
    let named = blockers(&report);
    assert!(
        named
            .iter()
            .any(|b| b["pid"] == pid && b["table"] == "evidence_items" && b["lock"] == "ShareLock"),
        "SHARE conflicts with cleanup's row writes: {named:#?}"
    );
    let (code, report, stderr) = db.run_json(&["rollback", "--dry-run", "--to", "0"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        blockers(&report).iter().any(|b| b["pid"] == pid),
        "{report:#}"
    );
    holder.batch_execute("ROLLBACK").unwrap();
}

#[test]
fn status_health_lists_table_sizes_and_the_indexes_nothing_scanned() {
    let db = TestDb::dirty_legacy();
    // Make one index used, and wait until the statistics show it (a backend reports them
    // when it ends).
    {
        let mut reader = db.client();
        reader
            .batch_execute(
                "SET enable_seqscan = off; SET enable_bitmapscan = off;
                 SELECT count(*) FROM users WHERE id = '00000000-0000-0000-0000-000000000000';",
            )
            .unwrap();
    }
    common::wait_until(
        &mut db.client(),
        "SELECT coalesce(idx_scan, 0) > 0 FROM pg_stat_user_indexes WHERE indexrelname = 'users_pkey'",
        "users_pkey has a scan in the statistics",
    );

    let (code, report, stderr) = db.run_json(&["status", "--health"]);
    assert_eq!(code, 0, "{stderr}");
    let health = &report["health"];
    let tables = health["tables"].as_array().unwrap();
    let existing = db.scalar_i64(&format!(
        "SELECT count(*) FROM unnest(ARRAY['{}']) AS t(name) WHERE to_regclass(t.name) IS NOT NULL",
        ruleiq_db::catalog::TABLES.join("','")
    ));
    assert_eq!(tables.len() as i64, existing, "every ruleIQ table there is");
    for t in tables {
        let name = t["table"].as_str().unwrap();
        let expected = db.scalar_i64(&format!("SELECT pg_total_relation_size('{name}')"));
        assert_eq!(t["total_bytes"], expected, "{name}");
        assert!(
            t["indexes_bytes"].as_i64().unwrap() > 0,
            "{name} has a primary key"
        );
    }
    let unused = health["unused_indexes"].as_array().unwrap();
    assert!(!unused.is_empty(), "{health:#}");
    let never_scanned: Vec<String> = db
        .client()
        .query(
            "SELECT indexrelname::text FROM pg_stat_user_indexes WHERE idx_scan = 0 AND schemaname = 'public'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for index in unused {
        let name = index["index"].as_str().unwrap().to_string();
        assert!(never_scanned.contains(&name), "{name} was scanned");
        assert!(index["bytes"].as_i64().unwrap() > 0);
    }
    assert!(
        !unused.iter().any(|i| i["index"] == "users_pkey"),
        "a scanned index is not unused"
    );
    let connections = &health["connections"];
    assert!(connections["max_connections"].as_i64().unwrap() > 0);
    assert!(connections["this_database"].as_i64().unwrap() >= 1);
    let slow = &health["slow_queries"];
    if slow["available"] == false {
        let note = slow["note"].as_str().unwrap();
        assert!(
            note.contains("shared_preload_libraries") || note.contains("CREATE EXTENSION"),
            "{note}"
        );
    }

    let (code, human, _) = db.run(&["status", "--health"]);
    assert_eq!(code, 0);
    assert!(human.contains("max_connections"), "{human}");
    assert!(human.contains("Indexes not scanned"), "{human}");
    assert!(human.contains("evidence_items"), "{human}");
}

#[test]
fn without_pg_stat_statements_health_says_how_to_enable_it() {
    let db = TestDb::new();
    db.migrate_to(7);
    let loaded = db
        .client()
        .query_one("SELECT current_setting('shared_preload_libraries')", &[])
        .unwrap()
        .get::<_, String>(0)
        .contains("pg_stat_statements");
    if loaded {
        eprintln!("skipped: the test server preloads pg_stat_statements");
        return;
    }
    let (code, yaml, stderr) = db.run(&["--format", "yaml", "status", "--health"]);
    assert_eq!(code, 0, "{stderr}");
    let report: Value = serde_yaml::from_str(&yaml).unwrap();
    let slow = &report["health"]["slow_queries"];
    assert_eq!(slow["available"], false);
    let note = slow["note"].as_str().unwrap();
    assert!(note.contains("shared_preload_libraries"), "{note}");
    assert!(
        note.contains("CREATE EXTENSION pg_stat_statements"),
        "{note}"
    );
}

#[test]
fn with_pg_stat_statements_the_slowest_statements_are_listed_without_passwords() {
    if !common::pg_stat_statements_available() {
        eprintln!("skipped: the server binaries have no pg_stat_statements extension");
        return;
    }
    let db = TestDb::new_tuned();
    let loaded = db
        .client()
        .query_one("SELECT current_setting('shared_preload_libraries')", &[])
        .unwrap()
        .get::<_, String>(0)
        .contains("pg_stat_statements");
    if !loaded {
        eprintln!("skipped: the test server does not preload pg_stat_statements");
        return;
    }
    db.migrate_to(7);
    db.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
    let role = format!("r_{}", &db.name[2..14]);
    let mut client = db.client();
    client
        .batch_execute(&format!(
            "SELECT pg_sleep(0.2); SELECT count(*) FROM users;
             CREATE ROLE {role} PASSWORD 'hunter2-secret'; DROP ROLE {role};"
        ))
        .unwrap();

    let (code, report, stderr) = db.run_json(&["status", "--health"]);
    assert_eq!(code, 0, "{stderr}");
    let slow = &report["health"]["slow_queries"];
    assert_eq!(slow["available"], true, "{slow:#}");
    let statements = slow["statements"].as_array().unwrap();
    assert!(!statements.is_empty());
    let first = &statements[0];
    assert!(
        first["query"].as_str().unwrap().contains("pg_sleep"),
        "the slowest by mean comes first: {statements:#?}"
    );
    assert!(first["mean_ms"].as_f64().unwrap() >= 150.0, "{first}");
    let means: Vec<f64> = statements
        .iter()
        .map(|s| s["mean_ms"].as_f64().unwrap())
        .collect();
    assert!(means.windows(2).all(|w| w[0] >= w[1]), "{means:?}");
    assert!(!report.to_string().contains("hunter2-secret"), "{slow:#}");
}

#[test]
fn a_table_full_of_dead_rows_is_reported_as_bloated() {
    let db = TestDb::new();
    db.migrate_to(7);
    // So that autovacuum cannot clean up before status looks.
    db.execute("ALTER TABLE users SET (autovacuum_enabled = false)");
    insert_users(&db, 300);
    db.execute("DELETE FROM users");
    common::wait_until(
        &mut db.client(),
        "SELECT n_dead_tup >= 300 FROM pg_stat_user_tables WHERE relname = 'users'",
        "the dead rows show in the statistics",
    );
    let (code, report, stderr) = db.run_json(&["status", "--health"]);
    assert_eq!(code, 0, "{stderr}");
    let bloat = report["health"]["bloat"].as_array().unwrap();
    let users = bloat
        .iter()
        .find(|b| b["table"] == "users")
        .unwrap_or_else(|| panic!("users not flagged: {bloat:#?}"));
    assert!(users["dead_rows"].as_i64().unwrap() >= 300);
    assert_eq!(users["dead_ratio"], 1.0);
    let reason = users["reason"].as_str().unwrap();
    assert!(reason.contains("autovacuum is disabled"), "{reason}");
    assert!(reason.contains("dead rows"), "{reason}");
    assert!(
        !bloat.iter().any(|b| b["table"] == "evidence_items"),
        "a table without dead rows is not flagged: {bloat:#?}"
    );
}

#[test]
fn the_estimate_grows_with_the_tables_and_says_what_it_rests_on() {
    let db = clean_at_7(TestDb::new());
    // Production's foreign key on assessment_sessions made NOT VALID: 008 adopts it and then
    // validates it (the other one is adopted valid, so it costs no scan).
    db.execute(
        "ALTER TABLE assessment_sessions DROP CONSTRAINT assessment_sessions_business_profil_fkey;
         ALTER TABLE assessment_sessions ADD CONSTRAINT assessment_sessions_business_profil_fkey
           FOREIGN KEY (business_profil) REFERENCES business_profiles(id) NOT VALID;",
    );
    let (code, small, stderr) = db.run_json(&["migrate", "--dry-run"]);
    assert_eq!(code, 0, "{stderr}");
    let estimate = &small["estimate"];
    let validated: Vec<&str> = estimate["validate"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["constraint"].as_str().unwrap())
        .collect();
    assert_eq!(validated.len(), 5, "{validated:?}");
    assert!(!validated.contains(&"fk_generated_policy_business_profile"));
    assert!(estimate["preflight_ms"].as_u64().is_some());
    assert!(estimate["basis"]
        .as_str()
        .unwrap()
        .contains("pg_relation_size"));
    assert_eq!(
        small["estimate_ms"].as_u64().unwrap(),
        estimate["preflight_ms"].as_u64().unwrap()
            + estimate["validate"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["ms"].as_u64().unwrap())
                .sum::<u64>()
    );
    let bytes = |report: &Value| -> i64 {
        report["estimate"]["validate"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["bytes"].as_i64().unwrap())
            .sum()
    };
    insert_profiles(&db, 20_000);
    let (code, big, stderr) = db.run_json(&["migrate", "--dry-run"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(bytes(&big) > bytes(&small), "more rows, more to read");
    // A foreign key's VALIDATE reads the parent as well as the child.
    let profiles = db.scalar_i64("SELECT pg_relation_size('business_profiles')");
    let fk = big["estimate"]["validate"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["constraint"] == "fk_assessment_business_profile")
        .unwrap();
    assert!(fk["bytes"].as_i64().unwrap() >= profiles, "{fk}");
    assert!(big["estimate"]["scan_rate_mb_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn rollback_refuses_while_a_session_keeps_a_table_it_would_change() {
    let db = clean_at_7(TestDb::new());
    db.migrate_to(8);
    let (mut holder, pid) = idle_in_transaction(&db, "SELECT count(*) FROM generated_policies");
    let before = db.dump();
    let (code, refusal, stderr) = db.run_json(&["--yes", "--lock-wait", "1s", "rollback"]);
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains(&format!("pid {pid}")), "{stderr}");
    let named = blockers(&refusal);
    assert!(
        named
            .iter()
            .any(|b| b["pid"] == pid && b["table"] == "generated_policies"),
        "{named:#?}"
    );
    db.assert_unchanged(&before);
    holder.batch_execute("ROLLBACK").unwrap();
}

#[test]
fn a_transaction_older_than_blocker_age_counts_even_away_from_the_tables() {
    let db = clean_at_7(TestDb::new());
    let mut sleeper = db.client();
    let pid: i32 = sleeper
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    std::thread::scope(|scope| {
        // Long enough for two runs on a busy machine; cancelled once they are done.
        let running =
            scope.spawn(move || sleeper.batch_execute("BEGIN; SELECT pg_sleep(120); COMMIT"));
        common::wait_until(
            &mut db.client(),
            &format!(
                "SELECT coalesce(bool_or(state = 'active' AND now() - xact_start > interval '1.5 seconds'), false)
                   FROM pg_stat_activity WHERE pid = {pid}"
            ),
            "the sleeper's transaction is 1.5 s old",
        );
        let (code, default_age, stderr) = db.run_json(&["migrate", "--dry-run"]);
        assert_eq!(code, 0, "{stderr}");
        assert!(
            blockers(&default_age).is_empty(),
            "younger than the default 1 min, and it holds nothing 008 needs: {default_age:#}"
        );
        let (code, short_age, stderr) =
            db.run_json(&["--blocker-age", "1s", "migrate", "--dry-run"]);
        assert_eq!(code, 0, "{stderr}");
        let named = blockers(&short_age);
        assert_eq!(named.len(), 1, "{named:#?}");
        assert_eq!(named[0]["pid"], pid);
        assert_eq!(named[0]["state"], "active");
        assert_eq!(named[0]["table"], Value::Null);
        assert!(
            named[0]["reasons"][0]
                .as_str()
                .unwrap()
                .contains("--blocker-age"),
            "{named:#?}"
        );
        db.execute(&format!("SELECT pg_cancel_backend({pid})"));
        assert!(running.join().unwrap().is_err(), "the sleep was cancelled");
    });
}

#[test]
fn compat_drop_refuses_while_a_session_sits_on_a_table_its_views_read() {
    let db = clean_at_7(TestDb::new());
    db.migrate_to(8);
    let (mut holder, pid) = idle_in_transaction(&db, "SELECT count(*) FROM business_profiles");
    let (code, _, stderr) = db.run(&[
        "--yes",
        "--lock-wait",
        "1s",
        "compat",
        "--drop",
        "--unverified",
    ]);
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains(&format!("pid {pid}")), "{stderr}");
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM pg_namespace WHERE nspname = 'ruleiq_compat'"),
        1,
        "nothing was dropped"
    );
    holder.batch_execute("COMMIT").unwrap();
    let (code, _, stderr) = db.run(&["--yes", "compat", "--drop", "--unverified"]);
    assert_eq!(code, 0, "{stderr}");
}
