//! `baseline` adopts a database another tool built, and `status` reports its shape drift. The
//! databases "built by Alembic" run the embedded migrations' SQL directly, without ruleiq-db,
//! and carry Alembic's version table: exactly what production has.

mod common;
use common::TestDb;
use ruleiq_db::catalog::{migrations, renames::RENAMES, HISTORY_TABLE, TABLES};
use serde_json::{json, Value};

/// A database with the schema of `version` built by plain SQL, without ruleiq-db.
fn plain_sql_schema(version: i32) -> TestDb {
    let db = TestDb::new();
    for m in migrations::all()
        .into_iter()
        .filter(|m| m.version() <= version)
    {
        db.execute(m.sql().expect("every migration has SQL"));
    }
    db
}

/// The schema of `version` as Alembic leaves it: no ruleiq-db history, Alembic's own table.
fn built_by_alembic(version: i32) -> TestDb {
    let db = plain_sql_schema(version);
    db.execute(
        "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY);
         INSERT INTO alembic_version VALUES ('5b2e0c7a91f4');",
    );
    db
}

/// Production: version 7 built by Alembic, with clean rows.
fn production() -> TestDb {
    let db = plain_sql_schema(7);
    db.execute_file("fixtures/alembic_v7.sql");
    db
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

fn history_exists(db: &TestDb) -> bool {
    db.client()
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&HISTORY_TABLE])
        .unwrap()
        .get(0)
}

fn differences(report: &Value, key: &str) -> Vec<Value> {
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

fn states(status: &Value) -> Vec<(i64, String)> {
    differences(status, "migrations")
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

#[test]
fn production_built_by_alembic_is_adopted_at_7_then_repaired_with_its_data() {
    let db = production();
    let untouched = db.dump();
    let data = fingerprint(&db);

    let (code, _, stderr) = db.run(&["migrate"]);
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("ruleiq-db baseline"), "{stderr}");
    db.assert_unchanged(&untouched);

    let (_, status, _) = db.run_json(&["status"]);
    assert_eq!(status["schema_version"], 0);
    assert_eq!(status["ok"], false, "{status:#}");
    let drift = differences(&status, "drift");
    let users = difference(&drift, "table users");
    assert_eq!(users["kind"], "ahead");
    assert!(users["problem"]
        .as_str()
        .unwrap()
        .contains("ruleiq-db baseline"));

    let (code, report, stderr) = db.run_json(&["baseline"]);
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert_eq!(report["ok"], true);
    assert_eq!(report["detected_version"], 7);
    assert_eq!(report["recorded"], json!([1, 2, 3, 4, 5, 6, 7]));
    assert_eq!(report["schema_version"], 7);
    let found = differences(&report, "differences");
    assert_eq!(
        found.len(),
        1,
        "Alembic's table (which stands for its columns) is the only extra: {found:#?}"
    );
    let alembic = difference(&found, "table alembic_version");
    assert_eq!(alembic["allowed"], true);
    assert_eq!(alembic["kind"], "extra");

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

    let (_, status, _) = db.run_json(&["status"]);
    assert_eq!(status["schema_version"], 7);
    let mut want: Vec<(i64, String)> = (1..=7).map(|v| (v, "applied".to_string())).collect();
    want.push((8, "pending".into()));
    assert_eq!(states(&status), want);
    assert_eq!(status["ok"], true, "{status:#}");
    assert!(differences(&status, "drift")
        .iter()
        .all(|d| d["allowed"] == true));

    let (code, report, stderr) = db.run_json(&["migrate"]);
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert_eq!(report["from_version"], 7);
    assert_eq!(report["to_version"], 8);
    assert_eq!(fingerprint(&db), data, "migrate must keep every value");
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM business_profiles WHERE handles_personal_data AND stores_health_data"),
        1
    );
    assert_eq!(valid_catalog_constraints(&db), 6);

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
fn each_version_is_detected_and_migrate_carries_on_from_it() {
    for version in 1..=migrations::latest_version() {
        let db = built_by_alembic(version);
        let (code, report, stderr) = db.run_json(&["baseline"]);
        assert_eq!(code, 0, "version {version}: {report:#}\n{stderr}");
        assert_eq!(report["detected_version"], version, "{report:#}");
        assert_eq!(
            report["recorded"],
            json!((1..=version).collect::<Vec<_>>()),
            "{report:#}"
        );
        assert!(differences(&report, "differences")
            .iter()
            .all(|d| d["allowed"] == true));

        let (code, report, stderr) = db.run_json(&["migrate"]);
        assert_eq!(
            code, 0,
            "migrate after baseline {version}: {report:#}\n{stderr}"
        );
        assert_eq!(report["from_version"], version);
        assert_eq!(report["to_version"], migrations::latest_version());
    }
}

#[test]
fn the_table_report_names_the_version_and_what_was_recorded() {
    let db = built_by_alembic(5);
    let (code, out, stderr) = db.run(&["baseline"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        out.contains("detected version: 5; recorded: V1 to V5"),
        "{out}"
    );
    assert!(out.contains("alembic_version"), "{out}");
}

#[test]
fn a_missing_index_is_reported_and_nothing_is_recorded() {
    let db = built_by_alembic(7);
    db.execute("DROP INDEX idx_evidence_ai_metadata_gin");
    let untouched = db.dump();

    let (code, report, stderr) = db.run_json(&["baseline"]);
    assert_eq!(code, 4, "{report:#}\n{stderr}");
    assert_eq!(report["ok"], false);
    // 6 is complete, but 007's columns are there: recording 6 would make migrate re-add them.
    assert_eq!(report["detected_version"], 6);
    assert_eq!(report["compared_with"], 7);
    assert_eq!(report["recorded"], json!([]));
    let found = differences(&report, "differences");
    let index = difference(
        &found,
        "index idx_evidence_ai_metadata_gin on evidence_items",
    );
    assert_eq!(index["kind"], "missing");
    assert_eq!(index["allowed"], false);
    assert!(index["problem"]
        .as_str()
        .unwrap()
        .contains("V7 add_evidence_metadata"));
    assert_eq!(found.iter().filter(|d| d["allowed"] == false).count(), 1);
    assert!(stderr.contains("refused"), "{stderr}");
    assert!(!history_exists(&db));
    db.assert_unchanged(&untouched);
}

#[test]
fn version_7_on_a_version_6_shape_is_refused_with_the_differences() {
    let db = built_by_alembic(6);
    let untouched = db.dump();

    let (code, report, stderr) = db.run_json(&["baseline", "--version", "7"]);
    assert_eq!(code, 4, "{report:#}\n{stderr}");
    assert_eq!(report["requested_version"], 7);
    assert_eq!(report["compared_with"], 7);
    assert_eq!(report["detected_version"], 6);
    assert_eq!(report["recorded"], json!([]));
    let found = differences(&report, "differences");
    for object in [
        "column evidence_items.ai_metadata",
        "column evidence_items.approved_at",
        "column evidence_items.approved_by",
        "index idx_evidence_ai_metadata_gin on evidence_items",
        "constraint evidence_items_approved_by_fkey on evidence_items",
    ] {
        let d = difference(&found, object);
        assert_eq!(d["kind"], "missing", "{d:#}");
        assert_eq!(d["allowed"], false);
    }
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
fn columns_renamed_by_hand_are_drift_at_7_and_008_finishes_the_job() {
    let db = production();
    // Every column renamed by hand: the names of version 8, but none of its constraints.
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
    assert_eq!(report["recorded"], json!([1, 2, 3, 4, 5, 6, 7]));
    let found = differences(&report, "differences");
    for r in RENAMES {
        let d = difference(&found, &format!("column {}.{}", r.table, r.legacy));
        assert_eq!(d["kind"], "renamed_by_hand");
        assert_eq!(d["allowed"], true);
        assert!(d["problem"].as_str().unwrap().contains(r.current));
    }

    let (_, status, _) = db.run_json(&["status"]);
    let drift = differences(&status, "drift");
    assert_eq!(
        drift
            .iter()
            .filter(|d| d["kind"] == "renamed_by_hand")
            .count(),
        RENAMES.len()
    );

    let (code, report, stderr) = db.run_json(&["migrate"]);
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert_eq!(report["to_version"], 8);
    assert_eq!(valid_catalog_constraints(&db), 6);
    assert_eq!(fingerprint(&db), data);
    let (_, status, _) = db.run_json(&["status"]);
    assert!(
        differences(&status, "drift")
            .iter()
            .all(|d| d["object"].as_str().unwrap().contains("alembic_version")),
        "{status:#}"
    );
}

#[test]
fn both_names_of_a_column_stop_the_baseline() {
    let db = built_by_alembic(7);
    db.execute("ALTER TABLE business_profiles ADD COLUMN handles_personal_data BOOLEAN");
    let untouched = db.dump();
    let (code, report, stderr) = db.run_json(&["baseline"]);
    assert_eq!(code, 4, "{report:#}\n{stderr}");
    let found = differences(&report, "differences");
    let d = difference(&found, "column business_profiles.handles_personal_data");
    assert_eq!(d["kind"], "rename_conflict");
    assert!(d["problem"].as_str().unwrap().contains("handles_persona"));
    db.assert_unchanged(&untouched);
}

#[test]
fn a_shape_that_matches_no_version_is_refused() {
    let db = built_by_alembic(7);
    db.execute("ALTER TABLE users DROP COLUMN is_superuser");
    let untouched = db.dump();
    let (code, report, stderr) = db.run_json(&["baseline"]);
    assert_eq!(code, 4, "{report:#}\n{stderr}");
    assert_eq!(report["detected_version"], 0);
    assert_eq!(report["compared_with"], 7);
    let found = differences(&report, "differences");
    assert_eq!(
        difference(&found, "column users.is_superuser")["kind"],
        "missing"
    );
    assert!(report["summary"]
        .as_str()
        .unwrap()
        .contains("matches no version"));
    db.assert_unchanged(&untouched);
}

#[test]
fn an_empty_database_has_nothing_to_adopt() {
    let db = TestDb::new();
    let (code, report, stderr) = db.run_json(&["baseline"]);
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert_eq!(report["detected_version"], 0);
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
         DROP INDEX idx_evidence_user_status;
         ALTER TABLE evidence_items ALTER COLUMN file_type TYPE TEXT;",
    );
    let (code, status, _) = db.run_json(&["status"]);
    assert_eq!(code, 3, "drift that is not allowed is a verdict: exit 3");
    assert_eq!(status["ok"], false);
    let drift = differences(&status, "drift");
    assert_eq!(drift.len(), 3, "{drift:#?}");
    let leftover = difference(&drift, "column business_profiles.handles_persona");
    assert_eq!(leftover["allowed"], true);
    assert!(leftover["problem"].as_str().unwrap().contains("left over"));
    let index = difference(&drift, "index idx_evidence_user_status on evidence_items");
    assert_eq!(index["kind"], "missing");
    let column = difference(&drift, "column evidence_items.file_type");
    assert_eq!(column["kind"], "mismatch");
    assert!(column["problem"]
        .as_str()
        .unwrap()
        .contains("character varying(50)"));
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

    let out = assert_cmd::Command::cargo_bin("ruleiq-db")
        .unwrap()
        .env_remove("DATABASE_URL")
        .args(["--database-url", &reader_url, "--format", "json", "status"])
        .output()
        .unwrap();
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    // Not knowing is not "as expected": exit 1, and the report says the check did not run.
    assert_eq!(out.status.code(), Some(1), "{status:#}");
    assert_eq!(status["ok"], false);
    assert_eq!(status["drift_checked"], false);
    assert_eq!(status["schema_version"], 8);
    let drift = differences(&status, "drift");
    assert_eq!(drift.len(), 1, "{drift:#?}");
    assert_eq!(drift[0]["object"], "schema");
    assert_eq!(drift[0]["allowed"], false);
    assert!(drift[0]["problem"]
        .as_str()
        .unwrap()
        .contains("not compared with version 8"));

    drop(db);
    common::connect_url(&common::url_for("postgres"))
        .batch_execute(&format!("DROP ROLE {role}"))
        .unwrap();
}
