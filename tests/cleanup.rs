//! `ruleiq-db cleanup`: the real binary against a real PostgreSQL, one database per test.

use crate::common;
use common::{TestDb, EVIDENCE_COLUMNS, EXAMPLE_POLICY, FIXTURE_OWNER};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

/// The known violations of fixtures/legacy_dirty.sql (its header lists them).
const FIXTURE_VIOLATIONS: &[(&str, u64)] = &[
    ("chk_evidence_status", 7),
    ("chk_employee_count_positive", 2),
    ("chk_data_sensitivity", 5),
    ("chk_approval_workflow", 2),
    ("fk_assessment_business_profile", 2),
    ("fk_generated_policy_business_profile", 1),
];

/// check-constraints --dry-run: violations per constraint.
fn check_counts(db: &TestDb) -> BTreeMap<String, u64> {
    let (_, report, stderr) = db.run_json(&["check-constraints", "--dry-run"]);
    report["constraints"]
        .as_array()
        .unwrap_or_else(|| panic!("no constraints in {report}\n{stderr}"))
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["violations"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// The report's rules by constraint name.
fn rules(report: &Value) -> BTreeMap<String, Value> {
    report["rules"]
        .as_array()
        .unwrap_or_else(|| panic!("no rules in {report}"))
        .iter()
        .map(|r| (r["constraint"].as_str().unwrap().to_string(), r.clone()))
        .collect()
}

fn audit_exists(db: &TestDb) -> bool {
    db.scalar_i64("SELECT count(*) FROM pg_namespace WHERE nspname = 'ruleiq_audit'") == 1
}

fn audit_count(db: &TestDb) -> i64 {
    db.scalar_i64("SELECT count(*) FROM ruleiq_audit.cleanup_changes")
}

/// Audit records whose new values are not what the row holds now (a deleted row must be
/// gone). The audit names columns by their current names; at version 7 the row spells the
/// renamed ones the legacy way, so the row is read through the rename map.
fn audit_mismatches(db: &TestDb) -> i64 {
    let mut client = db.client();
    let tables: Vec<String> = client
        .query(
            "SELECT DISTINCT table_name FROM ruleiq_audit.cleanup_changes",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut mismatches = 0;
    for table in tables {
        let mut row = "to_jsonb(t)".to_string();
        for r in ruleiq_db::catalog::renames::RENAMES
            .iter()
            .filter(|r| r.table == table)
        {
            row = format!(
                "({row} || CASE WHEN to_jsonb(t) ? '{l}' THEN jsonb_build_object('{c}', to_jsonb(t) -> '{l}') ELSE '{{}}'::jsonb END)",
                l = r.legacy,
                c = r.current
            );
        }
        let sql = format!(
            "SELECT a.pk, a.new_values, {row}
               FROM ruleiq_audit.cleanup_changes AS a LEFT JOIN {table} AS t ON t.id::text = a.pk
              WHERE a.table_name = '{table}'
                AND NOT CASE WHEN a.new_values IS NULL THEN t.id IS NULL
                             ELSE t.id IS NOT NULL AND a.new_values <@ {row} END"
        );
        for bad in client.query(&sql, &[]).unwrap() {
            let pk: String = bad.get(0);
            let new: Option<Value> = bad.get(1);
            let now: Option<Value> = bad.get(2);
            eprintln!("audit record {table} {pk}: recorded {new:?}, row now {now:?}");
            mismatches += 1;
        }
    }
    mismatches
}

/// The two decisions production's shape needs (NOT NULL columns that set_null cannot clear),
/// as the example policy takes them; test policies that are about other rules include them.
const DECISIONS: &str = "  chk_employee_count_positive:\n    action: default\n    value: 1\n  fk_generated_policy_business_profile: delete\n";

fn policy_file(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::File::create(&path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    path
}

fn text(db: &TestDb, sql: &str) -> Option<String> {
    db.client().query_one(sql, &[]).unwrap().get(0)
}

#[test]
fn dry_run_counts_equal_check_constraints_and_change_nothing() {
    let db = TestDb::dirty_legacy();
    let before = db.dump();
    let checked = check_counts(&db);
    for (name, count) in FIXTURE_VIOLATIONS {
        assert_eq!(checked[*name], *count, "check-constraints {name}");
    }

    let (code, report, stderr) = db.run_json(&["cleanup", "--dry-run", "--policy", EXAMPLE_POLICY]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["run_id"], Value::Null);
    let rules = rules(&report);
    let with_violations: Vec<&String> = checked
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(name, _)| name)
        .collect();
    assert_eq!(rules.keys().collect::<Vec<_>>(), with_violations);
    for (name, count) in &checked {
        if *count > 0 {
            assert_eq!(rules[name]["rows"], *count, "dry-run rows of {name}");
        }
    }
    // 'Approved' becomes 'approved' and only then breaks the approval workflow.
    assert_eq!(rules["chk_approval_workflow"]["cascaded_rows"], 1);
    assert!(report["notes"][0]
        .as_str()
        .unwrap()
        .starts_with("chk_approval_workflow: demote also repairs 1 row of evidence_items that chk_evidence_status rewrote"));
    // 7 + 2 evidence rows (the cascaded one among the 7), 6 business profiles with 7
    // violations between them, 2 + 1 links.
    assert_eq!(report["total_rows"], 18);

    let actions: BTreeMap<&str, &str> = rules
        .iter()
        .map(|(n, r)| (n.as_str(), r["action"].as_str().unwrap()))
        .collect();
    assert_eq!(actions["chk_evidence_status"], "map");
    assert_eq!(actions["chk_employee_count_positive"], "default");
    assert_eq!(actions["chk_data_sensitivity"], "map");
    assert_eq!(actions["chk_approval_workflow"], "demote");
    assert_eq!(actions["fk_assessment_business_profile"], "set_null");
    assert_eq!(actions["fk_generated_policy_business_profile"], "delete");

    let example = |name: &str, pk: &str| -> Value {
        rules[name]["examples"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["pk"] == pk)
            .unwrap_or_else(|| panic!("no example {pk} for {name}: {:#}", rules[name]))
            .clone()
    };
    let approved = example(
        "chk_evidence_status",
        "40000000-0000-0000-0000-000000000007",
    );
    assert_eq!(approved["before"]["status"], "Approved");
    assert_eq!(approved["after"]["status"], "approved");
    let negative = example(
        "chk_employee_count_positive",
        "20000000-0000-0000-0000-000000000003",
    );
    assert_eq!(negative["before"]["employee_count"], -3);
    assert_eq!(negative["after"]["employee_count"], 1);
    let cascaded = example(
        "chk_approval_workflow",
        "40000000-0000-0000-0000-000000000007",
    );
    assert_eq!(cascaded["cascaded"], true);
    assert_eq!(cascaded["after"]["status"], "collected");

    // The human table names the same things.
    let (code, table, _) = db.run(&["cleanup", "--dry-run", "--policy", EXAMPLE_POLICY]);
    assert_eq!(code, 0);
    assert!(table.contains("'Approved' →"), "{table}");
    assert!(table.contains("18 rows would change"), "{table}");

    assert!(
        !audit_exists(&db),
        "a dry run must not create the audit schema"
    );
    db.assert_unchanged(&before);
}

#[test]
fn cleanup_repairs_every_violation_with_one_audit_record_per_changed_row() {
    let db = TestDb::dirty_legacy();
    let (code, report, stderr) = db.run_json(&["--yes", "cleanup", "--policy", EXAMPLE_POLICY]);
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert_eq!(report["ok"], true);
    assert_eq!(report["dry_run"], false);
    assert_eq!(report["remaining_violations"], 0);
    let run_id = report["run_id"].as_str().expect("a run id").to_string();
    assert!(
        stderr.contains("chk_evidence_status: map repaired 7 rows"),
        "{stderr}"
    );

    let after = check_counts(&db);
    assert!(after.values().all(|n| *n == 0), "{after:?}");

    assert_eq!(report["total_rows"], 18);
    assert_eq!(audit_count(&db), 18);
    assert_eq!(
        db.scalar_i64("SELECT count(DISTINCT (table_name, pk)) FROM ruleiq_audit.cleanup_changes"),
        18
    );
    assert_eq!(
        db.scalar_i64(&format!(
            "SELECT count(*) FROM ruleiq_audit.cleanup_changes WHERE run_id = '{run_id}'"
        )),
        18
    );
    assert_eq!(audit_mismatches(&db), 0);

    let status = |id: &str| {
        text(
            &db,
            &format!("SELECT status::text FROM evidence_items WHERE id = '{id}'"),
        )
    };
    // Normalised, mapped by synonym, defaulted, demoted (directly and after normalising).
    assert_eq!(
        status("40000000-0000-0000-0000-000000000009").as_deref(),
        Some("in_progress")
    );
    assert_eq!(
        status("40000000-0000-0000-0000-000000000011").as_deref(),
        Some("rejected")
    );
    assert_eq!(
        status("40000000-0000-0000-0000-000000000008").as_deref(),
        Some("collected")
    );
    // The application's own vocabulary, by the built-in synonyms.
    assert_eq!(
        status("40000000-0000-0000-0000-000000000012").as_deref(),
        Some("collected")
    );
    assert_eq!(
        status("40000000-0000-0000-0000-000000000014").as_deref(),
        Some("collected")
    );
    assert_eq!(
        status("40000000-0000-0000-0000-000000000015").as_deref(),
        Some("not_started")
    );
    assert_eq!(
        status("40000000-0000-0000-0000-000000000005").as_deref(),
        Some("collected")
    );
    assert_eq!(
        status("40000000-0000-0000-0000-000000000007").as_deref(),
        Some("collected")
    );
    // Rows that broke nothing are untouched, NULL included.
    assert_eq!(
        status("40000000-0000-0000-0000-000000000004").as_deref(),
        Some("approved")
    );
    assert_eq!(status("40000000-0000-0000-0000-000000000010"), None);

    // One record for a row that broke two rules: old and new values of both columns.
    let mut client = db.client();
    let both = client
        .query_one(
            "SELECT constraint_names, actions, old_values, new_values FROM ruleiq_audit.cleanup_changes
              WHERE table_name = 'business_profiles' AND pk = '20000000-0000-0000-0000-000000000002'",
            &[],
        )
        .unwrap();
    let names: Vec<String> = both.get(0);
    assert_eq!(
        names,
        ["chk_employee_count_positive", "chk_data_sensitivity"]
    );
    let actions: Vec<String> = both.get(1);
    assert_eq!(actions, ["default", "map"]);
    let old: Value = both.get(2);
    let new: Value = both.get(3);
    assert_eq!(
        old,
        serde_json::json!({"employee_count": 0, "data_sensitivity": "high "})
    );
    assert_eq!(
        new,
        serde_json::json!({"employee_count": 1, "data_sensitivity": "High"})
    );
    let cascade = client
        .query_one(
            "SELECT constraint_names, old_values, new_values FROM ruleiq_audit.cleanup_changes
              WHERE pk = '40000000-0000-0000-0000-000000000007'",
            &[],
        )
        .unwrap();
    let names: Vec<String> = cascade.get(0);
    assert_eq!(names, ["chk_evidence_status", "chk_approval_workflow"]);
    assert_eq!(
        cascade.get::<_, Value>(1),
        serde_json::json!({"status": "Approved"})
    );
    assert_eq!(
        cascade.get::<_, Value>(2),
        serde_json::json!({"status": "collected"})
    );
    // At version 7 the link column is business_profil; the audit says business_profile_id.
    let link: Value = client
        .query_one(
            "SELECT old_values FROM ruleiq_audit.cleanup_changes WHERE pk = '30000000-0000-0000-0000-000000000003'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        link,
        serde_json::json!({"business_profile_id": "dead0000-0000-0000-0000-000000000001"})
    );
    let run_status: String = client
        .query_one(
            "SELECT status FROM ruleiq_audit.cleanup_runs WHERE run_id = $1::text::uuid",
            &[&run_id],
        )
        .unwrap()
        .get(0);
    assert_eq!(run_status, "finished");

    // Nothing left to do: a second run changes nothing and records no run.
    let (code, again, _) = db.run_json(&["--yes", "cleanup", "--policy", EXAMPLE_POLICY]);
    assert_eq!(code, 0);
    assert_eq!(again["total_rows"], 0);
    assert_eq!(again["run_id"], Value::Null);
    assert_eq!(audit_count(&db), 18);
}

#[test]
fn undo_restores_the_data_exactly_deleted_rows_included() {
    let db = TestDb::dirty_legacy();
    // Without production's foreign keys on business_profil, so that the orphaned links can be
    // put back too (with them, see the next test).
    db.execute(
        "ALTER TABLE assessment_sessions DROP CONSTRAINT assessment_sessions_business_profil_fkey;
         ALTER TABLE generated_policies DROP CONSTRAINT generated_policies_business_profil_fkey;",
    );
    let before = db.canonical_dump();
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_file(
        &dir,
        "delete.yaml",
        &format!("constraints:\n  fk_assessment_business_profile: delete\n{DECISIONS}"),
    );
    let (code, report, stderr) =
        db.run_json(&["--yes", "cleanup", "--policy", policy.to_str().unwrap()]);
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    let run_id = report["run_id"].as_str().unwrap().to_string();
    assert_eq!(report["total_rows"], 18);
    assert_eq!(db.scalar_i64("SELECT count(*) FROM assessment_sessions"), 3);
    assert_eq!(db.scalar_i64("SELECT count(*) FROM generated_policies"), 2);
    assert_ne!(db.canonical_dump(), before);

    let (code, undo, stderr) = db.run_json(&["--yes", "cleanup", "--undo", &run_id]);
    assert_eq!(code, 0, "{undo:#}\n{stderr}");
    assert_eq!(undo["ok"], true);
    assert_eq!(undo["run_id"], run_id.as_str());
    assert_eq!(undo["rows_restored"], 18);
    assert_eq!(undo["conflicts"], serde_json::json!([]));
    assert_eq!(
        db.canonical_dump(),
        before,
        "undo did not restore the data exactly"
    );
    assert_eq!(check_counts(&db)["fk_assessment_business_profile"], 2);

    // Undoing again has nothing left to restore.
    let (code, again, _) = db.run_json(&["--yes", "cleanup", "--undo", &run_id]);
    assert_eq!(code, 0);
    assert_eq!(again["rows_restored"], 0);
    assert_eq!(db.canonical_dump(), before);
}

/// Production enforces its foreign keys on business_profil: a role that may not turn triggers
/// off cannot put the orphaned links (restored with triggers off) back. Its undo restores
/// everything else and reports those rows, rather than failing a batch.
#[test]
fn undo_by_a_role_that_may_not_disable_triggers_reports_orphans_it_cannot_put_back() {
    let db = TestDb::dirty_legacy();
    let (code, report, stderr) = db.run_json(&["--yes", "cleanup", "--policy", EXAMPLE_POLICY]);
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    let run_id = report["run_id"].as_str().unwrap().to_string();
    let role = format!("undoer_{}", &db.name[2..10]);
    db.execute(&format!(
        "CREATE ROLE {role} LOGIN PASSWORD 'undo-pw';
         GRANT USAGE ON SCHEMA public, ruleiq_audit TO {role};
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public, ruleiq_audit TO {role};
         GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA ruleiq_audit TO {role};"
    ));
    let out = db
        .cli_as(&role, "undo-pw")
        .args(["--yes", "cleanup", "--undo", &run_id])
        .output()
        .unwrap();
    let undo: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.code(), Some(3), "{undo:#}");
    assert_eq!(undo["rows_restored"], 15);
    assert_eq!(undo["total_conflicts"], 3);
    let conflicts: BTreeMap<String, String> = undo["conflicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["pk"].as_str().unwrap().to_string(),
                c["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for pk in [
        "30000000-0000-0000-0000-000000000003",
        "30000000-0000-0000-0000-000000000004",
        "50000000-0000-0000-0000-000000000002",
    ] {
        assert!(
            conflicts[pk].contains("rejects the old business_profile_id"),
            "{pk}: {conflicts:?}"
        );
    }
    // The other rows are back as they were, the orphans stay repaired (NULL link, deleted).
    let after = check_counts(&db);
    assert_eq!(after["chk_evidence_status"], 7);
    assert_eq!(after["fk_assessment_business_profile"], 0);
    assert_eq!(db.scalar_i64("SELECT count(*) FROM generated_policies"), 2);
    drop(db);
    common::connect_url(&common::url_for("postgres"))
        .batch_execute(&format!("DROP ROLE IF EXISTS {role}"))
        .ok();
}

#[test]
fn undo_leaves_rows_changed_since_and_reports_them_as_conflicts() {
    let db = TestDb::dirty_legacy();
    let (code, report, _) = db.run_json(&["--yes", "cleanup", "--policy", EXAMPLE_POLICY]);
    assert_eq!(code, 0);
    let run_id = report["run_id"].as_str().unwrap().to_string();
    // The application works on two repaired rows, and deletes a third.
    db.execute(
        "UPDATE evidence_items SET status = 'rejected' WHERE id = '40000000-0000-0000-0000-000000000008';
         UPDATE business_profiles SET data_sensitivity = 'Low' WHERE id = '20000000-0000-0000-0000-000000000002';
         DELETE FROM assessment_sessions WHERE id = '30000000-0000-0000-0000-000000000003';",
    );

    let (code, undo, stderr) = db.run_json(&["--yes", "cleanup", "--undo", &run_id]);
    assert_eq!(code, 3, "{undo:#}\n{stderr}");
    assert_eq!(undo["ok"], false);
    // 18 changed rows, 3 of them changed or deleted since (the orphans go back as they were:
    // the harness is a superuser, who may turn triggers off for that).
    assert_eq!(undo["rows_restored"], 15);
    assert_eq!(undo["total_conflicts"], 3);
    let conflicts: BTreeMap<String, Value> = undo["conflicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["pk"].as_str().unwrap().to_string(), c.clone()))
        .collect();
    let changed = &conflicts["40000000-0000-0000-0000-000000000008"];
    assert_eq!(changed["reason"], "the row was changed after the cleanup");
    assert_eq!(
        changed["expected"],
        serde_json::json!({"status": "collected"})
    );
    assert_eq!(
        changed["current"],
        serde_json::json!({"status": "rejected"})
    );
    assert_eq!(
        conflicts["20000000-0000-0000-0000-000000000002"]["current"],
        serde_json::json!({"employee_count": 1, "data_sensitivity": "Low"})
    );
    assert_eq!(
        conflicts["30000000-0000-0000-0000-000000000003"]["reason"],
        "the row was deleted after the cleanup"
    );

    // Conflicting rows keep the application's values; the others are back as they were.
    let one = |sql: &str| text(&db, sql);
    assert_eq!(
        one("SELECT status::text FROM evidence_items WHERE id = '40000000-0000-0000-0000-000000000008'").as_deref(),
        Some("rejected")
    );
    assert_eq!(
        one("SELECT data_sensitivity::text FROM business_profiles WHERE id = '20000000-0000-0000-0000-000000000002'").as_deref(),
        Some("Low")
    );
    assert_eq!(
        one("SELECT status::text FROM evidence_items WHERE id = '40000000-0000-0000-0000-000000000007'").as_deref(),
        Some("Approved")
    );
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM business_profiles WHERE id = '20000000-0000-0000-0000-000000000003' AND employee_count = -3"),
        1
    );

    // The conflicts stay pending: undo again reports them again and restores nothing else.
    let (code, again, _) = db.run_json(&["--yes", "cleanup", "--undo", &run_id]);
    assert_eq!(code, 3);
    assert_eq!(again["rows_restored"], 0);
    assert_eq!(again["total_conflicts"], 3);
}

#[test]
fn map_default_set_null_and_delete_do_what_the_policy_says() {
    let db = TestDb::dirty_legacy();
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_file(
        &dir,
        "actions.yaml",
        "constraints:
  chk_evidence_status:
    action: map
    value: in_progress
    synonyms:
      pending review: collected
  chk_employee_count_positive:
    action: default
    value: 1
  chk_data_sensitivity:
    action: default
    value: Medium
  fk_assessment_business_profile: set_null
  fk_generated_policy_business_profile: delete
",
    );
    let (code, report, stderr) =
        db.run_json(&["--yes", "cleanup", "--policy", policy.to_str().unwrap()]);
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert!(report["policy"].as_str().unwrap().ends_with("actions.yaml"));
    let rules = rules(&report);
    assert_eq!(rules["chk_employee_count_positive"]["action"], "default");
    assert_eq!(
        rules["fk_generated_policy_business_profile"]["action"],
        "delete"
    );
    assert_eq!(rules["fk_generated_policy_business_profile"]["rows"], 1);
    assert_eq!(
        rules["fk_assessment_business_profile"]["action"],
        "set_null"
    );
    assert_eq!(rules["fk_assessment_business_profile"]["rows"], 2);

    let one = |sql: &str| text(&db, sql);
    // map: the file's synonym (spelled with a space, matching 'pending-review'), the fallback.
    assert_eq!(
        one("SELECT status::text FROM evidence_items WHERE id = '40000000-0000-0000-0000-000000000012'").as_deref(),
        Some("collected")
    );
    assert_eq!(
        one("SELECT status::text FROM evidence_items WHERE id = '40000000-0000-0000-0000-000000000009'").as_deref(),
        Some("in_progress")
    );
    // default: every violating value replaced, valid and NULL ones kept.
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM business_profiles WHERE employee_count = 1"),
        2
    );
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM business_profiles WHERE data_sensitivity = 'Medium'"),
        6
    );
    // delete: the orphaned policy is gone, recorded whole (current column names).
    assert_eq!(db.scalar_i64("SELECT count(*) FROM generated_policies"), 2);
    let mut client = db.client();
    let deleted = client
        .query(
            "SELECT old_values, new_values IS NULL, actions FROM ruleiq_audit.cleanup_changes
              WHERE table_name = 'generated_policies' ORDER BY pk",
            &[],
        )
        .unwrap();
    assert_eq!(deleted.len(), 1);
    let row: Value = deleted[0].get(0);
    assert_eq!(row["policy_name"], "Data Retention Policy");
    assert_eq!(
        row["business_profile_id"],
        "dead0000-0000-0000-0000-000000000003"
    );
    assert_eq!(row["generation_time_seconds"], 9.5);
    assert!(deleted[0].get::<_, bool>(1));
    assert_eq!(deleted[0].get::<_, Vec<String>>(2), ["delete"]);
    // set_null: the orphaned sessions' links cleared, the rows kept.
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM assessment_sessions WHERE id IN ('30000000-0000-0000-0000-000000000003', '30000000-0000-0000-0000-000000000004') AND business_profil IS NULL"),
        2
    );
    assert!(check_counts(&db).values().all(|n| *n == 0));
    assert_eq!(audit_mismatches(&db), 0);
}

#[test]
fn backfill_fills_approvals_from_the_row_and_demotes_rows_without_an_owner() {
    let db = TestDb::dirty_legacy();
    // An approved row without approval columns and without any timestamp: approved_at has
    // nothing to be filled from.
    db.insert_evidence("40000000-0000-0000-0000-000000000099", "'approved'");
    db.execute(
        "UPDATE evidence_items SET created_at = NULL, updated_at = NULL WHERE id = '40000000-0000-0000-0000-000000000099';
         UPDATE evidence_items SET updated_at = '2024-02-02 12:00:00' WHERE id IN
           ('40000000-0000-0000-0000-000000000005', '40000000-0000-0000-0000-000000000006', '40000000-0000-0000-0000-000000000007');",
    );
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_file(
        &dir,
        "backfill.yaml",
        &format!("constraints:\n  chk_approval_workflow:\n    action: backfill\n{DECISIONS}"),
    );
    let (code, report, stderr) =
        db.run_json(&["--yes", "cleanup", "--policy", policy.to_str().unwrap()]);
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    let rules = rules(&report);
    assert_eq!(rules["chk_approval_workflow"]["action"], "backfill");
    assert_eq!(rules["chk_approval_workflow"]["rows"], 3);
    assert_eq!(rules["chk_approval_workflow"]["cascaded_rows"], 1);

    let mut client = db.client();
    let mut approval = |id: &str| -> (String, Option<String>, Option<String>) {
        let row = client
            .query_one(
                "SELECT status::text, approved_at::text, approved_by::text FROM evidence_items WHERE id = $1::text::uuid",
                &[&id],
            )
            .unwrap();
        (row.get(0), row.get(1), row.get(2))
    };
    // approved_by was set: only approved_at is filled, from updated_at.
    assert_eq!(
        approval("40000000-0000-0000-0000-000000000005"),
        (
            "approved".into(),
            Some("2024-02-02 12:00:00".into()),
            Some("ada@example.com".into())
        )
    );
    // Neither was set: approved_by is the owner (its id as text: production's column is varchar).
    assert_eq!(
        approval("40000000-0000-0000-0000-000000000006"),
        (
            "approved".into(),
            Some("2024-02-02 12:00:00".into()),
            Some("10000000-0000-0000-0000-000000000003".into())
        )
    );
    // 'Approved' normalised, then backfilled in the same update.
    assert_eq!(
        approval("40000000-0000-0000-0000-000000000007"),
        (
            "approved".into(),
            Some("2024-02-02 12:00:00".into()),
            Some("10000000-0000-0000-0000-000000000001".into())
        )
    );
    // Nothing to fill approved_at from: demoted to the policy's value, approval columns empty.
    assert_eq!(
        approval("40000000-0000-0000-0000-000000000099"),
        ("collected".into(), None, None)
    );
    assert!(check_counts(&db).values().all(|n| *n == 0));
    assert_eq!(audit_mismatches(&db), 0);
}

#[test]
fn skip_leaves_a_constraint_alone_and_says_so() {
    let db = TestDb::dirty_legacy();
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_file(
        &dir,
        "skip.yaml",
        &format!("constraints:\n  chk_data_sensitivity: skip\n{DECISIONS}"),
    );
    let (code, report, stderr) =
        db.run_json(&["--yes", "cleanup", "--policy", policy.to_str().unwrap()]);
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert_eq!(report["remaining_violations"], 0);
    let rules = rules(&report);
    assert_eq!(rules["chk_data_sensitivity"]["action"], "skip");
    assert_eq!(rules["chk_data_sensitivity"]["rows"], 5);
    assert!(report["notes"].as_array().unwrap().iter().any(|n| n
        .as_str()
        .unwrap()
        .starts_with("chk_data_sensitivity: skipped")));
    let after = check_counts(&db);
    assert_eq!(after["chk_data_sensitivity"], 5);
    assert_eq!(after["chk_employee_count_positive"], 0);
    // The profile that broke both keeps its sensitivity and loses its bad count.
    assert_eq!(
        text(&db, "SELECT data_sensitivity::text FROM business_profiles WHERE id = '20000000-0000-0000-0000-000000000002'").as_deref(),
        Some("high ")
    );
}

#[test]
fn policy_errors_exit_1_naming_file_and_line_before_any_change() {
    let db = TestDb::dirty_legacy();
    let before = db.dump();
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "unknown-constraint.yaml",
            "constraints:\n  chk_evidence_status: map\n  chk_colour: skip\n",
            "line 3",
            "unknown constraint `chk_colour`",
        ),
        (
            "unknown-action.yaml",
            "constraints:\n  chk_evidence_status:\n    action: shred\n",
            "line 3",
            "unknown action `shred`",
        ),
        (
            "rejected-value.yaml",
            "constraints:\n  chk_data_sensitivity:\n    action: map\n    value: Huge\n",
            "line 4",
            "'Huge'",
        ),
        (
            "rejected-synonym.yaml",
            "constraints:\n  chk_evidence_status:\n    synonyms:\n      done: finished\n",
            "line 4",
            "'finished'",
        ),
        (
            "wrong-action.yaml",
            "constraints:\n  chk_employee_count_positive: delete\n",
            "line 2",
            "does not apply to chk_employee_count_positive",
        ),
        (
            "syntax.yaml",
            "constraints:\n  chk_evidence_status:\n    action: map\n   value: [oops\n",
            "line ",
            "",
        ),
    ];
    for (name, body, line, message) in cases {
        let path = policy_file(&dir, name, body);
        let (code, out, stderr) = db.run(&["--yes", "cleanup", "--policy", path.to_str().unwrap()]);
        assert_eq!(code, 1, "{name}: {out}{stderr}");
        assert!(
            stderr.contains(name),
            "{name}: the file is not named: {stderr}"
        );
        assert!(stderr.contains(line), "{name}: no {line}: {stderr}");
        assert!(stderr.contains(message), "{name}: no '{message}': {stderr}");
    }
    // A value the catalog accepts but the column cannot hold: still refused before any change.
    let path = policy_file(
        &dir,
        "too-big.yaml",
        "constraints:\n  chk_employee_count_positive:\n    action: default\n    value: 3000000000\n",
    );
    let (code, _, stderr) = db.run(&["--yes", "cleanup", "--policy", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("does not fit business_profiles.employee_count"),
        "{stderr}"
    );
    let (code, _, stderr) = db.run(&["--yes", "cleanup", "--policy", "/nonexistent/policy.yaml"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("cannot read the cleanup policy /nonexistent/policy.yaml"),
        "{stderr}"
    );

    assert!(!audit_exists(&db));
    db.assert_unchanged(&before);
}

#[test]
fn the_example_policy_is_valid_and_its_synonyms_apply() {
    let db = TestDb::dirty_legacy();
    let example = "fixtures/cleanup-policy.example.yaml";
    let (code, report, stderr) = db.run_json(&["cleanup", "--dry-run", "--policy", example]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(rules(&report)["chk_evidence_status"]["rows"], 7);
    let (code, report, stderr) = db.run_json(&["--yes", "cleanup", "--policy", example]);
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    // 'pending-review' is the application's 'pending_review' (a built-in synonym), not the
    // fallback value; 'Moderate' and 'Confidential' are its sensitivity words.
    assert_eq!(
        text(&db, "SELECT status::text FROM evidence_items WHERE id = '40000000-0000-0000-0000-000000000012'").as_deref(),
        Some("collected")
    );
    assert_eq!(
        text(&db, "SELECT data_sensitivity::text FROM business_profiles WHERE id = '20000000-0000-0000-0000-000000000006'").as_deref(),
        Some("Critical")
    );
    assert_eq!(
        text(&db, "SELECT data_sensitivity::text FROM business_profiles WHERE id = '20000000-0000-0000-0000-000000000008'").as_deref(),
        Some("Medium")
    );
    assert!(check_counts(&db).values().all(|n| *n == 0));
}

#[test]
fn without_yes_off_a_terminal_nothing_changes() {
    let db = TestDb::dirty_legacy();
    let before = db.dump();
    let (code, _, stderr) = db.run(&["cleanup", "--policy", EXAMPLE_POLICY]);
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("--yes"), "{stderr}");
    assert!(!audit_exists(&db));
    db.assert_unchanged(&before);

    // Undo asks too.
    let (code, report, _) = db.run_json(&["--yes", "cleanup", "--policy", EXAMPLE_POLICY]);
    assert_eq!(code, 0);
    let run_id = report["run_id"].as_str().unwrap().to_string();
    let cleaned = db.dump();
    let (code, _, stderr) = db.run(&["cleanup", "--undo", &run_id]);
    assert_eq!(code, 4, "{stderr}");
    db.assert_unchanged(&cleaned);
}

#[test]
fn undo_of_an_unknown_run_is_a_clear_error() {
    let db = TestDb::dirty_legacy();
    let (code, _, stderr) = db.run(&["--yes", "cleanup", "--undo", "last-tuesday"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("'last-tuesday' is not a cleanup run id"),
        "{stderr}"
    );
    let unknown = "6f1c8a52-3d1b-4c55-9a43-0c2f3e1d7b10";
    let (code, _, stderr) = db.run(&["--yes", "cleanup", "--undo", unknown]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("no cleanup has ever changed this database"),
        "{stderr}"
    );
    let (code, report, _) = db.run_json(&["--yes", "cleanup", "--policy", EXAMPLE_POLICY]);
    assert_eq!(code, 0);
    let (code, _, stderr) = db.run(&["--yes", "cleanup", "--undo", unknown]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains(&format!("no cleanup run {unknown}")),
        "{stderr}"
    );
    assert!(
        stderr.contains(report["run_id"].as_str().unwrap()),
        "the recent runs are listed: {stderr}"
    );
}

/// Version 8 applied while rows still broke the constraints (they were added NOT VALID, so
/// PostgreSQL rejects any update that leaves a row violating): cleanup must repair each row's
/// violations together, and then the constraints validate.
#[test]
fn cleanup_at_version_8_under_not_valid_constraints() {
    let db = TestDb::dirty_legacy();
    db.execute(&ruleiq_db::catalog::repair::up_sql());
    let repair = ruleiq_db::catalog::migrations::get(8).unwrap();
    db.execute(&format!(
        "INSERT INTO refinery_schema_history (version, name, applied_on, checksum)
         VALUES (8, '{}', '2024-06-01T00:00:00Z', '{}')",
        repair.name(),
        repair.checksum()
    ));
    let (_, status, _) = db.run_json(&["status"]);
    let states: Vec<&str> = status["constraints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["state"].as_str().unwrap())
        .collect();
    // The CHECKs were added NOT VALID; the foreign keys were adopted as they were (valid, with
    // orphans restored under them with triggers off).
    assert_eq!(
        states,
        [
            "not_valid",
            "not_valid",
            "not_valid",
            "not_valid",
            "valid",
            "valid"
        ],
        "{status:#}"
    );
    // The business profile with two violations cannot be repaired one column at a time.
    let mut client = db.client();
    assert!(client
        .batch_execute("UPDATE business_profiles SET employee_count = 5 WHERE id = '20000000-0000-0000-0000-000000000002'")
        .is_err());

    let (code, dry, _) = db.run_json(&["cleanup", "--dry-run", "--policy", EXAMPLE_POLICY]);
    assert_eq!(code, 0);
    assert_eq!(dry["schema_version"], 8);
    for (name, count) in FIXTURE_VIOLATIONS {
        assert_eq!(rules(&dry)[*name]["rows"], *count, "{name}");
    }
    let (code, report, stderr) = db.run_json(&["--yes", "cleanup", "--policy", EXAMPLE_POLICY]);
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert_eq!(report["total_rows"], 18);
    assert_eq!(audit_mismatches(&db), 0);

    let (code, checked, stderr) = db.run_json(&["check-constraints"]);
    assert_eq!(code, 0, "{checked:#}\n{stderr}");
    assert_eq!(checked["validated"].as_array().unwrap().len(), 4);
}

/// A cleanup killed between batches on a larger table leaves whole, audited batches; running
/// it again finishes the job, and every changed row has exactly one matching record.
#[test]
fn a_killed_cleanup_leaves_whole_audited_batches_and_a_rerun_finishes() {
    const ROWS: i64 = 50_000;
    const BATCH: i64 = 50;
    let db = many_dirty_evidence(ROWS);

    let mut child = db
        .command()
        .env("RULEIQ_CLEANUP_BATCH_SIZE", BATCH.to_string())
        .args(["--quiet", "--yes", "cleanup"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut watcher = db.client();
    // Wait until some batches have committed (or the child has ended by itself).
    common::poll_until_named(
        std::time::Duration::from_secs(300),
        "cleanup had committed 20 batches",
        || common::audit_records(&mut watcher) >= 20 * BATCH || child.try_wait().unwrap().is_some(),
    );
    child.kill().unwrap();
    child.wait().unwrap();
    // The server finishes (or rolls back) the statement the child was in: wait for its
    // session to end before looking.
    common::wait_until(
        &mut watcher,
        "SELECT count(*) = 0 FROM pg_stat_activity
          WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
        "the killed cleanup's session had ended",
    );

    let audited = audit_count(&db);
    assert!(
        audited > 0 && audited < ROWS,
        "the run was to be interrupted mid-way, but {audited} of {ROWS} rows were audited"
    );
    assert_eq!(audited % BATCH, 0, "only whole batches may be committed");
    let repaired = db.scalar_i64(
        "SELECT count(*) FROM evidence_items WHERE status IN ('not_started', 'in_progress', 'collected', 'rejected')",
    );
    assert_eq!(
        repaired, audited,
        "every changed row has its record, and no more"
    );
    assert_eq!(audit_mismatches(&db), 0);
    let first_run: String = watcher
        .query_one(
            "SELECT run_id::text FROM ruleiq_audit.cleanup_runs WHERE status = 'started'",
            &[],
        )
        .unwrap()
        .get(0);

    let (code, report, stderr) = db.run_json(&["--yes", "cleanup"]);
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert_eq!(report["interrupted_runs"], serde_json::json!([first_run]));
    assert_eq!(report["remaining_violations"], 0);
    assert_eq!(report["total_rows"].as_i64().unwrap(), ROWS - audited);
    assert_eq!(audit_count(&db), ROWS);
    assert_eq!(
        db.scalar_i64("SELECT count(DISTINCT pk) FROM ruleiq_audit.cleanup_changes"),
        ROWS
    );
    assert_eq!(audit_mismatches(&db), 0);
    assert!(check_counts(&db).values().all(|n| *n == 0));
}

/// The preview reads the rows on a second session; a role the server allows one connection
/// gets the same run, previewed on its only session.
#[test]
fn a_role_with_one_connection_slot_still_previews_and_repairs_everything() {
    let db = TestDb::dirty_legacy();
    let role = format!("single_{}", &db.name[2..10]);
    db.execute(&format!(
        "CREATE ROLE {role} LOGIN PASSWORD 'pw' CONNECTION LIMIT 1;
         GRANT CREATE, TEMPORARY ON DATABASE {db} TO {role};
         GRANT USAGE ON SCHEMA public TO {role};
         GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role};
         ALTER TABLE evidence_items OWNER TO {role};
         ALTER TABLE business_profiles OWNER TO {role};
         ALTER TABLE assessment_sessions OWNER TO {role};
         ALTER TABLE generated_policies OWNER TO {role};",
        db = db.name
    ));
    let out = db
        .cli_as(&role, "pw")
        .args(["--yes", "cleanup", "--policy", EXAMPLE_POLICY])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert_eq!(out.status.code(), Some(0), "{report:#}\n{stderr}");
    assert!(
        stderr.contains("previewing on this session alone"),
        "the preview should have read on the run's own session: {stderr}"
    );
    assert_eq!(report["total_rows"], 18, "{report:#}");
    assert_eq!(report["remaining_violations"], 0);
    assert!(check_counts(&db).values().all(|n| *n == 0));
    drop(db);
    common::connect_url(&common::url_for("postgres"))
        .batch_execute(&format!("DROP ROLE IF EXISTS {role}"))
        .ok();
}

/// Ctrl-C or SIGTERM in the middle of a cleanup: the running batch is cancelled and rolled
/// back, the run is marked interrupted at once, and the one report says so, with what was
/// done and the undo command (exit 130).
#[test]
fn an_interrupted_cleanup_reports_what_it_did_and_marks_its_run() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        let db = many_dirty_evidence(20_000);
        let (report, run_id) = interrupt_a_cleanup(&db, db.command(), signal);
        let audited = audit_count(&db);
        if audited > 0 {
            assert!(
                report["undo"]
                    .as_str()
                    .is_some_and(|u| u.contains(&format!("--undo {run_id}"))),
                "{report:#}"
            );
        }
        assert_eq!(
            db.advisory_locks_held(),
            0,
            "the migration lock was released"
        );
    }
}

/// Runs `cleanup` with `command` (the binary, pointed at `db` one way or another) in batches
/// of 20, sends `signal` once a batch has committed, and checks the run stopped as an
/// interrupt: exit 130, one report saying so, the run marked interrupted. The report and the
/// run's id.
pub(crate) fn interrupt_a_cleanup(
    db: &TestDb,
    mut command: std::process::Command,
    signal: i32,
) -> (serde_json::Value, String) {
    let child = command
        .env("RULEIQ_CLEANUP_BATCH_SIZE", "20")
        .args(["--format", "json", "--yes", "cleanup"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut watcher = db.client();
    // Once a batch has committed, the run is in the middle of its work (the audit trail is
    // created by the run: until then there is nothing to count).
    common::poll_until_named(
        std::time::Duration::from_secs(60),
        "a batch committed",
        || common::audit_records(&mut watcher) > 0,
    );
    unsafe {
        libc::kill(child.id() as i32, signal);
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stdout}\n{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("one report on an interrupt ({e}): {stdout}\n{stderr}"));
    assert_eq!(report["interrupted"], true, "{report:#}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    let run_id = report["run_id"].as_str().expect("the run id").to_string();
    assert_eq!(db.cleanup_run_status(&run_id), "interrupted");
    (report, run_id)
}

/// A table with many rows to repair is repaired on two sessions at once, each over its own
/// share of the keys: every row repaired and audited exactly once, nothing left violating, and
/// the undo puts every row back as it was.
#[test]
fn a_big_table_is_repaired_on_two_sessions_each_row_once_and_undone_whole() {
    const ROWS: i64 = 3_000;
    let db = many_dirty_evidence(ROWS);
    let statuses = |db: &TestDb| -> Vec<(String, Option<String>)> {
        db.client()
            .query(
                "SELECT id::text, status FROM evidence_items ORDER BY id",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    };
    let before = statuses(&db);
    // The dry run foretells the sharing in its estimate, and changes nothing.
    // Batches of 100: 3,000 keys give each of two sessions several batches.
    let cleanup = |args: &[&str]| {
        db.cli()
            .env("RULEIQ_CLEANUP_BATCH_SIZE", "100")
            .args(["--format", "json"])
            .args(args)
            .output()
            .unwrap()
    };
    let dry = cleanup(&["cleanup", "--dry-run"]);
    let dry: serde_json::Value = serde_json::from_slice(&dry.stdout).unwrap();
    let basis = dry["estimate"]["basis"].as_str().unwrap_or_default();
    assert!(basis.contains("shared among up to 2 sessions"), "{dry:#}");
    assert!(dry["estimate"]["repair_ms"].as_u64().is_some(), "{dry:#}");
    assert_eq!(statuses(&db), before, "a dry run changes nothing");
    let out = cleanup(&["--yes", "cleanup"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("evidence_items: ") && stderr.contains("on 2 sessions at once"),
        "{stderr}"
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let run_id = report["run_id"].as_str().unwrap().to_string();
    let (audited, distinct): (i64, i64) = {
        let row = db
            .client()
            .query_one(
                "SELECT count(*), count(DISTINCT pk) FROM ruleiq_audit.cleanup_changes
                  WHERE run_id = $1::text::uuid AND table_name = 'evidence_items'",
                &[&run_id],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!((audited, distinct), (ROWS, ROWS), "each row audited once");
    let (code, checked, stderr) = db.run_json(&["check-constraints", "--dry-run"]);
    assert_eq!(code, 0, "{checked:#}\n{stderr}");
    assert_eq!(checked["total_violations"], 0, "{checked:#}");
    assert_ne!(statuses(&db), before, "the rows were repaired");

    let (code, undo, stderr) = db.run_json(&["--yes", "cleanup", "--undo", &run_id]);
    assert_eq!(code, 0, "{undo:#}\n{stderr}");
    assert_eq!(statuses(&db), before, "the undo puts every row back");
}

/// A version-7 database with one clean profile and `rows` evidence rows, every one of which
/// breaks chk_evidence_status in one of the ways the built-in policy repairs.
pub(crate) fn many_dirty_evidence(rows: i64) -> TestDb {
    let db = TestDb::new();
    db.migrate_to(7);
    db.execute(&format!(
        "INSERT INTO users (id, email, hashed_password) VALUES ('10000000-0000-0000-0000-000000000001', 'ada@example.com', 'x');
         INSERT INTO business_profiles (id, user_id, company_name, industry, employee_count, data_sensitivity,
             handles_persona, processes_payme, stores_health_d, provides_financ, operates_critic, has_internation)
         VALUES ('20000000-0000-0000-0000-000000000001', '10000000-0000-0000-0000-000000000001', 'Clean Ltd', 'retail', 50, 'High',
             true, false, false, false, false, false);
         INSERT INTO compliance_frameworks (id, name, display_name, description, category)
         VALUES ('90000000-0000-0000-0000-000000000001', 'ISO27001', 'ISO/IEC 27001', 'ISMS', 'security');
         INSERT INTO evidence_items {EVIDENCE_COLUMNS}
         SELECT gen_random_uuid(), {FIXTURE_OWNER}, 'generated ' || g, 'note', 'T.1', 'generated row',
                (ARRAY['Approved', 'done', 'In Progress', 'pending-review', ' rejected'])[1 + g % 5],
                now(), now()
           FROM generate_series(1, {rows}) AS g;"
    ));
    db
}
