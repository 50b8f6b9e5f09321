//! The scalar fields of a policy rule (action, value, synonyms), each checked against its
//! constraint while serde reads it, so that an error carries the scalar's own line.

use super::super::policy::{synonym_problem, value_problem, Action, PolicyValue};
use crate::catalog::constraints::Constraint;
use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
use std::fmt;

/// An action name that applies to the constraint.
pub(super) struct ActionSeed(pub(super) &'static Constraint);

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
pub(super) struct ValueSeed(pub(super) &'static Constraint);

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
pub(super) struct SynonymsSeed(pub(super) &'static Constraint);

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
            if pairs.len() == super::MAX_SYNONYMS {
                return Err(de::Error::custom(format!(
                    "{}: more than {} synonyms; a rule lists at most {}",
                    self.0.name,
                    super::MAX_SYNONYMS,
                    super::MAX_SYNONYMS
                )));
            }
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
