//! Live violations (docs/design.md §1.2 point 4): violating rows the application wrote since the
//! last completed cleanup run, or within --live-window. The real binary against a real
//! PostgreSQL; every check is read-only, which a dump comparison shows.

use crate::common;
use common::TestDb;
use serde_json::Value;
use std::collections::BTreeMap;

const EXAMPLE: &str = "fixtures/cleanup-policy.example.yaml";

/// The live counts the header of fixtures/legacy_dirty.sql gives.
const FIXTURE_LIVE: &[(&str, u64)] = &[
    ("chk_evidence_status", 2),
    ("chk_employee_count_positive", 0),
    ("chk_data_sensitivity", 2),
    ("chk_approval_workflow", 1),
    ("fk_assessment_business_profile", 0),
    ("fk_generated_policy_business_profile", 0),
];

const MEANING: &str =
    "the application still writes these values, and once 008 is in place those writes will fail";

/// check-constraints --dry-run with `extra` flags: (exit code, report, live per constraint).
fn check(db: &TestDb, extra: &[&str]) -> (i32, Value, BTreeMap<String, u64>) {
    let mut args = vec!["check-constraints", "--dry-run"];
    args.extend_from_slice(extra);
    let (code, report, stderr) = db.run_json(&args);
    let live = report["constraints"]
        .as_array()
        .unwrap_or_else(|| panic!("no constraints in {report:#}\n{stderr}"))
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["live_violations"].as_u64().unwrap(),
            )
        })
        .collect();
    (code, report, live)
}

fn expected(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(n, c)| (n.to_string(), *c)).collect()
}

/// Makes profile `id` break chk_data_sensitivity as the application does, at `updated_at`.
/// One place to adapt if the shape of business_profiles changes.
fn write_moderate(db: &TestDb, id: &str, updated_at: &str) {
    db.execute(&format!(
        "UPDATE business_profiles SET data_sensitivity = 'Moderate', updated_at = {updated_at}
          WHERE id = '{id}'"
    ));
}

#[test]
fn the_fixture_has_its_known_live_violations_and_the_reports_say_what_they_mean() {
    let db = TestDb::dirty_legacy();
    let before = db.dump();

    let (code, report, live) = check(&db, &[]);
    assert_eq!(code, 3);
    assert_eq!(live, expected(FIXTURE_LIVE));
    assert_eq!(report["total_live_violations"], 5);
    assert_eq!(report["live_since"]["window_s"], 7 * 86_400);

    let (code, stdout, _) = db.run(&["check-constraints", "--dry-run"]);
    assert_eq!(code, 3);
    assert!(stdout.contains("live"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "5 violating rows were written in the last 7 days: {MEANING}"
        )),
        "{stdout}"
    );

    // migrate's preflight counts them too, and its refusal says the same.
    let (code, report, stderr) = db.run_json(&["migrate", "--dry-run"]);
    assert_eq!(code, 3, "{stderr}");
    assert_eq!(report["preflight"]["total_live_violations"], 5);
    let blocked: BTreeMap<String, u64> = report["blocked_by"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["live_violations"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(blocked["chk_evidence_status"], 2);
    let (code, stdout, stderr) = db.run(&["migrate"]);
    assert_eq!(code, 3);
    assert!(stdout.contains(MEANING), "{stdout}");
    assert!(stderr.contains(MEANING), "{stderr}");

    db.assert_unchanged(&before);
}

#[test]
fn after_a_completed_cleanup_only_rows_written_since_are_live() {
    let db = TestDb::dirty_legacy();
    let (code, _, stderr) = db.run(&["--yes", "cleanup", "--policy", EXAMPLE]);
    assert_eq!(code, 0, "{stderr}");
    let run_id: String = db
        .client()
        .query_one(
            "SELECT run_id::text FROM ruleiq_audit.cleanup_runs WHERE status = 'finished'",
            &[],
        )
        .unwrap()
        .get(0);

    let before = db.dump();
    let (code, report, live) = check(&db, &[]);
    assert_eq!(code, 0, "{report:#}");
    assert!(live.values().all(|n| *n == 0), "{live:?}");
    assert_eq!(report["total_live_violations"], 0);
    assert_eq!(report["live_since"]["after_cleanup_run"], run_id.as_str());
    // "Next" says migrate can enforce only when every constraint was checked.
    let (_, stdout, _) = db.run(&["check-constraints", "--dry-run"]);
    assert!(
        stdout.contains("`ruleiq-db migrate` can enforce"),
        "{stdout}"
    );
    let (_, stdout, _) = db.run(&[
        "check-constraints",
        "--dry-run",
        "--constraint",
        "chk_evidence_status",
    ]);
    assert!(!stdout.contains("can enforce"), "{stdout}");
    db.assert_unchanged(&before);

    // The application writes 'Moderate' again: a new violating row, live.
    write_moderate(&db, "20000000-0000-0000-0000-000000000001", "now()");
    // And an old-looking one (a backdated import): violating, not live, since it was written
    // before the cleanup as far as its timestamps say.
    write_moderate(
        &db,
        "20000000-0000-0000-0000-000000000004",
        "'2024-05-01 00:00:00'",
    );
    let before = db.dump();
    let (code, report, live) = check(&db, &[]);
    assert_eq!(code, 3);
    assert_eq!(live["chk_data_sensitivity"], 1, "{report:#}");
    assert_eq!(report["total_violations"], 2);
    assert_eq!(report["total_live_violations"], 1);
    // The window does not apply once a cleanup run has completed.
    let (_, report, _) = check(&db, &["--live-window", "0s"]);
    assert_eq!(report["total_live_violations"], 1);
    db.assert_unchanged(&before);
}

#[test]
fn the_live_window_takes_any_duration_zero_included() {
    let db = TestDb::dirty_legacy();
    let before = db.dump();
    let total = |extra: &[&str]| {
        let (code, report, _) = check(&db, extra);
        assert_eq!(code, 3, "{extra:?}: {report:#}");
        (
            report["total_live_violations"].as_u64().unwrap(),
            report["total_violations"].as_u64().unwrap(),
        )
    };
    assert_eq!(total(&["--live-window", "0s"]).0, 0);
    assert_eq!(total(&["--live-window", "1h"]).0, 0);
    assert_eq!(total(&["--live-window", "2d"]).0, 5);
    assert_eq!(total(&["--live-window", "172800"]).0, 5);
    // Long enough to reach back to 2024: every violating row is live.
    let (live, all) = total(&["--live-window", "36500d"]);
    assert_eq!(live, all);

    let (code, _, stderr) = db.run(&["check-constraints", "--dry-run", "--live-window", "soon"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--live-window"), "{stderr}");
    db.assert_unchanged(&before);
}

/// A foreign key's live flag is read for the rows its anti-join keeps (by their location, not
/// from the scan under the join): the orphan the application touched yesterday counts as live,
/// the one untouched since 2024 does not, and the window still moves the line.
#[test]
fn an_orphan_the_application_wrote_recently_is_live_and_its_old_sibling_is_not() {
    let db = TestDb::dirty_legacy();
    // Not the link itself, so no foreign-key trigger looks at the missing profile.
    db.execute(
        "UPDATE assessment_sessions SET updated_at = now() - interval '1 day'
          WHERE id = '30000000-0000-0000-0000-000000000003'",
    );
    let before = db.dump();
    let (code, report, live) = check(&db, &[]);
    assert_eq!(code, 3, "{report:#}");
    assert_eq!(live["fk_assessment_business_profile"], 1, "{report:#}");
    assert_eq!(
        live["fk_generated_policy_business_profile"], 0,
        "{report:#}"
    );
    let finding = report["constraints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "fk_assessment_business_profile")
        .unwrap();
    assert_eq!(finding["violations"], 2, "{finding:#}");
    let (_, _, live) = check(&db, &["--live-window", "1h"]);
    assert_eq!(live["fk_assessment_business_profile"], 0);
    db.assert_unchanged(&before);
}
