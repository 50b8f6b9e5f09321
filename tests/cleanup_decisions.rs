//! `cleanup` on production's shape: rules that need a decision, the plan proven before the
//! first batch, failures that say what changed and how to undo it, policy values as bound
//! parameters. The real binary against a real PostgreSQL, a dump compared in every test.

use crate::common;
use common::TestDb;
use serde_json::Value;
use std::io::Write;
use std::path::PathBuf;

const EXAMPLE: &str = "fixtures/cleanup-policy.example.yaml";

fn assert_same(before: &str, after: &str, what: &str) {
    if before != after {
        let old: std::collections::BTreeSet<&str> = before.lines().collect();
        let new: std::collections::BTreeSet<&str> = after.lines().collect();
        let gone: Vec<&&str> = old.difference(&new).take(20).collect();
        let added: Vec<&&str> = new.difference(&old).take(20).collect();
        panic!("{what}: the database differs.\nlines gone: {gone:#?}\nlines added: {added:#?}");
    }
}

fn policy_file(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::File::create(&path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    path
}

fn audit_exists(db: &TestDb) -> bool {
    db.scalar_i64("SELECT count(*) FROM pg_namespace WHERE nspname = 'ruleiq_audit'") == 1
}

/// (constraint, table, column, options) of each entry of `needs_decision`.
fn decisions(report: &Value) -> Vec<(String, String, String, Vec<String>)> {
    report["needs_decision"]
        .as_array()
        .unwrap_or_else(|| panic!("no needs_decision in {report:#}"))
        .iter()
        .map(|d| {
            (
                d["constraint"].as_str().unwrap().to_string(),
                d["table"].as_str().unwrap().to_string(),
                d["column"].as_str().unwrap().to_string(),
                d["options"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|o| o.as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect()
}

fn expected_decisions() -> Vec<(String, String, String, Vec<String>)> {
    let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    vec![
        (
            "chk_employee_count_positive".into(),
            "business_profiles".into(),
            "employee_count".into(),
            owned(&["default: VALUE", "skip"]),
        ),
        (
            "fk_generated_policy_business_profile".into(),
            "generated_policies".into(),
            "business_profil".into(),
            owned(&["delete", "skip"]),
        ),
    ]
}

#[test]
fn without_a_policy_the_not_null_rules_need_a_decision_and_nothing_changes() {
    let db = TestDb::dirty_legacy();
    let before = db.dump();

    let (code, report, stderr) = db.run_json(&["cleanup", "--dry-run"]);
    assert_eq!(code, 4, "{report:#}\n{stderr}");
    assert_eq!(report["ok"], false);
    assert_eq!(report["dry_run"], true);
    assert_eq!(decisions(&report), expected_decisions());
    for d in report["needs_decision"].as_array().unwrap() {
        assert!(d["reason"].as_str().unwrap().contains("NOT NULL"), "{d:#}");
    }

    let (code, stdout, _) = db.run(&["cleanup", "--dry-run"]);
    assert_eq!(code, 4);
    assert!(
        stdout.contains("chk_employee_count_positive: business_profiles.employee_count is NOT NULL, so its rows cannot be set to NULL; decide in a policy file: default: VALUE, or skip (see fixtures/cleanup-policy.example.yaml)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("fk_generated_policy_business_profile: generated_policies.business_profil is NOT NULL, so its rows cannot be set to NULL; decide in a policy file: delete, or skip"),
        "{stdout}"
    );
    assert!(!stdout.contains("can enforce"), "{stdout}");

    // A real run refuses just the same, before its first change.
    let (code, report, stderr) = db.run_json(&["--yes", "cleanup"]);
    assert_eq!(code, 4, "{report:#}\n{stderr}");
    assert_eq!(report["ok"], false);
    assert_eq!(report["run_id"], Value::Null);
    assert_eq!(decisions(&report), expected_decisions());
    let (code, stdout, _) = db.run(&["--format", "yaml", "--yes", "cleanup"]);
    assert_eq!(code, 4);
    let yaml: serde_yaml::Value = serde_yaml::from_str(&stdout).unwrap();
    assert_eq!(yaml["needs_decision"].as_sequence().unwrap().len(), 2);

    assert!(!audit_exists(&db));
    db.assert_unchanged(&before);
}

#[test]
fn a_policy_that_asks_for_null_in_a_not_null_column_is_refused() {
    let db = TestDb::dirty_legacy();
    let before = db.dump();
    let dir = tempfile::tempdir().unwrap();
    let path = policy_file(
        &dir,
        "null.yaml",
        "constraints:\n  chk_employee_count_positive: set_null\n  fk_generated_policy_business_profile: delete\n",
    );
    for dry in [true, false] {
        let mut args = vec!["--yes", "cleanup", "--policy", path.to_str().unwrap()];
        if dry {
            args.push("--dry-run");
        }
        let (code, _, stderr) = db.run(&args);
        assert_eq!(code, 4, "{stderr}");
        assert!(
            stderr.contains("business_profiles.employee_count is NOT NULL")
                && stderr.contains("null.yaml"),
            "{stderr}"
        );
    }
    assert!(!audit_exists(&db));
    db.assert_unchanged(&before);
}

#[test]
fn with_the_example_policy_cleanup_finishes_and_undo_restores_the_exact_original() {
    let db = TestDb::dirty_legacy();
    let original = db.canonical_dump();

    let (code, report, stderr) = db.run_json(&["cleanup", "--dry-run", "--policy", EXAMPLE]);
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert_eq!(report["needs_decision"], serde_json::json!([]));
    assert_same(&original, &db.canonical_dump(), "after the dry run");

    let (code, stdout, stderr) = db.run(&["--yes", "cleanup", "--policy", EXAMPLE]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout
            .contains("No violations left. Next: `ruleiq-db migrate` can enforce the constraints."),
        "{stdout}"
    );
    let run_id = stdout
        .split("run ")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .unwrap()
        .to_string();
    let (code, check, _) = db.run_json(&["check-constraints", "--dry-run"]);
    assert_eq!(code, 0, "{check:#}");
    assert_eq!(check["total_violations"], 0);
    assert_ne!(db.canonical_dump(), original);

    let (code, report, stderr) = db.run_json(&["cleanup", "--undo", &run_id, "--yes"]);
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert_same(&original, &db.canonical_dump(), "after undo");
}

/// `postgres://user:password@…` → the same server and database as `role`.
fn url_as(db: &TestDb, role: &str, password: &str) -> String {
    let (scheme, rest) = db.url.split_once("://").unwrap();
    let (_, host) = rest.split_once('@').unwrap();
    format!("{scheme}://{role}:{password}@{host}")
}

/// The real binary, connecting with `url`.
fn as_role(url: &str) -> assert_cmd::Command {
    common::cli_at(url)
}

/// A login role that may read and change every table but `table`, which it may not UPDATE.
fn role_without_update_on(db: &TestDb, table: &str) -> String {
    let role = format!("r_{}", &db.name[2..14]);
    db.execute(&format!(
        "CREATE ROLE {role} LOGIN PASSWORD 'pw';
         GRANT CONNECT, CREATE, TEMPORARY ON DATABASE {db} TO {role};
         GRANT USAGE ON SCHEMA public TO {role};
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role};
         REVOKE UPDATE ON {table} FROM {role};",
        db = db.name
    ));
    role
}

#[test]
fn a_role_that_may_not_update_a_table_is_refused_before_anything_changes() {
    let db = TestDb::dirty_legacy();
    let role = role_without_update_on(&db, "business_profiles");
    let before = db.dump();
    let url = url_as(&db, &role, "pw");
    let out = as_role(&url)
        .args(["--yes", "cleanup", "--policy", EXAMPLE])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains(
            "may not UPDATE table business_profiles (GRANT UPDATE ON business_profiles TO"
        ),
        "{stderr}"
    );
    assert!(
        !stderr.contains("evidence_items"),
        "only the missing privilege: {stderr}"
    );
    assert!(!audit_exists(&db));
    db.assert_unchanged(&before);

    // The same role may run it once granted: the proof is about this database, not a guess.
    db.execute(&format!("GRANT UPDATE ON business_profiles TO {role}"));
    let out = as_role(&url)
        .args(["--yes", "cleanup", "--policy", EXAMPLE])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A delete rule's batch locks its rows FOR UPDATE before deleting them, which needs UPDATE: a
/// role with DELETE but not UPDATE on that table is refused before anything changes, not after
/// the other tables were repaired.
#[test]
fn a_role_that_may_delete_but_not_update_the_rows_a_delete_rule_removes_is_refused_up_front() {
    let db = TestDb::dirty_legacy();
    let role = role_without_update_on(&db, "generated_policies");
    let before = db.dump();
    let url = url_as(&db, &role, "pw");
    let out = as_role(&url)
        .args(["--yes", "--format", "json", "cleanup", "--policy", EXAMPLE])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains(
            "may not UPDATE table generated_policies (the batches lock its rows FOR UPDATE"
        ) && stderr.contains("GRANT UPDATE ON generated_policies TO"),
        "{stderr}"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert_eq!(report["reason"], "missing_grants", "{report:#}");
    assert!(!audit_exists(&db));
    db.assert_unchanged(&before);
}

#[test]
fn a_value_too_long_for_its_column_is_refused_before_anything_changes() {
    let db = TestDb::dirty_legacy();
    // A column narrower than the values the policy writes ('Medium', 'Critical').
    db.execute(
        "ALTER TABLE business_profiles ALTER COLUMN data_sensitivity TYPE varchar(5)
           USING left(data_sensitivity, 5)",
    );
    let before = db.dump();
    let (code, _, stderr) = db.run(&["--yes", "cleanup", "--policy", EXAMPLE]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("does not fit business_profiles.data_sensitivity (character varying(5))")
            && stderr.contains("holds at most 5"),
        "{stderr}"
    );
    assert!(!audit_exists(&db));
    db.assert_unchanged(&before);
}

#[test]
fn a_batch_that_fails_mid_run_reports_every_changed_table_the_run_and_its_undo() {
    let db = TestDb::dirty_legacy();
    // Something no proof can see: a trigger that rejects every update of business_profiles,
    // the second table the run changes (evidence_items comes first).
    db.execute(
        "CREATE FUNCTION refuse_update() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN RAISE EXCEPTION 'business_profiles is frozen'; END $$;
         CREATE TRIGGER frozen BEFORE UPDATE ON business_profiles
           FOR EACH ROW EXECUTE FUNCTION refuse_update();",
    );
    let original = db.canonical_dump();

    for format in ["json", "yaml", "table"] {
        let (code, stdout, stderr) =
            db.run(&["--format", format, "--yes", "cleanup", "--policy", EXAMPLE]);
        assert_eq!(code, 1, "{format}: {stdout}\n{stderr}");
        assert!(stderr.contains("business_profiles is frozen"), "{stderr}");
        let run_id: String = db
            .client()
            .query_one(
                "SELECT run_id::text FROM ruleiq_audit.cleanup_runs ORDER BY started_at DESC LIMIT 1",
                &[],
            )
            .unwrap()
            .get(0);
        let undo = format!("ruleiq-db cleanup --undo {run_id} --yes");
        let changed: i64 = db.scalar_i64(&format!(
            "SELECT count(*) FROM ruleiq_audit.cleanup_changes WHERE run_id = '{run_id}' AND table_name = 'evidence_items'"
        ));
        assert!(changed > 0);
        match format {
            "table" => {
                assert!(
                    stdout.contains(&format!("cleanup run {run_id} FAILED")),
                    "{stdout}"
                );
                assert!(stdout.contains("evidence_items"), "{stdout}");
                assert!(stdout.contains(&format!("Undo: `{undo}`")), "{stdout}");
                assert!(!stdout.contains("can enforce"), "{stdout}");
            }
            _ => {
                let report: Value = if format == "json" {
                    serde_json::from_str(&stdout).unwrap()
                } else {
                    serde_yaml::from_str(&stdout).unwrap()
                };
                assert_eq!(report["ok"], false, "{report:#}");
                assert_eq!(report["exit_code"], 1);
                assert_eq!(report["run_id"], run_id.as_str());
                assert_eq!(report["undo"], undo.as_str());
                assert_eq!(
                    report["changed_tables"],
                    serde_json::json!([{"table": "evidence_items", "rows": changed}]),
                    "{report:#}"
                );
                assert!(report["error"]
                    .as_str()
                    .unwrap()
                    .contains("business_profiles is frozen"));
            }
        }
        assert_eq!(db.cleanup_run_status(&run_id), "interrupted");
        // The undo command the report gives puts everything back.
        let args: Vec<&str> = undo.split(' ').skip(1).collect();
        let (code, _, stderr) = db.run(&args);
        assert_eq!(code, 0, "{stderr}");
        assert_same(&original, &db.canonical_dump(), format);
    }
}

#[test]
fn a_skipped_rule_keeps_cleanup_from_saying_migrate_can_enforce() {
    let db = TestDb::dirty_legacy();
    let original = db.canonical_dump();
    let dir = tempfile::tempdir().unwrap();
    let example = std::fs::read_to_string(EXAMPLE).unwrap();
    let skipping = example.replace(
        "  chk_data_sensitivity:\n    action: map\n    value: High\n    synonyms:\n      public: Low\n",
        "  chk_data_sensitivity: skip\n",
    );
    assert_ne!(skipping, example, "the example changed shape");
    let path = policy_file(&dir, "skip.yaml", &skipping);
    let path = path.to_str().unwrap();

    let (code, stdout, _) = db.run(&["cleanup", "--dry-run", "--policy", path]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("of skipped rules would stay"), "{stdout}");

    let (code, stdout, stderr) = db.run(&["--yes", "cleanup", "--policy", path]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(!stdout.contains("can enforce"), "{stdout}");
    assert!(
        stdout.contains("still break constraints the policy leaves alone"),
        "{stdout}"
    );
    // The skipped rows are as they were; the rest changed.
    let sensitivities: i64 = db.scalar_i64(
        "SELECT count(*) FROM business_profiles WHERE data_sensitivity NOT IN ('Low','Medium','High','Critical')",
    );
    assert_eq!(sensitivities, 5);
    assert_ne!(db.canonical_dump(), original);
}

/// Makes a clean evidence row carry `status`, bound as a parameter.
fn set_status(db: &TestDb, id: &str, status: &str) {
    db.client()
        .execute(
            "UPDATE evidence_items SET status = $1 WHERE id = $2::text::uuid",
            &[&status, &id],
        )
        .unwrap();
}

#[test]
fn policy_synonyms_reach_sql_only_as_bound_parameters() {
    // The same data and policy on two databases, one with standard_conforming_strings off,
    // where a backslash inside a quoted literal escapes the quote that closes it.
    let evil = "x\\'); DROP TABLE users; --";
    let row = "40000000-0000-0000-0000-000000000001";
    let dir = tempfile::tempdir().unwrap();
    let example = std::fs::read_to_string(EXAMPLE).unwrap();
    let policy = example.replace(
        "      under review: in_progress",
        "      \"x\\\\'); DROP TABLE users; --\": collected\n      under review: in_progress",
    );
    assert_ne!(policy, example);
    let path = policy_file(&dir, "evil.yaml", &policy);
    let mut after = Vec::new();
    for conforming in ["on", "off"] {
        let db = TestDb::dirty_legacy();
        db.execute(&format!(
            "ALTER DATABASE {} SET standard_conforming_strings = {conforming}",
            db.name
        ));
        set_status(&db, row, evil);
        let before = db.canonical_dump();
        let (code, report, stderr) =
            db.run_json(&["--yes", "cleanup", "--policy", path.to_str().unwrap()]);
        assert_eq!(code, 0, "scs={conforming}: {report:#}\n{stderr}");
        let status: String = db
            .client()
            .query_one(
                "SELECT status::text FROM evidence_items WHERE id = $1::text::uuid",
                &[&row],
            )
            .unwrap()
            .get(0);
        assert_eq!(status, "collected", "the synonym matched its row");
        assert!(db.scalar_i64("SELECT count(*) FROM users") > 0);
        // Only rows the audit recorded changed.
        let changed: std::collections::BTreeSet<String> = db
            .client()
            .query("SELECT pk FROM ruleiq_audit.cleanup_changes", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let now = db.canonical_dump();
        let old: std::collections::BTreeSet<&str> = before.lines().collect();
        let new: std::collections::BTreeSet<&str> = now.lines().collect();
        for line in old.symmetric_difference(&new) {
            let pk = line.split('\t').next().unwrap();
            assert!(
                changed.contains(pk),
                "scs={conforming}: unexpected change {line}"
            );
        }
        // What changed, row by row, as the audit recorded it.
        let records: Vec<String> = db
            .client()
            .query(
                "SELECT table_name || ' ' || pk || ' ' || old_values::text || ' -> ' || coalesce(new_values::text, 'deleted')
                   FROM ruleiq_audit.cleanup_changes ORDER BY table_name, pk",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        after.push(records);
    }
    assert!(!after[0].is_empty());
    assert_eq!(after[0], after[1], "standard_conforming_strings on vs off");
}
