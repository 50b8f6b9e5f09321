//! Errors whose cause a DBA should not have to decode: each gets a line that says what to
//! change. Applied once, where a command's failure is printed.

use crate::catalog::HISTORY_TABLE;
use crate::db;

/// Adds what to do to an error that PostgreSQL or refinery words for their own developers.
/// `role` is the role ruleiq-db connects as, when known.
pub fn explain(error: anyhow::Error, role: Option<&str>) -> anyhow::Error {
    let role = role.unwrap_or("<role>");
    let text = format!("{error:#}");
    if text.contains("error asserting migrations table") {
        return error.context(format!(
            "the role cannot create the history table {HISTORY_TABLE}: GRANT CREATE ON SCHEMA public TO {role}"
        ));
    }
    if db::is_statement_timeout(&error) {
        return error.context(
            "cancelled by statement_timeout, which the connection options set (ruleiq-db lifts a database, role or server setting by itself): remove `-c statement_timeout=…` from the connection string's options or PGOPTIONS, or raise it",
        );
    }
    if text.contains("permission denied for schema ruleiq_audit") {
        return error.context(format!(
            "the role cannot use the audit schema ruleiq_audit, which another role created: GRANT USAGE ON SCHEMA ruleiq_audit TO {role}, and GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA ruleiq_audit TO {role}"
        ));
    }
    error
}
