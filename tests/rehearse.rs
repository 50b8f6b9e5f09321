//! `rehearse`: the whole repair on a throwaway PostgreSQL, run as a user would.

use crate::common;
use common::{latest, TestDb};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::Stdio;

fn rehearse(args: &[&str]) -> (i32, Value, String) {
    let mut all = vec!["--format", "json", "--no-progress", "rehearse"];
    all.extend_from_slice(args);
    let run = common::run_bare(&all, &[]);
    (run.code, run.json(), run.stderr)
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

fn steps(report: &Value) -> Vec<(String, String)> {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap().to_string(),
                s["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Production made the way production was (no ruleiq-db history, alembic_version '007'),
/// with rows the application writes that break 008's constraints. The dirt is made by
/// updating production's clean rows, so it needs no column beyond the constraints' own.
fn dirty_production() -> TestDb {
    let db = TestDb::new();
    db.execute_file("fixtures/production_v7.sql");
    db.execute(
        "UPDATE evidence_items SET status = 'pending_review' WHERE status = 'collected';
         UPDATE business_profiles SET data_sensitivity = 'Moderate' WHERE data_sensitivity = 'Low';
         UPDATE business_profiles SET employee_count = 0 WHERE data_sensitivity = 'Critical';",
    );
    db
}

#[test]
fn rehearse_plays_the_whole_repair_on_the_bundled_fixture_with_the_example_policy() {
    let (code, report, stderr) = rehearse(&[]);
    assert_eq!(code, 0, "{stderr}\n{report:#}");
    assert_eq!(report["ok"], true);
    let names: Vec<String> = steps(&report).into_iter().map(|(s, _)| s).collect();
    assert_eq!(
        names,
        [
            "build version 7",
            "load fixture",
            "check",
            "plan cleanup",
            "cleanup",
            "measure before",
            "pooled rollout",
            "pooled application before 008",
            "migrate",
            "pooled application after 008",
            "status",
            "application queries",
            "measure after",
            "rollback",
            "migrate again",
            "final check"
        ]
    );
    assert!(steps(&report).iter().all(|(_, outcome)| outcome == "ok"));
    // The rollout through a pooler ran (CI installs pgbouncer), old and new names, zero errors.
    if ruleiq_db::rehearsal::pooled_rollout::pgbouncer_binary().is_some() {
        for name in [
            "pooled application before 008",
            "pooled application after 008",
        ] {
            let step = report["steps"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["step"] == name)
                .unwrap();
            let summary = step["summary"].as_str().unwrap();
            assert!(summary.contains("none failed"), "{name}: {summary}");
        }
    }
    // Production's NOT NULL columns need decisions: the rehearsal says it used the example.
    assert_eq!(report["policy"]["source"], "bundled example");
    assert_eq!(
        report["policy"]["file"],
        "fixtures/cleanup-policy.example.yaml"
    );
    let reason = report["policy"]["reason"].as_str().unwrap();
    assert!(reason.contains("bundled example policy"), "{reason}");
    assert!(stderr.contains("bundled example policy"), "{stderr}");
    let cleanup = &report["steps"][4];
    assert!(
        cleanup["command"]
            .as_str()
            .unwrap()
            .ends_with("cleanup --yes --policy fixtures/cleanup-policy.example.yaml"),
        "{cleanup:#}"
    );
    let found = report["violations_found"].as_u64().unwrap();
    assert_eq!(found, report["steps"][2]["report"]["total_violations"]);
    assert!(found > 0);
    assert!(report["rows_cleaned"].as_u64().unwrap() > 0);
    assert_eq!(report["violations_left"], 0);
    assert_eq!(report["schema_version"], latest());
    assert_server_gone(port_of(&report));
}

#[test]
fn rehearse_adopts_a_plain_sql_dump_of_production_through_baseline() {
    let db = dirty_production();
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("prod.sql");
    std::fs::write(&dump, db.dump()).unwrap();
    let policy = "fixtures/cleanup-policy.example.yaml";
    let (code, report, stderr) = rehearse(&["--dump", dump.to_str().unwrap(), "--policy", policy]);
    assert_eq!(code, 0, "{stderr}\n{report:#}");
    let names: Vec<String> = steps(&report).into_iter().map(|(s, _)| s).collect();
    assert_eq!(names[..4], ["prepare dump", "load dump", "adopt", "check"]);
    let adopt = &report["steps"][2];
    assert_eq!(adopt["report"]["evidence"], "alembic_version = '007'");
    assert_eq!(
        adopt["report"]["recorded"],
        serde_json::json!([1, 2, 3, 4, 5, 6, 7])
    );
    assert!(
        adopt["summary"]
            .as_str()
            .unwrap()
            .contains("alembic_version = '007'"),
        "{adopt:#}"
    );
    assert_eq!(report["policy"]["source"], "given");
    assert!(report["steps"][5]["command"]
        .as_str()
        .unwrap()
        .ends_with(&format!("cleanup --yes --policy {policy}")));
    assert_eq!(report["violations_found"], 3);
    assert_eq!(report["rows_cleaned"], 3);
    assert_eq!(report["violations_left"], 0);
}

#[test]
fn a_rehearse_whose_cleanup_fails_shows_the_later_steps_as_not_run() {
    // A policy that writes NULL into production's NOT NULL employee_count: cleanup cannot
    // carry it out (whether its dry run or its real run finds that out).
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("null-employees.yaml");
    std::fs::write(
        &policy,
        "constraints:\n  chk_employee_count_positive: set_null\n",
    )
    .unwrap();
    let out = common::binary()
        .args(["--no-progress", "rehearse", "--policy"])
        .arg(&policy)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let outcome = |step: &str| -> String {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("│ {step} ")))
            .unwrap_or_else(|| panic!("no row for {step}:\n{stdout}"));
        line.split('┆').nth(2).unwrap().trim().to_string()
    };
    assert_eq!(outcome("check"), "ok", "{stdout}");
    let failed = if outcome("plan cleanup").starts_with("FAILED") {
        "plan cleanup"
    } else {
        "cleanup"
    };
    assert!(outcome(failed).starts_with("FAILED"), "{stdout}");
    let later = [
        "migrate",
        "status",
        "rollback",
        "migrate again",
        "final check",
    ];
    for step in later {
        assert_eq!(outcome(step), "not run", "{step}:\n{stdout}");
    }
    if failed == "plan cleanup" {
        assert_eq!(outcome("cleanup"), "not run", "{stdout}");
    }
    let totals = stdout
        .lines()
        .find(|l| l.starts_with("violations found:"))
        .unwrap();
    assert!(
        totals.ends_with("rows cleaned: failed, violations left: not run")
            || totals.ends_with("rows cleaned: not run, violations left: not run"),
        "{totals}"
    );
    assert!(!totals.contains("violations left: 0"), "{totals}");
    assert!(stderr.contains("rehearse stopped at"), "{stderr}");
}

#[test]
fn a_reader_that_goes_away_does_not_leave_a_server_behind() {
    // Whoever reads stderr may stop reading (a closed pipe, a killed pager): the rehearsal
    // goes on, and its cluster is removed all the same.
    let mut child = common::binary_process()
        .args(["--format", "json", "rehearse"])
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
    let out = common::binary()
        .args(["rehearse", "--dump", "/nonexistent/prod.sql"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("/nonexistent/prod.sql"), "{stderr}");
}

#[test]
fn missing_server_binaries_say_how_to_install_them() {
    let out = common::binary()
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
    let mut child = common::binary_process()
        .args(["rehearse"])
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
