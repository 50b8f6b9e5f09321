//! How a live schema differs from the shape of a version, and which differences stop the
//! database from being that version.

use super::{Object, Shape, VersionShapes};
use crate::catalog::migrations::{self, REPAIR_VERSION};
use crate::catalog::renames::{legacy_name, RENAMES};
use serde::Serialize;

/// What kind of difference; only `renamed_by_hand` and `extra` leave the version matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The version has it; the database does not.
    Missing,
    /// Both have it, defined differently (a column's type, an index's definition).
    Mismatch,
    /// A legacy column the database already carries under its full name: 008 accepts that.
    RenamedByHand,
    /// A column the version has under its full name, still under the truncated one.
    NotRenamed,
    /// Both the truncated and the full name of a column exist: 008 cannot rename it.
    RenameConflict,
    /// The database has it, the version does not; left alone.
    Extra,
    /// The database has an object a later migration creates: migrating from this version
    /// would try to create it again and fail.
    Ahead,
}

impl Kind {
    /// Whether the database still has the version's shape despite this difference.
    pub fn allowed(self) -> bool {
        matches!(self, Kind::RenamedByHand | Kind::Extra)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Missing => "missing",
            Kind::Mismatch => "mismatch",
            Kind::RenamedByHand => "renamed_by_hand",
            Kind::NotRenamed => "not_renamed",
            Kind::RenameConflict => "rename_conflict",
            Kind::Extra => "extra",
            Kind::Ahead => "ahead",
        }
    }
}

/// One difference between the database and a version's shape.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Difference {
    pub object: String,
    pub problem: String,
    pub kind: Kind,
    /// True when the version still matches despite it (extra objects, hand renames).
    pub allowed: bool,
}

/// Every difference between `live` and the shape of `version`: stopping ones first, then
/// allowed ones, each group in object order. A missing or extra table stands for its columns,
/// indexes and constraints, which are not listed again.
pub fn compare(shapes: &VersionShapes, version: i32, live: &Shape) -> Vec<Difference> {
    let Some(expected) = shapes.shape(version) else {
        return vec![Difference {
            object: "schema".into(),
            problem: format!("version {version} is not one of the embedded migrations"),
            kind: Kind::Missing,
            allowed: false,
        }];
    };
    let mut differences = Vec::new();
    let mut push = |object: &Object, kind: Kind, problem: String| {
        differences.push(Difference {
            object: object.to_string(),
            problem,
            kind,
            allowed: kind.allowed(),
        });
    };
    for (object, wanted) in &expected.objects {
        if object
            .parent_table()
            .is_some_and(|table| !live.has_table(table))
        {
            continue;
        }
        match live.get(object) {
            Some(found) if found == wanted => {}
            Some(found) => {
                let (kind, problem) = mismatch(object, wanted, found);
                push(object, kind, problem);
            }
            None => {
                let (kind, problem) = absent(shapes, object, wanted, live);
                push(object, kind, problem);
            }
        }
    }
    for object in live.objects.keys() {
        if expected.contains(object) || matches!(object, Object::Extension(_)) {
            // Every database has plpgsql, and DBAs add their own extensions: only the ones the
            // migrations need are compared.
            continue;
        }
        if object
            .parent_table()
            .is_some_and(|table| !expected.has_table(table))
        {
            continue;
        }
        if let Some((kind, problem)) = surplus(shapes, version, expected, object, live) {
            push(object, kind, problem);
        }
    }
    differences.sort_by_key(|d| d.allowed);
    differences
}

fn mismatch(object: &Object, wanted: &str, found: &str) -> (Kind, String) {
    let problem = match object {
        Object::Column { .. } => format!("type is {found}, expected {wanted}"),
        _ => format!("defined as `{found}`, expected `{wanted}`"),
    };
    (Kind::Mismatch, problem)
}

/// Why an object of the version is not in the database.
fn absent(shapes: &VersionShapes, object: &Object, wanted: &str, live: &Shape) -> (Kind, String) {
    if let Object::Column { table, name } = object {
        // A legacy column already renamed by hand: 008 renames only what is still truncated.
        if let Some(r) = RENAMES
            .iter()
            .find(|r| r.table == table && r.legacy == name)
        {
            let full = object.renamed(r.current);
            return match live.get(&full) {
                Some(found) if found == wanted => (
                    Kind::RenamedByHand,
                    format!("already renamed by hand to {} (008 accepts it)", r.current),
                ),
                Some(found) => (
                    Kind::Mismatch,
                    format!(
                        "renamed by hand to {}, whose type is {found}, expected {wanted}",
                        r.current
                    ),
                ),
                None => (Kind::Missing, missing_text(shapes, object)),
            };
        }
        if let Some(legacy) = legacy_name(table, name) {
            if live.contains(&object.renamed(legacy)) {
                return (
                    Kind::NotRenamed,
                    format!("still has the truncated name {legacy}"),
                );
            }
        }
    }
    if matches!(object, Object::Index { .. } | Object::Constraint { .. }) {
        // The same definition under another name (a tool with other naming conventions).
        if let Some((twin, _)) = live
            .objects
            .iter()
            .find(|(o, d)| o.same_kind_and_table(object) && d.as_str() == wanted)
        {
            return (
                Kind::Missing,
                format!(
                    "{}; an identical one exists as {}: rename it to {}",
                    missing_text(shapes, object),
                    twin.name(),
                    object.name()
                ),
            );
        }
    }
    (Kind::Missing, missing_text(shapes, object))
}

fn missing_text(shapes: &VersionShapes, object: &Object) -> String {
    match shapes.introduced_by(object) {
        Some(v) => format!("missing ({} creates it)", migration_label(v)),
        None => "missing".into(),
    }
}

/// What to say about an object the database has and the version does not; `None` when it is
/// already reported from the other side (a hand rename).
fn surplus(
    shapes: &VersionShapes,
    version: i32,
    expected: &Shape,
    object: &Object,
    live: &Shape,
) -> Option<(Kind, String)> {
    if let Object::Column { table, name } = object {
        if let Some(r) = RENAMES
            .iter()
            .find(|r| r.table == table && r.legacy == name)
        {
            if expected.has_column(table, r.current) {
                // Reported as not renamed unless the full name exists too.
                return live.has_column(table, r.current).then(|| {
                    (
                        Kind::Extra,
                        format!(
                            "truncated column left over beside {}; drop it once its data is no longer needed",
                            r.current
                        ),
                    )
                });
            }
        }
        if let Some(legacy) = legacy_name(table, name) {
            if expected.has_column(table, legacy) {
                // Reported as renamed by hand unless the truncated name exists too.
                return live.has_column(table, legacy).then(|| {
                    (
                        Kind::RenameConflict,
                        format!(
                            "both {legacy} and {name} exist: 008 cannot rename {legacy}; keep the one that holds the data and drop the other"
                        ),
                    )
                });
            }
        }
    }
    let problem = match shapes.introduced_by(object) {
        // 008 renames only what is still truncated and adds only absent constraints, so part of
        // it done by hand is no obstacle; the plain SQL migrations are not written that way.
        Some(v) if v > version && v != REPAIR_VERSION => {
            let hint = if version == 0 {
                "; adopt the database with `ruleiq-db baseline`"
            } else {
                ""
            };
            return Some((
                Kind::Ahead,
                format!(
                    "belongs to {}, beyond version {version}: migrating from {version} would fail creating it again{hint}",
                    migration_label(v)
                ),
            ));
        }
        Some(v) if v > version => format!(
            "extra; {} creates it too and keeps the one that exists",
            migration_label(v)
        ),
        Some(_) => format!("extra; version {version} no longer has it"),
        None => "extra (not created by ruleIQ's migrations); left alone".into(),
    };
    Some((Kind::Extra, problem))
}

fn migration_label(version: i32) -> String {
    match migrations::get(version) {
        Some(m) => format!("V{version} {}", m.name()),
        None => format!("V{version}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn table(name: &str) -> Object {
        Object::Table(name.into())
    }

    fn column(table: &str, name: &str) -> Object {
        Object::Column {
            table: table.into(),
            name: name.into(),
        }
    }

    fn shape(objects: &[(Object, &str)]) -> Shape {
        Shape {
            objects: objects
                .iter()
                .map(|(o, d)| (o.clone(), d.to_string()))
                .collect(),
        }
    }

    /// Version 2 has business_profiles with a truncated column; version 8 renames it and adds
    /// a constraint; version 3 adds a table.
    fn shapes() -> VersionShapes {
        let v2 = shape(&[
            (table("business_profiles"), ""),
            (column("business_profiles", "handles_persona"), "boolean"),
            (column("business_profiles", "id"), "uuid"),
        ]);
        let mut v3 = v2.clone();
        v3.objects.insert(table("report_schedules"), String::new());
        v3.objects
            .insert(column("report_schedules", "id"), "uuid".into());
        let mut v8 = v3.clone();
        v8.objects
            .remove(&column("business_profiles", "handles_persona"));
        v8.objects.insert(
            column("business_profiles", "handles_personal_data"),
            "boolean".into(),
        );
        v8.objects.insert(
            Object::Constraint {
                table: "business_profiles".into(),
                name: "chk_employee_count_positive".into(),
            },
            "CHECK ((employee_count > 0))".into(),
        );
        VersionShapes::new(BTreeMap::from([(2, v2), (3, v3), (8, v8)]))
    }

    fn kinds(differences: &[Difference]) -> Vec<(String, Kind)> {
        differences
            .iter()
            .map(|d| (d.object.clone(), d.kind))
            .collect()
    }

    #[test]
    fn identical_shapes_have_no_difference() {
        let shapes = shapes();
        let live = shapes.shape(3).unwrap().clone();
        assert!(compare(&shapes, 3, &live).is_empty());
    }

    #[test]
    fn a_hand_renamed_column_is_allowed_before_008_and_blocks_008() {
        let shapes = shapes();
        let mut live = shapes.shape(3).unwrap().clone();
        live.objects
            .remove(&column("business_profiles", "handles_persona"));
        live.objects.insert(
            column("business_profiles", "handles_personal_data"),
            "boolean".into(),
        );
        let at_3 = compare(&shapes, 3, &live);
        assert_eq!(
            kinds(&at_3),
            vec![(
                "column business_profiles.handles_persona".into(),
                Kind::RenamedByHand
            )]
        );
        assert!(at_3[0].allowed);
        let at_8 = compare(&shapes, 8, &live);
        assert_eq!(
            kinds(&at_8),
            vec![(
                "constraint chk_employee_count_positive on business_profiles".into(),
                Kind::Missing
            )]
        );
        assert!(at_8[0].problem.contains("V8 repair_schema creates it"));
    }

    #[test]
    fn truncated_names_at_8_and_both_names_before_it_are_reported() {
        let shapes = shapes();
        let mut live = shapes.shape(8).unwrap().clone();
        live.objects
            .remove(&column("business_profiles", "handles_personal_data"));
        live.objects.insert(
            column("business_profiles", "handles_persona"),
            "boolean".into(),
        );
        assert_eq!(
            kinds(&compare(&shapes, 8, &live)),
            vec![(
                "column business_profiles.handles_personal_data".into(),
                Kind::NotRenamed
            )]
        );

        live.objects.insert(
            column("business_profiles", "handles_personal_data"),
            "boolean".into(),
        );
        let leftover = compare(&shapes, 8, &live);
        assert_eq!(leftover.len(), 1);
        assert_eq!(leftover[0].kind, Kind::Extra);
        assert!(leftover[0].problem.contains("left over"));
        let conflict = compare(&shapes, 3, &live);
        assert!(
            conflict
                .iter()
                .any(|d| d.kind == Kind::RenameConflict && !d.allowed),
            "{conflict:?}"
        );
    }

    #[test]
    fn objects_of_a_later_plain_migration_block_an_earlier_version() {
        let shapes = shapes();
        let mut live = shapes.shape(3).unwrap().clone();
        live.objects.insert(table("alembic_version"), String::new());
        live.objects
            .insert(column("alembic_version", "version_num"), "text".into());
        let at_2 = compare(&shapes, 2, &live);
        assert_eq!(
            kinds(&at_2),
            vec![
                ("table report_schedules".into(), Kind::Ahead),
                ("table alembic_version".into(), Kind::Extra),
            ]
        );
        assert!(!at_2[0].allowed && at_2[1].allowed);
    }

    #[test]
    fn a_missing_table_is_reported_once_and_a_renamed_index_is_pointed_at() {
        let shapes = shapes();
        let mut live = shapes.shape(3).unwrap().clone();
        live.objects.retain(|o, _| {
            o != &table("report_schedules") && o.parent_table() != Some("report_schedules")
        });
        let index = Object::Index {
            table: "business_profiles".into(),
            name: "bp_idx".into(),
        };
        let mut expected = BTreeMap::new();
        let mut v3 = shapes.shape(3).unwrap().clone();
        v3.objects.insert(
            index.clone(),
            "CREATE INDEX ON business_profiles USING btree (id)".into(),
        );
        expected.insert(3, v3);
        let shapes = VersionShapes::new(expected);
        live.objects.insert(
            index.renamed("ix_business_profiles_id"),
            "CREATE INDEX ON business_profiles USING btree (id)".into(),
        );
        let found = compare(&shapes, 3, &live);
        assert_eq!(
            kinds(&found)[..2],
            [
                ("table report_schedules".into(), Kind::Missing),
                ("index bp_idx on business_profiles".into(), Kind::Missing),
            ]
        );
        assert!(
            found[1]
                .problem
                .ends_with("exists as ix_business_profiles_id: rename it to bp_idx"),
            "{}",
            found[1].problem
        );
        assert_eq!(
            found.len(),
            3,
            "the twin is also listed as extra: {found:?}"
        );
    }
}
