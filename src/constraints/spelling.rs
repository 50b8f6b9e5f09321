//! How this database spells the catalog's columns (current name, legacy name, or not there
//! yet), and the one state neither spelling can settle: both names present.

use crate::catalog::constraints::ColumnSpelling;
use crate::catalog::renames::legacy_name;
use crate::catalog::sql::quote_ident;
use crate::db::Query;
use anyhow::Result;
use postgres::{Client, GenericClient};
use std::collections::HashMap;

/// How columns are spelled in this database: current name, else the legacy name from the
/// rename map, else NULL (a column a pending migration will add without a default, which is
/// exactly the value it will hold).
#[derive(Debug, Clone, Default)]
pub struct DatabaseSpelling {
    columns: HashMap<String, Vec<String>>,
}

impl DatabaseSpelling {
    pub fn read(
        client: &mut (impl Query + GenericClient),
        tables: &[&str],
    ) -> Result<DatabaseSpelling> {
        let mut columns = HashMap::new();
        for table in tables {
            let present = crate::db::columns_of(client, table)?;
            if !present.is_empty() {
                columns.insert(table.to_string(), present);
            }
        }
        Ok(DatabaseSpelling { columns })
    }

    /// The spelling of a database whose tables have exactly these columns, given by hand
    /// (database-free tests render SQL at one schema version's spelling with it).
    pub fn from_columns<'a>(
        tables: impl IntoIterator<Item = (&'a str, Vec<String>)>,
    ) -> DatabaseSpelling {
        DatabaseSpelling {
            columns: tables
                .into_iter()
                .map(|(table, columns)| (table.to_string(), columns))
                .collect(),
        }
    }

    pub fn has_table(&self, table: &str) -> bool {
        self.columns.contains_key(table)
    }

    /// The real name of a column (current or legacy), if the column exists.
    pub fn actual_name(&self, table: &str, current: &str) -> Option<String> {
        let present = self.columns.get(table)?;
        if present.iter().any(|c| c == current) {
            return Some(current.to_string());
        }
        let legacy = legacy_name(table, current)?;
        present
            .iter()
            .any(|c| c == legacy)
            .then(|| legacy.to_string())
    }
}

impl ColumnSpelling for DatabaseSpelling {
    fn column(&self, table: &str, current_name: &str) -> String {
        self.actual_name(table, current_name)
            .map(|name| quote_ident(&name))
            .unwrap_or_else(|| "NULL".to_string())
    }
}

/// Refuses (exit 4) when a table has both the legacy and the full name of a renamed column:
/// neither 008 nor its down can decide which one holds the data. `doing` names what cannot go
/// on, `again` what to run once a person has decided.
pub fn refuse_rename_conflicts(client: &mut Client, doing: &str, again: &str) -> Result<()> {
    let mut conflicts = Vec::new();
    for r in crate::catalog::renames::RENAMES {
        let columns = crate::db::columns_of(client, r.table)?;
        if columns.iter().any(|c| c == r.legacy) && columns.iter().any(|c| c == r.current) {
            conflicts.push(format!("{}: both {} and {}", r.table, r.legacy, r.current));
        }
    }
    if conflicts.is_empty() {
        return Ok(());
    }
    crate::refusal::Refusal::RenameConflict(format!(
        "rename conflict, {doing}: {}. 008 renames each truncated column to its full name (its rollback renames it back) and never chooses which of two columns holds the application's data, so it stops here; nothing was changed. `ruleiq-db status` lists the conflict; {again} once a single name is left",
        conflicts.join("; ")
    ))
    .fail()
}

/// A failed 008 or 008 down as it is reported: the refusal `rename_conflict`, worded by
/// `refused`, when the migration's own conflict check raised it inside the transaction
/// (SQLSTATE `RENAME_CONFLICT_SQLSTATE`: a column appeared under both names after the check
/// before); any other error with `context`.
pub fn conflict_raised_or(
    error: anyhow::Error,
    refused: impl FnOnce(&anyhow::Error) -> String,
    context: String,
) -> anyhow::Error {
    let raised = crate::db::sql_state(&error)
        .is_some_and(|s| s.code() == crate::catalog::repair::RENAME_CONFLICT_SQLSTATE);
    if raised {
        crate::refusal::Refusal::RenameConflict(refused(&error)).into()
    } else {
        error.context(context)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_columns_are_spelled_by_their_truncated_name_and_absent_ones_as_null() {
        let mut spelling = DatabaseSpelling::default();
        spelling.columns.insert(
            "assessment_sessions".into(),
            vec!["id".into(), "business_profil".into()],
        );
        spelling
            .columns
            .insert("evidence_items".into(), vec!["id".into(), "status".into()]);
        assert_eq!(
            spelling.column("assessment_sessions", "business_profile_id"),
            "\"business_profil\""
        );
        assert_eq!(spelling.column("evidence_items", "approved_at"), "NULL");
        let approval = crate::catalog::constraints::find("chk_approval_workflow").unwrap();
        assert_eq!(
            approval.violation_condition(&spelling, "t"),
            "(t.\"status\" <> 'approved' OR (NULL IS NOT NULL AND NULL IS NOT NULL)) IS FALSE"
        );
    }
}
