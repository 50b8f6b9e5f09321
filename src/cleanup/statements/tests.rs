//! The statements the built-in and the example policy generate, at production's version-7
//! spelling (truncated column names such as `business_profil`) and at version 8's (the full
//! names 008 renames them to), without a database: the columns come from
//! tests/expected/legacy_v7.schema, production's catalog as legacy-schema.md describes it.
//! A change in generated SQL shows up in these snapshots.

use crate::catalog::renames::RENAMES;
use crate::cleanup::plan::{self, TablePlan};
use crate::cleanup::policy::Policy;
use crate::cleanup::policy_file;
use crate::constraints::check::DatabaseSpelling;
use crate::db::introspect::ColumnType;

const LEGACY_V7: &str = include_str!("../../../tests/expected/legacy_v7.schema");
const EXAMPLE_POLICY: &str = include_str!("../../../fixtures/cleanup-policy.example.yaml");

#[derive(Clone, Copy)]
enum Version {
    /// Production: the legacy migrations' truncated names.
    V7,
    /// After 008: every renamed column under its full name.
    V8,
}

/// Every table of production at `version`: its columns (as `column T.C TYPE null|not null`
/// lines give them) with their types, with and without modifier.
fn production(version: Version) -> Vec<(String, Vec<ColumnType>)> {
    let mut tables: Vec<(String, Vec<ColumnType>)> = Vec::new();
    for line in LEGACY_V7.lines() {
        let Some(rest) = line.strip_prefix("column ") else {
            continue;
        };
        let (qualified, typed) = rest.split_once(' ').expect("column T.C TYPE NULLABILITY");
        let (table, column) = qualified.split_once('.').expect("T.C");
        let sql_type = typed
            .strip_suffix(" not null")
            .or_else(|| typed.strip_suffix(" null"))
            .expect("nullability");
        let name = match version {
            Version::V7 => column.to_string(),
            Version::V8 => RENAMES
                .iter()
                .find(|r| r.table == table && r.legacy == column)
                .map_or(column, |r| r.current)
                .to_string(),
        };
        let base_type = match sql_type.split_once('(') {
            Some((before, after)) => {
                let after = after.split_once(')').map_or("", |(_, tail)| tail);
                format!("{before}{after}")
            }
            None => sql_type.to_string(),
        };
        let column = ColumnType {
            name,
            sql_type: sql_type.to_string(),
            base_type,
        };
        match tables.iter_mut().find(|(t, _)| t == table) {
            Some((_, columns)) => columns.push(column),
            None => tables.push((table.to_string(), vec![column])),
        }
    }
    tables
}

fn plans(policy: &Policy, version: Version) -> Vec<TablePlan> {
    let tables = production(version);
    let spelling = DatabaseSpelling::from_columns(tables.iter().map(|(table, columns)| {
        (
            table.as_str(),
            columns.iter().map(|c| c.name.clone()).collect(),
        )
    }));
    let types = plan::planned_tables(policy, &spelling)
        .into_iter()
        .map(|table| {
            let columns = tables
                .iter()
                .find(|(t, _)| t == table)
                .map(|(_, columns)| columns.clone())
                .expect("a planned table exists");
            (table, columns)
        })
        .collect();
    plan::plan_all(policy, &spelling, types).expect("production's tables plan")
}

/// Every statement of every plan, under headers saying which.
fn statements(policy: &Policy, version: Version) -> String {
    let mut out = String::new();
    for plan in plans(policy, version) {
        let table = plan.table;
        let mut section = |what: &str, sql: Option<String>| {
            out.push_str(&format!("-- {table}: {what}\n"));
            out.push_str(sql.as_deref().unwrap_or("(none)"));
            out.push_str("\n\n");
        };
        section(
            "bound values",
            Some(format!(
                "{:?}",
                plan.bound_values().cloned().unwrap_or_default()
            )),
        );
        section("preview (dry run)", Some(plan.preview_sql(None)));
        section(
            "preview (run, its rows: keys for the key table)",
            Some(plan.preview_rows_sql(None)),
        );
        section("key table", Some(plan.create_keys_table_sql()));
        section("key table chunk", Some(plan.insert_keys_sql()));
        section("key table index", Some(plan.index_keys_table_sql()));
        section("delete batch", plan.delete_batch_sql());
        section("update batch", plan.update_batch_sql());
    }
    out
}

fn example_policy() -> Policy {
    let overrides = policy_file::parse(EXAMPLE_POLICY).expect("the example policy is valid");
    Policy::with_overrides("fixtures/cleanup-policy.example.yaml".into(), overrides)
}

#[test]
fn the_builtin_policy_at_version_7() {
    insta::assert_snapshot!(statements(&Policy::builtin(), Version::V7));
}

#[test]
fn the_builtin_policy_at_version_8() {
    insta::assert_snapshot!(statements(&Policy::builtin(), Version::V8));
}

#[test]
fn the_example_policy_at_version_7() {
    insta::assert_snapshot!(statements(&example_policy(), Version::V7));
}

#[test]
fn the_example_policy_at_version_8() {
    insta::assert_snapshot!(statements(&example_policy(), Version::V8));
}

#[test]
fn version_7_reads_the_truncated_link_and_version_8_its_full_name() {
    let at = |version| statements(&Policy::builtin(), version);
    let (v7, v8) = (at(Version::V7), at(Version::V8));
    assert!(v7.contains("\"business_profil\""), "{v7}");
    assert!(v8.contains("\"business_profile_id\""), "{v8}");
    assert!(!v8.contains("\"business_profil\""), "{v8}");
}

#[test]
fn the_privileges_a_batch_needs_are_read_from_its_statement() {
    use super::{privileges_needed, Needs};
    let plans = plans(&example_policy(), Version::V8);
    let generated = plans
        .iter()
        .find(|p| p.table == "generated_policies")
        .unwrap();
    let table = "public.\"generated_policies\"".to_string();
    let audit = crate::catalog::audit::CHANGES.to_string();
    // A delete locks its rows first: FOR UPDATE needs UPDATE, which a hand-written list missed.
    assert_eq!(
        privileges_needed(&generated.delete_batch_sql().unwrap()),
        vec![
            Needs::Lock(table.clone()),
            Needs::Delete(table.clone()),
            Needs::Insert(audit.clone())
        ]
    );
    let evidence = plans.iter().find(|p| p.table == "evidence_items").unwrap();
    let table = "public.\"evidence_items\"".to_string();
    assert_eq!(
        privileges_needed(&evidence.update_batch_sql().unwrap()),
        vec![
            Needs::Lock(table.clone()),
            Needs::Update(table),
            Needs::Insert(audit)
        ]
    );
}
