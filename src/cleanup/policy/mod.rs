//! The cleanup policy: for each catalog constraint, what happens to the rows that break it.
//!
//! The built-in policy is docs/design.md §3; a YAML file (`policy_file.rs`) overrides it per
//! constraint. Every value a policy would write is checked here against the catalog, so a
//! policy can never ask for a value the constraint itself would reject.

use crate::catalog::constraints::{Constraint, Rule, CATALOG};
use serde::Serialize;
use std::fmt;

/// What a rule does to a violating row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Recognise the value: trimmed and compared case-insensitively (spaces and hyphens as
    /// underscores) with the allowed values, then with the synonyms; anything else → `value`.
    Map,
    /// Write `value`.
    Default,
    /// Write NULL (a CHECK passes on NULL; a NULL link dangles nowhere).
    SetNull,
    /// Move the row out of the state that needs more (status → `value`).
    Demote,
    /// Fill the columns the state needs from the row itself; a row that cannot be filled is
    /// demoted to `value`.
    Backfill,
    /// Remove the row (recorded whole in the audit).
    Delete,
    /// Leave the rows as they are.
    Skip,
}

impl Action {
    pub const ALL: &'static [Action] = &[
        Action::Map,
        Action::Default,
        Action::SetNull,
        Action::Demote,
        Action::Backfill,
        Action::Delete,
        Action::Skip,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Map => "map",
            Action::Default => "default",
            Action::SetNull => "set_null",
            Action::Demote => "demote",
            Action::Backfill => "backfill",
            Action::Delete => "delete",
            Action::Skip => "skip",
        }
    }

    pub fn parse(name: &str) -> Option<Action> {
        Action::ALL.iter().copied().find(|a| a.as_str() == name)
    }

    /// Whether this action can repair the rows of `c`.
    pub fn applies_to(self, c: &Constraint) -> bool {
        match (self, c.rule) {
            (Action::Skip, _) => true,
            (Action::Map, Rule::OneOf { .. }) => true,
            (Action::Default, Rule::OneOf { .. } | Rule::Positive { .. }) => true,
            (
                Action::SetNull,
                Rule::OneOf { .. } | Rule::Positive { .. } | Rule::ForeignKey { .. },
            ) => true,
            (Action::Demote, Rule::RequiredWhen { .. }) => true,
            (Action::Backfill, Rule::RequiredWhen { required, .. }) => required
                .iter()
                .all(|column| backfill_sources(c.table, column).is_some()),
            (Action::Delete, Rule::ForeignKey { .. }) => true,
            _ => false,
        }
    }

    /// Whether the action writes the policy's `value`.
    pub fn takes_value(self) -> bool {
        matches!(
            self,
            Action::Map | Action::Default | Action::Demote | Action::Backfill
        )
    }

    /// The actions that apply to `c`, for messages.
    pub fn names_for(c: &Constraint) -> String {
        Action::ALL
            .iter()
            .filter(|a| a.applies_to(c))
            .map(|a| a.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where `backfill` takes a required column's value from: the first non-NULL of these columns
/// of the same row. approved_at ← the last update (else creation), approved_by ← the owner.
const BACKFILL_SOURCES: &[(&str, &str, &[&str])] = &[
    (
        "evidence_items",
        "approved_at",
        &["updated_at", "created_at"],
    ),
    ("evidence_items", "approved_by", &["user_id"]),
];

/// Sources whose type differs from the column they fill, and the cast that makes them fit:
/// production's approved_by is varchar, the owner's id a uuid (written as its text form).
const BACKFILL_CASTS: &[(&str, &str, &str)] = &[("evidence_items", "user_id", "text")];

/// The cast a backfill source needs, if any.
pub fn backfill_cast(table: &str, source: &str) -> Option<&'static str> {
    BACKFILL_CASTS
        .iter()
        .find(|(t, s, _)| *t == table && *s == source)
        .map(|(_, _, cast)| *cast)
}

pub fn backfill_sources(table: &str, column: &str) -> Option<&'static [&'static str]> {
    BACKFILL_SOURCES
        .iter()
        .find(|(t, c, _)| *t == table && *c == column)
        .map(|(_, _, sources)| *sources)
}

/// A value a policy writes: text for a list of allowed values, a whole number for `> 0`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum PolicyValue {
    Text(String),
    Integer(i64),
}

impl fmt::Display for PolicyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyValue::Text(text) => write!(f, "'{text}'"),
            PolicyValue::Integer(n) => write!(f, "{n}"),
        }
    }
}

/// The canonical form `map` compares values in: lower case, runs of spaces, hyphens and
/// underscores as one `_`, no leading or trailing `_`. `fixes::normalised_sql` is the same
/// function in SQL; the unit tests below hold them together.
pub fn canonical(value: &str) -> String {
    let mut out = String::new();
    for c in value.chars().flat_map(char::to_lowercase) {
        if c.is_whitespace() || c == '-' || c == '_' {
            if !out.ends_with('_') {
                out.push('_');
            }
        } else {
            out.push(c);
        }
    }
    out.trim_matches('_').to_string()
}

/// The values a catalog constraint allows in `table.column`, when one restricts it to a list
/// (every such constraint must accept the value).
fn allowed_in(table: &str, column: &str) -> Vec<&'static Constraint> {
    CATALOG
        .iter()
        .filter(|c| c.table == table)
        .filter(|c| matches!(c.rule, Rule::OneOf { column: col, .. } if col == column))
        .collect()
}

/// Why the catalog would reject `value` written by a rule of `c` (None: it accepts it).
pub fn value_problem(c: &Constraint, value: &PolicyValue) -> Option<String> {
    match (c.rule, value) {
        (Rule::OneOf { values, .. }, PolicyValue::Text(v)) if values.contains(&v.as_str()) => None,
        (Rule::OneOf { column, values }, _) => Some(format!(
            "{} would reject {value}: {column} must be one of {}",
            c.name,
            quoted_list(values)
        )),
        (Rule::Positive { .. }, PolicyValue::Integer(n)) if *n > 0 => None,
        // A quoted number is a string in YAML: a type problem, not a value the CHECK rejects.
        (Rule::Positive { column }, PolicyValue::Text(v)) => Some(format!(
            "{}: the value {value} is a string, but {column} holds whole numbers; write it without quotes (`value: {}`)",
            c.name,
            v.trim().parse::<i64>().map_or_else(|_| "1".to_string(), |n| n.to_string())
        )),
        (Rule::Positive { column }, _) => Some(format!(
            "{} would reject {value}: {column} must be a whole number greater than 0",
            c.name
        )),
        (Rule::RequiredWhen { column, equals, .. }, PolicyValue::Text(v)) => {
            if v == equals {
                return Some(format!(
                    "{} would still reject rows with {column} {value}: the value replaces {column} and must differ from '{equals}'",
                    c.name
                ));
            }
            allowed_in(c.table, column).into_iter().find_map(|other| {
                let Rule::OneOf { values, .. } = other.rule else {
                    return None;
                };
                (!values.contains(&v.as_str())).then(|| {
                    format!(
                        "{} would reject {value} as {column}: it must be one of {}",
                        other.name,
                        quoted_list(values)
                    )
                })
            })
        }
        (Rule::RequiredWhen { column, .. }, PolicyValue::Integer(_)) => Some(format!(
            "{} writes {value} into {column}, which holds text",
            c.name
        )),
        (Rule::ForeignKey { .. }, _) => Some(format!(
            "{} takes no value: its actions are {}",
            c.name,
            Action::names_for(c)
        )),
    }
}

/// Why the catalog would reject `target` as a synonym's meaning for `c`.
pub fn synonym_problem(c: &Constraint, target: &str) -> Option<String> {
    match c.rule {
        Rule::OneOf { .. } => value_problem(c, &PolicyValue::Text(target.to_string())),
        _ => Some(format!(
            "{} has no list of allowed values, so synonyms mean nothing there",
            c.name
        )),
    }
}

fn quoted_list(values: &[&str]) -> String {
    values
        .iter()
        .map(|v| format!("'{v}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Built-in synonyms for `map`, compared in canonical form. Documented in
/// fixtures/cleanup-policy.example.yaml.
const BUILTIN_SYNONYMS: &[(&str, &[(&str, &str)])] = &[
    (
        "chk_evidence_status",
        &[
            // The application's own vocabulary (legacy-schema.md): it still writes these.
            ("pending_review", "collected"),
            ("pending", "not_started"),
            ("done", "collected"),
            ("complete", "collected"),
            ("completed", "collected"),
            ("finished", "collected"),
            ("started", "in_progress"),
            ("ongoing", "in_progress"),
            ("wip", "in_progress"),
            ("todo", "not_started"),
            ("to_do", "not_started"),
            ("new", "not_started"),
            ("open", "not_started"),
            ("declined", "rejected"),
            ("refused", "rejected"),
        ],
    ),
    (
        "chk_data_sensitivity",
        &[
            ("med", "Medium"),
            // The application's API accepts Low, Moderate, High, Confidential.
            ("moderate", "Medium"),
            ("confidential", "Critical"),
            ("crit", "Critical"),
        ],
    ),
];

/// The built-in `value` per constraint: what `map` writes for anything unrecognised, what
/// `demote` (and `backfill`, for a row it cannot fill) writes as status.
const BUILTIN_VALUES: &[(&str, &str)] = &[
    ("chk_evidence_status", "not_started"),
    // Unknown sensitivity is treated as sensitive.
    ("chk_data_sensitivity", "High"),
    // Approval cannot be evidenced: back to collected, to be re-approved.
    ("chk_approval_workflow", "collected"),
];

pub fn builtin_synonyms(c: &Constraint) -> Vec<(String, String)> {
    BUILTIN_SYNONYMS
        .iter()
        .find(|(name, _)| *name == c.name)
        .map(|(_, list)| {
            list.iter()
                .map(|(from, to)| (from.to_string(), to.to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// The policy for one constraint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RulePolicy {
    #[serde(rename = "constraint", serialize_with = "constraint_name")]
    pub constraint: &'static Constraint,
    pub action: Action,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<PolicyValue>,
    /// For `map`: (synonym, allowed value), the policy file's first, then the built-ins.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub synonyms: Vec<(String, String)>,
}

fn constraint_name<S: serde::Serializer>(c: &&'static Constraint, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(c.name)
}

impl RulePolicy {
    /// docs/design.md §3's default for `c`.
    pub fn builtin(c: &'static Constraint) -> RulePolicy {
        let action = match c.rule {
            Rule::OneOf { .. } => Action::Map,
            Rule::Positive { .. } | Rule::ForeignKey { .. } => Action::SetNull,
            Rule::RequiredWhen { .. } => Action::Demote,
        };
        RulePolicy {
            constraint: c,
            action,
            value: BUILTIN_VALUES
                .iter()
                .find(|(name, _)| *name == c.name)
                .map(|(_, v)| PolicyValue::Text(v.to_string())),
            synonyms: builtin_synonyms(c),
        }
    }

    /// Why this rule cannot run as it stands (None: it can).
    pub fn problem(&self) -> Option<String> {
        let c = self.constraint;
        if !self.action.applies_to(c) {
            return Some(format!(
                "action {} does not apply to {}; it takes: {}",
                self.action,
                c.name,
                Action::names_for(c)
            ));
        }
        if self.action.takes_value() {
            let Some(value) = &self.value else {
                return Some(format!(
                    "action {} for {} needs a value to write",
                    self.action, c.name
                ));
            };
            if let Some(problem) = value_problem(c, value) {
                return Some(problem);
            }
        }
        if self.action == Action::Map {
            for (from, to) in &self.synonyms {
                if let Some(problem) = synonym_problem(c, to) {
                    return Some(format!("synonym '{from}': {problem}"));
                }
            }
        }
        None
    }

    /// Whether the rule changes rows at all.
    pub fn active(&self) -> bool {
        self.action != Action::Skip
    }
}

/// The whole policy: one rule per catalog constraint, in catalog order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Policy {
    /// Where the overrides came from (None: built-in only).
    pub source: Option<String>,
    pub rules: Vec<RulePolicy>,
    /// The constraints whose rule the file set itself (the rest are built in): a decision the
    /// DBA made, which cleanup carries out or refuses, but never replaces with its own.
    #[serde(skip)]
    pub from_file: Vec<&'static str>,
}

impl Policy {
    pub fn builtin() -> Policy {
        Policy {
            source: None,
            rules: CATALOG.iter().map(RulePolicy::builtin).collect(),
            from_file: Vec::new(),
        }
    }

    /// The built-in policy with these rules replacing the built-in ones.
    pub fn with_overrides(source: String, overrides: Vec<RulePolicy>) -> Policy {
        let mut policy = Policy::builtin();
        policy.source = Some(source);
        for rule in overrides {
            policy.from_file.push(rule.constraint.name);
            if let Some(slot) = policy
                .rules
                .iter_mut()
                .find(|r| r.constraint.name == rule.constraint.name)
            {
                *slot = rule;
            }
        }
        policy
    }

    /// Whether the policy file decided the rule of constraint `name`.
    pub fn decided(&self, name: &str) -> bool {
        self.from_file.contains(&name)
    }

    pub fn rule(&self, name: &str) -> Option<&RulePolicy> {
        self.rules.iter().find(|r| r.constraint.name == name)
    }

    /// The constraints the policy repairs (every one not skipped).
    pub fn covered(&self) -> Vec<&'static Constraint> {
        self.rules
            .iter()
            .filter(|r| r.active())
            .map(|r| r.constraint)
            .collect()
    }
}

#[cfg(test)]
mod tests;
