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

fn kinds(differences: &[Difference]) -> Vec<(String, Finding)> {
    differences
        .iter()
        .map(|d| (d.object.clone(), d.finding))
        .collect()
}

#[test]
fn only_whole_identifiers_are_renamed_in_definitions() {
    assert_eq!(
        replace_word(
            "FOREIGN KEY (business_profil) REFERENCES business_profiles(id)",
            "business_profil",
            "business_profile_id"
        ),
        "FOREIGN KEY (business_profile_id) REFERENCES business_profiles(id)"
    );
    let fk = Object::Constraint {
        table: "generated_policies".into(),
        name: "generated_policies_business_profil_fkey".into(),
    };
    assert!(same_after_renames(
        &fk,
        "FOREIGN KEY (business_profil) REFERENCES business_profiles(id)",
        "FOREIGN KEY (business_profile_id) REFERENCES business_profiles(id)"
    ));
    assert!(!same_after_renames(
        &fk,
        "FOREIGN KEY (business_profil) REFERENCES business_profiles(id)",
        "FOREIGN KEY (business_profil) REFERENCES users(id)"
    ));
}

#[test]
fn identical_shapes_have_no_difference() {
    let shapes = shapes();
    let live = shapes.shape(3).unwrap().clone();
    assert!(compare(&shapes, 3, &live).is_empty());
}

#[test]
fn a_hand_renamed_column_is_tolerated_before_008() {
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
            Finding::RenamedByHand
        )]
    );
    assert_eq!(at_3[0].kind, Class::Tolerated);
    let at_8 = compare(&shapes, 8, &live);
    assert_eq!(
        kinds(&at_8),
        vec![(
            "constraint chk_employee_count_positive on business_profiles".into(),
            Finding::Missing
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
            Finding::NotRenamed
        )]
    );

    live.objects.insert(
        column("business_profiles", "handles_personal_data"),
        "boolean".into(),
    );
    let leftover = compare(&shapes, 8, &live);
    assert_eq!(leftover.len(), 1);
    assert_eq!(leftover[0].finding, Finding::RenameConflict);
    assert_eq!(leftover[0].kind, Class::Blocking);
    assert!(leftover[0].problem.contains("rolling 008 back"));
    let conflict = compare(&shapes, 3, &live);
    assert!(
        conflict
            .iter()
            .any(|d| d.finding == Finding::RenameConflict && d.kind == Class::Blocking),
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
            ("table report_schedules".into(), Finding::Ahead),
            ("table alembic_version".into(), Finding::Extra),
        ]
    );
    assert_eq!(
        (at_2[0].kind, at_2[1].kind),
        (Class::Blocking, Class::Tolerated)
    );
    assert!(
        at_2[0].problem.contains("`ruleiq-db baseline --version N`"),
        "{}",
        at_2[0].problem
    );
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
            ("table report_schedules".into(), Finding::Missing),
            ("index bp_idx on business_profiles".into(), Finding::Missing),
        ]
    );
    assert!(
        found[1]
            .problem
            .ends_with("an identical one exists under the name ix_business_profiles_id"),
        "{}",
        found[1].problem
    );
    assert_eq!(
        found.len(),
        3,
        "the twin is also listed as extra: {found:?}"
    );
}
