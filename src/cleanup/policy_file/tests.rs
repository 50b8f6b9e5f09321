use super::*;
use crate::cleanup::policy::PolicyValue;

fn error(text: &str) -> PolicyError {
    parse(text).expect_err("the policy should be refused")
}

#[test]
fn an_empty_file_overrides_nothing() {
    assert!(parse("").unwrap().is_empty());
    assert!(parse("# only a comment\n").unwrap().is_empty());
    assert!(parse("constraints:\n").unwrap().is_empty());
}

#[test]
fn overrides_fill_in_the_builtin_fields() {
    let rules = parse(
        "constraints:\n  chk_evidence_status:\n    synonyms:\n      pending review: in_progress\n  fk_assessment_business_profile: delete\n  chk_employee_count_positive:\n    action: default\n    value: 1\n",
    )
    .unwrap();
    assert_eq!(rules.len(), 3);
    assert_eq!(rules[0].action, Action::Map);
    assert_eq!(
        rules[0].value,
        Some(PolicyValue::Text("not_started".into()))
    );
    assert_eq!(
        rules[0].synonyms[0],
        ("pending review".to_string(), "in_progress".to_string())
    );
    assert!(
        rules[0].synonyms.len() > 1,
        "built-ins follow the file's own"
    );
    assert_eq!(rules[1].action, Action::Delete);
    assert_eq!(rules[2].value, Some(PolicyValue::Integer(1)));
}

#[test]
fn builtin_synonyms_can_be_dropped() {
    let rules =
        parse("constraints:\n  chk_evidence_status:\n    builtin_synonyms: false\n").unwrap();
    assert!(rules[0].synonyms.is_empty());
}

#[test]
fn errors_point_at_the_offending_scalar() {
    let e = error("constraints:\n  chk_nope:\n    action: skip\n");
    assert_eq!((e.line, e.column), (Some(2), Some(3)), "{e}");
    assert!(e.message.contains("unknown constraint `chk_nope`"), "{e}");

    let e = error("constraints:\n  chk_evidence_status:\n    action: explode\n");
    assert_eq!(e.line, Some(3), "{e}");
    assert!(e.message.contains("unknown action `explode`"), "{e}");
    assert!(e.message.contains("map, default, set_null, skip"), "{e}");

    let e = error("constraints:\n  chk_data_sensitivity:\n    action: default\n    value: Huge\n");
    assert_eq!(e.line, Some(4), "{e}");
    assert!(e.message.contains("'Huge'"), "{e}");

    let e = error("constraints:\n  chk_evidence_status:\n    synonyms:\n      done: finished\n");
    assert_eq!(e.line, Some(4), "{e}");
    assert!(e.message.contains("'finished'"), "{e}");

    let e = error("constraints:\n  chk_evidence_status:\n    action: delete\n");
    assert!(e.message.contains("does not apply"), "{e}");

    let e = error("constraints:\n  chk_evidence_status:\n    colour: red\n");
    assert_eq!(e.line, Some(3), "{e}");
    assert!(e.message.contains("unknown key `colour`"), "{e}");

    let e = error("rules: {}\n");
    assert!(e.message.contains("unknown key `rules`"), "{e}");
}

#[test]
fn fields_that_do_not_fit_together_are_refused() {
    let e = error("constraints:\n  chk_employee_count_positive:\n    action: default\n");
    assert!(e.message.contains("needs a value"), "{e}");
    assert_eq!(e.line, Some(3), "{e}");
    let e = error(
        "constraints:\n  fk_assessment_business_profile:\n    action: set_null\n    value: x\n",
    );
    assert!(e.message.contains("takes no value"), "{e}");
    let e = error(
        "constraints:\n  chk_evidence_status:\n    action: default\n    synonyms: {done: collected}\n",
    );
    assert!(e.message.contains("only apply to action map"), "{e}");
}

#[test]
fn yaml_syntax_errors_carry_their_line() {
    let e = error("constraints:\n  chk_evidence_status:\n    action: [map\n");
    assert!(e.line.is_some(), "{e}");
}

#[test]
fn a_quoted_number_is_a_type_problem_not_a_rejected_value() {
    let e = error(
        "constraints:\n  chk_employee_count_positive:\n    action: default\n    value: \"1\"\n",
    );
    assert_eq!(e.line, Some(4), "{e}");
    assert!(
        e.message.contains("is a string") && e.message.contains("`value: 1`"),
        "{e}"
    );
    assert!(!e.message.contains("would reject"), "{e}");
}

fn many_synonyms(n: usize) -> String {
    let mut text = String::from("constraints:\n  chk_evidence_status:\n    synonyms:\n");
    for i in 0..n {
        text.push_str(&format!("      spelling {i}: collected\n"));
    }
    text
}

#[test]
fn a_rule_lists_a_bounded_number_of_synonyms() {
    let e = error(&many_synonyms(MAX_SYNONYMS + 1));
    assert!(e.message.contains("more than 10000 synonyms"), "{e}");
    assert_eq!(e.line, Some(4), "the rule's synonyms: {e}");
}

#[test]
fn many_synonyms_are_read_and_planned_in_linear_time() {
    use crate::cleanup::plan::TablePlan;
    use crate::constraints::check::DatabaseSpelling;
    use crate::db::introspect::ColumnType;
    // 2000 → 4000 → 8000 synonyms took 0.16 → 0.40 → 2.82 s: quadratic. Linear, the largest
    // allowed rule takes a fraction of that.
    let started = std::time::Instant::now();
    let rules = parse(&many_synonyms(MAX_SYNONYMS)).unwrap();
    let column = |name: &str, t: &str| ColumnType {
        name: name.into(),
        sql_type: t.into(),
        base_type: t.into(),
    };
    let spelling = DatabaseSpelling::from_columns([(
        "evidence_items",
        vec!["id".to_string(), "status".to_string()],
    )]);
    let plan = TablePlan::new(
        "evidence_items",
        rules,
        &spelling,
        vec![
            column("id", "integer"),
            column("status", "character varying"),
        ],
    )
    .unwrap();
    let sql = plan.update_batch_sql().unwrap();
    assert!(sql.contains("WHEN"));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_policy_file_over_the_size_limit_is_refused_naming_the_limit_and_its_size() {
    let path =
        std::env::temp_dir().join(format!("ruleiq-db-big-policy-{}.yaml", std::process::id()));
    let mut text = many_synonyms(1);
    text.push_str(&"# padding\n".repeat((MAX_POLICY_BYTES as usize) / 10 + 1));
    std::fs::write(&path, &text).unwrap();
    let e = load(&path).expect_err("over the limit").to_string();
    std::fs::remove_file(&path).ok();
    assert!(
        e.contains(&format!("{} bytes", text.len())) && e.contains("1048576 bytes (1 MiB)"),
        "{e}"
    );
}
