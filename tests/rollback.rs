//! `ruleiq-db rollback` against a real PostgreSQL, through the real binary.

use crate::common;
use common::TestDb;

use postgres::Client;
use ruleiq_db::catalog::renames::RENAMES;
use ruleiq_db::catalog::TABLES;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;

const SEED: &str = "fixtures/seed_v8.sql";
/// Rows per table in the seed.
const SEED_ROWS: i64 = 2;

/// What each down archives (the objects it drops), by version.
fn archived_by(version: i32) -> Vec<&'static str> {
    match version {
        7 => vec!["evidence.ai_metadata", "evidence_items.ai_metadata"],
        5 => vec!["business_profiles.data_sensitivity"],
        4 => vec!["integration_configs"],
        3 => vec![
            "report_schedules",
            "integration_configurations",
            "readiness_assessments",
            "implementation_plans",
            "chat_messages",
            "chat_conversations",
            "policies",
            "generated_policies",
            "evidence",
            "evidence_items",
            "assessment_questions",
            "assessment_sessions",
        ],
        2 => vec!["compliance_frameworks", "business_profiles"],
        1 => vec!["users"],
        _ => vec![],
    }
}

/// The public schema's shape: columns with types, defaults and nullability; constraints with
/// their definitions; indexes. The history table is not part of the schema being compared.
#[derive(Debug, PartialEq, Eq)]
struct Catalog {
    columns: Vec<String>,
    constraints: Vec<String>,
    indexes: Vec<String>,
}

fn catalog(db: &TestDb) -> Catalog {
    let mut client = db.client();
    let list = |client: &mut Client, sql: &str| -> Vec<String> {
        client
            .query(sql, &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    Catalog {
        columns: list(
            &mut client,
            r"SELECT format('%s.%s %s default=%s not_null=%s', c.relname, a.attname,
                     format_type(a.atttypid, a.atttypmod),
                     coalesce(pg_get_expr(d.adbin, d.adrelid), '-'), a.attnotnull)
                FROM pg_attribute a
                JOIN pg_class c ON c.oid = a.attrelid
                JOIN pg_namespace n ON n.oid = c.relnamespace
                LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
               WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm')
                 AND a.attnum > 0 AND NOT a.attisdropped
                 AND c.relname <> 'refinery_schema_history'
               ORDER BY 1",
        ),
        constraints: list(
            &mut client,
            r"SELECT format('%s %s %s validated=%s', conrelid::regclass, conname,
                     pg_get_constraintdef(oid), convalidated)
                FROM pg_constraint
               WHERE connamespace = 'public'::regnamespace
                 AND conrelid::regclass::text <> 'refinery_schema_history'
               ORDER BY 1",
        ),
        indexes: list(
            &mut client,
            r"SELECT indexdef FROM pg_indexes
               WHERE schemaname = 'public' AND tablename <> 'refinery_schema_history'
               ORDER BY 1",
        ),
    }
}

/// Asserts two catalogs are equal, printing only the lines that differ.
fn assert_same_catalog(actual: &Catalog, expected: &Catalog, what: &str) {
    if actual == expected {
        return;
    }
    let lines = |c: &Catalog| -> BTreeSet<String> {
        c.columns
            .iter()
            .chain(&c.constraints)
            .chain(&c.indexes)
            .cloned()
            .collect()
    };
    let (actual, expected) = (lines(actual), lines(expected));
    panic!(
        "{what}: the catalog differs from a fresh database's.\nonly here: {:#?}\nonly in the fresh one: {:#?}",
        actual.difference(&expected).collect::<Vec<_>>(),
        expected.difference(&actual).collect::<Vec<_>>()
    );
}

/// A fresh database migrated to `version` (0: nothing at all).
fn fresh_at(version: i32) -> TestDb {
    let db = TestDb::new();
    if version > 0 {
        db.migrate_to(version);
    }
    db
}

fn seeded_at_8() -> TestDb {
    let db = TestDb::new();
    db.migrate_to(8);
    db.execute_file(SEED);
    db
}

/// The full name of a column, whichever name the database uses.
fn current_name(table: &str, column: &str) -> String {
    RENAMES
        .iter()
        .find(|r| r.table == table && r.legacy == column)
        .map_or(column, |r| r.current)
        .to_string()
}

type Rows = BTreeMap<(String, String), Map<String, Value>>;

/// Every row of `relation` keyed by (table, id), with columns under their full names.
fn read_rows(client: &mut Client, table: &str, relation: &str, into: &mut Rows) {
    let sql = format!("SELECT id::text, to_jsonb(r) FROM {relation} AS r");
    for row in client.query(&sql, &[]).unwrap() {
        let id: String = row.get(0);
        let Value::Object(values) = row.get::<_, Value>(1) else {
            panic!("to_jsonb of a row is an object")
        };
        let entry = into.entry((table.to_string(), id)).or_default();
        for (column, value) in values {
            entry.insert(current_name(table, &column), value);
        }
    }
}

/// The ruleIQ tables in public, with their rows.
fn public_rows(db: &TestDb) -> Rows {
    let mut client = db.client();
    let mut rows = Rows::new();
    for table in TABLES {
        let present: bool = client
            .query_one("SELECT to_regclass(quote_ident($1)) IS NOT NULL", &[table])
            .unwrap()
            .get(0);
        if present {
            read_rows(&mut client, table, table, &mut rows);
        }
    }
    rows
}

fn history_max(db: &TestDb) -> i64 {
    db.scalar_i64("SELECT coalesce(max(version), 0)::int8 FROM refinery_schema_history")
}

fn versions_of(list: &Value) -> Vec<i64> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|e| e["version"].as_i64().unwrap())
        .collect()
}

/// Every value the seed put in, found again in public or in the archives the report names.
fn assert_every_value_kept(db: &TestDb, before: &Rows, archived: &Value) {
    let mut client = db.client();
    let mut now = public_rows(db);
    for a in archived.as_array().unwrap() {
        let object = a["object"].as_str().unwrap();
        let archive = a["archive"].as_str().unwrap();
        assert!(archive.starts_with("\"ruleiq_archive\"."), "{archive}");
        let counted = db.scalar_i64(&format!("SELECT count(*) FROM {archive}"));
        assert_eq!(a["rows"].as_i64(), Some(counted), "{object}");
        assert_eq!(counted, SEED_ROWS, "{object}");
        match object.split_once('.') {
            None => read_rows(&mut client, object, archive, &mut now),
            Some((table, column)) => {
                let sql = format!("SELECT id::text, to_jsonb(r) -> $1 FROM {archive} AS r");
                for row in client.query(&sql, &[&column]).unwrap() {
                    let id: String = row.get(0);
                    let value: Option<Value> = row.get(1);
                    now.entry((table.to_string(), id))
                        .or_default()
                        .insert(current_name(table, column), value.unwrap_or(Value::Null));
                }
            }
        }
    }
    for ((table, id), values) in before {
        let kept = now
            .get(&(table.clone(), id.clone()))
            .unwrap_or_else(|| panic!("row {table} {id} is gone"));
        for (column, value) in values {
            assert_eq!(
                kept.get(column),
                Some(value),
                "{table}.{column} of {id} was not kept"
            );
        }
    }
}

/// Migrate to 8, fill every table, roll back to `n`; the schema equals a fresh one at `n`, the
/// archives hold every dropped value, and migrating back brings every value back.
fn roll_back_to(n: i32) {
    let db = seeded_at_8();
    let before = public_rows(&db);
    assert_eq!(before.len(), TABLES.len() * SEED_ROWS as usize);

    let (code, report, stderr) = db.run_json(&["--yes", "rollback", "--to", &n.to_string()]);
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert_eq!(report["ok"], true);
    assert_eq!(report["dry_run"], false);
    assert_eq!(report["from_version"], 8);
    assert_eq!(report["to_version"], n);
    assert_eq!(report["schema_version"], n);
    let expected: Vec<i64> = (n + 1..=8).rev().map(i64::from).collect();
    assert_eq!(versions_of(&report["reverted"]), expected);
    let objects: Vec<&str> = report["archived"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["object"].as_str().unwrap())
        .collect();
    let expected_objects: Vec<&str> = (n + 1..=8).rev().flat_map(archived_by).collect();
    assert_eq!(objects, expected_objects);
    assert_eq!(history_max(&db), i64::from(n));

    let reference = fresh_at(n);
    assert_same_catalog(
        &catalog(&db),
        &catalog(&reference),
        &format!("rolled back to {n}"),
    );
    assert_every_value_kept(&db, &before, &report["archived"]);
    let (code, status, stderr) = db.run_json(&["status"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(status["drift"], serde_json::json!([]), "status at {n}");

    // Migrating back puts every archived row and value back (docs/design.md §3): the data equals
    // what it was before the rollback.
    db.migrate_to(8);
    reference.migrate_to(8);
    assert_same_catalog(
        &catalog(&db),
        &catalog(&reference),
        &format!("migrated back to 8 from {n}"),
    );
    assert_eq!(
        public_rows(&db),
        before,
        "every row back after migrating from {n}"
    );
}

#[test]
fn roll_back_to_7() {
    roll_back_to(7);
}

#[test]
fn roll_back_to_6() {
    roll_back_to(6);
}

#[test]
fn roll_back_to_5() {
    roll_back_to(5);
}

#[test]
fn roll_back_to_4() {
    roll_back_to(4);
}

#[test]
fn roll_back_to_3() {
    roll_back_to(3);
}

#[test]
fn roll_back_to_2() {
    roll_back_to(2);
}

#[test]
fn roll_back_to_1() {
    roll_back_to(1);
}

#[test]
fn roll_back_to_0() {
    roll_back_to(0);
}

#[test]
fn without_options_one_step_and_with_steps_k() {
    let db = seeded_at_8();
    let (code, report, stderr) = db.run_json(&["--yes", "rollback"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(versions_of(&report["reverted"]), vec![8]);
    assert_eq!(report["to_version"], 7);
    assert_eq!(report["archived"], serde_json::json!([]));
    assert_eq!(history_max(&db), 7);
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM business_profiles WHERE handles_persona"),
        1
    );

    let (code, table, stderr) = db.run(&["--yes", "rollback", "--steps", "2"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(table.contains("from version 7 to version 5"), "{table}");
    for object in archived_by(7) {
        assert!(table.contains(object), "{object} missing from:\n{table}");
    }
    assert!(table.contains("ruleiq_archive"), "{table}");
    assert_eq!(history_max(&db), 5);
}

#[test]
fn dry_run_plans_every_step_and_changes_nothing() {
    let db = seeded_at_8();
    let before = db.dump();
    let (code, report, stderr) = db.run_json(&["rollback", "--dry-run", "--to", "0"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["schema_version"], 8);
    assert_eq!(report["to_version"], 0);
    assert_eq!(report["reverted"], serde_json::json!([]));
    let plan = report["plan"].as_array().unwrap();
    assert_eq!(
        versions_of(&report["plan"]),
        (1..=8).rev().collect::<Vec<_>>()
    );
    for step in plan {
        let version = step["version"].as_i64().unwrap() as i32;
        let statements = step["statements"].as_array().unwrap();
        assert!(statements.len() >= 2, "{step:#}");
        for s in statements {
            assert!(!s["sql"].as_str().unwrap().is_empty());
            assert!(!s["lock"].as_str().unwrap().is_empty());
        }
        let last = statements.last().unwrap()["sql"].as_str().unwrap();
        assert!(
            last.starts_with("DELETE FROM public.\"refinery_schema_history\""),
            "{last}"
        );
        let archives = step["archives"].as_array().unwrap();
        let objects: Vec<&str> = archives
            .iter()
            .map(|a| a["object"].as_str().unwrap())
            .collect();
        assert_eq!(objects, archived_by(version), "V{version}");
        for a in archives {
            assert_eq!(a["rows"], SEED_ROWS, "{a}");
        }
    }
    db.assert_unchanged(&before);
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM pg_namespace WHERE nspname = 'ruleiq_archive'"),
        0
    );
}

#[test]
fn refusals_exit_4_and_change_nothing() {
    let db = seeded_at_8();
    let before = db.dump();
    for (args, says) in [
        (vec!["rollback"], "--yes"),
        (
            vec!["--yes", "rollback", "--to", "9"],
            "above the current version 8",
        ),
        (vec!["--yes", "rollback", "--to=-1"], "is not a version"),
        (
            vec!["--yes", "rollback", "--steps", "9"],
            "the 8 migrations applied",
        ),
        (vec!["--yes", "rollback", "--steps", "0"], "--steps 0"),
    ] {
        let (code, _, stderr) = db.run(&args);
        assert_eq!(code, 4, "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    db.assert_unchanged(&before);
}

#[test]
fn an_edited_or_unknown_history_is_refused() {
    let db = TestDb::new();
    db.migrate_to(3);
    db.execute("UPDATE refinery_schema_history SET checksum = '1' WHERE version = 2");
    let before = db.dump();
    let (code, _, stderr) = db.run(&["--yes", "rollback", "--to", "0"]);
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("V2 base_schema differs"), "{stderr}");
    db.assert_unchanged(&before);

    let db = TestDb::new();
    db.migrate_to(3);
    db.execute(
        "INSERT INTO refinery_schema_history (version, name, applied_on, checksum)
         VALUES (9, 'from_the_future', '2026-01-01T00:00:00Z', '42')",
    );
    let before = db.dump();
    let (code, _, stderr) = db.run(&["--yes", "rollback"]);
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("V9 from_the_future"), "{stderr}");
    db.assert_unchanged(&before);
}

#[test]
fn nothing_applied_is_nothing_to_do() {
    let db = TestDb::new();
    let (code, report, stderr) = db.run_json(&["--yes", "rollback"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["reverted"], serde_json::json!([]));
    assert_eq!(report["schema_version"], 0);
    assert!(stderr.contains("nothing to roll back"), "{stderr}");
}

#[test]
fn a_rename_conflict_is_refused_before_anything_changes() {
    let db = seeded_at_8();
    db.execute("ALTER TABLE business_profiles ADD COLUMN handles_persona boolean");
    let before = db.dump();
    let (code, _, stderr) = db.run(&["--yes", "rollback"]);
    assert_eq!(code, 4, "{stderr}");
    assert!(
        stderr.contains("business_profiles: both handles_persona and handles_personal_data"),
        "{stderr}"
    );
    db.assert_unchanged(&before);
}

#[test]
fn another_migrator_holding_the_lock_is_refused() {
    let db = seeded_at_8();
    let _holder = db.hold_migration_lock();
    let before = db.dump();
    let (code, _, stderr) = db.run(&["--yes", "--lock-wait", "1s", "rollback"]);
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("holds the migration lock"), "{stderr}");
    db.assert_unchanged(&before);
}

#[test]
fn a_step_that_cannot_get_its_lock_rolls_back_whole() {
    let db = seeded_at_8();
    let mut holder = db.client();
    holder
        .batch_execute("BEGIN; LOCK TABLE generated_policies IN ACCESS SHARE MODE")
        .unwrap();
    let before = db.dump();
    let (code, _, stderr) = db.run(&[
        "--yes",
        "--ignore-blockers",
        "--lock-timeout",
        "100ms",
        "--lock-retries",
        "2",
        "rollback",
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("gave up after 2 attempts"), "{stderr}");
    assert!(stderr.contains("nothing was changed"), "{stderr}");
    db.assert_unchanged(&before);
    holder.batch_execute("ROLLBACK").unwrap();
}

/// Rolling back, migrating forward, and rolling back again: migrating forward puts the rows
/// back from the first rollback's archives and drops them, so the second rollback archives the
/// rows anew, whatever names it makes (that names never clash while an archive holds one is
/// `archive_names_never_clash_even_within_one_second`'s).
#[test]
fn rolling_back_again_after_migrating_forward_archives_the_rows_anew() {
    let db = seeded_at_8();
    let (code, first, stderr) = db.run_json(&["--yes", "rollback", "--to", "0"]);
    assert_eq!(code, 0, "{stderr}");
    let names = |report: &Value| -> Vec<String> {
        report["archived"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["archive"].as_str().unwrap().to_string())
            .collect()
    };
    let first = names(&first);
    db.migrate_to(8);
    let kept: Vec<&String> = first
        .iter()
        .filter(|name| {
            db.scalar_i64(&format!(
                "SELECT count(*) FROM pg_class WHERE oid = to_regclass('{name}')"
            )) > 0
        })
        .collect();
    assert!(
        kept.is_empty(),
        "migrating forward left the first rollback's archives {kept:?}"
    );
    let (code, second, stderr) = db.run_json(&["--yes", "rollback", "--to", "0"]);
    assert_eq!(code, 0, "{stderr}");
    let second = names(&second);
    assert_eq!(first.len(), second.len());
    for name in &second {
        assert_eq!(
            db.scalar_i64(&format!("SELECT count(*) FROM {name}")),
            SEED_ROWS
        );
    }
    let reference = fresh_at(0);
    assert_same_catalog(
        &catalog(&db),
        &catalog(&reference),
        "rolled back twice to 0",
    );
}

#[test]
fn a_rollback_killed_mid_way_leaves_a_whole_version() {
    let db = seeded_at_8();
    // V3's down is the first to touch readiness_assessments: it blocks there, after V8..V4.
    let mut holder = db.client();
    holder
        .batch_execute("BEGIN; LOCK TABLE readiness_assessments IN ACCESS SHARE MODE")
        .unwrap();
    let mut child = db
        .command()
        .args([
            "--quiet",
            "--yes",
            "--ignore-blockers",
            "--lock-timeout",
            "10m",
            "rollback",
            "--to",
            "2",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut watcher = db.client();
    let waiting = r"SELECT pid FROM pg_locks
                     WHERE relation = 'readiness_assessments'::regclass AND NOT granted";
    common::wait_until(
        &mut watcher,
        &format!("SELECT EXISTS ({waiting})"),
        "the rollback waits for readiness_assessments",
    );
    let backend: i32 = watcher.query_one(waiting, &[]).unwrap().get(0);
    child.kill().unwrap();
    child.wait().unwrap();
    // The server notices the dead client once the lock is granted; the open step rolls back.
    holder.batch_execute("COMMIT").unwrap();
    common::wait_until(
        &mut watcher,
        &format!("SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = {backend})"),
        "the killed rollback's session ends",
    );

    assert_eq!(history_max(&db), 3);
    assert_same_catalog(&catalog(&db), &catalog(&fresh_at(3)), "killed during V3");
    assert_eq!(
        db.scalar_i64(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'ruleiq_archive' AND tablename LIKE '%\\_\\_v3\\_%'"
        ),
        0,
        "V3's archiving was rolled back with its step"
    );
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM readiness_assessments"),
        SEED_ROWS
    );

    // Run again: it picks up at version 3.
    let (code, report, stderr) = db.run_json(&["--yes", "rollback", "--to", "2"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(versions_of(&report["reverted"]), vec![3]);
    assert_same_catalog(&catalog(&db), &catalog(&fresh_at(2)), "resumed to 2");
}

#[test]
fn archive_names_never_clash_even_within_one_second() {
    use chrono::TimeZone;
    use ruleiq_db::archive::{self, classify};
    let db = TestDb::new();
    db.migrate_to(4);
    db.execute(
        "INSERT INTO users (id, email, hashed_password) VALUES ('01000000-0000-0000-0000-000000000001', 'a@example.test', 'x');
         INSERT INTO business_profiles (id, user_id, company_name, industry, employee_count, handles_persona,
             processes_payme, stores_health_d, provides_financ, operates_critic, has_internation)
         VALUES ('02000000-0000-0000-0000-000000000001', '01000000-0000-0000-0000-000000000001', 'Acme', 'retail', 5,
             true, false, false, false, false, false);",
    );
    let stamp = archive::Stamp::at(
        chrono::Utc
            .with_ymd_and_hms(2026, 11, 25, 10, 15, 0)
            .unwrap(),
    );
    let drop = "DROP TABLE report_schedules";
    let mut client = db.client();
    let mut names = Vec::new();
    for _ in 0..2 {
        db.execute(
            "INSERT INTO report_schedules (id, user_id, business_profile_id, report_type, frequency, recipients, active, created_at)
             VALUES (gen_random_uuid(), '01000000-0000-0000-0000-000000000001', '02000000-0000-0000-0000-000000000001',
                     'r', 'daily', '[]', true, now())",
        );
        let mut tx = client.transaction().unwrap();
        let planned = archive::preview(&mut tx, &classify(drop).unwrap(), 4, &stamp)
            .unwrap()
            .unwrap();
        let made = archive::run_statement(&mut tx, drop, 4, "V4 (test)", &stamp)
            .unwrap()
            .unwrap();
        tx.commit().unwrap();
        assert_eq!(planned.archive, made.archive, "the plan names what is made");
        assert_eq!(made.rows, 1);
        names.push(made.archive);
        // The table's next life in public, with the same constraint and index names.
        db.execute(
            "CREATE TABLE report_schedules (id uuid NOT NULL, user_id uuid NOT NULL REFERENCES users(id),
               business_profile_id uuid NOT NULL REFERENCES business_profiles(id),
               report_type varchar NOT NULL, frequency varchar NOT NULL, recipients json NOT NULL,
               active boolean NOT NULL, created_at timestamp NOT NULL,
               CONSTRAINT report_schedules_pkey PRIMARY KEY (id))",
        );
    }
    assert_eq!(
        names,
        [
            "\"ruleiq_archive\".\"report_schedules__v4_20261125t101500z\"",
            "\"ruleiq_archive\".\"report_schedules__v4_20261125t101500z_2\""
        ]
    );
    let archived_indexes: Vec<String> = client
        .query(
            "SELECT indexname::text FROM pg_indexes WHERE schemaname = 'ruleiq_archive' ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        archived_indexes,
        [
            "report_schedules_pkey__v4_20261125t101500z",
            "report_schedules_pkey__v4_20261125t101500z_2"
        ]
    );
    // An archive keeps no foreign key: the rows it referred to can go, and it keeps its own.
    db.execute("DELETE FROM report_schedules; DELETE FROM business_profiles; DELETE FROM users");
    for name in &names {
        assert_eq!(db.scalar_i64(&format!("SELECT count(*) FROM {name}")), 1);
    }
    // Lower-case names: a DBA can type them without quotes.
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM ruleiq_archive.report_schedules__v4_20261125t101500z"),
        1
    );
    assert_eq!(
        db.scalar_i64(
            "SELECT count(*) FROM pg_constraint WHERE contype = 'f'
               AND connamespace = 'ruleiq_archive'::regnamespace"
        ),
        0
    );

    // Like DROP TABLE without CASCADE, moving a table that others reference is refused.
    let mut tx = client.transaction().unwrap();
    let error = archive::run_statement(&mut tx, "DROP TABLE users", 1, "V1 (test)", &stamp)
        .unwrap_err()
        .to_string();
    assert!(error.contains("still reference it"), "{error}");
}
