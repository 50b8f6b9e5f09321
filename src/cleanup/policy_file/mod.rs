//! Reading a policy file (YAML):
//!
//! ```yaml
//! constraints:
//!   chk_evidence_status:
//!     action: map
//!     value: not_started
//!     synonyms: { pending review: in_progress }
//!   fk_generated_policy_business_profile: delete   # shorthand for { action: delete }
//! ```
//!
//! Each scalar is checked while it is read, inside serde's visitors, so that serde_yaml
//! attaches the line and column of the very scalar that is wrong: an unknown constraint, an
//! unknown action, a value the constraint would reject. Fields that only fail together (an
//! action without the value it needs) are reported at their rule's line.

use super::policy::{Action, Policy, RulePolicy};
use crate::catalog::constraints::{self, Constraint};
use anyhow::{Context, Result};
use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
use std::fmt;
use std::path::Path;

mod scalars;
use scalars::{ActionSeed, SynonymsSeed, ValueSeed};

/// A policy file that cannot be used, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => {
                write!(f, "line {line}, column {column}: {}", self.message)
            }
            _ => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for PolicyError {}

/// The largest policy file read: a hand-written policy is a few kilobytes, and each synonym
/// becomes a branch of the batches' SQL.
pub const MAX_POLICY_BYTES: u64 = 1024 * 1024;

/// The most synonyms one rule may list (see [`MAX_POLICY_BYTES`]).
pub const MAX_SYNONYMS: usize = 10_000;

/// Reads and checks a policy file; the error names the file and the line.
pub fn load(path: &Path) -> Result<Policy> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("cannot read the cleanup policy {}", path.display()))?
        .len();
    if size > MAX_POLICY_BYTES {
        anyhow::bail!(
            "invalid cleanup policy {}: the file is {size} bytes, over the limit of {MAX_POLICY_BYTES} bytes (1 MiB) for a policy file; a policy lists at most {MAX_SYNONYMS} synonyms per rule",
            path.display()
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the cleanup policy {}", path.display()))?;
    let overrides =
        parse(&text).with_context(|| format!("invalid cleanup policy {}", path.display()))?;
    Ok(Policy::with_overrides(
        path.display().to_string(),
        overrides,
    ))
}

/// The rules a policy text overrides, each complete (built-in fields filled in) and valid.
pub fn parse(text: &str) -> Result<Vec<RulePolicy>, PolicyError> {
    let deserializer = serde_yaml::Deserializer::from_str(text);
    FileSeed.deserialize(deserializer).map_err(|e| {
        let location = e.location();
        let mut message = e.to_string();
        if let Some(at) = &location {
            let suffix = format!(" at line {} column {}", at.line(), at.column());
            if let Some(stripped) = message.strip_suffix(&suffix) {
                message = stripped.to_string();
            }
        }
        PolicyError {
            line: location.as_ref().map(|l| l.line()),
            column: location.as_ref().map(|l| l.column()),
            message,
        }
    })
}

/// The document: empty, or a mapping with the single key `constraints`.
struct FileSeed;

impl<'de> DeserializeSeed<'de> for FileSeed {
    type Value = Vec<RulePolicy>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FileSeed {
    type Value = Vec<RulePolicy>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping with the key `constraints`")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut rules = None;
        while map
            .next_key_seed(KeySeed {
                allowed: &["constraints"],
                within: "the policy",
                seen: if rules.is_some() {
                    &["constraints"]
                } else {
                    &[]
                },
            })?
            .is_some()
        {
            rules = Some(map.next_value_seed(ConstraintsSeed)?);
        }
        Ok(rules.unwrap_or_default())
    }
}

/// A key among `allowed`, not seen before.
struct KeySeed<'a> {
    allowed: &'static [&'static str],
    within: &'a str,
    seen: &'a [&'static str],
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = &'static str;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = &'static str;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "one of the keys {}", self.allowed.join(", "))
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        let Some(known) = self.allowed.iter().find(|k| **k == key) else {
            return Err(E::custom(format!(
                "unknown key `{key}` in {}; expected {}",
                self.within,
                self.allowed.join(", ")
            )));
        };
        if self.seen.contains(known) {
            return Err(E::custom(format!(
                "`{key}` appears twice in {}",
                self.within
            )));
        }
        Ok(known)
    }
}

/// `constraints:` — catalog name → rule.
struct ConstraintsSeed;

impl<'de> DeserializeSeed<'de> for ConstraintsSeed {
    type Value = Vec<RulePolicy>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ConstraintsSeed {
    type Value = Vec<RulePolicy>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping from constraint names to their rules")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut rules: Vec<RulePolicy> = Vec::new();
        let mut seen: Vec<&'static str> = Vec::new();
        while let Some(c) = map.next_key_seed(ConstraintNameSeed { seen: &seen })? {
            seen.push(c.name);
            rules.push(map.next_value_seed(RuleSeed(c))?);
        }
        Ok(rules)
    }
}

/// A catalog constraint's name.
struct ConstraintNameSeed<'a> {
    seen: &'a [&'static str],
}

impl<'de> DeserializeSeed<'de> for ConstraintNameSeed<'_> {
    type Value = &'static Constraint;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for ConstraintNameSeed<'_> {
    type Value = &'static Constraint;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a constraint name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Self::Value, E> {
        let c = constraints::find(name).ok_or_else(|| {
            E::custom(format!(
                "unknown constraint `{name}`; the catalog has: {}",
                constraints::names().join(", ")
            ))
        })?;
        if self.seen.contains(&c.name) {
            return Err(E::custom(format!("constraint `{name}` appears twice")));
        }
        Ok(c)
    }
}

/// One constraint's rule: a mapping, or just an action name.
struct RuleSeed(&'static Constraint);

impl<'de> DeserializeSeed<'de> for RuleSeed {
    type Value = RulePolicy;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

const RULE_KEYS: &[&str] = &["action", "value", "synonyms", "builtin_synonyms"];

impl<'de> Visitor<'de> for RuleSeed {
    type Value = RulePolicy;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "an action ({}) or a mapping with keys {}",
            Action::names_for(self.0),
            RULE_KEYS.join(", ")
        )
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Self::Value, E> {
        let action = ActionSeed(self.0).visit_str(name)?;
        let mut rule = RulePolicy::builtin(self.0);
        rule.action = action;
        check(&rule).map_err(E::custom)?;
        Ok(rule)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let c = self.0;
        let within = format!("the rule for {}", c.name);
        let mut seen: Vec<&'static str> = Vec::new();
        let mut action = None;
        let mut value = None;
        let mut synonyms: Option<Vec<(String, String)>> = None;
        let mut builtin_synonyms = true;
        while let Some(key) = map.next_key_seed(KeySeed {
            allowed: RULE_KEYS,
            within: &within,
            seen: &seen,
        })? {
            seen.push(key);
            match key {
                "action" => action = Some(map.next_value_seed(ActionSeed(c))?),
                "value" => value = Some(map.next_value_seed(ValueSeed(c))?),
                "synonyms" => synonyms = Some(map.next_value_seed(SynonymsSeed(c))?),
                _ => builtin_synonyms = map.next_value()?,
            }
        }
        let mut rule = RulePolicy::builtin(c);
        if let Some(action) = action {
            rule.action = action;
        }
        if value.is_some() && !rule.action.takes_value() {
            return Err(de::Error::custom(format!(
                "{}: action {} writes no value, so `value` means nothing here",
                c.name, rule.action
            )));
        }
        if (synonyms.is_some() || seen.contains(&"builtin_synonyms")) && rule.action != Action::Map
        {
            return Err(de::Error::custom(format!(
                "{}: synonyms only apply to action map, not {}",
                c.name, rule.action
            )));
        }
        if value.is_some() {
            rule.value = value;
        }
        if !builtin_synonyms {
            rule.synonyms.clear();
        }
        if let Some(mut own) = synonyms {
            // The file's synonyms come first: they win over a built-in with the same spelling.
            own.append(&mut rule.synonyms);
            rule.synonyms = own;
        }
        check(&rule).map_err(de::Error::custom)?;
        Ok(rule)
    }
}

fn check(rule: &RulePolicy) -> Result<(), String> {
    match rule.problem() {
        Some(problem) => Err(format!("{}: {problem}", rule.constraint.name)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests;
