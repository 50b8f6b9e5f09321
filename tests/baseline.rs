//! `baseline` adopts a database another tool built (docs/design.md §4), and `status` reports its
//! shape drift. "Production" is made the way production was made: fixtures/production_v7.sql
//! run into an empty database, without ruleiq-db's migrations, with Alembic's `alembic_version`
//! ('007'), a table and an index of the application's own, and clean rows.

use crate::common;
use common::{latest, TestDb};
use ruleiq_db::catalog::{migrations, renames::RENAMES, HISTORY_TABLE, TABLES};
use serde_json::{json, Value};

const EXAMPLE_POLICY: &str = "fixtures/cleanup-policy.example.yaml";

/// Production as the application and Alembic left it.
fn production() -> TestDb {
    let db = TestDb::new();
    db.execute_file("fixtures/production_v7.sql");
    db
}

/// A database with the schema of `version` built by running the migrations' SQL directly,
/// without ruleiq-db, with an Alembic revision that is not one of ours (the shape decides).
fn built_by_alembic(version: i32) -> TestDb {
    let db = TestDb::new();
    for m in migrations::all()
        .into_iter()
        .filter(|m| m.version() <= version)
    {
        db.execute(m.sql().expect("every migration has SQL"));
    }
    db.execute(
        "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY);
         INSERT INTO alembic_version VALUES ('5b2e0c7a91f4');",
    );
    db
}

/// Rows the application writes that break 008's constraints, made by updating production's
/// clean rows (so the helper needs no column beyond those of the constraints).
fn make_dirty(db: &TestDb) {
    db.execute(
        "UPDATE evidence_items SET status = 'pending_review' WHERE status = 'collected';
         UPDATE business_profiles SET data_sensitivity = 'Moderate' WHERE data_sensitivity = 'Low';
         UPDATE business_profiles SET employee_count = 0 WHERE data_sensitivity = 'Critical';",
    );
}

/// Row count and a hash of every table's values in primary-key order. A row's text form holds
/// its values, not its column names, so it survives 008's renames.
fn fingerprint(db: &TestDb) -> Vec<String> {
    let mut client = db.client();
    TABLES
        .iter()
        .map(|table| {
            let row = client
                .query_one(
                    &format!(
                        "SELECT count(*)::text || ' ' || md5(coalesce(string_agg(t::text, '|' ORDER BY t.id), '')) FROM {table} t"
                    ),
                    &[],
                )
                .unwrap();
            format!("{table}: {}", row.get::<_, String>(0))
        })
        .collect()
}

/// The schema as the application sees it: everything but ruleiq-db's own history, audit,
/// archive and bookkeeping.
fn application_schema(db: &TestDb) -> String {
    db.dump_with(&[
        "--schema-only",
        "--exclude-schema=ruleiq_*",
        "--exclude-table",
        HISTORY_TABLE,
    ])
}

fn history_exists(db: &TestDb) -> bool {
    db.client()
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&HISTORY_TABLE])
        .unwrap()
        .get(0)
}

fn list(report: &Value, key: &str) -> Vec<Value> {
    report[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} in {report:#}"))
        .clone()
}

/// The difference about `object`, which must be there.
fn difference<'a>(list: &'a [Value], object: &str) -> &'a Value {
    list.iter()
        .find(|d| d["object"] == object)
        .unwrap_or_else(|| panic!("no difference about {object} in {list:#?}"))
}

fn objects_of_kind(list: &[Value], kind: &str) -> Vec<String> {
    list.iter()
        .filter(|d| d["kind"] == kind)
        .map(|d| d["object"].as_str().unwrap().to_string())
        .collect()
}

fn states(status: &Value) -> Vec<(i64, String)> {
    list(status, "migrations")
        .iter()
        .map(|m| {
            (
                m["version"].as_i64().unwrap(),
                m["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn valid_catalog_constraints(db: &TestDb) -> i64 {
    db.scalar_i64(
        "SELECT count(*) FROM pg_constraint WHERE convalidated AND conname IN
           ('chk_evidence_status', 'chk_employee_count_positive', 'chk_data_sensitivity',
            'chk_approval_workflow', 'fk_assessment_business_profile',
            'fk_generated_policy_business_profile')",
    )
}

/// No message may advise changing production's objects.
fn assert_no_advice(text: &str) {
    let lower = text.to_lowercase();
    for advice in [
        "create ",
        "drop ",
        "remove ",
        "delete ",
        "rename it",
        "create what",
    ] {
        assert!(
            !lower.contains(advice),
            "advice {advice:?} to change the database in:\n{text}"
        );
    }
}

fn seven() -> Value {
    json!([1, 2, 3, 4, 5, 6, 7])
}

#[test]
fn production_is_adopted_at_7_from_its_alembic_version_tolerating_what_is_not_ours() {
    let db = production();
    let untouched = db.dump();
    let data = fingerprint(&db);

    let (code, _, stderr) = db.run(&["migrate"]);
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("ruleiq-db baseline"), "{stderr}");
    assert_no_advice(&stderr);
    db.assert_unchanged(&untouched);

    let (code, report, stderr) = db.run_json(&["baseline"]);
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert_eq!(report["ok"], true);
    assert_eq!(report["evidence"], "alembic_version = '007'");
    assert_eq!(report["detected_version"], 7);
    assert_eq!(report["recorded"], seven());
    assert_eq!(report["schema_version"], 7);
    let found = list(&report, "differences");
    assert_eq!(
        objects_of_kind(&found, "tolerated"),
        [
            "table alembic_version",
            "table audit_log_entries",
            "index ix_users_created_at on users"
        ],
        "{found:#?}"
    );
    assert_eq!(found.len(), 3, "only what is not ours differs: {found:#?}");

    let recorded: Vec<(i32, String, String)> = db
        .client()
        .query(
            "SELECT version, name, checksum FROM refinery_schema_history ORDER BY version",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let expected: Vec<(i32, String, String)> = migrations::all()
        .iter()
        .filter(|m| m.version() <= 7)
        .map(|m| (m.version(), m.name().to_string(), m.checksum().to_string()))
        .collect();
    assert_eq!(recorded, expected);
    assert_eq!(fingerprint(&db), data, "baseline must not touch a row");

    let (code, status, _) = db.run_json(&["status"]);
    assert_eq!(code, 0);
    assert_eq!(status["schema_version"], 7);
    let mut want: Vec<(i64, String)> = (1..=7).map(|v| (v, "applied".to_string())).collect();
    want.extend((8..=latest()).map(|v| (i64::from(v), "pending".to_string())));
    assert_eq!(states(&status), want);
    assert_eq!(status["ok"], true, "{status:#}");
    assert!(list(&status, "drift")
        .iter()
        .all(|d| d["kind"] == "tolerated"));

    let before = db.dump();
    let (code, _, stderr) = db.run(&["baseline"]);
    assert_eq!(code, 4, "{stderr}");
    assert!(
        stderr.contains("already has a ruleiq-db history"),
        "{stderr}"
    );
    db.assert_unchanged(&before);
}

#[test]
fn a_missing_006_index_is_refused_then_accepted_on_purpose_and_status_shows_it_accepted() {
    let db = production();
    db.execute("DROP INDEX idx_evidence_items_user_status");
    let untouched = db.dump();
    let index = "index idx_evidence_items_user_status on evidence_items";

    let (code, report, stderr) = db.run_json(&["baseline"]);
    assert_eq!(code, 4, "{report:#}\n{stderr}");
    assert_eq!(report["ok"], false);
    assert_eq!(report["exit_code"], 4);
    assert_eq!(report["recorded"], json!([]));
    let found = list(&report, "differences");
    let d = difference(&found, index);
    assert_eq!(d["kind"], "accepted");
    assert_eq!(d["verdict"], "not_accepted");
    assert!(d["problem"]
        .as_str()
        .unwrap()
        .contains("V6 add_performance_indexes"));
    assert_eq!(objects_of_kind(&found, "blocking"), Vec::<String>::new());
    assert!(stderr.contains(index), "{stderr}");
    assert!(
        stderr.contains("`ruleiq-db baseline --accept-drift`"),
        "{stderr}"
    );
    assert_no_advice(&stderr);
    assert_no_advice(report["error"].as_str().unwrap());
    let (_, table, _) = db.run(&["baseline"]);
    assert_no_advice(&table);
    assert!(!history_exists(&db));
    db.assert_unchanged(&untouched);

    let (code, report, stderr) = db.run_json(&["baseline", "--accept-drift"]);
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert_eq!(report["recorded"], seven());
    let found = list(&report, "differences");
    let d = difference(&found, index);
    assert_eq!(
        (&d["kind"], &d["verdict"]),
        (&json!("accepted"), &json!("accepted"))
    );
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM ruleiq_meta.accepted_drift"),
        1,
        "the accepted difference is kept with the history"
    );

    for stage in ["after baseline", "after migrate"] {
        let (code, status, stderr) = db.run_json(&["status"]);
        assert_eq!(code, 0, "{stage}: {stderr}");
        assert_eq!(status["ok"], true, "{stage}: {status:#}");
        let drift = list(&status, "drift");
        let d = difference(&drift, index);
        assert_eq!(d["kind"], "accepted", "{stage}");
        assert_eq!(d["verdict"], "accepted", "{stage}");
        if stage == "after baseline" {
            let (code, report, stderr) = db.run_json(&["migrate"]);
            assert_eq!(code, 0, "{report:#}\n{stderr}");
            assert_eq!(report["to_version"], latest());
        }
    }
}

#[test]
fn what_008_needs_is_refused_even_with_accept_drift_saying_why() {
    let cases = [
        (
            "ALTER TABLE business_profiles DROP COLUMN handles_persona",
            "column business_profiles.handles_persona",
            "renames business_profiles.handles_persona to handles_personal_data",
        ),
        (
            "ALTER TABLE evidence_items ALTER COLUMN status TYPE text",
            "column evidence_items.status",
            "chk_evidence_status and chk_approval_workflow read it",
        ),
        (
            "DROP TABLE generated_policies",
            "table generated_policies",
            "fk_generated_policy_business_profile",
        ),
        (
            "ALTER TABLE business_profiles ADD COLUMN handles_personal_data BOOLEAN",
            "column business_profiles.handles_personal_data",
            "008 renames handles_persona to handles_personal_data and stops while both exist",
        ),
    ];
    for (damage, object, needle) in cases {
        let db = production();
        db.execute(damage);
        let untouched = db.dump();
        for args in [&["baseline"][..], &["baseline", "--accept-drift"]] {
            let (code, report, stderr) = db.run_json(args);
            assert_eq!(code, 4, "{damage} {args:?}: {report:#}\n{stderr}");
            let found = list(&report, "differences");
            let d = difference(&found, object);
            assert_eq!(d["kind"], "blocking", "{damage}: {d:#}");
            let problem = d["problem"].as_str().unwrap();
            assert!(problem.contains(needle), "{damage}: {problem}");
            assert!(stderr.contains(object), "{stderr}");
            assert!(
                stderr.contains("--accept-drift does not cover these")
                    || stderr.contains("--accept-drift would not cover these"),
                "{stderr}"
            );
            assert_no_advice(&stderr);
            db.assert_unchanged(&untouched);
        }
        assert!(!history_exists(&db));
    }
}

#[test]
fn a_missing_table_008_does_not_touch_is_accepted_only_on_purpose() {
    let db = production();
    db.execute("DROP TABLE report_schedules");
    let (code, report, stderr) = db.run_json(&["baseline"]);
    assert_eq!(code, 4, "{report:#}\n{stderr}");
    let found = list(&report, "differences");
    let d = difference(&found, "table report_schedules");
    assert_eq!(d["kind"], "accepted");
    assert!(d["problem"]
        .as_str()
        .unwrap()
        .contains("a rollback below version 3 would stop at it"));
    let (code, report, stderr) = db.run_json(&["baseline", "--accept-drift"]);
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert_eq!(report["recorded"], seven());
}

#[test]
fn an_unknown_alembic_revision_is_reported_and_the_shape_decides() {
    for (setup, evidence) in [
        (
            "UPDATE alembic_version SET version_num = '009'",
            "alembic_version = '009' (not one of ours: not trusted; the shape decides)",
        ),
        (
            "UPDATE alembic_version SET version_num = '4f2a9c1e7b3d'",
            "alembic_version = '4f2a9c1e7b3d' (not one of ours: not trusted; the shape decides)",
        ),
        (
            "DROP TABLE alembic_version",
            "no alembic_version: the shape decides",
        ),
    ] {
        let db = production();
        db.execute(setup);
        let (code, report, stderr) = db.run_json(&["baseline"]);
        assert_eq!(code, 0, "{setup}: {report:#}\n{stderr}");
        assert_eq!(report["evidence"], evidence);
        assert_eq!(report["detected_version"], 7, "{report:#}");
        assert_eq!(report["recorded"], seven());
        assert!(stderr.contains(evidence), "{stderr}");
    }
}

#[test]
fn the_adopted_database_goes_through_check_cleanup_migrate_and_rollback() {
    let db = production();
    make_dirty(&db);
    let (code, report, stderr) = db.run_json(&["baseline"]);
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    let adopted = application_schema(&db);

    let (code, check, stderr) = db.run_json(&["check-constraints", "--dry-run"]);
    assert_eq!(code, 3, "{check:#}\n{stderr}");
    let violations = check["total_violations"].as_u64().unwrap();
    assert!(violations >= 3, "{check:#}");

    let (code, report, stderr) = db.run_json(&["cleanup", "--yes", "--policy", EXAMPLE_POLICY]);
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert!(report["total_rows"].as_u64().unwrap() >= 3, "{report:#}");
    let (code, check, _) = db.run_json(&["check-constraints", "--dry-run"]);
    assert_eq!(code, 0, "{check:#}");

    let (code, report, stderr) = db.run_json(&["migrate"]);
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert_eq!(report["from_version"], 7);
    assert_eq!(report["to_version"], latest());
    assert_eq!(valid_catalog_constraints(&db), 6);
    let (_, status, _) = db.run_json(&["status"]);
    assert_eq!(status["ok"], true, "{status:#}");

    let (code, report, stderr) = db.run_json(&["rollback", "--to", "7", "--yes"]);
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert_eq!(report["to_version"], 7);
    assert_eq!(
        application_schema(&db),
        adopted,
        "rolling back to 7 gives the adopted schema back"
    );
    let (_, status, _) = db.run_json(&["status"]);
    assert_eq!(status["schema_version"], 7);
    assert_eq!(status["ok"], true, "{status:#}");
}

#[test]
fn each_version_is_detected_from_its_shape_and_migrate_carries_on_from_it() {
    for version in 1..=latest() {
        let db = built_by_alembic(version);
        let (code, report, stderr) = db.run_json(&["baseline"]);
        assert_eq!(code, 0, "version {version}: {report:#}\n{stderr}");
        assert_eq!(report["detected_version"], version, "{report:#}");
        assert_eq!(
            report["recorded"],
            json!((1..=version).collect::<Vec<_>>()),
            "{report:#}"
        );
        assert!(list(&report, "differences")
            .iter()
            .all(|d| d["kind"] == "tolerated"));

        let (code, report, stderr) = db.run_json(&["migrate"]);
        assert_eq!(
            code, 0,
            "migrate after baseline {version}: {report:#}\n{stderr}"
        );
        assert_eq!(report["from_version"], version);
        assert_eq!(report["to_version"], latest());
    }
}

#[test]
fn the_table_report_names_the_evidence_and_what_was_recorded() {
    let db = production();
    let (code, out, stderr) = db.run(&["baseline"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(out.contains("evidence: alembic_version = '007'"), "{out}");
    assert!(
        out.contains("detected version: 7; recorded: V1 to V7"),
        "{out}"
    );
    assert!(out.contains("audit_log_entries"), "{out}");
    assert!(out.contains("tolerated"), "{out}");
}

#[test]
fn a_requested_version_is_compared_as_asked() {
    let db = built_by_alembic(6);
    let untouched = db.dump();

    // 006's objects exist: recording 5 would make migrate fail creating them again.
    let (code, report, stderr) = db.run_json(&["baseline", "--version", "5"]);
    assert_eq!(code, 4, "{report:#}\n{stderr}");
    assert_eq!(report["requested_version"], 5);
    assert_eq!(report["compared_with"], 5);
    let found = list(&report, "differences");
    let d = difference(&found, "index idx_users_email on users");
    assert_eq!(
        (&d["kind"], &d["finding"]),
        (&json!("blocking"), &json!("ahead"))
    );
    assert!(d["problem"]
        .as_str()
        .unwrap()
        .contains("V6 add_performance_indexes"));
    assert_no_advice(&stderr);
    db.assert_unchanged(&untouched);

    // 007's columns are missing: 008 does not need them, so only --accept-drift records 7.
    let (code, report, stderr) = db.run_json(&["baseline", "--version", "7"]);
    assert_eq!(code, 4, "{report:#}\n{stderr}");
    let found = list(&report, "differences");
    let d = difference(&found, "column evidence_items.ai_metadata");
    assert_eq!(
        (&d["kind"], &d["finding"]),
        (&json!("accepted"), &json!("missing"))
    );
    db.assert_unchanged(&untouched);

    let (code, _, stderr) = db.run(&["baseline", "--version", "9"]);
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("--version 9 does not exist"), "{stderr}");
    db.assert_unchanged(&untouched);

    let (code, report, stderr) = db.run_json(&["baseline", "--version", "6"]);
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert_eq!(report["recorded"], json!([1, 2, 3, 4, 5, 6]));
}

#[test]
fn columns_renamed_by_hand_are_tolerated_at_7_and_008_finishes_the_job() {
    let db = production();
    for r in RENAMES {
        db.execute(&format!(
            "ALTER TABLE {} RENAME COLUMN {} TO {}",
            r.table, r.legacy, r.current
        ));
    }
    let data = fingerprint(&db);

    let (code, report, stderr) = db.run_json(&["baseline"]);
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert_eq!(report["detected_version"], 7);
    assert_eq!(report["recorded"], seven());
    let found = list(&report, "differences");
    for r in RENAMES {
        let d = difference(&found, &format!("column {}.{}", r.table, r.legacy));
        assert_eq!(d["finding"], "renamed_by_hand");
        assert_eq!(d["kind"], "tolerated");
        assert!(d["problem"].as_str().unwrap().contains(r.current));
    }

    let (code, report, stderr) = db.run_json(&["migrate"]);
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert_eq!(report["to_version"], latest());
    assert_eq!(valid_catalog_constraints(&db), 6);
    assert_eq!(fingerprint(&db), data);
    let (_, status, _) = db.run_json(&["status"]);
    assert_eq!(status["ok"], true, "{status:#}");
    assert!(
        list(&status, "drift")
            .iter()
            .all(|d| d["kind"] == "tolerated"),
        "{status:#}"
    );
}

#[test]
fn an_empty_database_has_nothing_to_adopt() {
    let db = TestDb::new();
    let (code, report, stderr) = db.run_json(&["baseline"]);
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert_eq!(report["detected_version"], 0);
    assert_eq!(report["evidence"], "no alembic_version: the shape decides");
    assert_eq!(report["recorded"], json!([]));
    assert_eq!(report["schema_version"], 0);
    assert!(report["summary"]
        .as_str()
        .unwrap()
        .contains("nothing to adopt"));
    assert!(!history_exists(&db));
}

#[test]
fn status_reports_shape_drift_at_version_8() {
    let db = TestDb::new();
    let (code, _, stderr) = db.run(&["migrate"]);
    assert_eq!(code, 0, "{stderr}");
    let (code, status, _) = db.run_json(&["status"]);
    assert_eq!(code, 0);
    assert_eq!(
        status["drift"],
        json!([]),
        "a migrated database has no drift"
    );
    assert_eq!(status["ok"], true);

    db.execute(
        "ALTER TABLE business_profiles ADD COLUMN handles_persona BOOLEAN;
         DROP INDEX idx_evidence_items_user_status;
         ALTER TABLE evidence_items ALTER COLUMN file_type TYPE TEXT;
         ALTER TABLE evidence_items ALTER COLUMN evidence_name DROP NOT NULL;",
    );
    let (code, status, _) = db.run_json(&["status"]);
    assert_eq!(code, 3, "drift that is not allowed is a verdict: exit 3");
    assert_eq!(status["ok"], false);
    let drift = list(&status, "drift");
    assert_eq!(drift.len(), 4, "{drift:#?}");
    let leftover = difference(&drift, "column business_profiles.handles_persona");
    assert_eq!(leftover["kind"], "blocking");
    assert!(leftover["problem"]
        .as_str()
        .unwrap()
        .contains("rolling 008 back renames handles_personal_data back"));
    for (object, finding) in [
        (
            "index idx_evidence_items_user_status on evidence_items",
            "missing",
        ),
        ("column evidence_items.file_type", "mismatch"),
        (
            "nullability of column evidence_items.evidence_name",
            "mismatch",
        ),
    ] {
        let d = difference(&drift, object);
        assert_eq!(d["finding"], finding, "{d:#}");
        assert_eq!(
            (&d["kind"], &d["verdict"]),
            (&json!("accepted"), &json!("not_accepted"))
        );
    }
    assert!(
        difference(&drift, "column evidence_items.file_type")["problem"]
            .as_str()
            .unwrap()
            .contains("type is text, expected character varying")
    );
    for d in &drift {
        assert_no_advice(d["problem"].as_str().unwrap());
    }
}

#[test]
fn status_as_a_role_that_cannot_create_a_schema_says_the_shape_was_not_compared() {
    let db = TestDb::new();
    let (code, _, stderr) = db.run(&["migrate"]);
    assert_eq!(code, 0, "{stderr}");
    let role = format!("reader_{}", uuid::Uuid::new_v4().simple());
    db.execute(&format!(
        "CREATE ROLE {role} LOGIN PASSWORD 'reader-pw';
         GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role};"
    ));
    let (scheme, rest) = db.url.split_once("://").unwrap();
    let (_, server) = rest.split_once('@').unwrap();
    let reader_url = format!("{scheme}://{role}:reader-pw@{server}");

    let out = common::cli_at(&reader_url)
        .args(["--format", "json", "status"])
        .output()
        .unwrap();
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    // Not knowing is not "as expected": exit 1, and the report says the check did not run.
    assert_eq!(out.status.code(), Some(1), "{status:#}");
    assert_eq!(status["ok"], false);
    assert_eq!(status["drift_checked"], false);
    assert_eq!(status["schema_version"], latest());
    let drift = list(&status, "drift");
    assert_eq!(drift.len(), 1, "{drift:#?}");
    assert_eq!(drift[0]["object"], "schema");
    assert_eq!(drift[0]["kind"], "blocking");
    assert!(drift[0]["problem"]
        .as_str()
        .unwrap()
        .contains("not compared with version 8"));

    drop(db);
    common::connect_url(&common::url_for("postgres"))
        .batch_execute(&format!("DROP ROLE {role}"))
        .unwrap();
}
