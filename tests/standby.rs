//! Standbys (docs/design.md §8) against a real primary with a real streaming standby: status lists
//! it, long data work waits for it, changing commands refuse it and a read-only server.
//!
//! The pair is started once for this test binary with the sandbox code (`pg_basebackup -R`).
//! Pausing replay pauses the whole standby, so the tests here take turns.

use crate::common;

use common::{connect_url, dump_url, TestDb};
use postgres::Client;
use ruleiq_db::sandbox::{Cluster, ClusterOptions};
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

const STANDBY: &str = "ruleiq_test_standby";

/// A policy that decides every rule, whatever the columns' NOT NULLs: the repairs these tests
/// run are about standbys, not policy.
const POLICY: [&str; 2] = ["--policy", "fixtures/cleanup-policy.example.yaml"];

struct Pair {
    primary: Cluster,
    standby: Cluster,
}

struct Urls {
    /// URL templates, `{db}` standing for the database.
    primary: String,
    standby: String,
}

static PAIR: Mutex<Option<Pair>> = Mutex::new(None);
static URLS: OnceLock<Urls> = OnceLock::new();
static TURN: Mutex<()> = Mutex::new(());

extern "C" fn stop_pair() {
    if let Ok(mut guard) = PAIR.lock() {
        if let Some(mut pair) = guard.take() {
            pair.standby.stop();
            pair.primary.stop();
        }
    }
}

fn urls() -> &'static Urls {
    URLS.get_or_init(|| {
        let primary = Cluster::start(&ClusterOptions::default()).expect("starting a primary");
        let standby = primary.start_standby(STANDBY).expect("starting a standby");
        let urls = Urls {
            primary: primary.url("{db}"),
            standby: standby.url("{db}"),
        };
        *PAIR.lock().unwrap() = Some(Pair { primary, standby });
        unsafe {
            libc::atexit(stop_pair);
        }
        urls
    })
}

/// This test's turn with the pair, replay running.
fn turn() -> MutexGuard<'static, ()> {
    let guard = TURN.lock().unwrap_or_else(|e| e.into_inner());
    urls();
    resume_replay();
    guard
}

fn standby_admin() -> Client {
    connect_url(&urls().standby.replace("{db}", "postgres"))
}

fn pause_replay() {
    let mut s = standby_admin();
    s.batch_execute("SELECT pg_wal_replay_pause()").unwrap();
    common::poll_until_named(Duration::from_secs(30), "replay had paused", || {
        let state: String = s
            .query_one("SELECT pg_get_wal_replay_pause_state()", &[])
            .unwrap()
            .get(0);
        state == "paused"
    });
}

fn resume_replay() {
    standby_admin()
        .batch_execute("SELECT pg_wal_replay_resume()")
        .unwrap();
}

/// Waits until the standby has replayed everything the primary has written so far, looking at
/// the standby itself.
fn wait_replayed(db: &TestDb) {
    let target: String = db
        .client()
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .unwrap()
        .get(0);
    let mut s = standby_admin();
    common::poll_until_named(
        Duration::from_secs(60),
        &format!("the standby had replayed up to {target}"),
        || {
            s.query_one(
                "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn",
                &[&target],
            )
            .unwrap()
            .get(0)
        },
    );
}

/// Asserts the standby's dump of `db` equals the primary's. Sequences aside: a standby reads a
/// sequence as far as its primary logged it ahead (up to 32 values), not its last value.
fn assert_same_data(db: &TestDb) {
    let without_setval = |dump: String| -> Vec<String> {
        dump.lines()
            .filter(|l| !l.starts_with("SELECT pg_catalog.setval("))
            .map(str::to_string)
            .collect()
    };
    let primary = without_setval(db.dump());
    let standby = without_setval(dump_url(&on_standby(db), &[]));
    if primary != standby {
        let only_primary: Vec<&String> = primary
            .iter()
            .filter(|l| !standby.contains(l))
            .take(20)
            .collect();
        let only_standby: Vec<&String> = standby
            .iter()
            .filter(|l| !primary.contains(l))
            .take(20)
            .collect();
        panic!("the standby differs from the primary.\nonly on the primary: {only_primary:#?}\nonly on the standby: {only_standby:#?}");
    }
}

fn on_standby(db: &TestDb) -> String {
    urls().standby.replace("{db}", &db.name)
}

/// The binary pointed at `url`, without progress bars.
fn run_at(url: &str, args: &[&str]) -> (i32, String, String) {
    let out = common::cli_at(url).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A cleanup of `db` running in the background, one row per batch, its stderr lines sent to
/// the returned receiver as they come.
fn spawn_cleanup(db: &TestDb, extra: &[&str]) -> (Child, mpsc::Receiver<String>) {
    let mut args = vec!["cleanup", "--yes", POLICY[0], POLICY[1]];
    args.extend(extra);
    spawn(db, &args)
}

/// The binary on `db` in the background (JSON report, cleanup one row per batch), its stderr
/// lines sent to the returned receiver as they come.
fn spawn(db: &TestDb, args: &[&str]) -> (Child, mpsc::Receiver<String>) {
    let mut child = db
        .command()
        .args(["--format", "json"])
        .args(args)
        .env("RULEIQ_CLEANUP_BATCH_SIZE", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if send.send(line).is_err() {
                break;
            }
        }
    });
    (child, receive)
}

/// Lines from `lines` until one contains `needle` (or the wait runs out); all seen lines.
fn wait_for_line(lines: &mpsc::Receiver<String>, needle: &str, wait: Duration) -> Vec<String> {
    let deadline = Instant::now() + wait;
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) => {
                let found = line.contains(needle);
                seen.push(line);
                if found {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    seen
}

fn wait_exit(child: &mut Child, wait: Duration) -> i32 {
    let deadline = Instant::now() + wait;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("ruleiq-db did not finish within {wait:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Some WAL for the standby to fall behind on, in a table of the test's own.
fn write_filler(db: &TestDb) {
    db.execute(
        "CREATE TABLE IF NOT EXISTS standby_filler (n int); INSERT INTO standby_filler SELECT generate_series(1, 1000)",
    );
}

#[test]
fn status_lists_the_standby_and_how_far_behind_it_is() {
    let _turn = turn();
    let db = TestDb::new_on(&urls().primary);
    wait_replayed(&db);
    let (_, report, stderr) = db.run_json(&["status"]);
    assert_eq!(report["server_role"], "primary", "{stderr}");
    let standbys = report["standbys"].as_array().expect("standbys");
    let ours = standbys
        .iter()
        .find(|s| s["name"] == STANDBY)
        .unwrap_or_else(|| panic!("the standby is not listed: {report:#}"));
    assert_eq!(ours["state"], "streaming");
    for key in [
        "write_lag_ms",
        "flush_lag_ms",
        "replay_lag_ms",
        "replay_lag_bytes",
    ] {
        assert!(ours.get(key).is_some(), "{key} missing: {ours}");
    }

    // Paused, the standby falls behind as soon as the primary writes.
    pause_replay();
    write_filler(&db);
    let started = Instant::now();
    let behind = loop {
        let (_, report, _) = db.run_json(&["status"]);
        let ours = report["standbys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == STANDBY)
            .cloned()
            .unwrap();
        if ours["replay_lag_bytes"].as_u64().unwrap_or(0) > 0 {
            break ours;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "status never showed the paused standby behind: {ours}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(behind["state"], "streaming");
    let (code, table, _) = db.run(&["status"]);
    assert!(
        table.contains(STANDBY) && table.contains("replay lag"),
        "{code}: {table}"
    );
    resume_replay();

    // Connected to the standby itself, status says so.
    wait_replayed(&db);
    let (_, stdout, stderr) = run_at(&on_standby(&db), &["--format", "json", "status"]);
    let report: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    assert_eq!(report["server_role"], "standby", "{report:#}");
    let (_, table, _) = run_at(&on_standby(&db), &["status"]);
    assert!(table.contains("This server is a standby"), "{table}");

    // A role without pg_monitor sees that a standby exists, not how far behind it is: status
    // says what it lacks instead of failing.
    let role = format!("r_{}", &db.name[2..14]);
    db.execute(&format!(
        "CREATE ROLE {role} LOGIN PASSWORD 'pw'; GRANT CONNECT ON DATABASE {} TO {role}",
        db.name
    ));
    let (_, host_and_db) = db.url.split_once('@').unwrap();
    let url = format!("postgres://{role}:pw@{host_and_db}");
    let (_, stdout, stderr) = run_at(&url, &["--format", "json", "status"]);
    let report: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    let listed = report["standbys"].as_array().unwrap();
    assert!(
        !listed.is_empty() && listed.iter().all(|s| s["state"].is_null()),
        "{report:#}"
    );
    let (_, table, _) = run_at(&url, &["status"]);
    assert!(table.contains("needs pg_monitor"), "{table}");
    db.execute(&format!(
        "REVOKE CONNECT ON DATABASE {} FROM {role}; DROP ROLE {role}",
        db.name
    ));
}

#[test]
fn cleanup_waits_for_a_paused_standby_and_finishes_when_it_replays() {
    let _turn = turn();
    let db = TestDb::dirty_legacy_on(&urls().primary);
    wait_replayed(&db);
    pause_replay();
    let (mut child, lines) = spawn_cleanup(&db, &["--max-replica-lag", "0s"]);
    let seen = wait_for_line(&lines, "pausing between batches", Duration::from_secs(60));
    let pause = seen
        .iter()
        .find(|l| l.contains("pausing between batches"))
        .unwrap_or_else(|| panic!("cleanup did not say it waits: {seen:#?}"));
    assert!(
        pause.contains(STANDBY) && pause.contains("behind"),
        "the line names neither the standby nor how far behind it is: {pause}"
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "cleanup ran ahead of the paused standby"
    );

    resume_replay();
    let code = wait_exit(&mut child, Duration::from_secs(120));
    let rest: Vec<String> = lines.try_iter().collect();
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    assert_eq!(code, 0, "{stdout}\n{rest:#?}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["remaining_violations"], 0, "{report:#}");
    assert!(
        rest.iter().any(|l| l.contains("caught up")),
        "cleanup did not say it resumed: {rest:#?}"
    );

    // The standby ends with exactly the primary's data.
    wait_replayed(&db);
    assert_same_data(&db);
}

#[test]
fn migrate_waits_for_the_standby_to_replay_008_before_validating() {
    let _turn = turn();
    let db = TestDb::dirty_legacy_on(&urls().primary);
    let (code, report, stderr) = db.run_json(&["cleanup", "--yes", POLICY[0], POLICY[1]]);
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    wait_replayed(&db);

    pause_replay();
    let (mut child, lines) = spawn(&db, &["migrate"]);
    let seen = wait_for_line(
        &lines,
        "waiting for the standbys to replay V8",
        Duration::from_secs(60),
    );
    assert!(
        seen.last().is_some_and(|l| l.contains(STANDBY)),
        "migrate did not say it waits for the standby: {seen:#?}"
    );
    std::thread::sleep(Duration::from_millis(1000));
    assert!(child.try_wait().unwrap().is_none(), "migrate went on");
    // 008 is committed on the primary, and nothing is validated while the standby lacks it.
    assert_eq!(
        db.scalar_i64("SELECT max(version)::int8 FROM refinery_schema_history"),
        8
    );
    assert_eq!(
        db.scalar_i64(
            "SELECT count(*) FROM pg_constraint WHERE conname LIKE 'chk\\_%' AND convalidated"
        ),
        0,
        "a VALIDATE ran before the standby replayed 008"
    );

    resume_replay();
    let code = wait_exit(&mut child, Duration::from_secs(120));
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    assert_eq!(code, 0, "{stdout}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(
        report["replica_wait_ms"].as_u64().unwrap() >= 1000,
        "{report:#}"
    );
    // Each VALIDATE was waited for too: the standby has them all as soon as migrate returns.
    let valid: i64 = connect_url(&on_standby(&db))
        .query_one(
            "SELECT count(*) FROM pg_constraint WHERE convalidated AND conname = ANY($1)",
            &[&ruleiq_db::catalog::constraints::names()],
        )
        .unwrap()
        .get(0);
    assert_eq!(valid, 6, "the standby has not replayed every VALIDATE yet");
}

#[test]
fn cleanup_stops_with_exit_4_when_the_standby_stays_behind_leaving_whole_batches() {
    let _turn = turn();
    let db = TestDb::dirty_legacy_on(&urls().primary);
    let (_, plan, _) = db.run_json(&["cleanup", "--dry-run", POLICY[0], POLICY[1]]);
    let total = plan["total_rows"].as_i64().unwrap();
    assert!(
        total >= 3,
        "the fixture needs a few rows to repair: {plan:#}"
    );
    wait_replayed(&db);

    // Replay runs until the first batch is in; then the standby stops replaying.
    let (mut child, lines) = spawn_cleanup(
        &db,
        &["--max-replica-lag", "0s", "--max-replica-wait", "2s"],
    );
    let started = Instant::now();
    while common::audit_records(&mut db.client()) == 0 {
        assert!(started.elapsed() < Duration::from_secs(60), "no batch ran");
        std::thread::sleep(Duration::from_millis(5));
    }
    pause_replay();
    let code = wait_exit(&mut child, Duration::from_secs(120));
    let said: Vec<String> = lines.try_iter().collect();
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    assert_eq!(code, 4, "{stdout}\n{said:#?}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let error = report["error"].as_str().unwrap();
    assert!(error.contains(STANDBY), "{error}");
    // The failure names the run and how to undo what it did (cleanup's failure document).
    assert!(
        report["undo"]
            .as_str()
            .is_some_and(|undo| undo.contains("cleanup --undo")),
        "{report:#}"
    );

    // Whole batches: every row changed has its record, and what is left is exactly the rest.
    let done = common::audit_records(&mut db.client());
    assert!(done > 0 && done < total, "{done} of {total} rows repaired");
    let (_, again, _) = db.run_json(&["cleanup", "--dry-run", POLICY[0], POLICY[1]]);
    assert_eq!(
        again["total_rows"].as_i64().unwrap(),
        total - done,
        "{again:#}"
    );

    // Rerunning finishes the job once the standby replays.
    resume_replay();
    let (code, report, stderr) = db.run_json(&["cleanup", "--yes", POLICY[0], POLICY[1]]);
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert_eq!(report["remaining_violations"], 0);
    // The stopped run was marked interrupted when it stopped (and said so then).
    assert_eq!(
        db.scalar_i64(
            "SELECT count(*) FROM ruleiq_audit.cleanup_runs WHERE status = 'interrupted'"
        ),
        1
    );
}

/// Every command that changes the database, as an operator would run it.
const CHANGING_COMMANDS: &[&[&str]] = &[
    &["migrate"],
    &["cleanup", "--yes"],
    &[
        "cleanup",
        "--undo",
        "5f0c8c9e-1111-4222-8333-944455556666",
        "--yes",
    ],
    &["rollback", "--yes"],
    &["baseline"],
    &["check-constraints"],
];

#[test]
fn changing_commands_against_a_standby_are_refused_with_nothing_changed() {
    let _turn = turn();
    let db = TestDb::dirty_legacy_on(&urls().primary);
    wait_replayed(&db);
    let standby = on_standby(&db);
    let before = dump_url(&standby, &[]);
    for args in CHANGING_COMMANDS {
        let (code, stdout, stderr) = run_at(&standby, args);
        assert_eq!(code, 4, "{args:?}: {stdout}\n{stderr}");
        assert!(
            stderr.contains("is a standby") && stderr.contains("nothing was changed"),
            "{args:?} does not name the server's state: {stderr}"
        );
        assert!(
            !stderr.contains("ruleiq-db cleanup") && !stdout.contains("cleanup --dry-run"),
            "{args:?} on a standby advises a cleanup: {stdout}\n{stderr}"
        );
    }
    assert_eq!(dump_url(&standby, &[]), before);

    // Reading is fine: a standby serves check-constraints --dry-run (CI) as the primary does.
    let (on_primary, _, _) = db.run(&["check-constraints", "--dry-run"]);
    let (code, stdout, stderr) = run_at(&standby, &["check-constraints", "--dry-run"]);
    assert_eq!(code, on_primary, "{stdout}\n{stderr}");
}

#[test]
fn a_read_only_database_is_refused_with_nothing_changed() {
    let _turn = turn();
    let db = TestDb::dirty_legacy_on(&urls().primary);
    db.execute(&format!(
        "ALTER DATABASE {} SET default_transaction_read_only = on",
        db.name
    ));
    let before = db.dump();
    for args in CHANGING_COMMANDS {
        let (code, stdout, stderr) = db.run(args);
        assert_eq!(code, 4, "{args:?}: {stdout}\n{stderr}");
        assert!(
            stderr.contains("read-only")
                && stderr.contains("default_transaction_read_only")
                && stderr.contains("ALTER DATABASE"),
            "{args:?} does not name the server's state: {stderr}"
        );
        assert!(
            !stderr.contains("ruleiq-db cleanup"),
            "{args:?} on a read-only server advises a cleanup: {stderr}"
        );
    }
    db.assert_unchanged(&before);
}

#[test]
fn rehearse_with_a_standby_ends_with_the_primary_data_on_it() {
    let out = common::binary()
        .args([
            "--no-progress",
            "--format",
            "json",
            "rehearse",
            "--with-standby",
        ])
        .timeout(Duration::from_secs(600))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
    let standby = &report["standby"];
    assert_eq!(standby["identical"], true, "{standby:#}");
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert!(standby["tables"].as_u64().unwrap() >= 5, "{standby:#}");
    assert!(
        report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["step"] == "standby" && s["ok"] == true),
        "{report:#}"
    );
}

#[test]
fn undo_and_rollback_stop_between_batches_while_the_standby_stays_behind() {
    let _turn = turn();
    let db = TestDb::dirty_legacy_on(&urls().primary);
    // Only CHECK repairs: undo puts back exactly what they changed, foreign keys or not.
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("checks-only.yaml");
    std::fs::write(
        &policy,
        "constraints:\n  chk_employee_count_positive:\n    action: default\n    value: 1\n  fk_assessment_business_profile: skip\n  fk_generated_policy_business_profile: skip\n",
    )
    .unwrap();
    let policy = policy.to_str().unwrap();
    let (code, cleaned, stderr) = db.run_json(&["cleanup", "--yes", "--policy", policy]);
    assert_eq!(code, 0, "{cleaned:#}\n{stderr}");
    let run_id = cleaned["run_id"].as_str().unwrap().to_string();
    wait_replayed(&db);

    // Undo: the standby stops replaying, so the first batch waits for it, then gives up.
    pause_replay();
    write_filler(&db);
    let tight = ["--max-replica-lag", "0s", "--max-replica-wait", "1s"];
    let mut args = vec!["cleanup", "--undo", &run_id, "--yes"];
    args.extend(tight);
    let (code, report, stderr) = db.run_json(&args);
    assert_eq!(code, 4, "{report:#}\n{stderr}");
    let error = report["error"].as_str().unwrap();
    assert!(
        error.contains(STANDBY) && error.contains("--undo"),
        "{error}"
    );
    assert!(stderr.contains("pausing between batches"), "{stderr}");

    // Once it replays, undo again finishes the job.
    resume_replay();
    let (code, report, stderr) = db.run_json(&args);
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert_eq!(
        report["rows_restored"].as_i64(),
        cleaned["total_rows"].as_i64()
    );

    // Rollback waits before each step (a step copies whole columns into the archive in one
    // transaction) and stops at a step boundary.
    pause_replay();
    write_filler(&db);
    let mut args = vec!["rollback", "--to", "5", "--yes"];
    args.extend(tight);
    let (code, report, stderr) = db.run_json(&args);
    assert_eq!(code, 4, "{report:#}\n{stderr}");
    assert!(
        report["error"].as_str().unwrap().contains(STANDBY),
        "{report:#}"
    );
    let version =
        db.scalar_i64("SELECT coalesce(max(version), 0)::int8 FROM refinery_schema_history");
    assert_eq!(
        version, 7,
        "rollback changed the schema while the standby was behind"
    );
    resume_replay();
    let (code, report, stderr) = db.run_json(&args);
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert_eq!(report["to_version"], 5);
    wait_replayed(&db);
    assert_same_data(&db);
}

/// A run that the standby's lag stops before its first batch has changed nothing: it says so
/// and offers no undo (there is nothing to undo).
#[test]
fn cleanup_stopped_before_its_first_batch_offers_no_undo() {
    let _turn = turn();
    let db = TestDb::dirty_legacy_on(&urls().primary);
    wait_replayed(&db);
    pause_replay();
    // The run's own start record is then a write the standby does not replay.
    let (mut child, lines) = spawn_cleanup(
        &db,
        &["--max-replica-lag", "0s", "--max-replica-wait", "1s"],
    );
    let code = wait_exit(&mut child, Duration::from_secs(120));
    let said: Vec<String> = lines.try_iter().collect();
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    resume_replay();
    assert_eq!(code, 4, "{stdout}\n{said:#?}");
    assert_eq!(common::audit_records(&mut db.client()), 0, "no batch ran");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(report["undo"].is_null(), "{report:#}");
    assert!(
        said.iter().any(|l| l.contains("nothing was changed")),
        "{said:#?}"
    );
    assert!(said.iter().all(|l| !l.contains("--undo")), "{said:#?}");
}
