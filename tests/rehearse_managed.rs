//! Issue 28: a dump of a managed PostgreSQL (Neon, Supabase, RDS) rehearsed as it is exported
//! (the service's roles created NOLOGIN before loading, a missing extension named before
//! loading), and the application's queries measured before and after 008.
//!
//! The dumps are fixtures/production_v7.sql (production's shape and rows at version 7) with the
//! service's part of a plain pg_dump appended (tests/fixtures/managed/*.sql: owners, grants,
//! default privileges, Supabase's auth schema, RLS policies and COPY data).

use crate::common;
use common::TestDb;
use ruleiq_db::rehearsal::{dump_scan, named_params, queries, roles};
use serde_json::Value;
use std::path::{Path, PathBuf};

const SERVICES: &[&str] = &["neon", "supabase", "rds"];

/// The dump a service exports: production's version 7 with the service's part.
fn managed_dump(service: &str) -> String {
    let production = std::fs::read_to_string("fixtures/production_v7.sql").unwrap();
    let part = std::fs::read_to_string(format!("tests/fixtures/managed/{service}.sql")).unwrap();
    format!("{production}\n{part}")
}

fn write_dump(dir: &Path, service: &str) -> PathBuf {
    let path = dir.join(format!("{service}.sql"));
    std::fs::write(&path, managed_dump(service)).unwrap();
    path
}

fn roles_named(service: &str) -> Vec<&'static str> {
    match service {
        "neon" => vec![
            "cloud_admin",
            "neon_superuser",
            "neondb_owner",
            "ruleiq_Reporting",
        ],
        "supabase" => vec![
            "anon",
            "authenticated",
            "dashboard_user",
            "postgres",
            "service_role",
            "supabase_admin",
            "supabase_auth_admin",
        ],
        "rds" => vec![
            "analytics-team",
            "rds_superuser",
            "rdsadmin",
            "ruleiq_admin",
            "ruleiq_readonly",
        ],
        _ => unreachable!(),
    }
}

#[test]
fn each_managed_dump_names_exactly_its_services_roles() {
    let dir = tempfile::tempdir().unwrap();
    for service in SERVICES {
        let needs = dump_scan::scan(&write_dump(dir.path(), service), &|_| {}).unwrap();
        assert_eq!(needs.roles_to_provide(), roles_named(service), "{service}");
    }
    let supabase = dump_scan::scan(&write_dump(dir.path(), "supabase"), &|_| {}).unwrap();
    let extensions: Vec<&str> = supabase
        .extensions
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(extensions, ["uuid-ossp", "pgcrypto"]);
    assert!(
        supabase.extensions[0].uses[0].starts_with("table auth.users, line "),
        "{:#?}",
        supabase.extensions[0]
    );
}

/// psql -f, as rehearse loads a dump (COPY … FROM stdin needs psql).
fn psql_load(db: &TestDb, path: &Path) -> Result<(), String> {
    let psql = ruleiq_db::sandbox::find_bindir().unwrap().join("psql");
    let out = std::process::Command::new(psql)
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &db.url, "-f"])
        .arg(path)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

const DBA_QUERIES: &str = r#"
- name: sensitive_profiles
  sql: |
    SELECT bp.id, bp.company_name, bp.handles_persona
      FROM business_profiles bp
     WHERE bp.data_sensitivity = ANY(:levels) AND bp.employee_count >= :min_employees
     ORDER BY bp.id
  params:
    levels: [High, Critical, Low, Medium]
    min_employees: 1
- name: sessions_of_a_profile
  sql: SELECT a.id, a.status FROM assessment_sessions a WHERE a.business_profil IN (SELECT id FROM business_profiles WHERE company_name ILIKE :name) ORDER BY a.id
  params:
    name: "%"
"#;

/// Each service's dump: the roles created before loading make it load as it is (owners,
/// grants, policies); then the application's queries and a DBA's, measured at version 7 and
/// at version 8 (008's text applied to the loaded dump), return the same rows with the same
/// plans, and each role granted SELECT on a renamed table can SELECT its compatibility view.
#[test]
fn a_managed_dump_loads_once_its_roles_exist_and_its_queries_compare_before_and_after() {
    let dir = tempfile::tempdir().unwrap();
    let extra = named_params::parse(DBA_QUERIES).unwrap();
    let mut created_here: Vec<String> = Vec::new();
    for service in SERVICES {
        let db = TestDb::new();
        let path = write_dump(dir.path(), service);
        let needs = dump_scan::scan(&path, &|_| {}).unwrap();
        let target = db.target();
        let created = roles::prepare(&target, &needs).unwrap();
        created_here.extend(created.iter().cloned());
        let missing = db.rows(&format!(
            "SELECT r FROM unnest(ARRAY[{}]) r WHERE r NOT IN (SELECT rolname FROM pg_roles)",
            roles_named(service)
                .iter()
                .map(|r| format!("'{r}'"))
                .collect::<Vec<_>>()
                .join(",")
        ));
        assert!(missing.is_empty(), "{service}: {missing:?}");
        for role in &created {
            let login = db.rows(&format!(
                "SELECT rolcanlogin::text AS login FROM pg_roles WHERE rolname = '{role}'"
            ));
            assert_eq!(
                login[0]["login"].as_deref(),
                Some("false"),
                "{role} is NOLOGIN"
            );
        }
        psql_load(&db, &path).unwrap_or_else(|e| panic!("{service}: {e}"));
        let owner = db.rows(
            "SELECT tableowner FROM pg_tables WHERE schemaname = 'public' AND tablename = 'users'",
        );
        let expected_owner = match *service {
            "neon" => "neondb_owner",
            "supabase" => "postgres",
            _ => "ruleiq_admin",
        };
        assert_eq!(owner[0]["tableowner"].as_deref(), Some(expected_owner));
        if *service == "supabase" {
            assert_eq!(
                db.scalar_i64("SELECT count(*) FROM pg_policies WHERE schemaname = 'public'"),
                3
            );
            assert_eq!(db.scalar_i64("SELECT count(*) FROM auth.users"), 1);
        }

        let before = queries::before(&target, &extra).unwrap();
        for (spec, m) in before.specs.iter().zip(&before.measured) {
            assert!(m.is_ok(), "{service} {}: {m:?}", spec.name);
        }
        // Version 8: 008's own text, applied as the migration applies it.
        db.execute(&ruleiq_db::catalog::repair::up_sql());
        let compared = queries::after(&target, &before).unwrap();
        let names: Vec<&str> = compared.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "evidence_search",
                "assessment_dashboard",
                "compliance_overview",
                "sensitive_profiles",
                "sessions_of_a_profile"
            ]
        );
        for c in &compared {
            assert!(c.rows_same, "{service}: {c:#?}");
            assert_eq!(c.problem, None, "{service}: {c:#?}");
            assert!(!c.plan_changed, "{service}: {c:#?}");
            assert_eq!(c.plan_before, c.plan_after);
            assert_eq!(c.plan_before, c.plan_after_compat);
            assert!(c.before_ms.is_some() && c.after_ms.is_some() && c.after_compat_ms.is_some());
        }
        // Parameters from the data: every query finds rows.
        for c in &compared {
            assert!(c.rows.unwrap() > 0, "{service}: {c:#?}");
        }
        assert!(compared[0]
            .plan_before
            .as_deref()
            .unwrap()
            .contains("evidence_items"));
        assert!(compared[0].params["name_pattern"]
            .as_deref()
            .unwrap()
            .starts_with('%'));

        let grants = roles::compat_grants(&mut db.client()).unwrap();
        assert!(
            grants.iter().all(|g| g.view_select),
            "{service}: {grants:#?}"
        );
        let granted: Vec<(&str, &str)> = grants
            .iter()
            .map(|g| (g.role.as_str(), g.view.as_str()))
            .collect();
        match *service {
            "supabase" => {
                for role in ["anon", "authenticated", "service_role"] {
                    assert!(
                        granted.contains(&(role, "ruleiq_compat.business_profiles")),
                        "{grants:#?}"
                    );
                }
                assert!(
                    granted.contains(&("authenticated", "ruleiq_compat.generated_policies")),
                    "{grants:#?}"
                );
            }
            "rds" => {
                assert!(
                    granted.contains(&("ruleiq_readonly", "ruleiq_compat.business_profiles")),
                    "{grants:#?}"
                );
                assert!(
                    granted.contains(&("ruleiq_readonly", "ruleiq_compat.assessment_sessions")),
                    "{grants:#?}"
                );
            }
            _ => {
                assert!(
                    granted.contains(&("ruleiq_Reporting", "ruleiq_compat.business_profiles")),
                    "{grants:#?}"
                );
            }
        }
        drop(db);
    }
    // The roles this test made go again (they are the cluster's, not a database's).
    let mut admin = common::connect_url(&common::url_for("postgres"));
    for role in created_here {
        let _ = admin.batch_execute(&format!("DROP ROLE IF EXISTS \"{role}\""));
    }
}

/// The same, as a DBA runs it: `rehearse --dump` of Supabase's export, with `--queries`.
/// NOTE (branch wt-d): needs the schema-qualified statements of the parallel rewrite; until
/// it lands, `baseline` and later steps fail here with "relation does not exist".
#[test]
fn rehearse_rehearses_a_supabase_dump_as_exported_and_measures_its_queries() {
    let dir = tempfile::tempdir().unwrap();
    let dump = write_dump(dir.path(), "supabase");
    let queries_file = dir.path().join("queries.yaml");
    std::fs::write(&queries_file, DBA_QUERIES).unwrap();
    let run = common::run_bare(
        &[
            "--format",
            "json",
            "--no-progress",
            "rehearse",
            "--dump",
            dump.to_str().unwrap(),
            "--accept-drift",
            "--policy",
            common::EXAMPLE_POLICY,
            "--queries",
            queries_file.to_str().unwrap(),
        ],
        &[],
    );
    let report = run.json();
    assert_eq!(
        report["roles_created"],
        serde_json::json!([
            "anon",
            "authenticated",
            "dashboard_user",
            "service_role",
            "supabase_admin",
            "supabase_auth_admin"
        ]),
        "{report:#}"
    );
    assert!(
        run.stderr
            .contains("created them as NOLOGIN roles: anon, authenticated"),
        "{}",
        run.stderr
    );
    assert_eq!(report["steps"][0]["step"], "prepare dump");
    assert_eq!(report["steps"][1]["outcome"], "ok", "{report:#}");
    assert_eq!(run.code, 0, "{}\n{report:#}", run.stderr);
    let queries = report["queries"].as_array().unwrap();
    assert_eq!(queries.len(), 5);
    for q in queries {
        assert_eq!(q["rows_same"], true, "{q:#}");
        assert_eq!(q["plan_changed"], false, "{q:#}");
        for key in [
            "before_ms",
            "after_ms",
            "after_compat_ms",
            "plan_before",
            "plan_after",
            "slower",
        ] {
            assert!(q.get(key).is_some_and(|v| !v.is_null()), "{key}: {q:#}");
        }
    }
    assert!(report["compat_grants"]
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g["role"] == "authenticated" && g["view_select"] == true));
}

/// An extension the local server lacks is named before loading, with what in the dump uses it.
#[test]
fn an_extension_the_server_lacks_is_named_with_its_uses_before_loading() {
    if ruleiq_db::sandbox::extension_available("vector").unwrap_or(false) {
        eprintln!("skipped: this server has pgvector");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("vector.sql");
    std::fs::write(
        &dump,
        format!(
            "{}\nCREATE SCHEMA extensions;\nCREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA extensions;\nCREATE TABLE public.documents (\n    id uuid NOT NULL,\n    embedding extensions.vector(3)\n);\nALTER TABLE public.documents OWNER TO neondb_owner;\n",
            managed_dump("neon")
        ),
    )
    .unwrap();
    let run = common::run_bare(
        &[
            "--format",
            "json",
            "--no-progress",
            "rehearse",
            "--dump",
            dump.to_str().unwrap(),
        ],
        &[],
    );
    let report: Value = run.json();
    assert_eq!(run.code, 1, "{}\n{report:#}", run.stderr);
    let prepare = &report["steps"][0];
    assert_eq!(prepare["step"], "prepare dump");
    assert_eq!(prepare["outcome"], "failed");
    let summary = prepare["summary"].as_str().unwrap();
    assert!(
        summary.contains("extension vector (CREATE EXTENSION at line "),
        "{summary}"
    );
    assert!(
        summary.contains("table public.documents, line ")
            && summary.contains("embedding extensions.vector(3)"),
        "{summary}"
    );
    assert!(summary.contains("Nothing was loaded"), "{summary}");
    assert_eq!(report["steps"][1]["step"], "load dump");
    assert_eq!(report["steps"][1]["outcome"], "not_run");
}

/// A `:named` parameter without a value is an error naming it, before any server starts.
#[test]
fn a_queries_file_with_a_missing_parameter_fails_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("queries.yaml");
    std::fs::write(
        &file,
        "- name: big_profiles\n  sql: SELECT id FROM business_profiles WHERE employee_count >= :min_employees\n",
    )
    .unwrap();
    let run = common::run_bare(&["rehearse", "--queries", file.to_str().unwrap()], &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains(":min_employees"), "{}", run.stderr);
    assert!(run.stderr.contains("big_profiles"), "{}", run.stderr);
    assert!(!run.stderr.contains("started PostgreSQL"), "{}", run.stderr);
}
