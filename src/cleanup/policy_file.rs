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

use super::policy::{synonym_problem, value_problem, Action, Policy, PolicyValue, RulePolicy};
use crate::catalog::constraints::{self, Constraint};
use anyhow::{Context, Result};
use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
use std::fmt;
use std::path::Path;

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

/// Reads and checks a policy file; the error names the file and the line.
pub fn load(path: &Path) -> Result<Policy> {
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

/// An action name that applies to the constraint.
struct ActionSeed(&'static Constraint);

impl<'de> DeserializeSeed<'de> for ActionSeed {
    type Value = Action;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for ActionSeed {
    type Value = Action;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "an action for {}: {}",
            self.0.name,
            Action::names_for(self.0)
        )
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Self::Value, E> {
        let c = self.0;
        match Action::parse(name) {
            None => Err(E::custom(format!(
                "unknown action `{name}` for {}; it takes: {}",
                c.name,
                Action::names_for(c)
            ))),
            Some(action) if !action.applies_to(c) => Err(E::custom(format!(
                "action `{name}` does not apply to {}; it takes: {}",
                c.name,
                Action::names_for(c)
            ))),
            Some(action) => Ok(action),
        }
    }
}

/// The value a rule writes, checked against the constraint.
struct ValueSeed(&'static Constraint);

impl ValueSeed {
    fn accept<E: de::Error>(&self, value: PolicyValue) -> Result<PolicyValue, E> {
        match value_problem(self.0, &value) {
            Some(problem) => Err(E::custom(problem)),
            None => Ok(value),
        }
    }
}

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = PolicyValue;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed {
    type Value = PolicyValue;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a value {} accepts", self.0.name)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        self.accept(PolicyValue::Text(v.to_string()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        self.accept(PolicyValue::Integer(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        let v = i64::try_from(v).map_err(|_| too_large(self.0, v))?;
        self.accept(PolicyValue::Integer(v))
    }

    // YAML integers beyond 64 bits arrive here; without these, serde's message would be
    // "invalid type: integer as u128".
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Self::Value, E> {
        Err(too_large(self.0, v))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Self::Value, E> {
        Err(too_large(self.0, v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Err(E::custom(format!(
            "{}: a null value is written with action set_null, not `value`",
            self.0.name
        )))
    }
}

fn too_large<E: de::Error>(c: &Constraint, v: impl fmt::Display) -> E {
    E::custom(format!(
        "{}: {v} is too large: it does not fit a 64-bit integer, let alone the column",
        c.name
    ))
}

/// `synonyms:` — spelling → allowed value.
struct SynonymsSeed(&'static Constraint);

impl<'de> DeserializeSeed<'de> for SynonymsSeed {
    type Value = Vec<(String, String)>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for SynonymsSeed {
    type Value = Vec<(String, String)>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping from spellings to allowed values")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut pairs = Vec::new();
        while let Some(from) = map.next_key_seed(SpellingSeed)? {
            let to = map.next_value_seed(TargetSeed(self.0))?;
            pairs.push((from, to));
        }
        Ok(pairs)
    }
}

/// A synonym's spelling: any scalar, read as text.
struct SpellingSeed;

impl<'de> DeserializeSeed<'de> for SpellingSeed {
    type Value = String;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for SpellingSeed {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a spelling")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(v.to_string())
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(v.to_string())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(v.to_string())
    }
}

/// What a synonym means: an allowed value.
struct TargetSeed(&'static Constraint);

impl<'de> DeserializeSeed<'de> for TargetSeed {
    type Value = String;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for TargetSeed {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a value {} accepts", self.0.name)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        match synonym_problem(self.0, v) {
            Some(problem) => Err(E::custom(problem)),
            None => Ok(v.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

        let e =
            error("constraints:\n  chk_data_sensitivity:\n    action: default\n    value: Huge\n");
        assert_eq!(e.line, Some(4), "{e}");
        assert!(e.message.contains("'Huge'"), "{e}");

        let e =
            error("constraints:\n  chk_evidence_status:\n    synonyms:\n      done: finished\n");
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
}
