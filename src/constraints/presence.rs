//! Where each catalog constraint is in a database, and in which state: absent, NOT VALID or
//! valid, under the catalog's name or, for a foreign key production already had, its own.

use crate::catalog::constraints::{Constraint, Rule, CATALOG};
use crate::catalog::renames::legacy_name;
use crate::catalog::repair::ADOPTED_PREFIX;
use crate::catalog::sql::APP_SCHEMA;
use crate::db::Query;
use anyhow::Result;
use serde::Serialize;
use std::collections::HashMap;

/// Whether a catalog constraint exists in the database, and whether it is validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConstraintState {
    Absent,
    NotValid,
    Valid,
}

impl ConstraintState {
    pub fn as_str(self) -> &'static str {
        match self {
            ConstraintState::Absent => "absent",
            ConstraintState::NotValid => "not_valid",
            ConstraintState::Valid => "valid",
        }
    }
}

/// Where a catalog constraint lives in this database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    pub state: ConstraintState,
    /// The constraint's name in the database: the catalog's, or, for a foreign key production
    /// already had and 008 has not adopted yet, its own (e.g. Alembic's `…_business_profil_fkey`).
    pub actual_name: Option<String>,
    /// The name an existing foreign key had before it became (or while it stands for) the
    /// catalog constraint: 008's adoption mark, or the pre-008 name itself.
    pub adopted_from: Option<String>,
}

/// Where each catalog constraint is, in one catalog query: by its name, or, for a foreign key,
/// an existing key on the same column (current or legacy spelling) to the same parent column,
/// which 008 adopts rather than duplicates (docs/design.md §1.2).
pub fn constraint_presence(
    client: &mut (impl Query + ?Sized),
) -> Result<HashMap<&'static str, Presence>> {
    presence_of(client, &CATALOG.iter().collect::<Vec<_>>())
}

/// [`constraint_presence`] of the given constraints (a catalog of a later migration's, too).
pub fn presence_of(
    client: &mut (impl Query + ?Sized),
    catalog: &[&'static Constraint],
) -> Result<HashMap<&'static str, Presence>> {
    let mut names = Vec::new();
    let mut tables = Vec::new();
    let mut columns: Vec<Option<&str>> = Vec::new();
    let mut legacy_columns: Vec<Option<&str>> = Vec::new();
    let mut parents: Vec<Option<&str>> = Vec::new();
    let mut parent_columns: Vec<Option<&str>> = Vec::new();
    for c in catalog {
        names.push(c.name);
        tables.push(c.table);
        match c.rule {
            Rule::ForeignKey {
                column,
                parent,
                parent_column,
            } => {
                columns.push(Some(column));
                legacy_columns.push(legacy_name(c.table, column));
                parents.push(Some(parent));
                parent_columns.push(Some(parent_column));
            }
            _ => {
                columns.push(None);
                legacy_columns.push(None);
                parents.push(None);
                parent_columns.push(None);
            }
        }
    }
    let rows = client.rows(
        "SELECT wanted.name, k.conname::text, k.convalidated,
                obj_description(k.oid, 'pg_constraint')
           FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
                AS wanted(name, tbl, col, legacy_col, parent, parent_col)
           JOIN LATERAL (
                SELECT k.oid, k.conname, k.convalidated FROM pg_constraint k
                 WHERE k.conrelid = to_regclass(format('%I.%I', $7::text, wanted.tbl))
                   AND (k.conname = wanted.name
                        OR (wanted.parent IS NOT NULL AND k.contype = 'f'
                            AND k.confrelid = to_regclass(format('%I.%I', $7::text, wanted.parent))
                            AND k.conkey = ARRAY(SELECT a.attnum FROM pg_attribute a
                                                  WHERE a.attrelid = k.conrelid AND NOT a.attisdropped
                                                    AND a.attname IN (wanted.col, wanted.legacy_col))
                            AND k.confkey = ARRAY(SELECT a.attnum FROM pg_attribute a
                                                   WHERE a.attrelid = k.confrelid AND NOT a.attisdropped
                                                     AND a.attname = wanted.parent_col)))
                 ORDER BY k.conname = wanted.name DESC, k.conname
                 LIMIT 1) AS k ON true",
        &[
            &names,
            &tables,
            &columns,
            &legacy_columns,
            &parents,
            &parent_columns,
            &APP_SCHEMA,
        ],
    )?;
    let mut presence: HashMap<&'static str, Presence> = catalog
        .iter()
        .map(|c| {
            let absent = Presence {
                state: ConstraintState::Absent,
                actual_name: None,
                adopted_from: None,
            };
            (c.name, absent)
        })
        .collect();
    for row in rows {
        let wanted: String = row.get(0);
        let Some(c) = catalog.iter().find(|c| c.name == wanted) else {
            continue;
        };
        let actual: String = row.get(1);
        let note: Option<String> = row.get(3);
        let adopted_from = if actual == c.name {
            note.and_then(|n| n.strip_prefix(ADOPTED_PREFIX).map(str::to_string))
        } else {
            Some(actual.clone())
        };
        let state = if row.get::<_, bool>(2) {
            ConstraintState::Valid
        } else {
            ConstraintState::NotValid
        };
        presence.insert(
            c.name,
            Presence {
                state,
                actual_name: Some(actual),
                adopted_from,
            },
        );
    }
    Ok(presence)
}

/// The state of each catalog constraint in the database (see [`constraint_presence`]).
pub fn constraint_states(
    client: &mut (impl Query + ?Sized),
) -> Result<HashMap<&'static str, ConstraintState>> {
    Ok(constraint_presence(client)?
        .into_iter()
        .map(|(name, p)| (name, p.state))
        .collect())
}
