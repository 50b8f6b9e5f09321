//! Faults an adversarial run found (issue 15), each held by a test against a real PostgreSQL
//! and the real binary.

use crate::common;
use common::{latest, TestDb};
use postgres::Client;
use serde_json::Value;
use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

/// Rows this file inserts itself, in one place so that they are easy to adapt to the schema:
/// one user, one business profile and `n` evidence items that break no constraint.
fn insert_clean_evidence(db: &TestDb, n: i64) {
    // The rows are valid by construction: skipping the foreign-key triggers (a superuser's
    // session_replication_role) makes a big table quick to fill.
    db.execute(&format!(
        "SET session_replication_role = replica;
         INSERT INTO users (id, email, hashed_password)
           VALUES (gen_random_uuid(), 'big@example.com', 'x');
         INSERT INTO business_profiles
             (id, user_id, company_name, industry, employee_count, data_sensitivity, handles_persona,
              processes_payme, stores_health_d, provides_financ, operates_critic, has_internation)
           SELECT gen_random_uuid(), id, 'Big Ltd', 'Software', 10, 'Low', true, false, false, false, false, false
             FROM users WHERE email = 'big@example.com';
         INSERT INTO compliance_frameworks (id, name, display_name, description, category)
           VALUES (gen_random_uuid(), 'ISO27001', 'ISO/IEC 27001', 'ISMS', 'security');
         INSERT INTO evidence_items (id, user_id, business_profile_id, framework_id, evidence_name,
             evidence_type, control_reference, description, status)
           SELECT gen_random_uuid(), u.id, b.id, f.id, 'evidence ' || g, 'note', 'T.1', 'a row', 'collected'
             FROM users u JOIN business_profiles b ON b.user_id = u.id, compliance_frameworks f,
                  generate_series(1, {n}) AS g
            WHERE u.email = 'big@example.com';
         ANALYZE;"
    ));
}

/// A policy that repairs only evidence statuses and skips every other rule, so that no rule
/// needs a decision whatever the columns' nullability.
fn evidence_status_only_policy(dir: &std::path::Path) -> String {
    let path = dir.join("evidence-only.yaml");
    std::fs::write(
        &path,
        "constraints:
  chk_employee_count_positive: skip
  chk_data_sensitivity: skip
  chk_approval_workflow: skip
  fk_assessment_business_profile: skip
  fk_generated_policy_business_profile: skip
",
    )
    .unwrap();
    path.to_str().unwrap().to_string()
}

/// A URL with one more query parameter.
fn with_param(url: &str, param: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{param}")
}

/// The same server and database as another role.
/// The binary with an explicit URL (not the harness's superuser one).
fn cli_with_url(url: &str) -> assert_cmd::Command {
    common::cli_at(url)
}

fn output(cmd: &mut assert_cmd::Command) -> (i32, String, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Parses stdout as exactly one JSON document.
fn one_document(stdout: &str) -> Value {
    let mut stream = serde_json::Deserializer::from_str(stdout).into_iter::<Value>();
    let first = stream
        .next()
        .unwrap_or_else(|| panic!("no JSON document on stdout: {stdout:?}"))
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {stdout}"));
    assert!(
        stream.next().is_none(),
        "stdout holds more than one document:\n{stdout}"
    );
    first
}

fn constraint_state(db: &TestDb, name: &str) -> String {
    let row = db
        .client()
        .query_one(
            "SELECT CASE WHEN convalidated THEN 'valid' ELSE 'not_valid' END
               FROM pg_constraint WHERE conname = $1",
            &[&name],
        )
        .unwrap();
    row.get(0)
}

/// Re-creates a catalog constraint NOT VALID, as a VALIDATE that never finished leaves it.
fn make_not_valid(db: &TestDb, name: &str, table: &str) {
    let def: String = db
        .client()
        .query_one(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = $1",
            &[&name],
        )
        .unwrap()
        .get(0);
    db.execute(&format!(
        "ALTER TABLE {table} DROP CONSTRAINT {name};
         ALTER TABLE {table} ADD CONSTRAINT {name} {def} NOT VALID;"
    ));
    assert_eq!(constraint_state(db, name), "not_valid");
}

/// A session holding a lock that VALIDATE (SHARE UPDATE EXCLUSIVE) waits for, while reads
/// (ACCESS SHARE) go on; the lock goes when the returned client does.
fn hold_validate_lock(db: &TestDb, table: &str) -> Client {
    let mut holder = db.client();
    holder
        .batch_execute(&format!(
            "BEGIN; LOCK TABLE {table} IN SHARE UPDATE EXCLUSIVE MODE"
        ))
        .unwrap();
    holder
}

/// The pid of ruleiq-db's backend once it waits for a table lock in VALIDATE.
fn wait_for_validate_to_block(db: &TestDb) -> i32 {
    let mut watcher = db.client();
    let mut pid = None;
    common::poll_until_named(
        Duration::from_secs(60),
        "ruleiq-db waited for a table lock in VALIDATE",
        || {
            pid = watcher
                .query_opt(
                    "SELECT pid FROM pg_stat_activity
                      WHERE datname = current_database() AND application_name = 'ruleiq-db'
                        AND wait_event_type = 'Lock' AND query ILIKE '%VALIDATE CONSTRAINT%'",
                    &[],
                )
                .unwrap()
                .map(|row| row.get(0));
            pid.is_some()
        },
    );
    pid.unwrap()
}

// 3. --output

#[test]
fn an_unwritable_output_path_exits_1_before_anything_changes() {
    let db = TestDb::new();
    let before = db.dump();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no such dir").join("report.json");
    let (code, stdout, stderr) = db.run(&[
        "--format",
        "json",
        "--output",
        path.to_str().unwrap(),
        "migrate",
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("report.json"), "{stderr}");
    let doc = one_document(&stdout);
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["exit_code"], 1);
    db.assert_unchanged(&before);
}

#[test]
fn a_failure_replaces_an_old_output_file() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    for format in ["table", "json", "yaml"] {
        let path = dir.path().join(format!("report.{format}"));
        std::fs::write(&path, "an old report of another run\n").unwrap();
        let (code, stdout, stderr) = db.run(&[
            "--format",
            format,
            "--output",
            path.to_str().unwrap(),
            "migrate",
            "--target",
            "99",
        ]);
        assert_eq!(code, 4, "{format}: {stderr}");
        let written = std::fs::read_to_string(&path).unwrap();
        assert!(!written.contains("old report"), "{format}: {written}");
        assert!(written.contains("--target 99"), "{format}: {written}");
        match format {
            "table" => {
                assert!(written.contains("FAILED (exit 4)"), "{written}");
                assert_eq!(stdout, "", "the table format prints failures on stderr");
            }
            "json" => {
                let doc: Value = serde_json::from_str(&written).unwrap();
                assert_eq!(doc["exit_code"], 4);
                assert_eq!(one_document(&stdout), doc);
            }
            _ => {
                let doc: Value = serde_yaml::from_str(&written).unwrap();
                assert_eq!(doc["exit_code"], 4);
                assert_eq!(doc["ok"], false);
            }
        }
    }
}

#[test]
fn stdout_holds_one_document_when_the_output_file_cannot_be_written() {
    // /dev/full opens but refuses every write: the report cannot be saved after the work.
    if !std::path::Path::new("/dev/full").exists() {
        eprintln!("skipped: no /dev/full to refuse the report's writes");
        return;
    }
    let db = TestDb::new();
    db.migrate_to(2);
    let (code, stdout, stderr) = db.run(&["--format", "json", "--output", "/dev/full", "status"]);
    assert_eq!(code, 1, "{stderr}");
    let doc = one_document(&stdout);
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["command"], "status");
    assert!(
        doc["error"].as_str().unwrap().contains("/dev/full"),
        "{doc}"
    );
}

// 4. statement_timeout

#[test]
fn a_database_statement_timeout_neither_kills_validation_nor_the_check() {
    let db = TestDb::new();
    db.migrate_to(7);
    // Big enough that every scan and VALIDATE takes several times the timeout (about 50ms
    // for a scan of 200k rows here, against 10ms).
    insert_clean_evidence(&db, 200_000);
    db.execute(&format!(
        "ALTER DATABASE {} SET statement_timeout = '10ms'",
        db.name
    ));

    let (code, report, stderr) = db.run_json(&["check-constraints", "--dry-run"]);
    assert_eq!(code, 0, "{stderr}\n{report:#}");
    assert!(
        stderr.contains("statement_timeout = 10ms"),
        "the lift is said on stderr: {stderr}"
    );

    let (code, report, stderr) = db.run_json(&["migrate"]);
    assert_eq!(code, 0, "{stderr}\n{report:#}");
    assert_eq!(report["schema_version"], latest());
    for name in ["chk_evidence_status", "chk_approval_workflow"] {
        assert_eq!(constraint_state(&db, name), "valid", "{name}");
    }
    let (code, status, stderr) = db.run_json(&["status"]);
    assert_eq!(code, 0, "{stderr}\n{status:#}");
    assert_eq!(status["ok"], true);
}

#[test]
fn a_lock_wait_cancelled_by_statement_timeout_is_retried() {
    let db = TestDb::new();
    db.migrate_to(8);
    make_not_valid(&db, "chk_evidence_status", "evidence_items");
    let holder = hold_validate_lock(&db, "evidence_items");
    // A statement_timeout the operator asked for is kept, and is shorter than lock_timeout:
    // it is what ends each wait for the table lock.
    let url = with_param(&db.url, "options=-c%20statement_timeout%3D300ms");
    let child = common::command_at(&url)
        .args([
            "--format",
            "json",
            "--lock-timeout",
            "10s",
            "check-constraints",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_validate_to_block(&db);
    std::thread::sleep(Duration::from_millis(1200));
    drop(holder);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(constraint_state(&db, "chk_evidence_status"), "valid");
}

// 6. rehearse --dump

#[test]
fn rehearse_refuses_dumps_that_are_not_plain_sql() {
    let dir = tempfile::tempdir().unwrap();
    let mut tar = vec![b'x'; 1024];
    tar[257..262].copy_from_slice(b"ustar");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty.sql", Vec::new(), "empty"),
        (
            "custom.dump",
            b"PGDMP\x01\x0e\x00\x04\x08".to_vec(),
            "pg_restore -f -",
        ),
        (
            "custom2.dump",
            b"PGDMP\x01\x0e\x00\x04\x08".to_vec(),
            "pg_dump -Fp",
        ),
        ("dump.sql.gz", vec![0x1f, 0x8b, 0x08, 0x00, 0, 0], "gzip"),
        ("dump.sql.zst", vec![0x28, 0xb5, 0x2f, 0xfd, 0, 0], "zstd"),
        ("dump.sql.lz4", vec![0x04, 0x22, 0x4d, 0x18, 0, 0], "lz4"),
        ("dump.sql.bz2", b"BZh91AY&SY".to_vec(), "bzip2"),
        ("dump.tar", tar, "tar"),
    ];
    for (name, bytes, says) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let (code, stdout, stderr) = output(
            common::binary()
                .args(["--format", "json", "--no-progress", "rehearse", "--dump"])
                .arg(&path)
                .timeout(Duration::from_secs(120)),
        );
        assert_eq!(code, 1, "{name}: {stderr}");
        let doc = one_document(&stdout);
        assert_eq!(doc["ok"], false, "{name}");
        let error = doc["error"].as_str().unwrap();
        assert!(error.contains(says), "{name}: {error}");
        assert!(
            error.contains(name),
            "{name}: the error names the file: {error}"
        );
    }
}

// 7. durations

#[test]
fn durations_out_of_range_are_usage_errors_not_panics() {
    let db = TestDb::new();
    for args in [
        &["--lock-timeout", "99999999999999999999s", "status"][..],
        &["--lock-wait", "99999999999999999999s", "status"],
        &["--lock-timeout", "2147484s", "status"],
        &["--lock-wait=99999999999999999999ms", "migrate", "--dry-run"],
    ] {
        let (code, stdout, stderr) = db.run(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(stderr.contains("too long"), "{args:?}: {stderr}");
        assert_eq!(stdout, "", "{args:?}");
    }
}

// 8. a closed stdout

#[test]
fn a_closed_stdout_is_a_normal_end() {
    let db = TestDb::new();
    db.migrate_to(8);
    for format in ["json", "table"] {
        let mut child = db
            .command()
            .args(["--format", format, "status"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes away before ruleiq-db writes its report.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{format}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(!stderr.to_lowercase().contains("broken pipe"), "{stderr}");
    }
}

// 9. failure documents

#[test]
fn a_failure_document_says_what_was_done_before_it() {
    let db = TestDb::new();
    db.migrate_to(2);
    // Migration 5 adds this column: migrate applies 3 and 4, then fails there.
    db.execute("ALTER TABLE business_profiles ADD COLUMN data_sensitivity varchar");
    let (code, doc, stderr) = db.run_json(&["migrate"]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["exit_code"], 1);
    assert_eq!(doc["command"], "migrate");
    let applied: Vec<i64> = doc["applied"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["version"].as_i64().unwrap())
        .collect();
    assert_eq!(applied, [3, 4], "{doc:#}");
    assert!(doc["applied"][0]["name"].is_string());
    let recorded = db.scalar_i64("SELECT max(version)::bigint FROM refinery_schema_history");
    assert_eq!(doc["schema_version"], recorded);
    assert_eq!(doc["schema_version"], 4);
    assert_eq!(doc["reverted"], Value::Array(vec![]));
    assert_eq!(doc["run_id"], Value::Null);
}

#[test]
fn a_cleanup_that_fails_half_way_names_its_run_id() {
    let db = TestDb::dirty_legacy();
    // The application's side: a trigger that refuses every update of evidence.
    db.execute(
        "CREATE FUNCTION refuse_update() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN RAISE EXCEPTION 'evidence is frozen'; END $$;
         CREATE TRIGGER frozen BEFORE UPDATE ON evidence_items
           FOR EACH ROW EXECUTE FUNCTION refuse_update();",
    );
    let dir = tempfile::tempdir().unwrap();
    let policy = evidence_status_only_policy(dir.path());
    let (code, doc, stderr) = db.run_json(&["--yes", "cleanup", "--policy", &policy]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(doc["ok"], false);
    assert!(
        doc["error"]
            .as_str()
            .unwrap()
            .contains("evidence is frozen"),
        "{doc:#}"
    );
    let run_id = doc["run_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no run_id: {doc:#}"));
    let recorded = db.scalar_i64(&format!(
        "SELECT count(*) FROM ruleiq_audit.cleanup_runs WHERE run_id = '{run_id}'"
    ));
    assert_eq!(recorded, 1);
    assert_eq!(doc["schema_version"], 7);
}

#[test]
fn usage_errors_with_json_print_one_json_document() {
    let db = TestDb::new();
    for args in [
        &["--format", "json", "migrate", "--target", "seven"][..],
        &["--format=json", "rollback", "--to", "1", "--steps", "1"],
        &[
            "--format",
            "json",
            "--lock-timeout",
            "99999999999999999999s",
            "status",
        ],
        &["--format", "json", "no-such-command"],
    ] {
        let (code, stdout, stderr) = db.run(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        let doc = one_document(&stdout);
        assert_eq!(doc["ok"], false, "{args:?}");
        assert_eq!(doc["exit_code"], 2, "{args:?}");
        assert!(doc["error"].as_str().unwrap().len() > 10, "{doc}");
        assert!(doc.get("schema_version").is_some(), "{doc}");
    }
    let (code, stdout, _) = db.run(&["--format", "yaml", "status", "--bogus"]);
    assert_eq!(code, 2);
    let doc: Value = serde_yaml::from_str(&stdout).unwrap();
    assert_eq!(doc["exit_code"], 2);
    assert_eq!(doc["command"], "status");
}

// 10. errors with context

#[test]
fn a_connection_lost_during_validate_names_the_constraint_and_its_state() {
    let db = TestDb::new();
    db.migrate_to(8);
    make_not_valid(&db, "chk_evidence_status", "evidence_items");
    let holder = hold_validate_lock(&db, "evidence_items");
    let child = db
        .command()
        .args(["--lock-timeout", "60s", "check-constraints"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = wait_for_validate_to_block(&db);
    db.client()
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .unwrap();
    let out = child.wait_with_output().unwrap();
    drop(holder);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("chk_evidence_status"), "{stderr}");
    assert!(stderr.contains("stays NOT VALID"), "{stderr}");
    assert_eq!(constraint_state(&db, "chk_evidence_status"), "not_valid");
}

#[test]
fn a_statement_timeout_says_which_statement_and_what_to_change() {
    let db = TestDb::new();
    db.migrate_to(8);
    make_not_valid(&db, "chk_evidence_status", "evidence_items");
    let holder = hold_validate_lock(&db, "evidence_items");
    let url = with_param(&db.url, "options=-c%20statement_timeout%3D200ms");
    let (code, _, stderr) = output(cli_with_url(&url).args([
        "--lock-timeout",
        "10s",
        "--lock-retries",
        "1",
        "check-constraints",
    ]));
    drop(holder);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("chk_evidence_status"), "{stderr}");
    assert!(stderr.contains("statement_timeout"), "{stderr}");
    assert!(stderr.contains("-c statement_timeout"), "{stderr}");
}

/// A role that may log in and read, with `extra` granted on top; dropped by the caller.
fn restricted_role(db: &TestDb, extra: &str) -> String {
    let role = format!("r_{}", uuid::Uuid::new_v4().simple());
    db.execute(&format!(
        "CREATE ROLE {role} LOGIN PASSWORD 'role-pw';
         REVOKE CREATE ON SCHEMA public FROM PUBLIC;
         GRANT USAGE ON SCHEMA public TO {role};
         {extra}"
    ));
    role
}

fn drop_role(db: TestDb, role: &str) {
    drop(db);
    common::connect_url(&common::url_for("postgres"))
        .batch_execute(&format!("DROP OWNED BY {role}; DROP ROLE {role}"))
        .ok();
}

#[test]
fn a_role_that_cannot_create_the_history_table_is_told_the_grant() {
    let db = TestDb::new();
    let role = restricted_role(&db, "");
    let (code, _, stderr) = output(cli_with_url(&db.url_as(&role, "role-pw")).arg("migrate"));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "the role cannot create the history table refinery_schema_history: GRANT CREATE ON SCHEMA public TO {role}"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("role-pw"), "{stderr}");
    drop_role(db, &role);
}

#[test]
fn a_role_without_rights_on_the_audit_schema_is_told_which_grant_is_missing() {
    let db = TestDb::dirty_legacy();
    // Another role (the superuser here) created the audit schema.
    db.execute("CREATE SCHEMA ruleiq_audit");
    let role = restricted_role(&db, "");
    db.execute(&format!(
        "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}"
    ));
    let dir = tempfile::tempdir().unwrap();
    let policy = evidence_status_only_policy(dir.path());
    let before = db.dump();
    let (code, _, stderr) = output(
        cli_with_url(&db.url_as(&role, "role-pw")).args(["--yes", "cleanup", "--policy", &policy]),
    );
    // Refused (exit 4) by cleanup's proof, before anything changes, with the grant to give.
    assert_eq!(code, 4, "{stderr}");
    assert!(
        stderr.contains(&format!("GRANT USAGE ON SCHEMA ruleiq_audit TO \"{role}\"")),
        "{stderr}"
    );
    db.assert_unchanged(&before);
    drop_role(db, &role);
}

/// The hint is found by the error's SQLSTATE (42501) and the object it names, whatever the
/// server's wording: a schema the role may not use gets its grant, another refusal none.
#[test]
fn a_privilege_error_on_the_audit_schema_is_explained_with_its_grant() {
    let db = TestDb::new();
    db.execute("CREATE SCHEMA ruleiq_audit; CREATE TABLE ruleiq_audit.t (x int)");
    let role = restricted_role(&db, "");
    let mut client = common::connect_url(&db.url_as(&role, "role-pw"));
    let denied = client
        .simple_query("SELECT x FROM ruleiq_audit.t")
        .unwrap_err();
    let explained = ruleiq_db::hints::explain(denied.into(), Some(&role));
    assert!(
        format!("{explained:#}").contains(&format!("GRANT USAGE ON SCHEMA ruleiq_audit TO {role}")),
        "{explained:#}"
    );
    db.execute("CREATE TABLE public.closed (x int); REVOKE ALL ON public.closed FROM PUBLIC");
    let other = client
        .simple_query("SELECT x FROM public.closed")
        .unwrap_err();
    let left = ruleiq_db::hints::explain(other.into(), Some(&role));
    assert!(!format!("{left:#}").contains("GRANT"), "{left:#}");
    drop(client);
    drop_role(db, &role);
}

#[test]
fn a_malformed_url_says_which_part_is_wrong_without_the_password() {
    let cases = [
        ("postgres://me:s3cret-pw@db.example:54x2/app", "port `54x2`"),
        ("postgres//me:s3cret-pw@db.example/app", "://"),
        ("mysql://me:s3cret-pw@db.example/app", "scheme `mysql`"),
        (
            "postgres://me:s3cret-pw@db.example/app?colour=blue",
            "`colour`",
        ),
    ];
    for (url, says) in cases {
        let (code, _, stderr) = output(cli_with_url(url).arg("status"));
        assert_eq!(code, 1, "{url}: {stderr}");
        assert!(stderr.contains(says), "{url}: {stderr}");
        assert!(!stderr.contains("s3cret"), "{url}: {stderr}");
    }
}

// 11. status exit codes

#[test]
fn status_exits_3_for_a_constraint_not_valid() {
    let db = TestDb::new();
    db.migrate_to(8);
    let (code, status, stderr) = db.run_json(&["status"]);
    assert_eq!(code, 0, "{stderr}\n{status:#}");
    assert_eq!(status["ok"], true);
    assert_eq!(status["drift_checked"], true);

    make_not_valid(&db, "chk_approval_workflow", "evidence_items");
    let (code, status, stderr) = db.run_json(&["status"]);
    assert_eq!(code, 3, "{stderr}\n{status:#}");
    assert_eq!(status["ok"], false);
    let states: Vec<&str> = status["constraints"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"] == "chk_approval_workflow")
        .map(|c| c["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["not_valid"]);
}

// 12. small ones

#[test]
fn a_policy_integer_overflow_names_the_file_and_line() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.yaml");
    let mut file = std::fs::File::create(&path).unwrap();
    writeln!(
        file,
        "constraints:\n  chk_employee_count_positive:\n    action: default\n    value: 99999999999999999999"
    )
    .unwrap();
    let (code, _, stderr) = db.run(&["cleanup", "--dry-run", "--policy", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("policy.yaml"), "{stderr}");
    assert!(stderr.contains("line 4"), "{stderr}");
    assert!(
        stderr.contains("99999999999999999999 is too large"),
        "{stderr}"
    );
    assert!(!stderr.contains("u128"), "{stderr}");
}
