//! Errors whose cause a DBA should not have to decode: each gets a line that says what to
//! change. Applied once, where a command's failure is printed.
//!
//! PostgreSQL's errors are recognised by their SQLSTATE and the object they name, never by
//! their wording, which follows the server's `lc_messages`.

use crate::catalog::{audit, HISTORY_SCHEMA, HISTORY_TABLE};
use crate::db;
use postgres::error::{DbError, SqlState};

/// Adds what to do to an error that PostgreSQL words for its own developers. `role` is the
/// role ruleiq-db connects as, when known.
pub fn explain(error: anyhow::Error, role: Option<&str>) -> anyhow::Error {
    let role = role.unwrap_or("<role>");
    if db::is_statement_timeout(&error) {
        return error.context(
            "cancelled by statement_timeout, which the connection options set (ruleiq-db lifts a database, role or server setting by itself): remove `-c statement_timeout=…` from the connection string's options or PGOPTIONS, or raise it",
        );
    }
    let Some(denied) = insufficient_privilege(&error) else {
        return error;
    };
    if names(denied, audit::SCHEMA) {
        return error.context(format!(
            "the role cannot use the audit schema {}, which another role created: GRANT USAGE ON SCHEMA {} TO {role}, and GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA {} TO {role}",
            audit::SCHEMA, audit::SCHEMA, audit::SCHEMA
        ));
    }
    if names(denied, HISTORY_SCHEMA) {
        return error.context(format!(
            "the role cannot create objects in schema {HISTORY_SCHEMA} (the history table {HISTORY_TABLE}, the migrations' tables): GRANT CREATE ON SCHEMA {HISTORY_SCHEMA} TO {role}"
        ));
    }
    error
}

/// The first `insufficient_privilege` (42501) PostgreSQL error in the chain.
fn insufficient_privilege(error: &anyhow::Error) -> Option<&DbError> {
    error.chain().find_map(|cause| {
        cause
            .downcast_ref::<postgres::Error>()
            .and_then(postgres::Error::as_db_error)
            .filter(|db| *db.code() == SqlState::INSUFFICIENT_PRIVILEGE)
    })
}

/// Whether the refused object is `object`: its name is the message's last word (`… schema
/// ruleiq_audit`), where every translation of "permission denied for schema %s" puts it. The
/// error's schema field is no guide: a row-level security refusal sets it to its table's schema.
fn names(denied: &DbError, object: &str) -> bool {
    denied
        .message()
        .rsplit(' ')
        .next()
        .is_some_and(|last| last.trim_matches('"') == object)
}
