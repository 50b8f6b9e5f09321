//! How a live schema differs from the shape of a version. What each difference means for
//! adoption and for the next migration is decided in [`super::classify`].

use super::classify::{self, Class, Finding};
use super::{Object, Shape, VersionShapes};
use crate::catalog::migrations::{self, REPAIR_VERSION};
use crate::catalog::renames::{legacy_name, RENAMES};
use serde::Serialize;

/// Where a difference stands: its class, and for an accepted one whether the DBA accepted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Stops adoption (and, for `status`, the next step).
    Blocking,
    /// Needs `baseline --accept-drift` (or, after adoption, was never accepted).
    NotAccepted,
    /// Accepted on purpose, recorded with the history.
    Accepted,
    Tolerated,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Blocking => "blocking",
            Verdict::NotAccepted => "not accepted",
            Verdict::Accepted => "accepted",
            Verdict::Tolerated => "tolerated",
        }
    }

    /// Whether the difference is fine as it stands.
    pub fn is_fine(self) -> bool {
        matches!(self, Verdict::Accepted | Verdict::Tolerated)
    }
}

/// One difference between the database and a version's shape.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Difference {
    pub object: String,
    pub problem: String,
    /// tolerated | accepted | blocking (docs/design.md §4).
    pub kind: Class,
    /// Where it stands: tolerated, accepted, not accepted (yet), blocking.
    pub verdict: Verdict,
    /// What was found: missing, mismatch, extra, …
    pub finding: Finding,
    /// The object under its current names (a legacy column under the name 008 gives it), so an
    /// accepted difference is still recognised after 008.
    #[serde(skip)]
    pub key: String,
}

impl Difference {
    /// A difference about the comparison itself (it could not be made).
    pub fn not_compared(problem: String) -> Difference {
        Difference {
            object: "schema".into(),
            problem,
            kind: Class::Blocking,
            verdict: Verdict::Blocking,
            finding: Finding::Missing,
            key: "schema".into(),
        }
    }

    /// Marks an accepted-class difference as accepted.
    pub fn accept(&mut self) {
        if self.kind == Class::Accepted {
            self.verdict = Verdict::Accepted;
        }
    }
}

/// Every difference between `live` and the shape of `version`, classified: blocking ones
/// first, then the ones to accept, then the tolerated ones, each group in object order. A
/// missing or extra table stands for its columns, indexes and constraints, and a missing or
/// extra column for its nullability and default, which are not listed again.
pub fn compare(shapes: &VersionShapes, version: i32, live: &Shape) -> Vec<Difference> {
    let Some(expected) = shapes.shape(version) else {
        return vec![Difference::not_compared(format!(
            "version {version} is not one of the embedded migrations"
        ))];
    };
    let mut differences = Vec::new();
    let mut push = |object: &Object, finding: Finding, problem: String| {
        let (kind, why) = classify::classify(object, finding, version, shapes);
        let problem = match why {
            Some(why) => format!("{problem}; {why}"),
            None => problem,
        };
        differences.push(Difference {
            object: object.to_string(),
            problem,
            kind,
            verdict: match kind {
                Class::Blocking => Verdict::Blocking,
                Class::Accepted => Verdict::NotAccepted,
                Class::Tolerated => Verdict::Tolerated,
            },
            finding,
            key: key(object),
        });
    };
    for (object, wanted) in &expected.objects {
        if object
            .parent_table()
            .is_some_and(|table| !live.has_table(table))
        {
            continue;
        }
        let Some(counterpart) = counterpart(object, live) else {
            continue; // the column itself is reported
        };
        match live.get(&counterpart) {
            Some(found) if found == wanted => {}
            Some(found) if same_after_renames(object, wanted, found) => {}
            Some(found) => push(object, Finding::Mismatch, mismatch(object, wanted, found)),
            None => {
                let (finding, problem) = absent(shapes, object, wanted, live);
                push(object, finding, problem);
            }
        }
    }
    for object in live.objects.keys() {
        if expected.contains(object) || matches!(object, Object::Extension(_)) {
            // Every database has plpgsql, and DBAs add their own extensions: only the ones the
            // migrations need are compared.
            continue;
        }
        if object
            .parent_table()
            .is_some_and(|table| !expected.has_table(table))
        {
            continue;
        }
        if object
            .parent_column()
            .is_some_and(|column| !expected.contains(&column))
        {
            continue;
        }
        if let Some((finding, problem)) = surplus(shapes, version, expected, object, live) {
            push(object, finding, problem);
        }
    }
    differences.sort_by_key(|d| d.verdict);
    differences
}

/// The object under its current names, for recognising a difference across 008's renames.
pub fn key(object: &Object) -> String {
    let legacy_column = match object {
        Object::Column {
            table,
            name: column,
        }
        | Object::Nullability { table, column }
        | Object::Default { table, column } => RENAMES
            .iter()
            .find(|r| r.table == table && r.legacy == column),
        _ => None,
    };
    match legacy_column {
        Some(r) => object.renamed(r.current).to_string(),
        None => object.to_string(),
    }
}

/// Where the live database keeps what `object` describes: the object itself, or for an
/// attribute of a legacy column renamed by hand the same attribute of the renamed column.
/// None when the attribute's column is not there at all.
fn counterpart(object: &Object, live: &Shape) -> Option<Object> {
    let Some(column) = object.parent_column() else {
        return Some(object.clone());
    };
    if live.contains(&column) {
        return Some(object.clone());
    }
    let Object::Column { table, name } = &column else {
        return None;
    };
    let r = RENAMES
        .iter()
        .find(|r| r.table == table && r.legacy == name)?;
    live.has_column(table, r.current)
        .then(|| object.renamed(r.current))
}

/// Whether an index or constraint differs only by columns renamed by hand (their names appear
/// in its definition): 008 renames the rest, and the definitions then agree.
fn same_after_renames(object: &Object, wanted: &str, found: &str) -> bool {
    let (Object::Index { table, .. } | Object::Constraint { table, .. }) = object else {
        return false;
    };
    let current = |definition: &str| {
        RENAMES
            .iter()
            .filter(|r| r.table == table)
            .fold(definition.to_string(), |text, r| {
                replace_word(&text, r.legacy, r.current)
            })
    };
    current(wanted) == current(found)
}

/// `text` with every whole-word occurrence of the identifier `from` replaced by `to`.
fn replace_word(text: &str, from: &str, to: &str) -> String {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(from) {
        let before = rest[..at].chars().next_back();
        let after = rest[at + from.len()..].chars().next();
        let whole = !before.is_some_and(is_word) && !after.is_some_and(is_word);
        out.push_str(&rest[..at]);
        out.push_str(if whole { to } else { from });
        rest = &rest[at + from.len()..];
    }
    out.push_str(rest);
    out
}

fn mismatch(object: &Object, wanted: &str, found: &str) -> String {
    match object {
        Object::Column { .. } => format!("type is {found}, expected {wanted}"),
        Object::Nullability { .. } => {
            let spell = |d: &str| {
                if d == "NOT NULL" {
                    "NOT NULL"
                } else {
                    "nullable"
                }
            };
            format!("is {}, expected {}", spell(found), spell(wanted))
        }
        Object::Default { .. } => format!("default is {found}, expected {wanted}"),
        Object::Type(_) => format!("labels are {found}, expected {wanted}"),
        _ => format!("defined as `{found}`, expected `{wanted}`"),
    }
}

/// Why an object of the version is not in the database.
fn absent(
    shapes: &VersionShapes,
    object: &Object,
    wanted: &str,
    live: &Shape,
) -> (Finding, String) {
    if let Object::Column { table, name } = object {
        // A legacy column already renamed by hand: 008 renames only what is still truncated.
        if let Some(r) = RENAMES
            .iter()
            .find(|r| r.table == table && r.legacy == name)
        {
            let full = object.renamed(r.current);
            return match live.get(&full) {
                Some(found) if found == wanted => (
                    Finding::RenamedByHand,
                    format!("already renamed by hand to {} (008 accepts it)", r.current),
                ),
                Some(found) => (
                    Finding::Mismatch,
                    format!(
                        "renamed by hand to {}, whose type is {found}, expected {wanted}",
                        r.current
                    ),
                ),
                None => (
                    Finding::Missing,
                    format!(
                        "missing under either name, {} or {} ({} creates it)",
                        r.legacy,
                        r.current,
                        shapes
                            .introduced_by(object)
                            .map_or_else(|| "ruleIQ's migrations".to_string(), migration_label)
                    ),
                ),
            };
        }
        if let Some(legacy) = legacy_name(table, name) {
            if live.contains(&object.renamed(legacy)) {
                return (
                    Finding::NotRenamed,
                    format!("still has the truncated name {legacy}"),
                );
            }
        }
    }
    if let Object::Default { .. } = object {
        return (Finding::Missing, format!("no default, expected {wanted}"));
    }
    if matches!(object, Object::Index { .. } | Object::Constraint { .. }) {
        // The same definition under another name (a tool with other naming conventions).
        if let Some((twin, _)) = live
            .objects
            .iter()
            .find(|(o, d)| o.same_kind_and_table(object) && d.as_str() == wanted)
        {
            return (
                Finding::Missing,
                format!(
                    "{}; an identical one exists under the name {}",
                    missing_text(shapes, object),
                    twin.name(),
                ),
            );
        }
    }
    (Finding::Missing, missing_text(shapes, object))
}

fn missing_text(shapes: &VersionShapes, object: &Object) -> String {
    match shapes.introduced_by(object) {
        Some(v) => format!("missing ({} creates it)", migration_label(v)),
        None => "missing".into(),
    }
}

/// What to say about an object the database has and the version does not; `None` when it is
/// already reported from the other side (a hand rename).
fn surplus(
    shapes: &VersionShapes,
    version: i32,
    expected: &Shape,
    object: &Object,
    live: &Shape,
) -> Option<(Finding, String)> {
    if let Object::Default { .. } = object {
        let found = live.get(object).unwrap_or_default();
        return Some((Finding::Extra, format!("default {found}, expected none")));
    }
    if let Object::Column { table, name } = object {
        if let Some(r) = RENAMES
            .iter()
            .find(|r| r.table == table && r.legacy == name)
        {
            if expected.has_column(table, r.current) {
                // Reported as not renamed unless the full name exists too.
                return live.has_column(table, r.current).then(|| {
                    (
                        Finding::RenameConflict,
                        format!(
                            "the truncated name exists beside {}: rolling 008 back renames {} back to {name} and stops while both exist",
                            r.current, r.current
                        ),
                    )
                });
            }
        }
        if let Some(legacy) = legacy_name(table, name) {
            if expected.has_column(table, legacy) {
                // Reported as renamed by hand unless the truncated name exists too.
                return live.has_column(table, legacy).then(|| {
                    (
                        Finding::RenameConflict,
                        format!(
                            "both {legacy} and {name} exist: 008 renames {legacy} to {name} and stops while both exist (it never chooses which one holds the data)"
                        ),
                    )
                });
            }
        }
    }
    let problem = match shapes.introduced_by(object) {
        // 008 renames only what is still truncated and adds only absent constraints, so part of
        // it done by hand is no obstacle; the plain SQL migrations are not written that way.
        Some(v) if v > version && v != REPAIR_VERSION => {
            return Some((
                Finding::Ahead,
                format!(
                    "belongs to {}, beyond version {version}",
                    migration_label(v)
                ),
            ));
        }
        Some(v) if v > version => format!(
            "extra; {} creates it too and keeps the one that exists",
            migration_label(v)
        ),
        Some(_) => format!("extra; version {version} no longer has it"),
        None => "extra (not created by ruleIQ's migrations); left alone".into(),
    };
    Some((Finding::Extra, problem))
}

fn migration_label(version: i32) -> String {
    match migrations::get(version) {
        Some(m) => format!("V{version} {}", m.name()),
        None => format!("V{version}"),
    }
}

#[cfg(test)]
mod tests;
