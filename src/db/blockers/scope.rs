//! What a command is about to lock: the ruleIQ tables and the lock it takes on them.

use crate::catalog::TABLES;
use std::collections::BTreeSet;

/// The table lock a command asks for, which decides what conflicts with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Takes {
    /// DDL (008's `LOCK TABLE … ACCESS EXCLUSIVE`, a down migration): every lock conflicts.
    AccessExclusive,
    /// UPDATE and DELETE (cleanup): SHARE and stronger conflict.
    RowExclusive,
}

impl Takes {
    /// The `pg_locks.mode` values a granted lock must have to conflict with this one.
    pub(super) fn conflicting_modes(self) -> Vec<&'static str> {
        match self {
            Takes::AccessExclusive => vec![
                "AccessShareLock",
                "RowShareLock",
                "RowExclusiveLock",
                "ShareUpdateExclusiveLock",
                "ShareLock",
                "ShareRowExclusiveLock",
                "ExclusiveLock",
                "AccessExclusiveLock",
            ],
            Takes::RowExclusive => vec![
                "ShareLock",
                "ShareRowExclusiveLock",
                "ExclusiveLock",
                "AccessExclusiveLock",
            ],
        }
    }
}

/// What a command is about to lock.
#[derive(Debug, Clone)]
pub struct Scope {
    /// The command's name, for messages.
    pub command: &'static str,
    /// ruleIQ tables it locks (absent ones are simply not found).
    pub tables: Vec<String>,
    pub takes: Takes,
}

impl Scope {
    pub fn new(command: &'static str, tables: Vec<String>, takes: Takes) -> Scope {
        Scope {
            command,
            tables,
            takes,
        }
    }

    /// A scope for statements about to run: every ruleIQ table they name.
    pub fn of_statements<'a>(
        command: &'static str,
        statements: impl IntoIterator<Item = &'a str>,
        takes: Takes,
    ) -> Scope {
        let mut named = BTreeSet::new();
        for sql in statements {
            named.extend(tables_named(sql));
        }
        // In the catalog's order, so reports read the same every time.
        let tables = TABLES
            .iter()
            .filter(|t| named.contains(**t))
            .map(|t| t.to_string())
            .collect();
        Scope::new(command, tables, takes)
    }
}

/// The ruleIQ tables a statement names as identifiers (plain or double-quoted).
pub fn tables_named(sql: &str) -> BTreeSet<&'static str> {
    let mut found = BTreeSet::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut flush = |word: &mut String| {
        if let Some(table) = TABLES.iter().find(|t| t.eq_ignore_ascii_case(word)) {
            found.insert(*table);
        }
        word.clear();
    };
    for c in sql.chars() {
        if c == '"' {
            flush(&mut word);
            quoted = !quoted;
        } else if quoted || c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            flush(&mut word);
        }
    }
    flush(&mut word);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_found_as_identifiers_only() {
        let named = tables_named(
            r#"LOCK TABLE "evidence_items", business_profiles IN ACCESS EXCLUSIVE MODE; -- users_x"#,
        );
        assert_eq!(
            named.into_iter().collect::<Vec<_>>(),
            ["business_profiles", "evidence_items"]
        );
        assert!(tables_named("ALTER TABLE userss ADD COLUMN users_id int").is_empty());
    }
}
