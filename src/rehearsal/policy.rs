//! Which cleanup policy the rehearsal runs with, and the bundled example written out for
//! cleanup, which reads a file.

use super::PolicyChoice;
use anyhow::{Context as _, Result};
use serde_json::Value;
use std::io::Write;

/// The bundled example cleanup policy, which decides what production's NOT NULL columns need.
const EXAMPLE_POLICY: &str = include_str!("../../fixtures/cleanup-policy.example.yaml");
const EXAMPLE_POLICY_NAME: &str = "fixtures/cleanup-policy.example.yaml";

/// Which policy the real cleanup runs with: the one given; else, when the dry run found rules
/// needing decisions or the source is the bundled fixture (production's shape, whose NOT NULL
/// columns need decisions the built-in policy does not make), the bundled example; else the
/// built-in policy.
pub fn choose_policy(given: Option<&str>, bundled: bool, needs_decision: &[Value]) -> PolicyChoice {
    if let Some(file) = given {
        return PolicyChoice {
            source: "given",
            file: Some(file.to_string()),
            reason: format!("cleanup runs with the policy given, {file}"),
        };
    }
    let why = if !needs_decision.is_empty() {
        format!(
            "cleanup needs {} decision(s) the built-in policy does not make",
            needs_decision.len()
        )
    } else if bundled {
        "the bundled fixture has production's NOT NULL columns, where the built-in policy cannot write NULL".to_string()
    } else {
        return PolicyChoice {
            source: "built-in",
            file: None,
            reason: "cleanup runs with the built-in policy (no --policy given, no decision needed)"
                .into(),
        };
    };
    PolicyChoice {
        source: "bundled example",
        file: Some(EXAMPLE_POLICY_NAME.into()),
        reason: format!(
            "{why}; no --policy given, so the rehearsal continues with the bundled example policy {EXAMPLE_POLICY_NAME}. Production needs your own decisions: `ruleiq-db cleanup --dry-run --policy FILE`"
        ),
    }
}

pub fn write_example_policy() -> Result<tempfile::NamedTempFile> {
    let mut file = tempfile::Builder::new()
        .prefix("cleanup-policy.example.")
        .suffix(".yaml")
        .tempfile()
        .context("writing the bundled example policy to a temporary file")?;
    file.write_all(EXAMPLE_POLICY.as_bytes())?;
    file.flush()?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_policy_is_chosen_only_without_one_given() {
        let decision = serde_json::json!({"constraint": "chk_employee_count_positive"});
        let given = choose_policy(Some("mine.yaml"), true, std::slice::from_ref(&decision));
        assert_eq!(
            (given.source, given.file.as_deref()),
            ("given", Some("mine.yaml"))
        );
        let example = choose_policy(None, false, &[decision]);
        assert_eq!(example.source, "bundled example");
        assert!(
            example.reason.contains("needs 1 decision(s)"),
            "{}",
            example.reason
        );
        assert!(example.reason.contains(EXAMPLE_POLICY_NAME));
        assert_eq!(choose_policy(None, true, &[]).source, "bundled example");
        assert_eq!(choose_policy(None, false, &[]).source, "built-in");
    }
}
