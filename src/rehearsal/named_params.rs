//! A DBA's own queries for `rehearse --queries FILE`: the YAML file (a list of `name`, `sql`
//! with `:named` parameters, `params`, and optionally `sql_after`, the query spelled with the
//! full column names), `:named` parameters turned into bound ones (`$1`, `$2`, …; the values are
//! never spliced into the text), and legacy column names turned into the names 008 gives them.

use crate::catalog::renames::RENAMES;
use crate::db::query::SqlType;
use anyhow::{bail, Context as _, Result};
use postgres::types::{to_sql_checked, Format, IsNull, ToSql, Type};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// A query to measure before and after 008.
#[derive(Debug, Clone, PartialEq)]
pub struct QuerySpec {
    pub name: String,
    /// With the legacy names: at version 7, and at version 8 through `ruleiq_compat`.
    pub sql_before: String,
    /// With the full names: at version 8 against the tables.
    pub sql_after: String,
    /// The values of `$1`, `$2`, … as text (None for NULL); the server reads each as the type
    /// the query gives its place, as it would a literal.
    pub params: Vec<Option<String>>,
    /// The parameters by name, as shown in the report.
    pub shown: BTreeMap<String, Option<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    sql: String,
    #[serde(default)]
    sql_after: Option<String>,
    #[serde(default)]
    params: BTreeMap<String, serde_yaml::Value>,
}

/// Reads `--queries FILE`: a YAML list of `{name, sql, params}` (`sql_after` optional).
pub fn read_file(path: &Path) -> Result<Vec<QuerySpec>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the queries file {}", path.display()))?;
    parse(&text).with_context(|| format!("in the queries file {}", path.display()))
}

/// [`read_file`] on the file's text.
pub fn parse(text: &str) -> Result<Vec<QuerySpec>> {
    let entries: Vec<Entry> = serde_yaml::from_str(text).context(
        "expected a list of queries, each `name:`, `sql:` (with :named parameters) and `params:`",
    )?;
    if entries.is_empty() {
        bail!("it holds no query");
    }
    let mut seen = Vec::new();
    entries
        .into_iter()
        .map(|e| {
            if seen.contains(&e.name) {
                bail!("two queries are named {}", e.name);
            }
            seen.push(e.name.clone());
            let values: BTreeMap<String, Option<String>> = e
                .params
                .iter()
                .map(|(k, v)| {
                    Ok((
                        k.clone(),
                        param_text(v)
                            .with_context(|| format!("query {}: parameter {k}", e.name))?,
                    ))
                })
                .collect::<Result<_>>()?;
            let (sql_before, params) =
                bind_named(&e.sql, &values).with_context(|| format!("query {}", e.name))?;
            let after_text = e
                .sql_after
                .clone()
                .unwrap_or_else(|| legacy_to_current(&e.sql));
            let (sql_after, after_params) = bind_named(&after_text, &values)
                .with_context(|| format!("query {} (sql_after)", e.name))?;
            if after_params != params {
                bail!(
                    "query {}: sql_after must use the same parameters in the same order as sql",
                    e.name
                );
            }
            Ok(QuerySpec {
                name: e.name,
                sql_before,
                sql_after,
                params,
                shown: values,
            })
        })
        .collect()
}

/// A YAML value as the text PostgreSQL reads for a parameter: a list becomes an array literal,
/// a mapping JSON.
fn param_text(value: &serde_yaml::Value) -> Result<Option<String>> {
    use serde_yaml::Value as V;
    Ok(match value {
        V::Null => None,
        V::Bool(b) => Some(b.to_string()),
        V::Number(n) => Some(n.to_string()),
        V::String(s) => Some(s.clone()),
        V::Sequence(items) => {
            let elements: Vec<String> = items
                .iter()
                .map(|item| match param_text(item)? {
                    None => Ok("NULL".to_string()),
                    Some(text) => Ok(format!(
                        "\"{}\"",
                        text.replace('\\', "\\\\").replace('"', "\\\"")
                    )),
                })
                .collect::<Result<_>>()?;
            Some(format!("{{{}}}", elements.join(",")))
        }
        V::Mapping(_) => Some(serde_json::to_string(value)?),
        V::Tagged(tagged) => param_text(&tagged.value)?,
    })
}

/// A piece of SQL text as [`rewrite`] sees it.
enum Piece<'a> {
    /// An unquoted identifier or keyword.
    Word(&'a str),
    /// `:name`.
    Named(&'a str),
    /// `$1`.
    Positional,
}

/// Copies `sql`, letting `change` replace words and parameters; strings, quoted identifiers,
/// comments, dollar quotes and `::` casts are copied as they are.
fn rewrite(
    sql: &str,
    mut change: impl FnMut(Piece<'_>) -> Result<Option<String>>,
) -> Result<String> {
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let mut i = 0;
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80;
    let until = |from: usize, end: &str| {
        sql[from..]
            .find(end)
            .map_or(sql.len(), |p| from + p + end.len())
    };
    while i < b.len() {
        let c = b[i];
        let start = i;
        if c == b'-' && b.get(i + 1) == Some(&b'-') {
            i = until(i, "\n");
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            i = until(i + 2, "*/");
        } else if c == b'\'' || c == b'"' {
            i += 1;
            while i < b.len() {
                if b[i] == c && b.get(i + 1) == Some(&c) {
                    i += 2;
                } else if b[i] == c {
                    i += 1;
                    break;
                } else {
                    i += 1;
                }
            }
        } else if c == b':' && b.get(i + 1) == Some(&b':') {
            i += 2;
        } else if c == b':'
            && b.get(i + 1)
                .is_some_and(|&d| d.is_ascii_alphabetic() || d == b'_')
        {
            i += 1;
            while i < b.len() && ident(b[i]) {
                i += 1;
            }
            out.push_str(
                &change(Piece::Named(&sql[start + 1..i]))?
                    .unwrap_or_else(|| sql[start..i].to_string()),
            );
            continue;
        } else if c == b'$'
            && b.get(i + 1).is_some_and(u8::is_ascii_digit)
            && (i == 0 || !ident(b[i - 1]))
        {
            i += 1;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            out.push_str(&change(Piece::Positional)?.unwrap_or_else(|| sql[start..i].to_string()));
            continue;
        } else if c == b'$' && (i == 0 || !ident(b[i - 1])) {
            let tag_end = sql[i + 1..].find('$').map(|p| i + 1 + p);
            match tag_end {
                Some(end)
                    if sql[i + 1..end].bytes().all(ident)
                        && !sql[i + 1..end].starts_with(|c: char| c.is_ascii_digit()) =>
                {
                    let tag = &sql[i..=end];
                    i = until(end + 1, tag);
                }
                _ => i += 1,
            }
        } else if ident(c) && !c.is_ascii_digit() {
            while i < b.len() && (ident(b[i]) || b[i] == b'$') {
                i += 1;
            }
            out.push_str(
                &change(Piece::Word(&sql[start..i]))?.unwrap_or_else(|| sql[start..i].to_string()),
            );
            continue;
        } else {
            // One character (a multi-byte one whole).
            i += sql[i..].chars().next().map_or(1, char::len_utf8);
        }
        out.push_str(&sql[start..i]);
    }
    Ok(out)
}

/// `:name` → `$n` (the same name the same number), with the values in order. A name without a
/// value is an error naming it; so is a positional `$1`.
pub fn bind_named(
    sql: &str,
    values: &BTreeMap<String, Option<String>>,
) -> Result<(String, Vec<Option<String>>)> {
    let mut order: Vec<String> = Vec::new();
    let mut missing: Vec<String> = Vec::new();
    let text = rewrite(
        sql.trim().trim_end_matches(';').trim_end(),
        |piece| match piece {
            Piece::Named(name) => {
                if !values.contains_key(name) {
                    if !missing.iter().any(|m| m == name) {
                        missing.push(name.to_string());
                    }
                    return Ok(None);
                }
                let n = match order.iter().position(|o| o == name) {
                    Some(n) => n + 1,
                    None => {
                        order.push(name.to_string());
                        order.len()
                    }
                };
                Ok(Some(format!("${n}")))
            }
            Piece::Positional => bail!("use :named parameters (with params:), not $1, $2, …"),
            Piece::Word(_) => Ok(None),
        },
    )?;
    if !missing.is_empty() {
        bail!(
            "no value for the parameter{} {} (add {} under params:)",
            if missing.len() == 1 { "" } else { "s" },
            missing
                .iter()
                .map(|m| format!(":{m}"))
                .collect::<Vec<_>>()
                .join(", "),
            if missing.len() == 1 { "it" } else { "them" }
        );
    }
    let params = order.iter().map(|name| values[name].clone()).collect();
    Ok((text, params))
}

/// The query with every legacy column name 008 renames spelled with its full name (when the
/// legacy name means one full name in every table), as new application code spells it.
pub fn legacy_to_current(sql: &str) -> String {
    let current = |word: &str| -> Option<&'static str> {
        let mut names = RENAMES
            .iter()
            .filter(|r| r.legacy.eq_ignore_ascii_case(word))
            .map(|r| r.current);
        let first = names.next()?;
        names.all(|n| n == first).then_some(first)
    };
    rewrite(sql, |piece| {
        Ok(match piece {
            Piece::Word(word) => current(word).map(str::to_string),
            _ => None,
        })
    })
    .unwrap_or_else(|_| sql.to_string())
}

/// A parameter sent as text with no type of its own: the server gives it the type its place
/// in the query calls for and reads the text as it would a literal (a uuid, a number, an array).
#[derive(Debug, Clone)]
pub struct Untyped(pub Option<String>);

impl ToSql for Untyped {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match &self.0 {
            Some(text) => {
                out.extend_from_slice(text.as_bytes());
                Ok(IsNull::No)
            }
            None => Ok(IsNull::Yes),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    fn encode_format(&self, _: &Type) -> Format {
        Format::Text
    }

    to_sql_checked!();
}

impl SqlType for Untyped {
    const TYPE: Type = Type::UNKNOWN;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, Option<String>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Some(v.to_string())))
            .collect()
    }

    #[test]
    fn named_parameters_become_bound_ones_and_text_stays_text() {
        let (sql, params) = bind_named(
            "SELECT ':not_a_param', x::text, \"col:umn\" -- :nor_this\nFROM t WHERE a = :user AND b = ANY(:statuses) AND c = :user /* :no */ AND d = $$ :no $$;",
            &values(&[("user", "u1"), ("statuses", "{a,b}"), ("unused", "x")]),
        )
        .unwrap();
        assert_eq!(
            sql,
            "SELECT ':not_a_param', x::text, \"col:umn\" -- :nor_this\nFROM t WHERE a = $1 AND b = ANY($2) AND c = $1 /* :no */ AND d = $$ :no $$"
        );
        assert_eq!(params, [Some("u1".to_string()), Some("{a,b}".to_string())]);
    }

    #[test]
    fn a_missing_parameter_is_named() {
        let e = bind_named("SELECT :a, :b, :c", &values(&[("a", "1")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no value for the parameters :b, :c (add them under params:)"
        );
        let e = bind_named("SELECT $1", &values(&[])).unwrap_err();
        assert!(e.to_string().contains(":named"), "{e}");
    }

    #[test]
    fn legacy_names_become_full_names_outside_text() {
        assert_eq!(
            legacy_to_current("SELECT bp.handles_persona, 'handles_persona' FROM business_profiles bp JOIN assessment_sessions a ON a.business_profil = bp.id"),
            "SELECT bp.handles_personal_data, 'handles_persona' FROM business_profiles bp JOIN assessment_sessions a ON a.business_profile_id = bp.id"
        );
    }

    #[test]
    fn the_file_is_a_list_of_named_queries() {
        let specs = parse(
            "- name: profiles_by_sensitivity\n  sql: SELECT id FROM business_profiles WHERE data_sensitivity = ANY(:levels) AND handles_persona = :personal\n  params:\n    levels: [High, \"Crit\\\"ical\"]\n    personal: true\n",
        )
        .unwrap();
        assert_eq!(specs.len(), 1);
        let s = &specs[0];
        assert_eq!(s.sql_before, "SELECT id FROM business_profiles WHERE data_sensitivity = ANY($1) AND handles_persona = $2");
        assert_eq!(s.sql_after, "SELECT id FROM business_profiles WHERE data_sensitivity = ANY($1) AND handles_personal_data = $2");
        assert_eq!(
            s.params,
            [
                Some("{\"High\",\"Crit\\\"ical\"}".to_string()),
                Some("true".to_string())
            ]
        );
        let e = parse("- name: q\n  sql: SELECT :x\n").unwrap_err();
        assert!(format!("{e:#}").contains(":x"), "{e:#}");
    }
}
