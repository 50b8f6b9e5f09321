//! `rehearse`: the whole repair on a throwaway PostgreSQL, run as a user would.

mod common;
use common::TestDb;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn rehearse(args: &[&str]) -> (i32, Value, String) {
    let out = assert_cmd::Command::cargo_bin("ruleiq-db")
        .unwrap()
        .env_remove("DATABASE_URL")
        .args(["--format", "json", "--no-progress", "rehearse"])
        .args(args)
        .timeout(std::time::Duration::from_secs(300))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    (out.status.code().unwrap_or(-1), report, stderr)
}

fn port_of(report: &Value) -> u16 {
    let server = report["server"].as_str().unwrap();
    server
        .split("127.0.0.1:")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn assert_server_gone(port: u16) {
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the throwaway server on {port} still runs"
    );
}

#[test]
fn rehearse_plays_the_whole_repair_on_the_bundled_fixture() {
    let (code, report, stderr) = rehearse(&[]);
    assert_eq!(code, 0, "{stderr}\n{report:#}");
    assert_eq!(report["ok"], true);
    let steps: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "build version 7",
            "load fixture",
            "check",
            "plan cleanup",
            "cleanup",
            "migrate",
            "status",
            "application queries",
            "rollback",
            "migrate again",
            "final check"
        ]
    );
    assert!(report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["ok"] == true));
    assert_eq!(report["violations_found"], 16);
    // Business profile 2 breaks two constraints: 16 violations live in 15 rows.
    assert_eq!(report["rows_cleaned"], 15);
    assert_eq!(report["violations_left"], 0);
    assert_eq!(report["schema_version"], 8);
    assert_server_gone(port_of(&report));
}

#[test]
fn rehearse_adopts_a_plain_sql_dump_of_production() {
    // Production as another tool left it: version-7 schema, dirty rows, no ruleiq-db history.
    let db = TestDb::dirty_legacy();
    db.execute("DROP TABLE refinery_schema_history; CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY); INSERT INTO alembic_version VALUES ('7a1b2c3d4e5f');");
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("prod.sql");
    std::fs::write(&dump, db.dump()).unwrap();
    let (code, report, stderr) = rehearse(&["--dump", dump.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}\n{report:#}");
    let steps: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps[..2], ["load dump", "adopt"]);
    assert_eq!(report["violations_found"], 16);
    assert_eq!(report["violations_left"], 0);
}

#[test]
fn a_reader_that_goes_away_does_not_leave_a_server_behind() {
    // Whoever reads stderr may stop reading (a closed pipe, a killed pager): the rehearsal
    // goes on, and its cluster is removed all the same.
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("ruleiq-db"))
        .args(["--format", "json", "rehearse"])
        .env_remove("DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stderr.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], true);
    assert_server_gone(port_of(&report));
}

#[test]
fn a_missing_dump_fails_before_any_server_starts() {
    let out = assert_cmd::Command::cargo_bin("ruleiq-db")
        .unwrap()
        .args(["rehearse", "--dump", "/nonexistent/prod.sql"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("/nonexistent/prod.sql"), "{stderr}");
}

#[test]
fn missing_server_binaries_say_how_to_install_them() {
    let out = assert_cmd::Command::cargo_bin("ruleiq-db")
        .unwrap()
        .env("RULEIQ_PG_BINDIR", "/nonexistent")
        .args(["rehearse"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("apt-get install postgresql")
            && stderr.contains("brew install")
            && stderr.contains("--database-url"),
        "{stderr}"
    );
}

#[test]
fn ctrl_c_stops_and_removes_the_throwaway_server() {
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("ruleiq-db"))
        .args(["rehearse"])
        .env_remove("DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let mut started = String::new();
    // Wait until the server is up and the rehearsal is working on it.
    loop {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "rehearse ended early"
        );
        if line.contains("started PostgreSQL") {
            started = line.clone();
        }
        if line.contains("rehearse: migrate --target 7") {
            break;
        }
    }
    let port: u16 = started
        .split("127.0.0.1:")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let dir = std::path::PathBuf::from(started.split("files in ").nth(1).unwrap().trim());
    assert!(dir.exists());
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let status = child.wait().unwrap();
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut stderr, &mut rest);
    assert_eq!(status.code(), Some(130), "{rest}");
    assert!(rest.contains("stopping the throwaway PostgreSQL"), "{rest}");
    assert!(!dir.exists(), "{} was left behind", dir.display());
    assert_server_gone(port);
}
