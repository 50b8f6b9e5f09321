use super::*;
use crate::catalog::constraints::{find, DATA_SENSITIVITIES, EVIDENCE_STATUSES};

#[test]
fn the_builtin_policy_is_valid_for_every_constraint() {
    let policy = Policy::builtin();
    assert_eq!(policy.rules.len(), CATALOG.len());
    for rule in &policy.rules {
        assert_eq!(rule.problem(), None, "{}", rule.constraint.name);
    }
    let named = BUILTIN_SYNONYMS.iter().map(|(n, _)| n);
    for name in named.chain(BUILTIN_VALUES.iter().map(|(n, _)| n)) {
        assert!(find(name).is_some(), "{name} is not in the catalog");
    }
    assert_eq!(
        policy.rule("chk_approval_workflow").unwrap().action,
        Action::Demote
    );
    assert_eq!(
        policy
            .rule("fk_assessment_business_profile")
            .unwrap()
            .action,
        Action::SetNull
    );
}

#[test]
fn values_the_catalog_rejects_are_named() {
    let sensitivity = find("chk_data_sensitivity").unwrap();
    let huge = value_problem(sensitivity, &PolicyValue::Text("Huge".into())).unwrap();
    assert!(
        huge.contains("'Huge'") && huge.contains("'Critical'"),
        "{huge}"
    );
    for v in DATA_SENSITIVITIES {
        assert_eq!(
            value_problem(sensitivity, &PolicyValue::Text(v.to_string())),
            None
        );
    }
    let count = find("chk_employee_count_positive").unwrap();
    assert!(value_problem(count, &PolicyValue::Integer(0)).is_some());
    assert!(value_problem(count, &PolicyValue::Text("5".into())).is_some());
    assert_eq!(value_problem(count, &PolicyValue::Integer(1)), None);
    let approval = find("chk_approval_workflow").unwrap();
    assert!(value_problem(approval, &PolicyValue::Text("approved".into())).is_some());
    assert!(
        value_problem(approval, &PolicyValue::Text("shelved".into()))
            .unwrap()
            .contains("chk_evidence_status")
    );
    for v in EVIDENCE_STATUSES.iter().filter(|v| **v != "approved") {
        assert_eq!(
            value_problem(approval, &PolicyValue::Text(v.to_string())),
            None
        );
    }
    let fk = find("fk_generated_policy_business_profile").unwrap();
    assert!(value_problem(fk, &PolicyValue::Text("x".into())).is_some());
}

#[test]
fn actions_apply_by_kind_of_rule() {
    let status = find("chk_evidence_status").unwrap();
    let approval = find("chk_approval_workflow").unwrap();
    let fk = find("fk_assessment_business_profile").unwrap();
    assert!(Action::Map.applies_to(status));
    assert!(!Action::Delete.applies_to(status));
    assert!(Action::Backfill.applies_to(approval));
    assert!(!Action::Map.applies_to(approval));
    assert!(Action::Delete.applies_to(fk));
    assert_eq!(Action::names_for(fk), "set_null, delete, skip");
    for a in Action::ALL {
        assert_eq!(Action::parse(a.as_str()), Some(*a));
    }
}

#[test]
fn canonical_form_trims_lowercases_and_joins_separators() {
    assert_eq!(canonical(" In Progress "), "in_progress");
    assert_eq!(canonical("pending-review"), "pending_review");
    assert_eq!(canonical("high "), "high");
    assert_eq!(canonical("Not__Started"), "not_started");
}
