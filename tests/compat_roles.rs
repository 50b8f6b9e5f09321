//! The rollout through production's pooler (docs/design.md §7): `compat --for-role` points an
//! application role at the compatibility views with a role-level search_path, since a
//! transaction-mode pooler passes no connection option; `migrate` across 008 waits for that
//! role's older sessions; `compat --drop` only once no statement names a legacy column.

use crate::common;

use common::bouncer::{Bouncer, PoolMode};
use common::{latest, TestDb};
use postgres::{Client, NoTls, SimpleQueryMessage};
use ruleiq_db::catalog::renames::legacy_name;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

const PROFILE: &str = "20000000-0000-0000-0000-000000000001";
const USER: &str = "10000000-0000-0000-0000-000000000001";

/// Production at version 7 (fixtures/production_v7.sql, adopted by `baseline`), with
/// pg_stat_statements installed when `tuned` and the server has it.
fn production_at_7(tuned: bool) -> TestDb {
    let db = if tuned {
        TestDb::new_tuned()
    } else {
        TestDb::new()
    };
    db.execute_file("fixtures/production_v7.sql");
    let (code, _, stderr) = db.run(&["baseline"]);
    assert_eq!(code, 0, "baseline: {stderr}");
    db
}

/// A login role with the application's rights on every table (unique: roles are cluster-wide).
fn app_role(db: &TestDb) -> (String, &'static str) {
    let role = format!("app_{}", Uuid::new_v4().simple());
    db.execute(&format!(
        "CREATE ROLE {role} LOGIN PASSWORD 'app';
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}"
    ));
    (role, "app")
}

/// The first column of the first row of a simple-protocol statement.
fn first(client: &mut Client, sql: &str) -> Result<Option<String>, postgres::Error> {
    Ok(client
        .simple_query(sql)?
        .into_iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row.get(0).map(str::to_string)),
            _ => None,
        })
        .flatten())
}

fn roles_of(doc: &serde_json::Value) -> &Vec<serde_json::Value> {
    doc["roles"]
        .as_array()
        .unwrap_or_else(|| panic!("no roles: {doc}"))
}

#[test]
fn at_version_7_the_role_sees_both_spellings_which_survive_008_and_its_rollback() {
    let db = production_at_7(false);
    let (role, password) = app_role(&db);
    let before = db.dump();

    let (code, doc, stderr) = db.run_json(&["compat", "--for-role", &role, "--dry-run"]);
    assert_eq!(code, 0, "{doc}\n{stderr}");
    assert_eq!(doc["dry_run"], true);
    let plan = doc["plan"].to_string();
    assert!(
        plan.contains("ALTER ROLE") && plan.contains("ruleiq_compat"),
        "{plan}"
    );
    assert_eq!(roles_of(&doc)[0]["role"], role.as_str());
    assert_eq!(roles_of(&doc)[0]["in_effect"], false, "not set yet: {doc}");
    db.assert_unchanged(&before);

    let (code, doc, stderr) = db.run_json(&["compat", "--for-role", &role]);
    assert_eq!(code, 0, "{doc}\n{stderr}");
    assert_eq!(doc["schema_version"], 7);
    let state = &roles_of(&doc)[0];
    assert_eq!(state["role"], role.as_str());
    assert!(state["set_at"].is_string(), "{doc}");
    assert_eq!(state["predating"], serde_json::json!([]));
    assert_eq!(state["in_effect"], true);
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM ruleiq_meta.compat_roles"),
        1
    );

    // A new session of the role, with no connection option, is pointed at the views.
    let app_url = db.url_as(&role, password);
    let mut app = common::connect_url(&app_url);
    assert_eq!(
        first(&mut app, "SHOW search_path").unwrap().as_deref(),
        Some("ruleiq_compat, public")
    );
    let both = "SELECT handles_persona::text || handles_personal_data::text FROM business_profiles WHERE id = '20000000-0000-0000-0000-000000000001'";
    assert!(first(&mut app, both).unwrap().is_some());
    first(&mut app, "SELECT business_profil, business_profile_id, questions_answe, questions_answered FROM assessment_sessions LIMIT 1").unwrap();
    // Written with the new name before 008, read with the old one.
    let id = Uuid::new_v4();
    let inserted = first(&mut app, &format!(
        "INSERT INTO assessment_sessions (id, user_id, business_profile_id, status, questions_answered, created_at, updated_at)
         VALUES ('{id}', '{USER}', '{PROFILE}', 'in_progress', 3, now(), now()) RETURNING questions_answe"
    ))
    .unwrap();
    assert_eq!(inserted.as_deref(), Some("3"));

    // The version-7 views bind the columns by number: when 008 renames them, both names stay.
    let mut owner = db.client();
    let mut tx = owner.transaction().unwrap();
    tx.batch_execute(
        "ALTER TABLE public.business_profiles RENAME COLUMN handles_persona TO handles_personal_data",
    )
    .unwrap();
    tx.simple_query(
        "SELECT handles_persona, handles_personal_data FROM ruleiq_compat.business_profiles",
    )
    .unwrap();
    tx.rollback().unwrap();

    // A right the role has on the table and not on the view is drift; --for-role syncs it.
    let (code, doc, _) = db.run_json(&["status"]);
    let clean_code = code;
    assert_eq!(doc["compat_roles"][0]["role"], role.as_str(), "{doc}");
    db.execute(&format!(
        "REVOKE DELETE ON ruleiq_compat.assessment_sessions FROM {role}"
    ));
    let (code, doc, _) = db.run_json(&["status"]);
    assert_eq!(code, 3, "{doc}");
    let drift = doc["drift"].to_string();
    assert!(
        drift.contains(&format!(
            "view ruleiq_compat.assessment_sessions for role {role}"
        )) && drift.contains("DELETE"),
        "{drift}"
    );
    let (code, doc, stderr) = db.run_json(&["compat", "--for-role", &role]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        doc["rights_synced"].to_string().contains("GRANT DELETE"),
        "{doc}"
    );
    assert_eq!(
        roles_of(&doc)[0]["set_at"],
        state["set_at"],
        "kept its time"
    );
    let (code, _, _) = db.run_json(&["status"]);
    assert_eq!(code, clean_code);

    // Across 008 and back, the role keeps both spellings and its rights.
    let (code, doc, stderr) = db.run_json(&["migrate"]);
    assert_eq!(code, 0, "{doc}\n{stderr}");
    let mut app = common::connect_url(&app_url);
    assert!(first(&mut app, both).unwrap().is_some());
    first(
        &mut app,
        &format!("DELETE FROM assessment_sessions WHERE id = '{id}' RETURNING business_profil"),
    )
    .unwrap();
    let (_, doc, _) = db.run_json(&["status"]);
    assert_eq!(
        doc["compat_roles"][0]["rights_drift"],
        serde_json::json!([]),
        "{doc}"
    );
    let (code, doc, stderr) = db.run_json(&["--yes", "rollback"]);
    assert_eq!(code, 0, "{doc}\n{stderr}");
    assert_eq!(doc["schema_version"], 7);
    let mut app = common::connect_url(&app_url);
    assert!(
        first(&mut app, both).unwrap().is_some(),
        "the views were re-pointed to version 7"
    );
    let (_, doc, _) = db.run_json(&["status"]);
    assert_eq!(
        doc["compat_roles"][0]["rights_drift"],
        serde_json::json!([]),
        "{doc}"
    );
    assert_eq!(doc["compat_roles"][0]["schema_usage"], true, "{doc}");
}

#[test]
fn a_session_that_predates_the_setting_stops_migrate_until_it_is_gone() {
    let db = production_at_7(false);
    let (role, password) = app_role(&db);
    let mut old = common::connect_url(&format!(
        "{}&application_name=old-worker",
        db.url_as(&role, password)
    ));
    let old_pid: i32 = first(&mut old, "SELECT pg_backend_pid()")
        .unwrap()
        .unwrap()
        .parse()
        .unwrap();

    let (code, doc, stderr) = db.run_json(&["compat", "--for-role", &role, "--wait", "300ms"]);
    assert_eq!(code, 4, "{doc}\n{stderr}");
    assert_eq!(doc["reason"], "compat_not_in_effect", "{doc}");
    let error = doc["error"].as_str().unwrap();
    assert!(error.contains(&format!("pid {old_pid}")), "{error}");
    assert!(
        error.contains("old-worker") && error.contains("RECONNECT"),
        "{error}"
    );
    assert_eq!(
        first(&mut old, "SHOW search_path").unwrap().as_deref(),
        Some("\"$user\", public"),
        "the older session keeps its path and is never terminated"
    );

    let (code, doc, _) = db.run_json(&["compat"]);
    assert_eq!(code, 0);
    assert_eq!(roles_of(&doc)[0]["predating"][0]["pid"], old_pid, "{doc}");
    assert_eq!(roles_of(&doc)[0]["in_effect"], false);

    let (code, doc, stderr) = db.run_json(&["--lock-wait", "500ms", "migrate"]);
    assert_eq!(code, 4, "{doc}\n{stderr}");
    assert_eq!(doc["reason"], "compat_not_in_effect", "{doc}");
    assert!(
        doc["error"]
            .as_str()
            .unwrap()
            .contains(&format!("pid {old_pid}")),
        "{doc}"
    );
    assert_eq!(
        db.scalar_i64("SELECT max(version)::int8 FROM refinery_schema_history"),
        7
    );
    drop(old);
    let (code, doc, stderr) = db.run_json(&["--lock-wait", "10s", "migrate"]);
    assert_eq!(code, 0, "{doc}\n{stderr}");
    assert_eq!(doc["schema_version"], latest());
}

/// The application through the pooler: statements in the simple protocol (PgBouncer 1.18 in
/// transaction mode breaks named ones), counted, every failure kept.
#[derive(Default)]
struct App {
    stop: AtomicBool,
    statements: AtomicU64,
    errors: Mutex<Vec<String>>,
}

impl App {
    fn start(
        url: &str,
        full_names: bool,
        clients: usize,
    ) -> (Arc<App>, Vec<std::thread::JoinHandle<()>>) {
        let app = Arc::new(App::default());
        let workers = (0..clients)
            .map(|_| {
                let (app, url) = (app.clone(), url.to_string());
                std::thread::spawn(move || app.run(&url, full_names))
            })
            .collect();
        (app, workers)
    }

    fn run(&self, url: &str, full: bool) {
        let mut client =
            Client::connect(url, NoTls).expect("the application connects through the pooler");
        // The legacy spellings come from the rename map, the one list of them.
        let n = |table: &str, current: &'static str| {
            if full {
                current
            } else {
                legacy_name(table, current).expect("a renamed column")
            }
        };
        while !self.stop.load(Ordering::SeqCst) {
            let id = Uuid::new_v4();
            let statements = [
                format!(
                    "SELECT id, {bp}, {qa} FROM assessment_sessions WHERE {bp} = '{PROFILE}' LIMIT 5",
                    bp = n("assessment_sessions", "business_profile_id"),
                    qa = n("assessment_sessions", "questions_answered")
                ),
                format!(
                    "UPDATE business_profiles SET {h} = NOT {h}, updated_at = now() WHERE id = '{PROFILE}' RETURNING {h}",
                    h = n("business_profiles", "handles_personal_data")
                ),
                format!(
                    "INSERT INTO assessment_sessions (id, user_id, {bp}, status, {qa}, created_at, updated_at)
                     VALUES ('{id}', '{USER}', '{PROFILE}', 'in_progress', 0, now(), now()) RETURNING {bp}",
                    bp = n("assessment_sessions", "business_profile_id"),
                    qa = n("assessment_sessions", "questions_answered")
                ),
                format!(
                    "UPDATE assessment_sessions SET {qa} = {qa} + 1 WHERE id = '{id}' RETURNING {qa}",
                    qa = n("assessment_sessions", "questions_answered")
                ),
                format!(
                    "DELETE FROM assessment_sessions WHERE id = '{id}' RETURNING {bp}",
                    bp = n("assessment_sessions", "business_profile_id")
                ),
            ];
            for sql in &statements {
                self.statements.fetch_add(1, Ordering::SeqCst);
                if let Err(e) = client.simple_query(sql) {
                    let message = e
                        .as_db_error()
                        .map_or_else(|| e.to_string(), |d| d.message().to_string());
                    self.errors
                        .lock()
                        .unwrap()
                        .push(format!("{sql}: {message}"));
                    if e.is_closed() {
                        return;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn wait_for(&self, more: u64) {
        let target = self.statements.load(Ordering::SeqCst) + more;
        let started = Instant::now();
        while self.statements.load(Ordering::SeqCst) < target {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the application is stuck"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn finish(app: Arc<App>, workers: Vec<std::thread::JoinHandle<()>>, what: &str) {
        app.stop.store(true, Ordering::SeqCst);
        for w in workers {
            w.join().unwrap();
        }
        let errors = app.errors.lock().unwrap();
        assert!(
            errors.is_empty(),
            "{what}: {} of {} statements failed: {:#?}",
            errors.len(),
            app.statements.load(Ordering::SeqCst),
            &errors[..errors.len().min(10)]
        );
    }
}

#[test]
fn the_rollout_through_pgbouncer_in_transaction_mode_loses_no_statement() {
    let measured = common::pg_stat_statements_available();
    if !measured {
        eprintln!("pg_stat_statements is not available: compat --drop is tested --unverified only");
    }
    let db = production_at_7(measured);
    if measured {
        db.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
    }
    let (role, password) = app_role(&db);
    let bouncer = Bouncer::start(&db, PoolMode::Transaction, &[(&role, password)]);
    let pooled = bouncer.url_as(&db.name, &role, password);

    // Old code runs the whole time: before the role setting, between it and 008, across 008.
    let (old, old_workers) = App::start(&pooled, false, 3);
    old.wait_for(100);
    let (code, doc, stderr) = db.run_json(&["compat", "--for-role", &role]);
    assert_eq!(code, 0, "{doc}\n{stderr}");
    let predating: Vec<i64> = roles_of(&doc)[0]["predating"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pid"].as_i64().unwrap())
        .collect();
    assert!(
        !predating.is_empty(),
        "the pooled server sessions predate the setting: {doc}"
    );
    old.wait_for(100);

    let (code, doc, stderr) = db.run_json(&["--lock-wait", "500ms", "migrate"]);
    assert_eq!(code, 4, "{doc}\n{stderr}");
    assert_eq!(doc["reason"], "compat_not_in_effect");
    let error = doc["error"].as_str().unwrap();
    assert!(
        predating
            .iter()
            .any(|pid| error.contains(&format!("pid {pid}"))),
        "{error}"
    );
    assert_eq!(
        db.scalar_i64("SELECT max(version)::int8 FROM refinery_schema_history"),
        7
    );

    // The DBA recycles the pooler's server connections; new ones get the setting.
    bouncer.admin("RECONNECT");
    let (code, doc, stderr) = db.run_json(&["compat", "--for-role", &role, "--wait", "30s"]);
    assert_eq!(code, 0, "{doc}\n{stderr}");
    assert_eq!(roles_of(&doc)[0]["in_effect"], true, "{doc}");
    old.wait_for(100);

    let (code, doc, stderr) = db.run_json(&["migrate"]);
    assert_eq!(code, 0, "{doc}\n{stderr}");
    assert_eq!(doc["schema_version"], latest());
    old.wait_for(100);

    // New code starts beside the old.
    let (new, new_workers) = App::start(&pooled, true, 2);
    new.wait_for(100);
    old.wait_for(100);

    let drop_args = |observe: &'static str, wait: Option<&'static str>| {
        let mut args = vec!["--yes", "compat", "--drop", "--observe", observe];
        if let Some(wait) = wait {
            args.extend(["--wait", wait]);
        }
        if !measured {
            args.push("--unverified");
        }
        args
    };
    if measured {
        let (code, doc, stderr) = db.run_json(&drop_args("2s", None));
        assert_eq!(code, 4, "{doc}\n{stderr}");
        assert_eq!(doc["reason"], "legacy_names_in_use", "{doc}");
        let error = doc["error"].as_str().unwrap();
        assert!(
            error.contains("business_profiles.handles_persona")
                && error.contains("assessment_sessions.business_profil"),
            "{error}"
        );
        assert_eq!(
            db.scalar_i64("SELECT count(*) FROM pg_namespace WHERE nspname = 'ruleiq_compat'"),
            1
        );
        let (_, status, _) = db.run_json(&["status"]);
        assert!(
            status["legacy_names_in_use"]
                .to_string()
                .contains("handles_persona"),
            "{status}"
        );
    }
    App::finish(old, old_workers, "old code");

    // Only full names now. The reset reaches new server sessions only: the pooled ones
    // predate it, so the views stay until they are recycled.
    let (code, doc, stderr) = db.run_json(&drop_args("1s", None));
    assert_eq!(code, 4, "{doc}\n{stderr}");
    assert_eq!(doc["reason"], "compat_not_in_effect", "{doc}");
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM pg_namespace WHERE nspname = 'ruleiq_compat'"),
        1
    );
    new.wait_for(50);
    bouncer.admin("RECONNECT");
    let (code, doc, stderr) = db.run_json(&drop_args("1s", Some("30s")));
    assert_eq!(code, 0, "{doc}\n{stderr}");
    assert_eq!(doc["dropped"], true);
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM pg_namespace WHERE nspname = 'ruleiq_compat'"),
        0
    );
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM ruleiq_meta.compat_roles"),
        0
    );
    new.wait_for(100);
    App::finish(new, new_workers, "new code");
    let mut fresh = Client::connect(&pooled, NoTls).unwrap();
    assert_eq!(
        first(&mut fresh, "SHOW search_path").unwrap().as_deref(),
        Some("\"$user\", public")
    );
}

/// `--probe-url` looks through the application's own pooled URL: a transaction pooler's server
/// sessions opened before the role setting keep the old search_path, and the probe says so
/// (exit 4) until the pooler recycles them.
#[test]
fn the_probe_sees_what_the_application_sees_through_its_pooler() {
    let db = production_at_7(false);
    let (role, password) = app_role(&db);
    let bouncer = Bouncer::start(&db, PoolMode::Transaction, &[(&role, password)]);
    let app_url = bouncer.url_as(&db.name, &role, password);
    // The application is connected (through the pooler) before the setting.
    let (code, doc, stderr) = db.run_json(&["compat", "--dry-run", "--probe-url", &app_url]);
    assert_eq!(code, 4, "{doc}\n{stderr}");
    assert_eq!(doc["reason"], "compat_not_in_effect", "{doc}");
    assert!(
        doc["error"].as_str().unwrap().contains("search_path"),
        "{doc}"
    );

    // The setting is made; the pooler's server sessions predate it, so the probe still fails.
    let (code, doc, _) = db.run_json(&[
        "--yes",
        "compat",
        "--for-role",
        &role,
        "--probe-url",
        &app_url,
    ]);
    assert_eq!(code, 4, "{doc}");
    assert_eq!(doc["reason"], "compat_not_in_effect");

    // Recycled, every transaction of the application sees the views.
    bouncer.admin("RECONNECT");
    let (code, doc, stderr) = db.run_json(&["compat", "--probe-url", &app_url]);
    assert_eq!(code, 0, "{doc}\n{stderr}");
    assert_eq!(doc["probe"]["ok"], true, "{doc}");
    let seen = doc["probe"]["search_path"].as_array().unwrap();
    assert!(
        seen.iter()
            .all(|p| p.as_str().unwrap().contains("ruleiq_compat")),
        "{doc}"
    );
    assert_eq!(doc["probe"]["transactions"], 4);
}
