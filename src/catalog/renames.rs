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
        "generated_policies",
        "business_profil",
        "business_profile_id",
    ),
];

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
    }
}
