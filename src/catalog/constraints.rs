//! The constraint catalog: the one place the six constraints 008 adds are defined. 008's SQL,
//! `migrate`'s preflight, `check-constraints` and `cleanup` all render from it.

use super::sql::{qualified, quote_ident, quote_literal};

/// Allowed evidence statuses (`chk_evidence_status`).
pub const EVIDENCE_STATUSES: &[&str] = &[
    "not_started",
    "in_progress",
    "collected",
    "approved",
    "rejected",
];

/// Allowed data sensitivity levels (`chk_data_sensitivity`).
pub const DATA_SENSITIVITIES: &[&str] = &["Low", "Medium", "High", "Critical"];

/// How a constraint decides that a row is acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// `column IN (values)`.
    OneOf {
        column: &'static str,
        values: &'static [&'static str],
    },
    /// `column > 0`.
    Positive { column: &'static str },
    /// `column <> value OR (each required column IS NOT NULL)`.
    RequiredWhen {
        column: &'static str,
        equals: &'static str,
        required: &'static [&'static str],
    },
    /// `FOREIGN KEY (column) REFERENCES parent(parent_column)`.
    ForeignKey {
        column: &'static str,
        parent: &'static str,
        parent_column: &'static str,
    },
}

/// `check` or `foreign_key`, as reports name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Check,
    ForeignKey,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Check => "check",
            Kind::ForeignKey => "foreign_key",
        }
    }
}

/// One catalog constraint. Column names are the current (post-008) names; see
/// [`Constraint::columns`] and the rename map for legacy databases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Constraint {
    pub name: &'static str,
    pub table: &'static str,
    pub rule: Rule,
    /// The migration that adds it: 008 renders only its own entries, so a constraint a later
    /// migration adds leaves 008's text, and the checksum every database at 8 recorded, alone.
    pub migration: i32,
}

pub const CATALOG: &[Constraint] = &[
    Constraint {
        name: "chk_evidence_status",
        table: "evidence_items",
        rule: Rule::OneOf {
            column: "status",
            values: EVIDENCE_STATUSES,
        },
        migration: super::migrations::REPAIR_VERSION,
    },
    Constraint {
        name: "chk_employee_count_positive",
        table: "business_profiles",
        rule: Rule::Positive {
            column: "employee_count",
        },
        migration: super::migrations::REPAIR_VERSION,
    },
    Constraint {
        name: "chk_data_sensitivity",
        table: "business_profiles",
        rule: Rule::OneOf {
            column: "data_sensitivity",
            values: DATA_SENSITIVITIES,
        },
        migration: super::migrations::REPAIR_VERSION,
    },
    Constraint {
        name: "chk_approval_workflow",
        table: "evidence_items",
        rule: Rule::RequiredWhen {
            column: "status",
            equals: "approved",
            required: &["approved_at", "approved_by"],
        },
        migration: super::migrations::REPAIR_VERSION,
    },
    Constraint {
        name: "fk_assessment_business_profile",
        table: "assessment_sessions",
        rule: Rule::ForeignKey {
            column: "business_profile_id",
            parent: "business_profiles",
            parent_column: "id",
        },
        migration: super::migrations::REPAIR_VERSION,
    },
    Constraint {
        name: "fk_generated_policy_business_profile",
        table: "generated_policies",
        rule: Rule::ForeignKey {
            column: "business_profile_id",
            parent: "business_profiles",
            parent_column: "id",
        },
        migration: super::migrations::REPAIR_VERSION,
    },
];

/// The catalog entry with this name.
pub fn find(name: &str) -> Option<&'static Constraint> {
    CATALOG.iter().find(|c| c.name == name)
}

/// Every catalog name, for error messages.
pub fn names() -> Vec<&'static str> {
    CATALOG.iter().map(|c| c.name).collect()
}

/// How a column is spelled in a particular database: its real name, or an SQL expression that
/// stands for it when the column does not exist yet.
pub trait ColumnSpelling {
    fn column(&self, table: &str, current_name: &str) -> String;
}

/// Spells every column by its current name: the post-008 schema.
pub struct CurrentNames;

impl ColumnSpelling for CurrentNames {
    fn column(&self, _table: &str, current_name: &str) -> String {
        quote_ident(current_name)
    }
}

/// The tables a set of constraints reads (each constraint's own, and a foreign key's parent),
/// each once, in the order first met.
pub fn tables_read<'a>(constraints: impl IntoIterator<Item = &'a Constraint>) -> Vec<&'static str> {
    let mut tables: Vec<&'static str> = Vec::new();
    for c in constraints {
        for table in c.tables_read() {
            if !tables.contains(&table) {
                tables.push(table);
            }
        }
    }
    tables
}

impl Constraint {
    /// The table a foreign key references (None for a CHECK).
    pub fn parent(&self) -> Option<&'static str> {
        match self.rule {
            Rule::ForeignKey { parent, .. } => Some(parent),
            _ => None,
        }
    }

    /// The tables checking the constraint reads: its own, and a foreign key's parent.
    pub fn tables_read(&self) -> impl Iterator<Item = &'static str> {
        std::iter::once(self.table).chain(self.parent())
    }

    pub fn kind(&self) -> Kind {
        match self.rule {
            Rule::ForeignKey { .. } => Kind::ForeignKey,
            _ => Kind::Check,
        }
    }

    /// The columns of its own table the constraint reads, by current name.
    pub fn columns(&self) -> Vec<&'static str> {
        match self.rule {
            Rule::OneOf { column, .. } | Rule::Positive { column } => vec![column],
            Rule::RequiredWhen {
                column, required, ..
            } => std::iter::once(column)
                .chain(required.iter().copied())
                .collect(),
            Rule::ForeignKey { column, .. } => vec![column],
        }
    }

    /// The CHECK expression, spelled for a database (None for a foreign key).
    pub fn check_expression(&self, spelling: &dyn ColumnSpelling) -> Option<String> {
        let col = |name: &str| spelling.column(self.table, name);
        match self.rule {
            Rule::OneOf { column, values } => {
                let list: Vec<String> = values.iter().map(|v| quote_literal(v)).collect();
                Some(format!("{} IN ({})", col(column), list.join(", ")))
            }
            Rule::Positive { column } => Some(format!("{} > 0", col(column))),
            Rule::RequiredWhen {
                column,
                equals,
                required,
            } => {
                let present: Vec<String> = required
                    .iter()
                    .map(|r| format!("{} IS NOT NULL", col(r)))
                    .collect();
                Some(format!(
                    "{} <> {} OR ({})",
                    col(column),
                    quote_literal(equals),
                    present.join(" AND ")
                ))
            }
            Rule::ForeignKey { .. } => None,
        }
    }

    /// A boolean SQL condition that is true exactly for the rows of `self.table` (aliased
    /// `alias`) that violate the constraint. A CHECK is violated when its expression IS FALSE
    /// (NULL passes); a foreign key by a non-NULL value with no parent row.
    pub fn violation_condition(&self, spelling: &dyn ColumnSpelling, alias: &str) -> String {
        let aliased = AliasedSpelling {
            inner: spelling,
            alias,
        };
        match self.rule {
            Rule::ForeignKey {
                column,
                parent,
                parent_column,
            } => {
                let child = aliased.column(self.table, column);
                format!(
                    "{child} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {} AS parent WHERE parent.{} = {child})",
                    qualified(parent),
                    spelling.column(parent, parent_column),
                )
            }
            _ => format!(
                "({}) IS FALSE",
                self.check_expression(&aliased).expect("check rule")
            ),
        }
    }

    /// `ALTER TABLE … ADD CONSTRAINT … NOT VALID`, spelled with current names (008 renames first).
    pub fn add_not_valid_sql(&self) -> String {
        let table = qualified(self.table);
        let name = quote_ident(self.name);
        match self.rule {
            Rule::ForeignKey {
                column,
                parent,
                parent_column,
            } => format!(
                "ALTER TABLE {table} ADD CONSTRAINT {name} FOREIGN KEY ({}) REFERENCES {}({}) NOT VALID",
                quote_ident(column),
                qualified(parent),
                quote_ident(parent_column)
            ),
            _ => format!(
                "ALTER TABLE {table} ADD CONSTRAINT {name} CHECK ({}) NOT VALID",
                self.check_expression(&CurrentNames).expect("check rule")
            ),
        }
    }

    /// `ALTER TABLE … VALIDATE CONSTRAINT …`.
    pub fn validate_sql(&self) -> String {
        self.validate_sql_as(self.name)
    }

    /// VALIDATE under the name the constraint has in the database (a foreign key 008 has not
    /// adopted yet still carries its own).
    pub fn validate_sql_as(&self, actual_name: &str) -> String {
        format!(
            "ALTER TABLE {} VALIDATE CONSTRAINT {}",
            qualified(self.table),
            quote_ident(actual_name)
        )
    }

    /// `ALTER TABLE … DROP CONSTRAINT IF EXISTS …`.
    pub fn drop_sql(&self) -> String {
        format!(
            "ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}",
            qualified(self.table),
            quote_ident(self.name)
        )
    }

    /// The lock `ADD CONSTRAINT … NOT VALID` takes (held briefly: no scan).
    pub fn add_lock(&self) -> String {
        match self.rule {
            Rule::ForeignKey { parent, .. } => format!(
                "SHARE ROW EXCLUSIVE on {} and {parent} (brief, no scan)",
                self.table
            ),
            _ => format!("ACCESS EXCLUSIVE on {} (brief, no scan)", self.table),
        }
    }

    /// The lock VALIDATE takes: reads and writes go on.
    pub fn validate_lock(&self) -> String {
        match self.rule {
            Rule::ForeignKey { parent, .. } => format!(
                "SHARE UPDATE EXCLUSIVE on {}, ROW SHARE on {parent} (reads and writes go on)",
                self.table
            ),
            _ => format!(
                "SHARE UPDATE EXCLUSIVE on {} (reads and writes go on)",
                self.table
            ),
        }
    }
}

/// Prefixes each column with a table alias.
struct AliasedSpelling<'a> {
    inner: &'a dyn ColumnSpelling,
    alias: &'a str,
}

impl ColumnSpelling for AliasedSpelling<'_> {
    fn column(&self, table: &str, current_name: &str) -> String {
        let spelled = self.inner.column(table, current_name);
        // A column that does not exist yet is spelled as an expression (NULL), not a name.
        if spelled.starts_with('"') {
            format!("{}.{spelled}", self.alias)
        } else {
            spelled
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found() {
        for c in CATALOG {
            assert_eq!(find(c.name), Some(c));
            assert_eq!(CATALOG.iter().filter(|o| o.name == c.name).count(), 1);
        }
        assert_eq!(find("chk_nope"), None);
    }

    #[test]
    fn renders_check_and_foreign_key_sql() {
        let status = find("chk_evidence_status").unwrap();
        assert_eq!(
            status.add_not_valid_sql(),
            "ALTER TABLE public.\"evidence_items\" ADD CONSTRAINT \"chk_evidence_status\" CHECK (\"status\" IN ('not_started', 'in_progress', 'collected', 'approved', 'rejected')) NOT VALID"
        );
        let approval = find("chk_approval_workflow").unwrap();
        assert_eq!(
            approval.violation_condition(&CurrentNames, "t"),
            "(t.\"status\" <> 'approved' OR (t.\"approved_at\" IS NOT NULL AND t.\"approved_by\" IS NOT NULL)) IS FALSE"
        );
        let fk = find("fk_assessment_business_profile").unwrap();
        assert_eq!(fk.kind(), Kind::ForeignKey);
        assert!(fk
            .add_not_valid_sql()
            .contains("REFERENCES public.\"business_profiles\"(\"id\") NOT VALID"));
    }
}
