//! Round trips (docs/design.md §3): a rollback archives what it drops, and migrating forward again
//! puts it back, so 8 → N → 8 keeps every value; and a rollback refuses to strand the user's own
//! views and functions on what it would archive. The real binary against a real PostgreSQL.
//!
//! Written against whatever tables the schema has (every table in public), so that it holds for
//! any shape of migrations 001–007.

use crate::common;
use common::{latest, TestDb};
use ruleiq_db::archive::dependents;
use ruleiq_db::archive::Action;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

/// A cleanup policy that settles every rule without a decision in either shape of the legacy
/// schema, and backfills approvals so that approved rows hold approved_at/approved_by values a
/// round trip must not lose.
const POLICY: &str = "constraints:
  chk_employee_count_positive:
    action: default
    value: 1
  chk_approval_workflow: backfill
  fk_assessment_business_profile: set_null
  fk_generated_policy_business_profile: delete
";

/// The dirty legacy fixture, cleaned, at version 8.
fn clean_at_8() -> TestDb {
    let db = TestDb::dirty_legacy();
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::File::create(&policy)
        .unwrap()
        .write_all(POLICY.as_bytes())
        .unwrap();
    let (code, report, stderr) =
        db.run_json(&["--yes", "cleanup", "--policy", policy.to_str().unwrap()]);
    assert_eq!(code, 0, "cleanup: {report:#}\n{stderr}");
    db.migrate_to(8);
    db
}

/// Every table of the application's schema (history aside), each with its rows as sorted JSON
/// text: equal values compare equal whatever the column or row order.
fn data(db: &TestDb) -> BTreeMap<String, Vec<String>> {
    let mut client = db.client();
    let tables: Vec<String> = client
        .query(
            "SELECT tablename::text FROM pg_tables
              WHERE schemaname = 'public' AND tablename <> 'refinery_schema_history'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    tables
        .into_iter()
        .map(|t| {
            let mut rows: Vec<String> = client
                .query(
                    &format!(
                        "SELECT to_jsonb(r)::text FROM public.{} AS r",
                        ruleiq_db::catalog::sql::quote_ident(&t)
                    ),
                    &[],
                )
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            rows.sort();
            (t, rows)
        })
        .collect()
}

fn assert_same_data(before: &BTreeMap<String, Vec<String>>, after: &BTreeMap<String, Vec<String>>) {
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "the same tables"
    );
    for (table, rows) in before {
        let now = &after[table];
        let gone: Vec<&String> = rows.iter().filter(|r| !now.contains(r)).take(5).collect();
        let new: Vec<&String> = now.iter().filter(|r| !rows.contains(r)).take(5).collect();
        assert!(
            gone.is_empty() && new.is_empty() && rows.len() == now.len(),
            "{table}: {} rows before, {} after\nrows gone: {gone:#?}\nrows new: {new:#?}",
            rows.len(),
            now.len()
        );
    }
}

/// The tables in ruleiq_archive whose comment still offers them for a restore.
fn unrestored_archives(db: &TestDb) -> i64 {
    db.scalar_i64(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'ruleiq_archive' AND c.relkind = 'r'
            AND obj_description(c.oid, 'pg_class') LIKE 'ruleiq-db rollback of %'",
    )
}

/// (object, archive, rows) of a report's list.
fn entries(list: &Value) -> BTreeSet<(String, String, i64)> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["object"].as_str().unwrap().to_string(),
                a["archive"].as_str().unwrap().to_string(),
                a["rows"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// 8 → n → 8: every value comes back, each archive is restored once, then dropped.
fn round_trip(db: &TestDb, n: i32) {
    let before = data(db);
    let (code, rollback, stderr) = db.run_json(&["--yes", "rollback", "--to", &n.to_string()]);
    assert_eq!(code, 0, "rollback --to {n}: {rollback:#}\n{stderr}");
    let archived = entries(&rollback["archived"]);
    assert!(!archived.is_empty(), "rollback --to {n} archived nothing");

    let (code, migrate, stderr) = db.run_json(&["migrate"]);
    assert_eq!(code, 0, "migrate from {n}: {migrate:#}\n{stderr}");
    assert_eq!(migrate["to_version"], latest());
    assert_eq!(
        entries(&migrate["restored"]),
        archived,
        "every archive of the rollback, restored with all its rows"
    );
    for r in migrate["restored"].as_array().unwrap() {
        assert_eq!(r["archive_dropped"], true, "{r}");
    }
    assert!(stderr.contains("restored "), "{stderr}");
    assert_same_data(&before, &data(db));
    assert_eq!(unrestored_archives(db), 0);
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM pg_tables WHERE schemaname = 'ruleiq_archive'"),
        0,
        "restored archives are dropped"
    );
    let (code, status, stderr) = db.run_json(&["status"]);
    assert_eq!(code, 0, "{status:#}\n{stderr}");
    assert_eq!(status["drift"], serde_json::json!([]));
}

#[test]
fn a_round_trip_to_6_then_to_2_keeps_every_value() {
    let db = clean_at_8();
    round_trip(&db, 6);
    round_trip(&db, 2);
}

#[test]
fn a_round_trip_to_0_keeps_every_value() {
    let db = clean_at_8();
    round_trip(&db, 0);
}

#[test]
fn an_archive_with_a_column_the_new_table_lacks_is_kept_and_not_offered_again() {
    let db = clean_at_8();
    // A column of the user's that no migration creates: the archive keeps it.
    db.execute("ALTER TABLE evidence_items ADD COLUMN local_note text; UPDATE evidence_items SET local_note = 'kept'");
    let (code, _, stderr) = db.run_json(&["--yes", "rollback", "--to", "2"]);
    assert_eq!(code, 0, "{stderr}");
    let (code, migrate, stderr) = db.run_json(&["migrate"]);
    assert_eq!(code, 0, "{migrate:#}\n{stderr}");
    let evidence = migrate["restored"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["object"] == "evidence_items")
        .expect("evidence_items restored");
    assert_eq!(evidence["archive_dropped"], false);
    let archive = evidence["archive"].as_str().unwrap();
    assert_eq!(
        db.scalar_i64(&format!(
            "SELECT count(*) FROM {archive} WHERE local_note = 'kept'"
        )),
        db.scalar_i64("SELECT count(*) FROM evidence_items"),
        "the archive still holds the column the new table lacks"
    );
    assert_eq!(unrestored_archives(&db), 0, "marked as restored");

    // A second round trip restores from its own, fresh archive, never from the kept one.
    db.execute("UPDATE evidence_items SET evidence_name = evidence_name || ' (renamed)'");
    let before = data(&db);
    let (code, _, stderr) = db.run_json(&["--yes", "rollback", "--to", "2"]);
    assert_eq!(code, 0, "{stderr}");
    let (code, migrate, stderr) = db.run_json(&["migrate"]);
    assert_eq!(code, 0, "{migrate:#}\n{stderr}");
    let again = migrate["restored"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["object"] == "evidence_items")
        .unwrap();
    assert_ne!(again["archive"].as_str().unwrap(), archive);
    assert_same_data(&before, &data(&db));
}

/// Creates `sql` (an object of the user's on evidence_items), then `rollback --to N` must
/// refuse with exit 4 naming it, and change nothing.
fn refused_for(sql: &str, to: &str, name: &str, kind: &str) {
    let db = clean_at_8();
    db.execute(sql);
    let before = db.dump();
    let (code, report, stderr) = db.run_json(&["--yes", "rollback", "--to", to]);
    assert_eq!(code, 4, "{report:#}\n{stderr}");
    assert_eq!(report["ok"], false);
    let error = report["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("{name} ({kind}")),
        "names {name} as a {kind}: {error}"
    );
    assert!(error.contains("nothing was changed"), "{error}");
    let (code, _, stderr) = db.run(&["rollback", "--dry-run", "--to", to]);
    assert_eq!(code, 4, "a dry run says so too: {stderr}");
    assert!(stderr.contains(name), "{stderr}");
    db.assert_unchanged(&before);
}

#[test]
fn a_view_on_a_table_the_rollback_moves_is_refused() {
    refused_for(
        "CREATE VIEW open_evidence AS SELECT id, status FROM evidence_items",
        "2",
        "public.open_evidence",
        "view",
    );
}

#[test]
fn a_materialized_view_is_refused() {
    refused_for(
        "CREATE SCHEMA reporting; CREATE MATERIALIZED VIEW reporting.evidence_counts AS SELECT status, count(*) FROM evidence_items GROUP BY status",
        "2",
        "reporting.evidence_counts",
        "materialized view",
    );
}

#[test]
fn a_plpgsql_function_naming_the_table_is_refused() {
    refused_for(
        "CREATE FUNCTION evidence_total() RETURNS bigint LANGUAGE plpgsql AS $$ BEGIN RETURN (SELECT count(*) FROM evidence_items); END $$",
        "2",
        "public.evidence_total()",
        "function",
    );
}

#[test]
fn a_sql_function_with_a_begin_atomic_body_is_refused() {
    refused_for(
        "CREATE FUNCTION evidence_count(s text) RETURNS bigint LANGUAGE sql BEGIN ATOMIC SELECT count(*) FROM evidence_items WHERE status = s; END",
        "2",
        "public.evidence_count(s text)",
        "function",
    );
}

#[test]
fn a_view_on_a_column_the_rollback_drops_is_refused() {
    refused_for(
        "CREATE VIEW evidence_ai AS SELECT id, ai_metadata FROM evidence_items",
        "6",
        "public.evidence_ai",
        "view",
    );
}

#[test]
fn a_view_on_columns_the_rollback_keeps_does_not_stop_it() {
    let db = clean_at_8();
    db.execute("CREATE VIEW open_evidence AS SELECT id, status FROM evidence_items");
    let (code, report, stderr) = db.run_json(&["--yes", "rollback", "--to", "6"]);
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM open_evidence"),
        db.scalar_i64("SELECT count(*) FROM evidence_items")
    );
}

#[test]
fn ruleiq_dbs_own_compat_views_are_not_the_users() {
    let db = clean_at_8();
    db.execute(
        "CREATE SCHEMA IF NOT EXISTS ruleiq_compat;
         CREATE VIEW ruleiq_compat.evidence_items_legacy AS SELECT * FROM public.evidence_items;
         CREATE VIEW public.mine AS SELECT id FROM public.evidence_items",
    );
    let mut client = db.client();
    let found = dependents::find(
        &mut client,
        &[Action::MoveTable {
            table: "evidence_items".into(),
        }],
    )
    .unwrap();
    let names: Vec<&str> = found.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, vec!["public.mine"]);
    assert_eq!(found[0].kind, "view");
    assert_eq!(found[0].on, "evidence_items");
}

#[test]
fn migrate_dry_run_lists_what_it_would_restore_and_changes_nothing() {
    let db = clean_at_8();
    let (code, rollback, stderr) = db.run_json(&["--yes", "rollback", "--to", "6"]);
    assert_eq!(code, 0, "{stderr}");
    let before = db.dump();
    let (code, plan, stderr) = db.run_json(&["migrate", "--dry-run"]);
    assert_eq!(
        code, 0,
        "the preflight waits for the restores: {plan:#}\n{stderr}"
    );
    assert_eq!(
        entries(&plan["would_restore"]),
        entries(&rollback["archived"])
    );
    for r in plan["would_restore"].as_array().unwrap() {
        assert_eq!(r["version"], 7, "{r}");
    }
    db.assert_unchanged(&before);
    let (code, table, stderr) = db.run(&["migrate", "--dry-run"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        table.contains("Would restore from schema ruleiq_archive"),
        "{table}"
    );
}

/// The restore on its own, on a table no migration has: a serial key's sequence must move past
/// the restored keys, or the next insert would collide with a restored row.
#[test]
fn a_restored_serial_key_does_not_collide_with_the_next_insert() {
    use ruleiq_db::archive::restore::{self, Created};
    let db = TestDb::new();
    db.execute(
        "CREATE SCHEMA ruleiq_archive;
         CREATE TABLE ruleiq_archive.notes__v9_20261125T101500Z (id int NOT NULL, body text);
         INSERT INTO ruleiq_archive.notes__v9_20261125T101500Z VALUES (1, 'a'), (41, 'b');
         COMMENT ON TABLE ruleiq_archive.notes__v9_20261125T101500Z IS
           'ruleiq-db rollback of V9 notes at 20261125T101500Z: table notes, 2 rows';
         CREATE TABLE notes (id serial PRIMARY KEY, body text)",
    );
    let mut client = db.client();
    let mut tx = client.transaction().unwrap();
    let archived = restore::archived(
        &mut tx,
        &[Created::Table {
            table: "notes".into(),
        }],
    )
    .unwrap();
    let restored = restore::restore(&mut tx, &archived, "V9 notes").unwrap();
    tx.commit().unwrap();
    assert_eq!(restored.len(), 1);
    assert_eq!(restored[0].rows, 2);
    assert!(restored[0].archive_dropped);
    db.execute("INSERT INTO notes (body) VALUES ('c')");
    assert_eq!(db.scalar_i64("SELECT max(id)::int8 FROM notes"), 42);
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM pg_tables WHERE schemaname = 'ruleiq_archive'"),
        0
    );
}
