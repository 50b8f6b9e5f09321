//! The compatibility schema (docs/design.md §7): old and new application code through the rollout of
//! 008, on production's shape (fixtures/production_v7.sql, adopted with `baseline`).

use crate::common;

use common::{latest, TestDb};
use postgres::error::SqlState;
use postgres::Client;
use serde_json::json;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

const OPTION: &str = "options=-csearch_path%3Druleiq_compat,public";

/// Production at version 7: built without our migrations, clean rows, adopted by `baseline`.
fn production_at_7() -> TestDb {
    let db = TestDb::new();
    db.execute_file("fixtures/production_v7.sql");
    let (code, _, stderr) = db.run(&["baseline"]);
    assert_eq!(code, 0, "baseline: {stderr}");
    db
}

/// A connection as the application makes it during the rollout: with the connection option
/// `migrate` prints.
fn app_client(db: &TestDb) -> Client {
    let joiner = if db.url.contains('?') { '&' } else { '?' };
    common::connect_url(&format!("{}{joiner}{OPTION}", db.url))
}

/// PostgreSQL's own message ("db error" is all an error's Display says).
fn message(error: &postgres::Error) -> String {
    error
        .as_db_error()
        .map_or_else(|| error.to_string(), |e| e.message().to_string())
}

fn schema_exists(db: &TestDb) -> bool {
    db.scalar_i64("SELECT count(*) FROM pg_namespace WHERE nspname = 'ruleiq_compat'") == 1
}

use ruleiq_db::app_queries::{queries as seed_queries, Names};

/// `legacy` or `full`, as the application of that release spells it.
fn pick(names: Names, legacy: &'static str, full: &'static str) -> &'static str {
    match names {
        Names::Legacy => legacy,
        Names::Full => full,
    }
}

/// Runs one seed query for the fixture's first user; its rows as text, one line each.
fn run_seed(client: &mut Client, name: &str, sql: &str) -> Result<String, postgres::Error> {
    // The queries take the user id as text, as the application passes it.
    let user = "10000000-0000-0000-0000-000000000001";
    let wrapped = format!("SELECT coalesce(string_agg(row(q.*)::text, E'\\n'), '') FROM ({sql}) q");
    let row = if name == "evidence_search" {
        let statuses = vec!["approved".to_string(), "collected".to_string()];
        client.query_one(&wrapped, &[&user, &statuses, &"%policy%", &20i64, &0i64])?
    } else {
        client.query_one(&wrapped, &[&user])?
    };
    Ok(row.get(0))
}

/// The column list of a business profile insert in production's shape (every NOT NULL column,
/// none has a default), with the six flags spelled as `names` says, or the first three legacy
/// and the rest full (`mixed`). Parameters: $1 id, $2 user_id, $3 company_name.
fn profile_insert(names: Option<Names>) -> String {
    let flags = [
        ("handles_persona", "handles_personal_data"),
        ("processes_payme", "processes_payments"),
        ("stores_health_d", "stores_health_data"),
        ("provides_financ", "provides_financial_services"),
        ("operates_critic", "operates_critical_infrastructure"),
        ("has_internation", "has_international_operations"),
    ];
    let spelled: Vec<&str> = flags
        .iter()
        .enumerate()
        .map(|(i, (legacy, full))| match names {
            Some(n) => pick(n, legacy, full),
            None if i < 3 => legacy,
            None => full,
        })
        .collect();
    format!(
        "INSERT INTO business_profiles (id, user_id, company_name, industry, employee_count, data_sensitivity, {})
         VALUES ($1, $2, $3, 'retail', 10, 'Low', true, false, false, false, false, false)",
        spelled.join(", ")
    )
}

/// A new user for a new profile (business_profiles.user_id is unique and references users).
fn new_user(client: &mut Client) -> Uuid {
    let id = Uuid::new_v4();
    client
        .execute(
            "INSERT INTO users (id, email, hashed_password) VALUES ($1, $2, 'x')",
            &[&id, &format!("{id}@example.com")],
        )
        .unwrap();
    id
}

fn migrate_json(db: &TestDb, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["migrate"];
    all.extend_from_slice(args);
    let (code, report, stderr) = db.run_json(&all);
    assert_eq!(code, 0, "migrate: {report}\n{stderr}");
    report
}

#[test]
fn the_seed_queries_pass_with_legacy_and_full_names_through_the_compat_search_path() {
    let db = production_at_7();
    let mut before = db.client();
    let expected: Vec<String> = seed_queries(Names::Legacy)
        .iter()
        .map(|(name, sql)| run_seed(&mut before, name, sql).unwrap())
        .collect();
    assert!(
        expected.iter().all(|rows| !rows.is_empty()),
        "every seed query finds rows in the fixture: {expected:?}"
    );

    let (code, out, stderr) = db.run(&["migrate"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(out.contains(OPTION), "the report prints the option: {out}");

    let mut app = app_client(&db);
    let mut plain = db.client();
    for names in [Names::Legacy, Names::Full] {
        for ((name, sql), want) in seed_queries(names).iter().zip(&expected) {
            let got = run_seed(&mut app, name, sql).unwrap_or_else(|e| {
                panic!("{name} ({names:?}) through ruleiq_compat: {}", message(&e))
            });
            assert_eq!(&got, want, "{name} ({names:?}) through ruleiq_compat");
        }
    }
    for ((name, sql), want) in seed_queries(Names::Full).iter().zip(&expected) {
        let got = run_seed(&mut plain, name, sql)
            .unwrap_or_else(|e| panic!("{name} (full names) against public: {}", message(&e)));
        assert_eq!(&got, want, "{name} (full names) against public");
    }
    // Without the option the legacy names are gone: the views are what keeps old code running.
    let (name, sql) = &seed_queries(Names::Legacy)[1];
    let error = run_seed(&mut plain, name, sql).unwrap_err();
    assert_eq!(error.code(), Some(&SqlState::UNDEFINED_COLUMN), "{error:?}");
}

#[test]
fn migrate_reports_the_schema_its_views_and_the_connection_option() {
    let db = production_at_7();
    let report = migrate_json(&db, &[]);
    let compat = &report["compat"];
    assert_eq!(compat["schema"], "ruleiq_compat");
    assert_eq!(compat["search_path"], "ruleiq_compat,public");
    assert_eq!(compat["connection_option"], OPTION);
    let views = compat["views"].as_array().unwrap();
    let names: Vec<&str> = views.iter().map(|v| v["view"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "assessment_sessions",
            "business_profiles",
            "generated_policies"
        ]
    );
    let legacy: usize = views
        .iter()
        .map(|v| v["legacy_columns"].as_array().unwrap().len())
        .sum();
    assert_eq!(legacy, 17, "one legacy column per rename: {compat}");
    assert_eq!(
        views[2]["legacy_columns"],
        serde_json::json!(["business_profil"])
    );

    // Every column of the table, in its order (production's extra ones included), then the
    // legacy names.
    // A column the table gets later is not in the view until `compat` re-creates it.
    db.execute("ALTER TABLE generated_policies ADD COLUMN app_only_note text");
    let (_, status, _) = db.run_json(&["status"]);
    let stale = &status["compat"]["views"][2];
    assert_eq!(stale["view"], "generated_policies");
    assert_eq!(stale["missing_columns"], json!(["app_only_note"]));
    let (code, report, stderr) = db.run_json(&["compat"]);
    assert_eq!(code, 0, "{report}\n{stderr}");
    assert_eq!(report["created"], true);
    assert_eq!(report["views"][2]["missing_columns"], json!([]));
    let mut client = db.client();
    let columns = |client: &mut Client, relation: &str| -> Vec<String> {
        client
            .query(
                "SELECT attname::text FROM pg_attribute WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                &[&relation],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    let mut expected = columns(&mut client, "public.generated_policies");
    assert!(expected.contains(&"app_only_note".to_string()));
    expected.push("business_profil".into());
    assert_eq!(
        columns(&mut client, "ruleiq_compat.generated_policies"),
        expected
    );
}

#[test]
fn writes_through_the_views_work_with_legacy_full_and_mixed_names() {
    let db = production_at_7();
    migrate_json(&db, &[]);
    let mut app = app_client(&db);

    for (i, names) in [Some(Names::Legacy), Some(Names::Full), None]
        .into_iter()
        .enumerate()
    {
        let user = new_user(&mut app);
        let id = Uuid::new_v4();
        let sql = format!(
            "{} RETURNING handles_persona, handles_personal_data, has_internation, has_international_operations",
            profile_insert(names)
        );
        let row = app
            .query_one(&sql, &[&id, &user, &format!("Write Co {i}")])
            .unwrap_or_else(|e| panic!("INSERT ({names:?}): {}", message(&e)));
        let flags: (bool, bool, bool, bool) = (row.get(0), row.get(1), row.get(2), row.get(3));
        assert_eq!(flags, (true, true, false, false), "{names:?}");

        let updated = app
            .query_one(
                "UPDATE business_profiles SET handles_persona = false, stores_health_data = true
                  WHERE id = $1 RETURNING handles_personal_data, stores_health_d",
                &[&id],
            )
            .unwrap();
        assert_eq!((updated.get(0), updated.get(1)), (false, true));

        // ON CONFLICT through the view, naming the legacy column in the update and the full one
        // in EXCLUDED.
        let upserted = app
            .query_one(
                &format!(
                    "{} ON CONFLICT (id) DO UPDATE SET handles_persona = NOT EXCLUDED.handles_personal_data,
                         company_name = EXCLUDED.company_name
                     RETURNING company_name, handles_personal_data",
                    profile_insert(names)
                ),
                &[&id, &user, &"Upserted"],
            )
            .unwrap();
        assert_eq!(
            (upserted.get::<_, String>(0), upserted.get::<_, bool>(1)),
            ("Upserted".to_string(), false)
        );
        let nothing = app
            .query(
                &format!(
                    "{} ON CONFLICT (user_id) DO NOTHING RETURNING id",
                    profile_insert(names)
                ),
                &[&Uuid::new_v4(), &user, &"Duplicate user"],
            )
            .unwrap();
        assert!(nothing.is_empty());

        // The table itself holds what was written through the view.
        let stored = db
            .client()
            .query_one(
                "SELECT company_name, handles_personal_data, stores_health_data FROM public.business_profiles WHERE id = $1",
                &[&id],
            )
            .unwrap();
        assert_eq!(
            (
                stored.get::<_, String>(0),
                stored.get::<_, bool>(1),
                stored.get::<_, bool>(2)
            ),
            ("Upserted".to_string(), false, true)
        );

        // A session linked through the legacy foreign-key column, deleted through the view.
        let session = Uuid::new_v4();
        let linked: Uuid = app
            .query_one(
                "INSERT INTO assessment_sessions (id, user_id, business_profil, status, questions_answered)
                 VALUES ($1, $2, $3, 'in_progress', 1) RETURNING business_profile_id",
                &[&session, &user, &id],
            )
            .unwrap()
            .get(0);
        assert_eq!(linked, id);
        let deleted = app
            .execute(
                "DELETE FROM assessment_sessions WHERE business_profil = $1 AND questions_answe = 1",
                &[&id],
            )
            .unwrap();
        assert_eq!(deleted, 1);
        let gone: Vec<Uuid> = app
            .query(
                "DELETE FROM business_profiles WHERE id = $1 RETURNING id",
                &[&id],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(gone, [id]);
    }

    // Both spellings of one column in one statement are two values for one column: refused.
    let user = new_user(&mut app);
    let error = app
        .execute(
            "UPDATE business_profiles SET handles_persona = true, handles_personal_data = false WHERE user_id = $1",
            &[&user],
        )
        .unwrap_err();
    assert!(
        message(&error).contains("multiple assignments"),
        "{error:?}"
    );
}

#[test]
fn a_statement_prepared_before_008_still_runs_after_it() {
    let db = production_at_7();
    // The application connects with the option from the start; before 008 the schema does not
    // exist and every name resolves to public.
    let mut app = app_client(&db);
    let profile: Uuid = "20000000-0000-0000-0000-000000000001".parse().unwrap();
    let read = app
        .prepare("SELECT company_name, handles_persona FROM business_profiles WHERE id = $1")
        .unwrap();
    let write = app
        .prepare("UPDATE business_profiles SET processes_payme = $2 WHERE id = $1")
        .unwrap();
    let join = app
        .prepare(
            "SELECT count(*) FROM generated_policies g JOIN business_profiles bp ON bp.id = g.business_profil WHERE bp.id = $1",
        )
        .unwrap();
    let before: bool = app.query_one(&read, &[&profile]).unwrap().get(1);
    let policies: i64 = app.query_one(&join, &[&profile]).unwrap().get(0);

    migrate_json(&db, &[]);

    let row = app.query_one(&read, &[&profile]).unwrap();
    assert_eq!(row.get::<_, bool>(1), before);
    assert_eq!(app.execute(&write, &[&profile, &false]).unwrap(), 1);
    assert_eq!(
        app.query_one(&join, &[&profile]).unwrap().get::<_, i64>(0),
        policies
    );
    let stored: bool = db
        .client()
        .query_one(
            "SELECT processes_payments FROM business_profiles WHERE id = $1",
            &[&profile],
        )
        .unwrap()
        .get(0);
    assert!(!stored);
}

/// Where the rollout stands, as the workload thread sees it.
const BEFORE: usize = 0;
const MIGRATING: usize = 1;
const AFTER: usize = 2;
const STOP: usize = 3;

/// What the workload counts: statements per phase, and every failure.
#[derive(Debug, Default)]
struct Workload {
    phase: AtomicUsize,
    statements: [AtomicU64; 3],
    errors: Mutex<Vec<String>>,
}

impl Workload {
    fn record(&self, phase: usize, result: Result<u64, postgres::Error>, what: &str) {
        self.statements[phase].fetch_add(1, Ordering::SeqCst);
        if let Err(e) = result {
            self.errors
                .lock()
                .unwrap()
                .push(format!("{what}: {}", message(&e)));
        }
    }

    fn count(&self, phase: usize) -> u64 {
        self.statements[phase].load(Ordering::SeqCst)
    }

    fn wait_for(&self, phase: usize, statements: u64) {
        let started = Instant::now();
        while self.count(phase) < statements {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the workload is stuck: {self:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Old application code in a loop: the legacy names, reads and writes, one statement at a time.
fn legacy_workload(db: &TestDb, workload: &Workload) {
    let mut app = app_client(db);
    let profile: Uuid = "20000000-0000-0000-0000-000000000001".parse().unwrap();
    let user: Uuid = "10000000-0000-0000-0000-000000000001".parse().unwrap();
    // The application's queries take the user id as text, as the application passes it.
    let user_text = user.to_string();
    let (_, dashboard) = &seed_queries(Names::Legacy)[1];
    loop {
        // A statement counts in the phase it started in.
        let phase = workload.phase.load(Ordering::SeqCst);
        if phase == STOP {
            return;
        }
        let r = app
            .query(dashboard.as_str(), &[&user_text])
            .map(|rows| rows.len() as u64);
        workload.record(phase, r, "dashboard");
        let r = app.execute(
            "UPDATE business_profiles SET handles_persona = NOT handles_persona, updated_at = now() WHERE id = $1",
            &[&profile],
        );
        workload.record(phase, r, "update");
        let session = Uuid::new_v4();
        let r = app.execute(
            "INSERT INTO assessment_sessions (id, user_id, business_profil, status, questions_answe, created_at, updated_at)
             VALUES ($1, $2, $3, 'in_progress', 0, now(), now())",
            &[&session, &user, &profile],
        );
        workload.record(phase, r, "insert");
        let r = app.execute(
            "UPDATE assessment_sessions SET questions_answe = questions_answe + 1 WHERE id = $1 AND business_profil = $2",
            &[&session, &profile],
        );
        workload.record(phase, r, "update session");
        let r = app.execute("DELETE FROM assessment_sessions WHERE id = $1", &[&session]);
        workload.record(phase, r, "delete");
    }
}

/// Runs `migrate` with `args` while old code works in a loop; returns what the loop counted and
/// how long migrate took.
fn rollout_under_load(migrate_args: &[&str]) -> (Arc<Workload>, Duration) {
    let db = Arc::new(production_at_7());
    let workload = Arc::new(Workload::default());
    let worker = {
        let (db, workload) = (db.clone(), workload.clone());
        std::thread::spawn(move || legacy_workload(&db, &workload))
    };
    workload.wait_for(BEFORE, 50);
    workload.phase.store(MIGRATING, Ordering::SeqCst);
    let started = Instant::now();
    let mut args = vec!["migrate"];
    args.extend_from_slice(migrate_args);
    let (code, _, stderr) = db.run(&args);
    let took = started.elapsed();
    workload.phase.store(AFTER, Ordering::SeqCst);
    assert_eq!(code, 0, "{stderr}");
    workload.wait_for(AFTER, 50);
    workload.phase.store(STOP, Ordering::SeqCst);
    worker.join().unwrap();
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM refinery_schema_history WHERE version = 8"),
        1
    );
    (workload, took)
}

#[test]
fn old_code_in_a_loop_sees_no_failed_statement_while_migrate_runs() {
    let (workload, took) = rollout_under_load(&[]);
    let errors = workload.errors.lock().unwrap();
    let total: u64 = (0..3).map(|p| workload.count(p)).sum();
    assert!(
        errors.is_empty(),
        "{} of {total} statements failed (migrate took {took:?}): {:#?}",
        errors.len(),
        &errors[..errors.len().min(10)]
    );
    assert!(
        workload.count(MIGRATING) >= 5,
        "statements ran while migrate did: {workload:?}"
    );
    assert!(total >= 105, "{workload:?}");
}

#[test]
fn without_the_views_the_same_old_code_fails_after_008() {
    let (workload, _) = rollout_under_load(&["--no-compat"]);
    let errors = workload.errors.lock().unwrap();
    assert!(
        errors.iter().any(|e| e.contains("handles_persona")),
        "the workload notices a missing legacy column: {errors:?}"
    );
}

#[test]
fn writes_through_the_views_obey_the_new_constraints_and_the_tables_defaults() {
    let db = production_at_7();
    migrate_json(&db, &[]);
    let mut app = app_client(&db);
    let user = new_user(&mut app);

    let bogus = app
        .execute(
            "INSERT INTO business_profiles (id, user_id, company_name, industry, employee_count, data_sensitivity,
                 handles_persona, processes_payme, stores_health_d, provides_financ, operates_critic, has_internation)
             VALUES ($1, $2, 'Bogus', 'retail', 10, 'bogus', true, false, false, false, false, false)",
            &[&Uuid::new_v4(), &user],
        )
        .unwrap_err();
    assert_eq!(bogus.code(), Some(&SqlState::CHECK_VIOLATION), "{bogus:?}");
    let none = app
        .execute(
            "UPDATE business_profiles SET employee_count = 0 WHERE id = '20000000-0000-0000-0000-000000000001'",
            &[],
        )
        .unwrap_err();
    assert_eq!(none.code(), Some(&SqlState::CHECK_VIOLATION), "{none:?}");
    let dangling = app
        .execute(
            "INSERT INTO assessment_sessions (id, user_id, business_profil) VALUES ($1, $2, $3)",
            &[&Uuid::new_v4(), &user, &Uuid::new_v4()],
        )
        .unwrap_err();
    assert_eq!(
        dangling.code(),
        Some(&SqlState::FOREIGN_KEY_VIOLATION),
        "{dangling:?}"
    );

    // Production has no server defaults; a default the table gets (now or later) applies to
    // inserts through the view that leave the column out or say DEFAULT, under either name.
    db.execute(
        "ALTER TABLE business_profiles ALTER COLUMN assessment_completed SET DEFAULT false;
         ALTER TABLE business_profiles ALTER COLUMN country SET DEFAULT 'United Kingdom';
         ALTER TABLE business_profiles ALTER COLUMN handles_personal_data SET DEFAULT true",
    );
    let id = Uuid::new_v4();
    let row = app
        .query_one(
            "INSERT INTO business_profiles (id, user_id, company_name, industry, employee_count, data_sensitivity,
                 handles_persona, processes_payme, stores_health_d, provides_financ, operates_critic, has_internation,
                 assessment_comp)
             VALUES ($1, $2, 'Defaults', 'retail', 10, 'Low', DEFAULT, false, false, false, false, false, DEFAULT)
             RETURNING handles_persona, assessment_completed, country",
            &[&id, &user],
        )
        .unwrap();
    assert_eq!(
        (
            row.get::<_, bool>(0),
            row.get::<_, bool>(1),
            row.get::<_, String>(2)
        ),
        (true, false, "United Kingdom".to_string())
    );
    let other = new_user(&mut app);
    let row = app
        .query_one(
            "INSERT INTO business_profiles (id, user_id, company_name, industry, employee_count, data_sensitivity,
                 processes_payments, stores_health_data, provides_financial_services,
                 operates_critical_infrastructure, has_international_operations)
             VALUES ($1, $2, 'Left out', 'retail', 10, 'Low', false, false, false, false, false)
             RETURNING handles_personal_data, assessment_comp",
            &[&Uuid::new_v4(), &other],
        )
        .unwrap();
    assert_eq!(
        (row.get::<_, bool>(0), row.get::<_, bool>(1)),
        (true, false)
    );
}

/// A dump without the history's timestamps, for comparing databases migrated at other times.
fn dump_without_history(db: &TestDb) -> String {
    db.dump_with(&["--exclude-table-data", "refinery_schema_history"])
}

#[test]
fn rollback_of_008_drops_the_schema_and_migrating_again_re_creates_it() {
    let db = production_at_7();
    let at_7 = db.dump();
    migrate_json(&db, &[]);
    let (code, status, _) = db.run_json(&["status"]);
    assert_eq!(code, 0);
    assert_eq!(status["compat"]["schema"], "ruleiq_compat");
    assert_eq!(status["compat"]["views"].as_array().unwrap().len(), 3);

    let (code, plan, stderr) = db.run_json(&["rollback", "--dry-run"]);
    assert_eq!(code, 0, "{stderr}");
    let first = &plan["plan"][0]["statements"][0]["sql"];
    assert!(
        first
            .as_str()
            .unwrap()
            .starts_with("DROP VIEW IF EXISTS \"ruleiq_compat\"."),
        "{first}"
    );

    let (code, report, stderr) = db.run_json(&["rollback", "--yes"]);
    assert_eq!(code, 0, "{report}\n{stderr}");
    assert_eq!(
        report["archived"],
        serde_json::json!([]),
        "views hold no rows"
    );
    assert!(!schema_exists(&db));
    db.assert_unchanged(&at_7);
    let (_, status, _) = db.run_json(&["status"]);
    assert_eq!(status["compat"], serde_json::Value::Null);

    let report = migrate_json(&db, &[]);
    assert_eq!(report["compat"]["schema"], "ruleiq_compat");
    assert!(schema_exists(&db));
    let mut app = app_client(&db);
    let (name, sql) = &seed_queries(Names::Legacy)[1];
    assert!(!run_seed(&mut app, name, sql).unwrap().is_empty());
}

#[test]
fn compat_drop_needs_yes_leaves_no_trace_and_compat_re_creates_it() {
    let db = production_at_7();
    migrate_json(&db, &[]);
    let without = production_at_7();
    let report = migrate_json(&without, &["--no-compat"]);
    assert_eq!(report["compat"], serde_json::Value::Null);
    assert!(!schema_exists(&without));

    let with_views = db.dump();
    let (code, report, _) = db.run_json(&["compat", "--drop", "--unverified"]);
    assert_eq!(code, 4, "{report}");
    assert!(report["error"].as_str().unwrap().contains("--yes"));
    let (code, report, _) = db.run_json(&["compat", "--drop", "--dry-run"]);
    assert_eq!(code, 0);
    assert_eq!(report["plan"].as_array().unwrap().len(), 4);
    db.assert_unchanged(&with_views);

    let (code, report, stderr) = db.run_json(&["compat", "--drop", "--yes", "--unverified"]);
    assert_eq!(code, 0, "{report}\n{stderr}");
    assert_eq!(
        (
            &report["command"],
            &report["ok"],
            &report["dry_run"],
            &report["schema_version"]
        ),
        (
            &json!("compat"),
            &json!(true),
            &json!(false),
            &json!(latest())
        )
    );
    assert_eq!(report["dropped"], true);
    assert_eq!(report["schema"], serde_json::Value::Null);
    assert!(!schema_exists(&db));
    assert_eq!(
        dump_without_history(&db),
        dump_without_history(&without),
        "after compat --drop the database is what migrate --no-compat leaves"
    );
    let (code, report, _) = db.run_json(&["compat", "--drop", "--yes", "--unverified"]);
    assert_eq!(code, 0);
    assert_eq!(report["dropped"], false);

    // Old code is still around after all: bring the views back.
    let (code, dry, _) = db.run_json(&["compat", "--dry-run"]);
    assert_eq!(code, 0);
    assert_eq!(dry["plan"].as_array().unwrap().len(), 5);
    assert!(!schema_exists(&db));
    let (code, report, stderr) = db.run_json(&["compat"]);
    assert_eq!(code, 0, "{report}\n{stderr}");
    assert_eq!(report["created"], true);
    assert_eq!(report["views"].as_array().unwrap().len(), 3);
    assert_eq!(db.dump(), with_views, "the same views as 008 made");
}

#[test]
fn no_compat_changes_neither_the_text_nor_the_checksum_of_008() {
    let with = production_at_7();
    migrate_json(&with, &[]);
    let without = production_at_7();
    migrate_json(&without, &["--no-compat"]);
    let checksum = |db: &TestDb| -> String {
        db.client()
            .query_one(
                "SELECT checksum::text FROM refinery_schema_history WHERE version = 8",
                &[],
            )
            .unwrap()
            .get(0)
    };
    assert_eq!(checksum(&with), checksum(&without));
    // And the database migrated without the views can have them later.
    let (code, report, _) = without.run_json(&["compat"]);
    assert_eq!(code, 0);
    assert_eq!(report["created"], true);
}

#[test]
fn below_version_8_there_is_nothing_to_be_compatible_with() {
    let db = production_at_7();
    let before = db.dump();
    let (code, report, _) = db.run_json(&["compat"]);
    assert_eq!(code, 0);
    assert_eq!(report["schema"], serde_json::Value::Null);
    assert_eq!(report["created"], false);
    assert!(report["summary"].as_str().unwrap().contains("version 7"));
    let (code, report, _) = db.run_json(&["compat", "--drop", "--yes", "--unverified"]);
    assert_eq!(code, 0);
    assert_eq!(report["dropped"], false);
    db.assert_unchanged(&before);
}

#[test]
fn compat_drop_waits_for_another_ruleiq_db_then_refuses() {
    let db = production_at_7();
    migrate_json(&db, &[]);
    let _holder = db.hold_migration_lock();
    let (code, report, stderr) = db.run_json(&[
        "--lock-wait",
        "1s",
        "compat",
        "--drop",
        "--yes",
        "--unverified",
    ]);
    assert_eq!(code, 4, "{report}\n{stderr}");
    assert!(stderr.contains("migration lock"), "{stderr}");
    assert!(schema_exists(&db));
}

#[test]
fn the_views_carry_the_tables_grants_to_the_application_role() {
    let db = production_at_7();
    let role = format!("app_{}", Uuid::new_v4().simple());
    db.execute(&format!(
        "CREATE ROLE {role} LOGIN;
         GRANT SELECT, INSERT, UPDATE ON business_profiles, users TO {role};
         GRANT SELECT ON assessment_sessions TO {role};
         GRANT SELECT (id, business_profil) ON generated_policies TO {role}"
    ));
    migrate_json(&db, &[]);
    let mut client = db.client();
    let granted = |client: &mut Client, sql: &str| -> bool {
        client.query_one(sql, &[&role]).unwrap().get(0)
    };
    assert!(granted(
        &mut client,
        "SELECT has_schema_privilege($1, 'ruleiq_compat', 'USAGE')"
    ));
    assert!(granted(
        &mut client,
        "SELECT has_table_privilege($1, 'ruleiq_compat.business_profiles', 'SELECT,INSERT,UPDATE')"
    ));
    assert!(!granted(
        &mut client,
        "SELECT has_table_privilege($1, 'ruleiq_compat.business_profiles', 'DELETE')"
    ));
    assert!(!granted(
        &mut client,
        "SELECT has_table_privilege($1, 'ruleiq_compat.assessment_sessions', 'UPDATE')"
    ));
    assert!(granted(
        &mut client,
        "SELECT has_column_privilege($1, 'ruleiq_compat.generated_policies', 'business_profil', 'SELECT')"
    ));
    assert!(!granted(
        &mut client,
        "SELECT has_column_privilege($1, 'ruleiq_compat.generated_policies', 'policy_content', 'SELECT')"
    ));

    // As the application's role, through the view, with the legacy names.
    client
        .batch_execute(&format!(
            "SET ROLE {role}; SET search_path = ruleiq_compat, public"
        ))
        .unwrap();
    let changed = client
        .execute(
            "UPDATE business_profiles SET handles_persona = true WHERE id = '20000000-0000-0000-0000-000000000002'",
            &[],
        )
        .unwrap();
    assert_eq!(changed, 1);
    let denied = client
        .execute("DELETE FROM business_profiles WHERE false", &[])
        .unwrap_err();
    assert_eq!(
        denied.code(),
        Some(&SqlState::INSUFFICIENT_PRIVILEGE),
        "{denied:?}"
    );
    client.batch_execute("RESET ROLE").unwrap();
    drop(client);
    // Roles belong to the cluster, not to the test's database.
    db.execute(&format!("DROP OWNED BY {role}"));
    let mut admin = common::connect_url(&common::url_for("postgres"));
    admin.batch_execute(&format!("DROP ROLE {role}")).unwrap();
}

#[test]
fn on_a_terminal_compat_drop_asks_and_only_yes_drops() {
    let db = production_at_7();
    migrate_json(&db, &[]);
    let (code, screen) = db.on_a_terminal("compat --drop --unverified", "n\n");
    assert_eq!(code, 4, "{screen}");
    assert!(screen.contains("[y/N]"), "{screen}");
    assert!(schema_exists(&db));
    let (code, screen) = db.on_a_terminal("compat --drop --unverified", "y\n");
    assert_eq!(code, 0, "{screen}");
    assert!(!schema_exists(&db));
}

#[test]
fn ruleiq_db_given_the_applications_url_still_works_on_the_tables() {
    let db = production_at_7();
    let joiner = if db.url.contains('?') { '&' } else { '?' };
    let app_url = format!("{}{joiner}{OPTION}", db.url);
    let run = |args: &[&str]| -> (i32, serde_json::Value, String) {
        let out = common::cli_at(&app_url)
            .args(["--format", "json"])
            .args(args)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let report =
            serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {stdout}"));
        (
            out.status.code().unwrap(),
            report,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, report, stderr) = run(&["migrate"]);
    assert_eq!(code, 0, "{report}\n{stderr}");
    assert_eq!(report["compat"]["views"].as_array().unwrap().len(), 3);
    // Through the views ruleiq-db would see both spellings of every renamed column.
    let (code, report, stderr) = run(&["status"]);
    assert_eq!(code, 0, "{report}\n{stderr}");
    assert_eq!(report["ok"], true, "{report}");
    let (code, report, stderr) = run(&["rollback", "--yes"]);
    assert_eq!(code, 0, "{report}\n{stderr}");
    assert!(!schema_exists(&db));
    let (code, report, stderr) = run(&["migrate"]);
    assert_eq!(code, 0, "{report}\n{stderr}");
    assert!(schema_exists(&db));
}

#[test]
fn rehearses_application_queries_find_every_spelling_working_and_notice_when_it_is_not() {
    let db = production_at_7();
    migrate_json(&db, &[]);
    let runs = ruleiq_db::app_queries::run_all(&db.target()).unwrap();
    assert_eq!(runs.len(), 9);
    assert!(runs.iter().all(|r| r.problem.is_none()), "{runs:#?}");
    assert!(runs.iter().any(|r| r.rows > Some(0)), "{runs:#?}");

    let (code, _, _) = db.run(&["compat", "--drop", "--yes", "--unverified"]);
    assert_eq!(code, 0);
    let runs = ruleiq_db::app_queries::run_all(&db.target()).unwrap();
    let failed: Vec<_> = runs.iter().filter(|r| r.problem.is_some()).collect();
    assert_eq!(failed.len(), 3, "the three legacy runs: {runs:#?}");
    assert!(failed
        .iter()
        .all(|r| r.names == ruleiq_db::app_queries::Names::Legacy));
}

#[test]
fn compat_drop_waiting_for_a_reader_gives_up_its_lock_request_and_retries() {
    let db = production_at_7();
    migrate_json(&db, &[]);
    // A long read through a view: DROP VIEW must wait for it, and while it waits it would hold
    // up every later query of the view; lock_timeout makes it step back and try again.
    let mut reader = app_client(&db);
    let mut tx = reader.transaction().unwrap();
    tx.query("SELECT handles_persona FROM business_profiles LIMIT 1", &[])
        .unwrap();
    let dropper = {
        let mut cmd = db.command();
        cmd.args([
            "--lock-timeout",
            "200ms",
            "--yes",
            "compat",
            "--drop",
            "--unverified",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
        cmd.spawn().unwrap()
    };
    // Once the dropper has asked for its locks, other sessions still read through the views
    // without queueing for long.
    common::wait_until(
        &mut db.client(),
        "SELECT EXISTS (SELECT 1 FROM pg_stat_activity
          WHERE datname = current_database() AND application_name = 'ruleiq-db'
            AND query ILIKE '%DROP%')",
        "compat --drop had asked for its locks",
    );
    let started = Instant::now();
    let mut other = app_client(&db);
    other
        .query(
            "SELECT count(*) FROM business_profiles WHERE handles_persona",
            &[],
        )
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    tx.commit().unwrap();
    let out = dropper.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("lock_timeout"), "{stderr}");
    assert!(!schema_exists(&db));
}
