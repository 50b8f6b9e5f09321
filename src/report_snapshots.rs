//! Every report's table rendering and summary, from values built by hand: a change in what
//! people read shows in review as a snapshot diff, without a database.

use crate::catalog::constraints::Kind;
use crate::cleanup::decisions::NeedsDecision;
use crate::cleanup::preview::Example;
use crate::cleanup::report::{Applied, CleanupReport, Preview, Recount, RuleReport, Undecided};
use crate::commands::baseline::BaselineReport;
use crate::commands::check::CheckReport;
use crate::commands::compat::CompatReport;
use crate::commands::migrate::MigrateReport;
use crate::commands::rollback::RollbackReport;
use crate::commands::status::{ConstraintStatus, StatusReport};
use crate::constraints::check::{ConstraintState, Finding};
use crate::constraints::live::LiveSince;
use crate::db::replication::{ServerRole, Standby};
use crate::history::{Entry, State};
use crate::rehearsal::{PolicyChoice, RehearseReport, Step, StepOutcome};
use crate::report::{Details, Failure, MigrationRun, Render, Report, Summary};
use crate::shape::{Class, Difference, Verdict};

/// The report as `--format table` prints it.
fn table<D: Details>(report: &Report<D>) -> String {
    let mut out = Vec::new();
    report.write_human(&mut out).unwrap();
    String::from_utf8(out).unwrap()
}

fn report<D: Details>(command: &'static str, dry_run: bool, version: i32, details: D) -> Report<D> {
    Report {
        command,
        ok: true,
        dry_run,
        schema_version: version,
        details,
    }
}

fn finding(name: &'static str, table: &'static str, violations: u64) -> Finding {
    Finding {
        name,
        table,
        kind: Kind::Check,
        violations,
        live_violations: 0,
        sample: (1..=violations.min(2)).map(|i| format!("id-{i}")).collect(),
        state: ConstraintState::Absent,
        checked: true,
    }
}

fn live_since_cleanup() -> LiveSince {
    LiveSince {
        since: chrono::DateTime::UNIX_EPOCH,
        after_cleanup_run: Some("run-1".into()),
        cleanup_finished_at: Some(chrono::DateTime::UNIX_EPOCH),
        window_s: None,
    }
}

fn difference(object: &str, kind: Class, verdict: Verdict) -> Difference {
    Difference {
        object: object.into(),
        problem: "the version has it; the database does not".into(),
        kind,
        verdict,
        finding: crate::shape::Finding::Missing,
        key: object.into(),
    }
}

fn run(version: i32, name: &str) -> MigrationRun {
    MigrationRun {
        version,
        name: name.into(),
        duration_ms: 12,
    }
}

#[test]
fn check_constraints() {
    let r = report(
        "check-constraints",
        true,
        7,
        CheckReport {
            constraints: vec![
                finding("chk_evidence_status", "evidence_items", 3),
                finding("chk_employee_count_positive", "business_profiles", 0),
            ],
            total_violations: 3,
            total_live_violations: 0,
            live_since: live_since_cleanup(),
            validated: Vec::new(),
            estimate_ms: None,
            estimate: None,
            all_checked: true,
        },
    );
    insta::assert_snapshot!(table(&r));
    assert_eq!(
        r.summary(),
        Summary {
            line: "3 violating rows across 1 constraints".into(),
            violations: Some(3),
            schema_version: Some(7),
            ..Summary::default()
        }
    );
}

#[test]
fn migrate() {
    let r = report(
        "migrate",
        false,
        8,
        MigrateReport {
            from_version: 7,
            to_version: 8,
            applied: vec![run(8, "repair_schema")],
            validated: vec!["chk_evidence_status"],
            ..MigrateReport::default()
        },
    );
    insta::assert_snapshot!(table(&r));
    assert_eq!(
        r.summary().line,
        "version 7 → 8, 1 applied, 1 constraints validated"
    );
}

#[test]
fn rollback() {
    let r = report(
        "rollback",
        false,
        7,
        RollbackReport {
            from_version: 8,
            to_version: 7,
            reverted: vec![run(8, "repair_schema")],
            archived: vec![crate::archive::Archived {
                object: "report_schedules".into(),
                archive: "ruleiq_archive.report_schedules__v4_20261125t101500z".into(),
                rows: 2,
                version: 4,
            }],
            plan: None,
            blockers: None,
        },
    );
    insta::assert_snapshot!(table(&r));
    assert_eq!(r.summary().line, "version 8 → 7, 1 archives");
}

#[test]
fn cleanup_dry_run_with_a_decision_to_make() {
    let r = report(
        "cleanup",
        true,
        7,
        CleanupReport::NeedsDecision(Undecided {
            preview: Preview {
                policy: Some("built-in".into()),
                rules: vec![RuleReport {
                    constraint: "chk_evidence_status".into(),
                    table: "evidence_items".into(),
                    action: "map".into(),
                    rows: 2,
                    cascaded_rows: 0,
                    examples: Some(vec![Example {
                        pk: "id-1".into(),
                        before: serde_json::json!({"status": "Approved"}),
                        after: serde_json::json!({"status": "approved"}),
                        cascaded: false,
                    }]),
                }],
                total_rows: 2,
                notes: Vec::new(),
            },
            needs_decision: vec![NeedsDecision {
                constraint: "chk_employee_count_positive".into(),
                table: "business_profiles".into(),
                column: "employee_count".into(),
                reason: "1 row breaks chk_employee_count_positive".into(),
                options: vec!["default: VALUE".into(), "skip".into()],
            }],
            reason: "needs_decision",
        }),
    );
    insta::assert_snapshot!(table(&r));
    let summary = r.summary();
    assert_eq!(
        summary.line,
        "needs 1 decision(s): chk_employee_count_positive"
    );
    assert_eq!(
        summary.needs_decision[0]["constraint"],
        "chk_employee_count_positive"
    );
}

#[test]
fn cleanup_run() {
    let r = report(
        "cleanup",
        false,
        7,
        CleanupReport::Applied(Applied {
            run_id: "run-1".into(),
            preview: Preview {
                policy: None,
                rules: vec![RuleReport {
                    constraint: "chk_evidence_status".into(),
                    table: "evidence_items".into(),
                    action: "map".into(),
                    rows: 2,
                    cascaded_rows: 1,
                    examples: None,
                }],
                total_rows: 3,
                notes: Vec::new(),
            },
            recount: Recount::default(),
            interrupted_runs: Vec::new(),
        }),
    );
    insta::assert_snapshot!(table(&r));
    assert_eq!(
        (r.summary().line, r.summary().rows),
        ("changed 3 rows, run run-1".to_string(), Some(3))
    );
}

#[test]
fn status() {
    let r = report(
        "status",
        false,
        8,
        StatusReport {
            migrations: vec![
                Entry {
                    version: 7,
                    name: "evidence".into(),
                    state: State::Applied,
                    applied_on: Some("2026-11-25T10:15:00Z".into()),
                },
                Entry {
                    version: 8,
                    name: "repair_schema".into(),
                    state: State::Pending,
                    applied_on: None,
                },
            ],
            constraints: vec![ConstraintStatus {
                name: "chk_evidence_status",
                table: "evidence_items",
                kind: Kind::Check,
                state: ConstraintState::NotValid,
                adopted_from: None,
            }],
            drift: vec![difference(
                "index ix_extra",
                Class::Tolerated,
                Verdict::Tolerated,
            )],
            known_truncations: Vec::new(),
            drift_checked: true,
            health: None,
            server_role: ServerRole::Primary,
            standbys: vec![Standby {
                name: "replica_a".into(),
                state: Some("streaming".into()),
                sync_state: Some("async".into()),
                client_addr: None,
                write_lag_ms: Some(0),
                flush_lag_ms: Some(0),
                replay_lag_ms: Some(5),
                replay_lag_bytes: Some(0),
            }],
            compat: None,
            compat_roles: vec![],
            legacy_names_in_use: None,
            stranded_locks: vec![crate::db::lock::LockHolder {
                pid: 4242,
                application_name: "app-worker".into(),
                client_addr: "10.0.0.7".into(),
                state: "idle".into(),
                state_age_s: 1800.0,
            }],
        },
    );
    insta::assert_snapshot!(table(&r));
    assert_eq!(r.summary().line, "version 8, drift: 1 tolerated");
}

fn baseline_report(error: Option<&str>) -> BaselineReport {
    BaselineReport {
        detected_version: 7,
        evidence: "alembic_version = '007'".into(),
        requested_version: None,
        recorded: if error.is_some() {
            vec![]
        } else {
            (1..=7).collect()
        },
        compared_with: 7,
        differences: vec![
            difference(
                "column users.nickname",
                Class::Accepted,
                Verdict::NotAccepted,
            ),
            difference("index ix_extra", Class::Tolerated, Verdict::Tolerated),
        ],
        accept_drift: false,
        summary: error.unwrap_or("adopted at version 7").into(),
        failure: error.map(|e| Failure {
            error: e.to_string(),
            exit_code: 4,
            reason: Some("drift"),
        }),
    }
}

#[test]
fn baseline() {
    let r = report("baseline", false, 7, baseline_report(None));
    insta::assert_snapshot!(table(&r));
    assert_eq!(
        r.summary().line,
        "adopted at version 7 (alembic_version = '007'); differences: 1 not accepted, 1 tolerated"
    );
    let refused = report(
        "baseline",
        false,
        0,
        baseline_report(Some("1 difference needs --accept-drift\nsecond line")),
    );
    assert_eq!(refused.summary().line, "1 difference needs --accept-drift");
}

#[test]
fn compat() {
    let r = report(
        "compat",
        false,
        8,
        CompatReport {
            schema: Some("ruleiq_compat"),
            views: vec![crate::compat::CompatView {
                view: "business_profiles".into(),
                table: "business_profiles".into(),
                legacy_columns: vec!["handles_persona".into()],
                missing_columns: Vec::new(),
            }],
            created: true,
            connection_option: Some("options=-csearch_path=ruleiq_compat,public"),
            summary: "created schema ruleiq_compat with 1 view".into(),
            ..CompatReport::default()
        },
    );
    insta::assert_snapshot!(table(&r));
    assert_eq!(r.summary().line, "created schema ruleiq_compat with 1 view");
}

fn step(name: &str, outcome: StepOutcome, summary: &str) -> Step {
    Step {
        step: name.into(),
        command: format!("ruleiq-db {name}"),
        outcome,
        ok: outcome == StepOutcome::Ok,
        exit_code: match outcome {
            StepOutcome::Ok => Some(0),
            StepOutcome::Failed => Some(1),
            StepOutcome::NotRun => None,
        },
        duration_ms: 40,
        summary: summary.into(),
        report: serde_json::Value::Null,
        read: Summary::default(),
    }
}

#[test]
fn rehearse() {
    let r = report(
        "rehearse",
        false,
        8,
        RehearseReport {
            source: "bundled fixture (fixtures/legacy_dirty.sql)".into(),
            server: "throwaway PostgreSQL 15 on 127.0.0.1:5433".into(),
            steps: vec![
                step(
                    "check",
                    StepOutcome::Ok,
                    "3 violating rows across 1 constraints",
                ),
                step("cleanup", StepOutcome::Failed, "cannot connect"),
                step(
                    "migrate",
                    StepOutcome::NotRun,
                    "not run (an earlier step failed)",
                ),
            ],
            policy: PolicyChoice {
                source: "built-in",
                file: None,
                reason: "cleanup runs with the built-in policy".into(),
            },
            needs_decision: Vec::new(),
            violations_found: Some(3),
            rows_cleaned: None,
            violations_left: None,
            standby: None,
            roles_created: None,
            queries: Vec::new(),
            compat_grants: Vec::new(),
        },
    );
    insta::assert_snapshot!(table(&r));
    assert_eq!(r.summary().line, "rehearse");
}
