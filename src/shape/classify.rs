//! Which differences matter, in one place (docs/design.md §4):
//!
//! - **tolerated**: what ruleiq-db never touches — tables, columns, indexes, constraints, enum
//!   types and extensions that none of its migrations creates (Alembic's `alembic_version`, the
//!   application's own tables and indexes), and columns already renamed by hand, which 008's
//!   state-aware renames finish on their own;
//! - **blocking**: what 008, its rollback or the cleanup before it needs — a table 008 changes,
//!   a column 008 renames (either spelling) or that a catalog constraint reads, the primary key
//!   its foreign keys reference, missing or of another type; both spellings of a renamed column;
//!   and objects of a later plain-SQL migration, which `migrate` would fail creating again;
//! - **accepted**: everything else (an index of 006 missing, a nullability or default that
//!   differs, an enum's labels, a table 008 does not touch missing): harmless for the repair, but
//!   a difference from what the history will claim, so `baseline` records it only when the DBA
//!   acknowledges it with `--accept-drift`.
//!
//! A missing table that 008 does not touch is *accepted*, not blocking: 008, its rollback and
//! cleanup never read it; only a rollback below the migration that created it would stop at it
//! (in its own transaction, changing nothing), and the difference says so.

use super::{Object, VersionShapes};
use crate::catalog::constraints::{Rule, CATALOG};
use crate::catalog::migrations;
use crate::catalog::renames::RENAMES;
use crate::catalog::PRIMARY_KEY;
use serde::Serialize;

/// What the comparison found about one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Finding {
    /// The version has it; the database does not.
    Missing,
    /// Both have it, defined differently (a column's type or nullability, an index's
    /// definition, an enum's labels).
    Mismatch,
    /// A legacy column the database already carries under its full name: 008 accepts that.
    RenamedByHand,
    /// A column the version has under its full name, still under the truncated one.
    NotRenamed,
    /// Both the truncated and the full name of a column exist: 008 (or its rollback) cannot
    /// rename it.
    RenameConflict,
    /// The database has it, the version does not.
    Extra,
    /// The database has an object a later plain-SQL migration creates: migrating from this
    /// version would try to create it again and fail.
    Ahead,
}

impl Finding {
    pub fn as_str(self) -> &'static str {
        match self {
            Finding::Missing => "missing",
            Finding::Mismatch => "mismatch",
            Finding::RenamedByHand => "renamed_by_hand",
            Finding::NotRenamed => "not_renamed",
            Finding::RenameConflict => "rename_conflict",
            Finding::Extra => "extra",
            Finding::Ahead => "ahead",
        }
    }
}

/// The three classes of docs/design.md §4 (the report's `kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    Blocking,
    Accepted,
    Tolerated,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Tolerated => "tolerated",
            Class::Accepted => "accepted",
            Class::Blocking => "blocking",
        }
    }
}

/// The class of one difference, and for a blocking one what ruleiq-db needs and why.
pub fn classify(
    object: &Object,
    finding: Finding,
    version: i32,
    shapes: &VersionShapes,
) -> (Class, Option<String>) {
    match finding {
        Finding::RenamedByHand => (Class::Tolerated, None),
        Finding::RenameConflict => (Class::Blocking, None),
        Finding::NotRenamed => (
            Class::Blocking,
            Some(format!(
                "version {version} has it under its full name: recording {version} would claim a rename that did not happen"
            )),
        ),
        Finding::Ahead => (Class::Blocking, ahead_reason(object, version, shapes)),
        // A default or a NOT NULL on one of ruleIQ's columns is not the application's own
        // object: it changes what the history claims about the column.
        Finding::Extra if object.parent_column().is_some() => (Class::Accepted, None),
        Finding::Extra => match shapes.introduced_by(object) {
            None => (Class::Tolerated, None),
            Some(_) => (Class::Accepted, None),
        },
        Finding::Missing | Finding::Mismatch => match needed_by_008(object, finding) {
            Some(need) => (Class::Blocking, Some(need)),
            None => (Class::Accepted, rollback_note(object, finding, shapes)),
        },
    }
}

/// Whether the object 008 (or its rollback, or cleanup) needs is missing or of another type,
/// and if so what it needs it for.
fn needed_by_008(object: &Object, finding: Finding) -> Option<String> {
    match object {
        Object::Table(table) => table_need(table).map(|need| format!("008 needs it: {need}")),
        // A column of another type breaks a rename's or a constraint's expectations; its
        // nullability or default does not (cleanup reads those from the live schema).
        Object::Column { table, name } => column_need(table, name).map(|need| {
            let what = if finding == Finding::Missing {
                "008 needs it"
            } else {
                "008 needs its type as ruleIQ's migrations made it"
            };
            format!("{what}: {need}")
        }),
        Object::Constraint { table, .. } if finding == Finding::Missing => {
            referenced_key(table, object).map(|need| format!("008 needs it: {need}"))
        }
        _ => None,
    }
}

/// What 008 does to a table, if anything.
pub fn table_need(table: &str) -> Option<String> {
    let renamed = RENAMES.iter().filter(|r| r.table == table).count();
    let constraints: Vec<&str> = CATALOG
        .iter()
        .filter(|c| c.table == table)
        .map(|c| c.name)
        .collect();
    let referenced_by: Vec<&str> = CATALOG
        .iter()
        .filter(|c| c.parent() == Some(table))
        .map(|c| c.name)
        .collect();
    let mut needs = Vec::new();
    if renamed > 0 {
        needs.push(format!("it renames {renamed} of its columns"));
    }
    if !constraints.is_empty() {
        needs.push(format!(
            "it adds {} on it, which cleanup repairs rows for beforehand",
            constraints.join(", ")
        ));
    }
    if !referenced_by.is_empty() {
        needs.push(format!(
            "its foreign keys {} reference it",
            referenced_by.join(", ")
        ));
    }
    (!needs.is_empty()).then(|| needs.join("; "))
}

/// What 008 (or cleanup, or 008's rollback) does with a column, if anything.
pub fn column_need(table: &str, column: &str) -> Option<String> {
    if let Some(r) = RENAMES
        .iter()
        .find(|r| r.table == table && (r.legacy == column || r.current == column))
    {
        return Some(format!(
            "it renames {}.{} to {} (and its rollback renames it back), so the column must be there, under either name, with the type ruleIQ's migrations gave it",
            table, r.legacy, r.current
        ));
    }
    let current = RENAMES
        .iter()
        .find(|r| r.table == table && r.legacy == column)
        .map_or(column, |r| r.current);
    let reading: Vec<&str> = CATALOG
        .iter()
        .filter(|c| c.table == table && c.columns().contains(&current))
        .map(|c| c.name)
        .collect();
    if !reading.is_empty() {
        let verb = if reading.len() == 1 { "reads" } else { "read" };
        return Some(format!(
            "{} {verb} it (check-constraints counts and cleanup repairs the rows that break it)",
            reading.join(" and ")
        ));
    }
    let referencing: Vec<&str> = CATALOG
        .iter()
        .filter(|c| {
            matches!(c.rule, Rule::ForeignKey { parent, parent_column, .. }
                if parent == table && parent_column == current)
        })
        .map(|c| c.name)
        .collect();
    if !referencing.is_empty() {
        return Some(format!("{} reference it", referencing.join(" and ")));
    }
    if current == PRIMARY_KEY && CATALOG.iter().any(|c| c.table == table) {
        return Some(format!(
            "cleanup finds, repairs and audits the rows of {table} by their primary key {PRIMARY_KEY}"
        ));
    }
    None
}

/// The primary key a catalog foreign key references: without it the foreign key cannot exist.
fn referenced_key(table: &str, object: &Object) -> Option<String> {
    let referencing: Vec<&str> = CATALOG
        .iter()
        .filter(|c| c.parent() == Some(table))
        .map(|c| c.name)
        .collect();
    let is_primary_key = object.name() == format!("{table}_pkey");
    (is_primary_key && !referencing.is_empty()).then(|| {
        format!(
            "{} reference {table}({PRIMARY_KEY}), and PostgreSQL only lets a foreign key reference a primary key or unique constraint",
            referencing.join(" and ")
        )
    })
}

/// For an accepted missing table or column: what a rollback below its migration would meet.
fn rollback_note(object: &Object, finding: Finding, shapes: &VersionShapes) -> Option<String> {
    if finding != Finding::Missing || !matches!(object, Object::Table(_) | Object::Column { .. }) {
        return None;
    }
    let v = shapes.introduced_by(object)?;
    Some(format!(
        "008 does not need it; a rollback below version {v} would stop at it (changing nothing)"
    ))
}

fn ahead_reason(object: &Object, version: i32, shapes: &VersionShapes) -> Option<String> {
    let v = shapes.introduced_by(object)?;
    let name = migrations::get(v).map_or(String::new(), |m| format!(" {}", m.name()));
    let hint = if version == 0 {
        "adopt the database with `ruleiq-db baseline`".to_string()
    } else {
        format!("if the database is in fact at version {v} or later, adopt it with `ruleiq-db baseline --version N`")
    };
    Some(format!(
        "`migrate` from version {version} runs V{v}{name}, which creates it, and would fail on the one that exists; {hint}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_008_needs_is_named_with_the_reason() {
        assert!(table_need("business_profiles")
            .unwrap()
            .contains("renames 12 of its columns"));
        assert!(table_need("business_profiles")
            .unwrap()
            .contains("fk_assessment_business_profile"));
        assert!(table_need("evidence_items")
            .unwrap()
            .contains("chk_evidence_status"));
        assert_eq!(table_need("chat_messages"), None);
        assert!(column_need("business_profiles", "handles_persona")
            .unwrap()
            .contains("to handles_personal_data"));
        assert!(column_need("business_profiles", "handles_personal_data").is_some());
        assert!(column_need("evidence_items", "approved_by")
            .unwrap()
            .contains("chk_approval_workflow"));
        assert!(column_need("business_profiles", "id")
            .unwrap()
            .contains("fk_generated_policy_business_profile"));
        assert!(column_need("evidence_items", "id")
            .unwrap()
            .contains("primary key"));
        assert_eq!(column_need("evidence_items", "file_type"), None);
        assert_eq!(column_need("chat_messages", "id"), None);
    }

    #[test]
    fn a_missing_primary_key_blocks_only_where_008_references_it() {
        let pkey = |table: &str| Object::Constraint {
            table: table.into(),
            name: format!("{table}_pkey"),
        };
        assert!(needed_by_008(&pkey("business_profiles"), Finding::Missing).is_some());
        assert!(needed_by_008(&pkey("users"), Finding::Missing).is_none());
        assert!(needed_by_008(&pkey("business_profiles"), Finding::Mismatch).is_none());
    }

    #[test]
    fn nullability_and_defaults_never_block() {
        let shapes = VersionShapes::default();
        for object in [
            Object::Nullability {
                table: "business_profiles".into(),
                column: "employee_count".into(),
            },
            Object::Default {
                table: "business_profiles".into(),
                column: "handles_persona".into(),
            },
        ] {
            for finding in [Finding::Missing, Finding::Mismatch] {
                assert_eq!(classify(&object, finding, 7, &shapes).0, Class::Accepted);
            }
        }
        let column = Object::Column {
            table: "business_profiles".into(),
            name: "employee_count".into(),
        };
        assert_eq!(
            classify(&column, Finding::Mismatch, 7, &shapes).0,
            Class::Blocking
        );
    }
}
