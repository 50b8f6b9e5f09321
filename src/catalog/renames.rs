//! The rename map: legacy (truncated) column names and the names 008 gives them.

/// One column that 008 renames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rename {
    pub table: &'static str,
    /// The truncated name the legacy migrations created.
    pub legacy: &'static str,
    /// The full name after 008.
    pub current: &'static str,
}

/// The 17 renames of docs/design.md §1.2, in the order 008 applies them.
pub const RENAMES: &[Rename] = &[
    rename(
        "business_profiles",
        "handles_persona",
        "handles_personal_data",
    ),
    rename("business_profiles", "processes_payme", "processes_payments"),
    rename("business_profiles", "stores_health_d", "stores_health_data"),
    rename(
        "business_profiles",
        "provides_financ",
        "provides_financial_services",
    ),
    rename(
        "business_profiles",
        "operates_critic",
        "operates_critical_infrastructure",
    ),
    rename(
        "business_profiles",
        "has_internation",
        "has_international_operations",
    ),
    rename("business_profiles", "development_too", "development_tools"),
    rename(
        "business_profiles",
        "existing_framew",
        "existing_frameworks",
    ),
    rename("business_profiles", "planned_framewo", "planned_frameworks"),
    rename("business_profiles", "compliance_budg", "compliance_budget"),
    rename(
        "business_profiles",
        "compliance_time",
        "compliance_timeline",
    ),
    rename(
        "business_profiles",
        "assessment_comp",
        "assessment_completed",
    ),
    rename(
        "assessment_sessions",
        "business_profil",
        "business_profile_id",
    ),
    rename(
        "assessment_sessions",
        "questions_answe",
        "questions_answered",
    ),
    rename(
        "assessment_sessions",
        "calculated_scor",
        "calculated_scores",
    ),
    rename(
        "assessment_sessions",
        "recommended_fra",
        "recommended_frameworks",
    ),
    rename(
        "generated_policies",
        "business_profil",
        "business_profile_id",
    ),
];

/// Truncated names that 008 leaves alone: the application still reads and writes
/// compliance_frameworks under these names. `status` lists them for information only.
pub const KNOWN_TRUNCATIONS: &[(&str, &str)] = &[
    ("compliance_frameworks", "applicable_indu"),
    ("compliance_frameworks", "employee_thresh"),
    ("compliance_frameworks", "revenue_thresho"),
    ("compliance_frameworks", "geographic_scop"),
    ("compliance_frameworks", "key_requirement"),
    ("compliance_frameworks", "relevance_facto"),
    ("compliance_frameworks", "complexity_scor"),
    ("compliance_frameworks", "implementation_"),
    ("compliance_frameworks", "estimated_cost_"),
    ("compliance_frameworks", "control_templat"),
    ("compliance_frameworks", "evidence_templa"),
];

/// The tables 008 renames columns of, in first-seen order.
pub fn renamed_tables() -> Vec<&'static str> {
    let mut tables: Vec<&'static str> = Vec::new();
    for r in RENAMES {
        if !tables.contains(&r.table) {
            tables.push(r.table);
        }
    }
    tables
}

const fn rename(table: &'static str, legacy: &'static str, current: &'static str) -> Rename {
    Rename {
        table,
        legacy,
        current,
    }
}

/// The legacy name of a column, if 008 renames it.
pub fn legacy_name(table: &str, current: &str) -> Option<&'static str> {
    RENAMES
        .iter()
        .find(|r| r.table == table && r.current == current)
        .map(|r| r.legacy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_column_is_renamed_once_and_names_fit_postgres() {
        assert_eq!(RENAMES.len(), 17);
        for (i, a) in RENAMES.iter().enumerate() {
            assert!(a.current.len() <= 63 && a.legacy.len() <= 63);
            assert!(a.current.starts_with(a.legacy) || a.legacy.len() == 15);
            for b in &RENAMES[i + 1..] {
                assert!(!(a.table == b.table && a.legacy == b.legacy), "{a:?} twice");
            }
        }
        assert_eq!(
            legacy_name("generated_policies", "business_profile_id"),
            Some("business_profil")
        );
        assert_eq!(legacy_name("users", "email"), None);
        assert_eq!(
            renamed_tables(),
            [
                "business_profiles",
                "assessment_sessions",
                "generated_policies"
            ]
        );
    }

    #[test]
    fn known_truncations_are_fifteen_characters_and_never_renamed() {
        for (table, column) in KNOWN_TRUNCATIONS {
            assert_eq!(column.len(), 15, "{column}");
            assert!(!RENAMES
                .iter()
                .any(|r| r.table == *table && r.legacy == *column));
        }
    }
}
