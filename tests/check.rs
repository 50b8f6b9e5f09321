//! `check-constraints` against a real PostgreSQL.

use crate::common;
use common::{TestDb, EVIDENCE_COLUMNS, EXAMPLE_POLICY, FIXTURE_OWNER};
use serde_json::Value;

fn by_name(report: &Value) -> std::collections::BTreeMap<String, Value> {
    report["constraints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap().to_string(), c.clone()))
        .collect()
}

#[test]
fn counts_every_violation_of_the_dirty_fixture_exactly() {
    let db = TestDb::dirty_legacy();
    let before = db.dump();
    let (code, report, stderr) = db.run_json(&["check-constraints", "--dry-run"]);
    assert_eq!(code, 3, "{stderr}");
    assert_eq!(report["command"], "check-constraints");
    assert_eq!(report["ok"], false);
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["schema_version"], 7);
    assert_eq!(report["total_violations"], 19);
    let found = by_name(&report);
    // The state a version-7 database has: the CHECKs are absent, and each catalog foreign key
    // is carried by the one production already has, under Alembic's name.
    let expected = [
        ("chk_evidence_status", "evidence_items", "check", 7),
        (
            "chk_employee_count_positive",
            "business_profiles",
            "check",
            2,
        ),
        ("chk_data_sensitivity", "business_profiles", "check", 5),
        ("chk_approval_workflow", "evidence_items", "check", 2),
        (
            "fk_assessment_business_profile",
            "assessment_sessions",
            "foreign_key",
            2,
        ),
        (
            "fk_generated_policy_business_profile",
            "generated_policies",
            "foreign_key",
            1,
        ),
    ];
    for (name, table, kind, count) in expected {
        let c = &found[name];
        assert_eq!(c["table"], table, "{name}");
        assert_eq!(c["kind"], kind, "{name}");
        assert_eq!(c["violations"], count, "{name}");
        let state = if kind == "check" { "absent" } else { "valid" };
        assert_eq!(c["state"], state, "{name}");
        assert_eq!(c["sample"].as_array().unwrap().len(), count, "{name}");
    }
    // NULLs and valid values do not count; the sample names exactly the bad rows, in order.
    let status: Vec<&str> = found["chk_evidence_status"]["sample"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        status,
        [
            "40000000-0000-0000-0000-000000000007",
            "40000000-0000-0000-0000-000000000008",
            "40000000-0000-0000-0000-000000000009",
            "40000000-0000-0000-0000-000000000011",
            "40000000-0000-0000-0000-000000000012",
            "40000000-0000-0000-0000-000000000014",
            "40000000-0000-0000-0000-000000000015"
        ]
    );
    assert_eq!(
        found["fk_generated_policy_business_profile"]["sample"][0],
        "50000000-0000-0000-0000-000000000002"
    );
    db.assert_unchanged(&before);
}

#[test]
fn samples_are_the_ten_smallest_keys_and_counts_stay_exact_when_violations_are_many() {
    let db = TestDb::dirty_legacy();
    db.execute(&format!(
        "INSERT INTO evidence_items {EVIDENCE_COLUMNS}
         SELECT ('e0000000-0000-0000-0000-' || lpad(g::text, 12, '0'))::uuid, {FIXTURE_OWNER},
                'bulk', 'note', 'T.1', 'bulk row', 'bogus', now(), now()
           FROM generate_series(1, 5000) g"
    ));
    let (code, report, _) = db.run_json(&[
        "check-constraints",
        "--dry-run",
        "--constraint",
        "chk_evidence_status",
    ]);
    assert_eq!(code, 3);
    let c = &report["constraints"][0];
    assert_eq!(c["violations"], 5007);
    let sample: Vec<&str> = c["sample"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(sample.len(), 10);
    let mut sorted = sample.clone();
    sorted.sort();
    assert_eq!(sample, sorted);
    assert_eq!(sample[0], "40000000-0000-0000-0000-000000000007");
}

#[test]
fn constraint_filter_selects_and_unknown_names_are_refused() {
    let db = TestDb::dirty_legacy();
    let (code, report, _) = db.run_json(&[
        "check-constraints",
        "--dry-run",
        "--constraint",
        "fk_generated_policy_business_profile",
        "--constraint",
        "chk_employee_count_positive",
    ]);
    assert_eq!(code, 3);
    let names: Vec<&str> = report["constraints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "fk_generated_policy_business_profile",
            "chk_employee_count_positive"
        ]
    );
    assert_eq!(report["total_violations"], 3);

    let (code, _, stderr) = db.run(&[
        "check-constraints",
        "--dry-run",
        "--constraint",
        "chk_nonsense",
    ]);
    assert_eq!(code, 4, "{stderr}");
    assert!(
        stderr.contains("chk_nonsense") && stderr.contains("chk_evidence_status"),
        "lists valid names: {stderr}"
    );
}

#[test]
fn json_and_yaml_carry_the_same_report() {
    let db = TestDb::dirty_legacy();
    let (_, mut json, _) = db.run_json(&["check-constraints", "--dry-run"]);
    let (code, yaml, _) = db.run(&["--format", "yaml", "check-constraints", "--dry-run"]);
    assert_eq!(code, 3);
    let mut yaml: Value = serde_yaml::from_str(&yaml).unwrap();
    // Each run times its own estimate (docs/design.md §11): the keys match, the numbers move.
    for report in [&mut json, &mut yaml] {
        let estimate = report.as_object_mut().unwrap().remove("estimate").unwrap();
        assert!(estimate["total_ms"].is_u64() && estimate["basis"].is_string());
        report
            .as_object_mut()
            .unwrap()
            .remove("estimate_ms")
            .unwrap();
    }
    assert_eq!(json, yaml);
}

#[test]
fn a_clean_database_exits_0_and_the_report_file_is_written() {
    let db = TestDb::new();
    db.migrate_to(8);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("report.json");
    let (code, report, _) = db.run_json(&[
        "--output",
        file.to_str().unwrap(),
        "check-constraints",
        "--dry-run",
    ]);
    assert_eq!(code, 0);
    assert_eq!(report["ok"], true);
    assert_eq!(report["total_violations"], 0);
    assert!(report["constraints"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["state"] == "valid"));
    let written: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    assert_eq!(written, report);
}

#[test]
fn dry_run_reads_under_an_exclusive_lock_that_blocks_every_writer() {
    // EXCLUSIVE conflicts with every lock stronger than ACCESS SHARE: the check must still finish.
    let db = TestDb::dirty_legacy();
    let mut holder = db.client();
    let mut tx = holder.transaction().unwrap();
    for table in [
        "evidence_items",
        "business_profiles",
        "assessment_sessions",
        "generated_policies",
    ] {
        tx.execute(&format!("LOCK TABLE {table} IN EXCLUSIVE MODE"), &[])
            .unwrap();
    }
    let (code, report, stderr) =
        db.run_json(&["--lock-wait", "1s", "check-constraints", "--dry-run"]);
    assert_eq!(code, 3, "{stderr}");
    assert_eq!(report["total_violations"], 19);
    tx.rollback().unwrap();
}

#[test]
fn version_8_with_a_not_valid_constraint_names_the_row_and_validates_once_repaired() {
    let db = TestDb::dirty_legacy();
    let (code, _, stderr) = db.run(&["cleanup", "--yes", "--policy", EXAMPLE_POLICY]);
    assert_eq!(code, 0, "{stderr}");
    db.migrate_to(8);
    db.execute("ALTER TABLE evidence_items DROP CONSTRAINT chk_evidence_status");
    db.insert_evidence("40000000-0000-0000-0000-00000000000a", "'Done'");
    db.execute(
        "ALTER TABLE evidence_items ADD CONSTRAINT chk_evidence_status CHECK (status IN ('not_started','in_progress','collected','approved','rejected')) NOT VALID;",
    );
    let (code, report, _) = db.run_json(&["check-constraints", "--dry-run"]);
    assert_eq!(code, 3);
    let found = by_name(&report);
    assert_eq!(found["chk_evidence_status"]["state"], "not_valid");
    assert_eq!(found["chk_evidence_status"]["violations"], 1);
    assert_eq!(
        found["chk_evidence_status"]["sample"][0],
        "40000000-0000-0000-0000-00000000000a"
    );

    // Without --dry-run it validates what it can; this one is still blocked.
    let (code, report, _) = db.run_json(&["check-constraints"]);
    assert_eq!(code, 3);
    assert_eq!(report["validated"].as_array().unwrap().len(), 0);

    // The NOT VALID constraint rejects any update that leaves the row violating; fixing it works.
    db.execute("UPDATE evidence_items SET status = 'collected' WHERE id = '40000000-0000-0000-0000-00000000000a'");
    let (code, report, stderr) = db.run_json(&["check-constraints"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        report["validated"],
        serde_json::json!(["chk_evidence_status"])
    );
    assert_eq!(by_name(&report)["chk_evidence_status"]["state"], "valid");
    assert_eq!(db.scalar_i64("SELECT count(*) FROM pg_constraint WHERE conname = 'chk_evidence_status' AND convalidated"), 1);
}

#[test]
fn the_human_table_sorts_by_violations_and_says_what_to_run_next() {
    let db = TestDb::dirty_legacy();
    let (code, stdout, _) = db.run(&["check-constraints", "--dry-run"]);
    assert_eq!(code, 3);
    // The estimate's numbers are this run's own timing (docs/design.md §11).
    let (timed, stdout): (Vec<&str>, Vec<&str>) = stdout
        .lines()
        .partition(|l| l.starts_with("estimated duration: "));
    assert_eq!(timed.len(), 1, "one estimate line");
    let stdout = stdout.join("\n") + "\n";
    insta::assert_snapshot!(stdout);
}
