//! Production's connection path: a real PgBouncer in front of the test server, with an
//! application workload running through it. Changing commands are refused on a
//! transaction-mode pooler before they change anything; reading commands work there; no
//! command leaves a setting or a lock on a backend the application gets next; a direct
//! connection and a session-mode pooler are never refused.

use crate::common;

use common::bouncer::{simple_value, Bouncer, PoolMode};
use common::{latest, TestDb, EXAMPLE_POLICY};
use postgres::{Client, NoTls};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The application: clients through the pooler that keep reading and writing in the simple
/// protocol (what an application may send through a transaction pooler), counting errors.
struct Workload {
    stop: Arc<AtomicBool>,
    statements: Arc<AtomicU64>,
    errors: Arc<std::sync::Mutex<Vec<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Workload {
    fn start(url: &str, clients: usize) -> Workload {
        let stop = Arc::new(AtomicBool::new(false));
        let statements = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
        let threads = (0..clients)
            .map(|i| {
                let (url, stop, statements, errors) =
                    (url.to_string(), stop.clone(), statements.clone(), errors.clone());
                std::thread::spawn(move || {
                    let mut client = Client::connect(&url, NoTls).expect("the application connects");
                    let work = [
                        "SELECT count(*) FROM evidence_items WHERE status = 'collected'",
                        "BEGIN; UPDATE business_profiles SET updated_at = updated_at WHERE id = (SELECT id FROM business_profiles ORDER BY id LIMIT 1); SELECT 1 FROM pg_sleep(0.002); COMMIT",
                        "SELECT id FROM assessment_sessions ORDER BY id LIMIT 5",
                    ];
                    let mut n = i;
                    while !stop.load(Ordering::SeqCst) {
                        if let Err(e) = client.simple_query(work[n % work.len()]) {
                            let mut errors = errors.lock().unwrap();
                            if errors.len() < 5 {
                                errors.push(format!("{e}: {:?}", e.as_db_error().map(|d| d.message())));
                            }
                            let _ = client.simple_query("ROLLBACK");
                        }
                        statements.fetch_add(1, Ordering::SeqCst);
                        n += 1;
                        std::thread::sleep(Duration::from_millis(2));
                    }
                })
            })
            .collect();
        Workload {
            stop,
            statements,
            errors,
            threads,
        }
    }

    /// Stops the clients and asserts the application saw no error and did work.
    fn finish(self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().unwrap();
        }
        let errors = self.errors.lock().unwrap();
        assert!(errors.is_empty(), "the application saw errors: {errors:?}");
        assert!(self.statements.load(Ordering::SeqCst) > 0);
    }
}

/// Runs the binary against `url` with `--format json`: (exit code, document, stderr).
fn run_at(url: &str, args: &[&str]) -> (i32, serde_json::Value, String) {
    let out = common::cli_at(url)
        .args(["--format", "json"])
        .args(args)
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let doc = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("{args:?}: stdout is not one JSON document ({e}):\n{stdout}\nstderr:\n{stderr}")
    });
    (out.status.code().unwrap_or(-1), doc, stderr)
}

/// A reading command's run through the pooler, beside the same run straight to the server.
struct PooledRead {
    code: i32,
    doc: serde_json::Value,
    stderr: String,
    direct: serde_json::Value,
}

/// Runs a reading command straight to the server and then through `pooled`: the exit codes
/// agree, the direct run says it was direct and the pooled one that it went `via`, and both
/// see the same schema version.
fn reads_as_direct(db: &TestDb, pooled: &str, args: &[&str], via: &str) -> PooledRead {
    let (direct_code, direct, _) = run_at(&db.url, args);
    let (code, doc, stderr) = run_at(pooled, args);
    assert_eq!(
        code, direct_code,
        "{args:?} through {pooled}: {doc}\n{stderr}"
    );
    assert_eq!(direct["connection"]["via"], "direct");
    assert_eq!(doc["connection"]["via"], via, "{args:?}: {doc}");
    assert_eq!(doc["schema_version"], direct["schema_version"]);
    PooledRead {
        code,
        doc,
        stderr,
        direct,
    }
}

/// Every reading command, and the exit code it gives on the dirty fixture when that is fixed
/// (-1: whatever the direct run gives).
const READING: [(&[&str], i32); 7] = [
    (&["status"], -1),
    (&["status", "--health"], -1),
    (&["check-constraints", "--dry-run"], 3),
    (&["migrate", "--dry-run"], 3),
    (&["cleanup", "--dry-run", "--policy", EXAMPLE_POLICY], 0),
    (&["rollback", "--dry-run"], 0),
    (&["compat", "--dry-run"], -1),
];

/// Settings PgBouncer itself keeps in step between its clients and the server.
const POOLER_TRACKED: &str =
    "'application_name', 'client_encoding', 'datestyle', 'timezone', 'standard_conforming_strings', 'intervalstyle'";

/// Asserts that no backend behind the pooler carries a session setting of ours, and that no
/// session of the database holds an advisory lock. Every backend of the pool is reached by
/// holding `pool_size` clients in transactions at once.
fn assert_nothing_left_behind(db: &TestDb, bouncer: &Bouncer, pool_size: usize) {
    let mut clients: Vec<Client> = (0..pool_size).map(|_| bouncer.client(&db.name)).collect();
    for client in &mut clients {
        client.simple_query("BEGIN").unwrap();
        let leftover = simple_value(
            client,
            &format!(
                "SELECT string_agg(name || '=' || setting, ', ') FROM pg_settings
                  WHERE source = 'session' AND lower(name) NOT IN ({POOLER_TRACKED})"
            ),
        );
        assert_eq!(leftover, None, "a pooled backend kept session settings");
        assert_eq!(
            simple_value(client, "SHOW lock_timeout").as_deref(),
            Some("0")
        );
        assert_eq!(
            simple_value(client, "SHOW statement_timeout").as_deref(),
            Some("0")
        );
        assert_eq!(
            simple_value(client, "SHOW search_path").as_deref(),
            Some("\"$user\", public")
        );
    }
    for mut client in clients {
        client.simple_query("COMMIT").unwrap();
    }
    assert_eq!(
        db.advisory_locks_held(),
        0,
        "an advisory lock is still held"
    );
}

#[test]
fn every_changing_command_is_refused_through_a_transaction_pooler_and_nothing_changes() {
    let db = TestDb::dirty_legacy();
    let bouncer = Bouncer::start(&db, PoolMode::Transaction, &[]);
    let pooled = bouncer.url_for(&db.name);
    let workload = Workload::start(&pooled, 3);
    let before = db.dump();
    let no_such_run = "00000000-0000-0000-0000-000000000001";
    let changing: [&[&str]; 7] = [
        &["migrate"],
        &["cleanup", "--yes", "--policy", EXAMPLE_POLICY],
        &["cleanup", "--undo", no_such_run, "--yes"],
        &["rollback", "--to", "6", "--yes"],
        &["baseline"],
        &["compat"],
        &["check-constraints"],
    ];
    for args in changing {
        let (code, doc, stderr) = run_at(&pooled, args);
        assert_eq!(code, 4, "{args:?} was not refused: {doc}\n{stderr}");
        assert_eq!(doc["reason"], "pooled_connection", "{args:?}: {doc}");
        let error = doc["error"].as_str().unwrap();
        assert!(
            error.contains("direct URL"),
            "{args:?} names no fix: {error}"
        );
        assert!(error.contains("Nothing was changed"), "{error}");
        assert_eq!(doc["connection"]["via"], "pooler-transaction", "{doc}");
    }
    workload.finish();
    db.assert_unchanged(&before);
    assert_nothing_left_behind(&db, &bouncer, 4);
}

#[test]
fn reading_commands_work_through_a_transaction_pooler_while_the_application_is_busy() {
    let db = TestDb::dirty_legacy();
    let bouncer = Bouncer::start(&db, PoolMode::Transaction, &[]);
    let pooled = bouncer.url_for(&db.name);
    let workload = Workload::start(&pooled, 3);
    for _ in 0..2 {
        for (args, expected) in READING {
            let read = reads_as_direct(&db, &pooled, args, "pooler-transaction");
            if expected >= 0 {
                assert_eq!(
                    read.code, expected,
                    "{args:?}: {}\n{}",
                    read.doc, read.stderr
                );
            }
            assert!(
                read.stderr.contains("changes need the direct URL"),
                "{args:?} did not say so: {}",
                read.stderr
            );
        }
    }
    let (_, pooled_check, _) = run_at(&pooled, &["check-constraints", "--dry-run"]);
    let (_, direct_check, _) = run_at(&db.url, &["check-constraints", "--dry-run"]);
    assert_eq!(pooled_check["constraints"], direct_check["constraints"]);
    assert!(pooled_check["total_violations"].as_i64().unwrap() > 0);
    workload.finish();
    assert_nothing_left_behind(&db, &bouncer, 4);
}

#[test]
fn a_session_pooler_is_allowed_and_left_clean_and_a_direct_connection_says_so() {
    let db = TestDb::new();
    db.migrate_to(7);
    let bouncer = Bouncer::start(&db, PoolMode::Session, &[]);
    let pooled = bouncer.url_for(&db.name);
    let (code, doc, stderr) = run_at(&pooled, &["migrate"]);
    assert_eq!(code, 0, "{doc}\n{stderr}");
    assert_eq!(doc["connection"]["via"], "pooler-session");
    assert_eq!(doc["schema_version"], latest());
    // The pool gives the backends migrate used to the next clients (no server_reset_query in
    // this pooler's configuration): none may carry anything of ours.
    assert_nothing_left_behind(&db, &bouncer, 4);
    let (code, doc, _) = run_at(&db.url, &["status"]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["connection"]["via"], "direct");
    assert_eq!(doc["connection"]["url_source"], "flag");
}

/// `check-constraints --dry-run` through `pooled`, waiting in the middle of its read for
/// evidence_items, which the returned transaction holds; and a client to watch with.
fn check_waiting_for_a_lock(db: &TestDb, pooled: &str) -> (Client, std::process::Child, Client) {
    let mut holder = db.client();
    holder
        .batch_execute("BEGIN; LOCK TABLE evidence_items IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let child = common::command_at(pooled)
        .args(["--format", "json", "check-constraints", "--dry-run"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut watcher = db.client();
    common::wait_until(
        &mut watcher,
        "SELECT count(*) > 0 FROM pg_stat_activity
          WHERE datname = current_database() AND wait_event_type = 'Lock'",
        "the check waits for evidence_items",
    );
    (holder, child, watcher)
}

/// Ctrl-C through a pooler of either mode cancels the running statement through the server
/// (PgBouncer before 1.19 drops the client library's cancel request in both), so the run
/// unwinds, reports, and leaves nothing on any server connection.
#[test]
fn ctrl_c_in_the_middle_of_a_read_through_the_pooler_leaves_nothing() {
    for mode in [PoolMode::Transaction, PoolMode::Session] {
        let db = TestDb::dirty_legacy();
        let bouncer = Bouncer::start(&db, mode, &[]);
        let pooled = bouncer.url_for(&db.name);
        let (mut holder, child, _) = check_waiting_for_a_lock(&db, &pooled);
        unsafe {
            libc::kill(child.id() as i32, libc::SIGINT);
        }
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(130), "{mode:?}: {stdout}\n{stderr}");
        let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!("{mode:?}: one document on an interrupt ({e}): {stdout}\n{stderr}")
        });
        assert_eq!(doc["interrupted"], true, "{doc}");
        assert!(!stderr.contains("still not stopped"), "{mode:?}: {stderr}");
        holder.batch_execute("COMMIT").unwrap();
        assert_nothing_left_behind(&db, &bouncer, 4);
    }
}

/// Behind a pool of one, the fresh connection that would cancel our statement waits for the
/// server connection that statement holds: a second Ctrl-C must still end the process at once
/// rather than after the pooler's `query_wait_timeout`.
#[test]
fn a_second_ctrl_c_ends_the_run_at_once_when_the_cancel_cannot_get_through() {
    let db = TestDb::dirty_legacy();
    let wait = 40;
    let bouncer = Bouncer::start_sized(&db, PoolMode::Transaction, &[], 1, wait);
    let pooled = bouncer.url_for(&db.name);
    let (mut holder, mut child, mut watcher) = check_waiting_for_a_lock(&db, &pooled);
    let signalled = std::time::Instant::now();
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    std::thread::sleep(Duration::from_millis(500));
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if signalled.elapsed() > Duration::from_secs(wait as u64 / 2) {
            let _ = child.kill();
            panic!("still running {:?} after two signals", signalled.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted again"), "{stderr}");
    holder.batch_execute("COMMIT").unwrap();
    // The check's backend, left behind by the pooler when the client went, finishes its read
    // once the lock is free and ends; it held nothing but ACCESS SHARE.
    common::wait_until(
        &mut watcher,
        "SELECT count(*) = 0 FROM pg_locks l JOIN pg_database d ON d.oid = l.database
          WHERE d.datname = current_database() AND l.relation = 'evidence_items'::regclass",
        "no lock on evidence_items is left",
    );
}

#[test]
fn the_urls_people_have_connect_and_the_report_says_which() {
    let db = TestDb::new();
    // SQLAlchemy's spelling, with asyncpg's ssl parameter, in DATABASE_URL.
    let sqlalchemy = db
        .url
        .replacen("postgres://", "postgresql+asyncpg://", 1)
        .replace("sslmode=disable", "ssl=disable");
    let run = common::run_bare(
        &["status", "--format", "json"],
        &[("DATABASE_URL", &sqlalchemy)],
    );
    let doc = run.json();
    assert_eq!(doc["connection"]["url_source"], "DATABASE_URL", "{doc}");
    assert!(run.stderr.contains("SQLAlchemy driver"), "{}", run.stderr);
    assert!(
        !run.stderr.contains(&db.url),
        "the URL (and its password) is not echoed"
    );
    // The direct URL's variable wins over DATABASE_URL, which here points nowhere.
    let run = common::run_bare(
        &["status", "--format", "json"],
        &[
            ("DATABASE_URL", "postgres://nobody@127.0.0.1:1/nothing"),
            ("DIRECT_URL", &db.url),
        ],
    );
    assert_eq!(
        run.json()["connection"]["url_source"],
        "DIRECT_URL",
        "{}",
        run.stderr
    );
}

#[test]
fn the_lock_holder_named_is_of_this_database() {
    let db = TestDb::dirty_legacy();
    let other = TestDb::new();
    let _elsewhere = other.hold_migration_lock();
    let _here = db.hold_migration_lock();
    let here_pid = db.scalar_i64(
        "SELECT l.pid::bigint FROM pg_locks l JOIN pg_database d ON d.oid = l.database
          WHERE l.locktype = 'advisory' AND d.datname = current_database()",
    );
    let (code, doc, stderr) = db.run_json(&["--lock-wait", "1s", "migrate"]);
    assert_eq!(code, 4, "{doc}");
    assert_eq!(doc["reason"], "lock_busy");
    let error = doc["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("pid {here_pid}")),
        "{error}\n{stderr}"
    );
    // A lock held only in another database does not stop this one.
    drop(_here);
    let (code, doc, _) = db.run_json(&["--lock-wait", "1s", "migrate", "--dry-run"]);
    assert_eq!(code, 3, "{doc}");
}

#[test]
fn the_three_connection_paths_are_told_apart() {
    // Through the binary: the verdict marks a whole process as pooled, and the tests share one.
    let db = TestDb::new();
    db.migrate_to(7);
    let session = Bouncer::start(&db, PoolMode::Session, &[]);
    let transaction = Bouncer::start(&db, PoolMode::Transaction, &[]);
    // The application is busy on the transaction pooler while we look.
    let workload = Workload::start(&transaction.url_for(&db.name), 2);
    let cases = [
        (db.url.clone(), "direct", None),
        (session.url_for(&db.name), "pooler-session", Some(&session)),
        (
            transaction.url_for(&db.name),
            "pooler-transaction",
            Some(&transaction),
        ),
    ];
    for (url, expected, bouncer) in cases {
        let (code, doc, stderr) = run_at(&url, &["status"]);
        assert_eq!(
            doc["connection"]["via"],
            expected,
            "exit {code}: {doc}\n{stderr}\n{}",
            bouncer.map(|b| b.log()).unwrap_or_default()
        );
    }
    workload.finish();
}

#[test]
fn status_names_a_migration_lock_stranded_on_a_session_not_running_ruleiq_db() {
    let db = TestDb::new();
    db.migrate_to(7);
    let (code, doc, _) = db.run_json(&["status"]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["stranded_locks"], serde_json::json!([]));
    // What a migrator through a transaction pooler left behind: the lock on a backend the
    // application now uses.
    let mut app =
        Client::connect(&format!("{}&application_name=app-worker", db.url), NoTls).unwrap();
    app.execute(
        "SELECT pg_advisory_lock($1)",
        &[&ruleiq_db::db::MIGRATION_LOCK_KEY],
    )
    .unwrap();
    let app_pid: i32 = app
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let (code, doc, _) = db.run_json(&["status"]);
    assert_eq!(code, 3, "{doc}");
    assert_eq!(doc["stranded_locks"][0]["pid"], app_pid, "{doc}");
    assert_eq!(doc["stranded_locks"][0]["application_name"], "app-worker");
    let (_, table, _) = db.run(&["status"]);
    assert!(table.contains("STRANDED migration lock"), "{table}");
}

/// A pool of one server connection: while one of our transactions holds it, another of ours
/// can only wait. The check's scan sessions and the dry run's competing scan are extra: with
/// none to be had, the command goes on alone instead of waiting out the pooler's
/// `query_wait_timeout` (and failing when it ends).
#[test]
fn a_pool_of_one_server_connection_is_enough_for_every_reading_command() {
    let db = TestDb::dirty_legacy();
    let wait = 10;
    let bouncer = Bouncer::start_sized(&db, PoolMode::Transaction, &[], 1, wait);
    let pooled = bouncer.url_for(&db.name);
    for (args, _) in READING {
        let started = std::time::Instant::now();
        let read = reads_as_direct(&db, &pooled, args, "pooler-transaction");
        let took = started.elapsed();
        if args[0] == "check-constraints" {
            assert_eq!(read.doc["constraints"], read.direct["constraints"]);
            assert!(read.doc["total_violations"].as_i64().unwrap() > 0);
        }
        assert!(
            !bouncer.log().contains("query_wait_timeout"),
            "{args:?}: a client of ours waited out the pool ({took:?}):\n{}",
            bouncer.log()
        );
    }
    assert_nothing_left_behind(&db, &bouncer, 1);
}

/// A session pool of one server connection, which ruleiq-db's first connection holds for as
/// long as it is connected: a second connection would wait for it until the pooler gives up.
/// Whether such a pool is in session or transaction mode cannot be told without a second
/// server connection, so it is taken as transaction mode: reading commands read alone and
/// report what a direct connection reports, changing ones are refused, saying why, and nothing
/// of ours waits out the pool.
#[test]
fn a_session_pool_with_no_server_connection_to_spare_reads_alone_and_refuses_changes() {
    let db = TestDb::dirty_legacy();
    let bouncer = Bouncer::start_sized(&db, PoolMode::Session, &[], 1, 40);
    let pooled = bouncer.url_for(&db.name);
    let before = db.dump();
    let reading: [&[&str]; 3] = [
        &["check-constraints", "--dry-run"],
        &["migrate", "--dry-run"],
        &["status", "--health"],
    ];
    for args in reading {
        let read = reads_as_direct(&db, &pooled, args, "pooler-transaction");
        assert!(
            read.stderr.contains("none to spare"),
            "{args:?}: {}",
            read.stderr
        );
        if args[0] == "check-constraints" {
            assert_eq!(read.doc["constraints"], read.direct["constraints"]);
        }
    }
    let changing: [&[&str]; 2] = [
        &["migrate", "--yes"],
        &["cleanup", "--yes", "--policy", EXAMPLE_POLICY],
    ];
    for args in changing {
        let (code, doc, _) = run_at(&pooled, args);
        assert_eq!(code, 4, "{args:?}: {doc}");
        assert_eq!(doc["reason"], "pooled_connection", "{args:?}: {doc}");
        assert!(
            doc["error"].as_str().unwrap().contains("none to spare"),
            "{args:?}: {doc}"
        );
    }
    db.assert_unchanged(&before);
    assert!(
        !bouncer.log().contains("query_wait_timeout"),
        "a client of ours waited out the pool:\n{}",
        bouncer.log()
    );
}

/// A session pool of two: the mode shows, and cleanup and migrate go through it, every
/// connection after the first getting its server connection within the wait it is given.
#[test]
fn a_session_pool_of_two_server_connections_is_enough_to_clean_and_migrate() {
    let db = TestDb::dirty_legacy();
    let bouncer = Bouncer::start_sized(&db, PoolMode::Session, &[], 2, 40);
    let pooled = bouncer.url_for(&db.name);
    for args in [
        &["cleanup", "--yes", "--policy", EXAMPLE_POLICY][..],
        &["migrate", "--yes"],
    ] {
        let (code, doc, stderr) = run_at(&pooled, args);
        assert_eq!(code, 0, "{args:?}: {doc}\n{stderr}");
        assert_eq!(doc["connection"]["via"], "pooler-session");
    }
    let (_, doc, _) = run_at(&db.url, &["status"]);
    assert_eq!(doc["schema_version"], latest());
    assert!(
        !bouncer.log().contains("query_wait_timeout"),
        "a client of ours waited out the pool:\n{}",
        bouncer.log()
    );
    assert_nothing_left_behind(&db, &bouncer, 2);
}

/// A session pooler hands a server connection, settings and all, to its next client when ours
/// closes (this one is not set to reset it): no connection of a reading command, the check's
/// extra scan sessions among them, leaves a setting on any of the pool's server connections.
#[test]
fn reading_through_a_session_pooler_leaves_nothing_on_any_server_connection() {
    let db = TestDb::dirty_legacy();
    let size = 3;
    let bouncer = Bouncer::start_sized(&db, PoolMode::Session, &[], size, 40);
    let pooled = bouncer.url_for(&db.name);
    let reading: [&[&str]; 4] = [
        &["check-constraints", "--dry-run"],
        &["migrate", "--dry-run"],
        &["cleanup", "--dry-run", "--policy", EXAMPLE_POLICY],
        &["status", "--health"],
    ];
    for args in reading {
        reads_as_direct(&db, &pooled, args, "pooler-session");
    }
    assert_nothing_left_behind(&db, &bouncer, size as usize);
}

/// A cleanup through a session-mode pooler, interrupted between batches: its Session and
/// workers are the only connections there that make session settings, and they undo them on
/// the way out, the migration lock included, so no server connection of the pool carries
/// anything of ours to the application.
#[test]
fn an_interrupted_cleanup_through_a_session_pooler_leaves_nothing_behind() {
    let db = crate::cleanup::many_dirty_evidence(20_000);
    let bouncer = Bouncer::start(&db, PoolMode::Session, &[]);
    let pooled = bouncer.url_for(&db.name);
    let (report, _) =
        crate::cleanup::interrupt_a_cleanup(&db, common::command_at(&pooled), libc::SIGINT);
    assert_eq!(report["connection"]["via"], "pooler-session");
    assert_nothing_left_behind(&db, &bouncer, 4);
}
