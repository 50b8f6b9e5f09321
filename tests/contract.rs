//! The report contract of docs/design.md §2 across every command, and the confirmation prompt on a
//! real terminal.

use crate::common;
use common::{TestDb, EXAMPLE_POLICY};
use serde_json::Value;

/// The keys every report has, with their types.
fn assert_envelope(report: &Value, command: &str, dry_run: bool) {
    assert_eq!(report["command"], command, "{report:#}");
    assert!(report["ok"].is_boolean(), "{command}: ok");
    assert_eq!(report["dry_run"], dry_run, "{command}: dry_run");
    assert!(
        report["schema_version"].is_i64(),
        "{command}: schema_version"
    );
}

fn keys(report: &Value) -> Vec<&str> {
    report
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect()
}

#[test]
fn every_command_reports_the_contract_keys_in_json_and_yaml() {
    let db = TestDb::dirty_legacy();
    let cases: [(&[&str], &str, bool, &[&str]); 8] = [
        (
            &["status"],
            "status",
            false,
            &[
                "migrations",
                "constraints",
                "drift",
                "standbys",
                "server_role",
            ],
        ),
        (
            &["check-constraints", "--dry-run"],
            "check-constraints",
            true,
            &["constraints", "total_violations"],
        ),
        (
            &["migrate", "--dry-run"],
            "migrate",
            true,
            &[
                "from_version",
                "to_version",
                "applied",
                "blocked_by",
                "validated",
            ],
        ),
        (
            &["cleanup", "--dry-run", "--policy", EXAMPLE_POLICY],
            "cleanup",
            true,
            &["rules", "total_rows"],
        ),
        (
            &["--yes", "cleanup", "--policy", EXAMPLE_POLICY],
            "cleanup",
            false,
            &["run_id", "rules", "total_rows"],
        ),
        (
            &["migrate"],
            "migrate",
            false,
            &[
                "from_version",
                "to_version",
                "applied",
                "validated",
                "replica_wait_ms",
            ],
        ),
        (
            &["rollback", "--dry-run"],
            "rollback",
            true,
            &["from_version", "to_version", "reverted", "archived"],
        ),
        (
            &["--yes", "rollback"],
            "rollback",
            false,
            &["from_version", "to_version", "reverted", "archived"],
        ),
    ];
    for (args, command, dry_run, required) in cases {
        let (code, report, stderr) = db.run_json(args);
        assert!(code == 0 || code == 3, "{args:?}: exit {code}: {stderr}");
        assert_envelope(&report, command, dry_run);
        for key in required {
            assert!(
                keys(&report).contains(key),
                "{args:?} lacks {key}: {:?}",
                keys(&report)
            );
        }
    }
    // The same report in YAML, for a read-only command: one document, same content.
    let (_, json, _) = db.run_json(&["status"]);
    let (_, yaml, _) = db.run(&["--format", "yaml", "status"]);
    let yaml: Value = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(json["migrations"], yaml["migrations"]);
    assert_eq!(json["constraints"], yaml["constraints"]);

    let fresh = TestDb::new();
    fresh.execute("CREATE TABLE users (id uuid PRIMARY KEY, email varchar(255) UNIQUE NOT NULL)");
    let (_, report, _) = fresh.run_json(&["baseline"]);
    assert_envelope(&report, "baseline", false);
    assert!(keys(&report).contains(&"detected_version") && keys(&report).contains(&"recorded"));
}

#[test]
fn failures_still_give_json_readers_one_document() {
    let db = TestDb::new();
    let (code, report, _) =
        db.run_json(&["check-constraints", "--dry-run", "--constraint", "nope"]);
    assert_eq!(code, 4);
    assert_eq!(report["ok"], false);
    assert_eq!(report["exit_code"], 4);
    assert!(report["error"].as_str().unwrap().contains("nope"));
}

#[test]
fn on_a_terminal_rollback_asks_and_only_yes_goes_ahead() {
    let db = TestDb::new();
    db.migrate_to(8);
    let (code, screen) = db.on_a_terminal("rollback", "n\n");
    assert_eq!(code, 4, "{screen}");
    assert!(screen.contains("[y/N]"), "{screen}");
    assert_eq!(
        db.scalar_i64("SELECT max(version)::bigint FROM refinery_schema_history"),
        8
    );

    let (code, screen) = db.on_a_terminal("rollback", "y\n");
    assert_eq!(code, 0, "{screen}");
    assert_eq!(
        db.scalar_i64("SELECT max(version)::bigint FROM refinery_schema_history"),
        7
    );
}
