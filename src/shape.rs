//! The shape of a schema: its tables, columns with their types, indexes, constraints and the
//! extensions it needs; the shape each migration version implies; and how a live database
//! differs from one. `baseline` uses it to recognise the version of a database another tool
//! built, `status` to report drift.
//!
//! There is one source of truth for what version N looks like: the embedded migrations. The
//! expected shapes are not written down here; [`expected`] runs migrations 1..N in a scratch
//! schema, reads the catalog back and rolls everything away.
//!
//! A shape holds tables, columns with their types, nullability and defaults, indexes and
//! constraints with their definitions, enum types with their labels, and extensions (docs/design.md
//! §4). Constraints matter for recognising versions: 8 differs from 7 by its column names *and*
//! by the catalog constraints, so a database whose columns someone renamed by hand is seen as
//! version 7 with hand-renamed columns, not as version 8 without constraints.
//!
//! Each difference is classified in one place, [`classify`]: tolerated, accepted (on purpose,
//! with `baseline --accept-drift`) or blocking. Accepted differences are kept beside the
//! history ([`accepted`]), so `status` shows them as accepted instead of alarming again.

pub mod accepted;
pub mod adopt;
pub mod classify;
mod compare;
mod evidence;
mod probe;

pub use classify::Class;
pub use classify::Finding;
pub use compare::{compare, Difference, Verdict};
pub use evidence::{read_evidence, Evidence};
pub use probe::{expected, live};

use std::collections::BTreeMap;
use std::fmt;

/// One schema object, as the differences name it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Object {
    Extension(String),
    /// An enum type; its definition is its labels in order.
    Type(String),
    Table(String),
    /// A column; its definition is its type.
    Column {
        table: String,
        name: String,
    },
    /// Whether a column is NOT NULL: `NOT NULL` or `NULL`, for every column.
    Nullability {
        table: String,
        column: String,
    },
    /// A column's server-side default, for the columns that have one.
    Default {
        table: String,
        column: String,
    },
    Index {
        table: String,
        name: String,
    },
    Constraint {
        table: String,
        name: String,
    },
}

impl Object {
    /// The table an object lives on (none for tables themselves and extensions).
    pub fn parent_table(&self) -> Option<&str> {
        match self {
            Object::Column { table, .. }
            | Object::Nullability { table, .. }
            | Object::Default { table, .. }
            | Object::Index { table, .. }
            | Object::Constraint { table, .. } => Some(table),
            Object::Extension(_) | Object::Type(_) | Object::Table(_) => None,
        }
    }

    /// The column a column's attribute (nullability, default) belongs to.
    pub fn parent_column(&self) -> Option<Object> {
        match self {
            Object::Nullability { table, column } | Object::Default { table, column } => {
                Some(Object::Column {
                    table: table.clone(),
                    name: column.clone(),
                })
            }
            _ => None,
        }
    }

    /// The object's own name (a column's without its table; an attribute's column).
    pub fn name(&self) -> &str {
        match self {
            Object::Extension(name) | Object::Type(name) | Object::Table(name) => name,
            Object::Column { name, .. }
            | Object::Index { name, .. }
            | Object::Constraint { name, .. } => name,
            Object::Nullability { column, .. } | Object::Default { column, .. } => column,
        }
    }

    /// The same kind of object on the same table under another name (for a column's
    /// attribute: the same attribute of another column).
    fn renamed(&self, other_name: &str) -> Object {
        let other = other_name.to_string();
        match self {
            Object::Extension(_) => Object::Extension(other),
            Object::Type(_) => Object::Type(other),
            Object::Table(_) => Object::Table(other),
            Object::Column { table, .. } => Object::Column {
                table: table.clone(),
                name: other,
            },
            Object::Nullability { table, .. } => Object::Nullability {
                table: table.clone(),
                column: other,
            },
            Object::Default { table, .. } => Object::Default {
                table: table.clone(),
                column: other,
            },
            Object::Index { table, .. } => Object::Index {
                table: table.clone(),
                name: other,
            },
            Object::Constraint { table, .. } => Object::Constraint {
                table: table.clone(),
                name: other,
            },
        }
    }

    fn same_kind_and_table(&self, other: &Object) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
            && self.parent_table() == other.parent_table()
    }
}

impl fmt::Display for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Object::Extension(name) => write!(f, "extension {name}"),
            Object::Type(name) => write!(f, "type {name}"),
            Object::Table(name) => write!(f, "table {name}"),
            Object::Column { table, name } => write!(f, "column {table}.{name}"),
            Object::Nullability { table, column } => {
                write!(f, "nullability of column {table}.{column}")
            }
            Object::Default { table, column } => write!(f, "default of column {table}.{column}"),
            Object::Index { table, name } => write!(f, "index {name} on {table}"),
            Object::Constraint { table, name } => write!(f, "constraint {name} on {table}"),
        }
    }
}

/// A schema's objects, each with what defines it: a column's type, its nullability, its
/// default expression, the normalised definition of an index or constraint (without its own
/// name or schema), an enum's labels, nothing for tables and extensions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shape {
    pub objects: BTreeMap<Object, String>,
}

impl Shape {
    pub fn get(&self, object: &Object) -> Option<&str> {
        self.objects.get(object).map(String::as_str)
    }

    pub fn contains(&self, object: &Object) -> bool {
        self.objects.contains_key(object)
    }

    pub fn has_table(&self, table: &str) -> bool {
        self.contains(&Object::Table(table.to_string()))
    }

    pub fn has_column(&self, table: &str, column: &str) -> bool {
        self.contains(&Object::Column {
            table: table.to_string(),
            name: column.to_string(),
        })
    }
}

/// The shape of every version, 0 (nothing) to the latest embedded migration.
#[derive(Debug, Clone, Default)]
pub struct VersionShapes {
    shapes: BTreeMap<i32, Shape>,
}

impl VersionShapes {
    pub fn new(shapes: BTreeMap<i32, Shape>) -> VersionShapes {
        let mut shapes = shapes;
        shapes.entry(0).or_default();
        VersionShapes { shapes }
    }

    pub fn shape(&self, version: i32) -> Option<&Shape> {
        self.shapes.get(&version)
    }

    /// Every version, 0 included, ascending.
    pub fn versions(&self) -> impl Iterator<Item = i32> + '_ {
        self.shapes.keys().copied()
    }

    pub fn latest(&self) -> i32 {
        self.shapes.keys().copied().max().unwrap_or(0)
    }

    /// The first version whose shape holds this object.
    pub fn introduced_by(&self, object: &Object) -> Option<i32> {
        self.shapes
            .iter()
            .find(|(_, shape)| shape.contains(object))
            .map(|(version, _)| *version)
    }
}

/// How many differences of each verdict a list holds, e.g. `3 tolerated, 1 accepted`.
pub fn verdict_counts(differences: &[Difference]) -> String {
    let counts: Vec<String> = [
        Verdict::Blocking,
        Verdict::NotAccepted,
        Verdict::Accepted,
        Verdict::Tolerated,
    ]
    .iter()
    .filter_map(|verdict| {
        let n = differences.iter().filter(|d| d.verdict == *verdict).count();
        (n > 0).then(|| format!("{n} {}", verdict.as_str()))
    })
    .collect();
    if counts.is_empty() {
        "none".to_string()
    } else {
        counts.join(", ")
    }
}
