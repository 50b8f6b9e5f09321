//! Opening a connection: TLS, the error a DBA can read, and the session settings every
//! ruleiq-db connection starts with (search_path without the compatibility views, a lifted
//! server-side statement_timeout).

use super::config::Target;
use anyhow::{Context, Result};
use postgres::Client;

/// Opens a connection, with an error that names the server but never the password.
pub fn connect(target: &Target) -> Result<Client> {
    let connector = target.tls.connector()?;
    let mut client = target.config.connect(connector).map_err(|e| {
        anyhow::anyhow!("cannot connect to {target}: {}", describe_connect_error(&e))
    })?;
    // So that looking for blockers never names one of this process's own connections.
    super::own_sessions::remember(&mut client);
    set_safe_search_path(&mut client)?;
    Ok(client)
}

/// The only search_path a ruleiq-db session has: no schema another role can create objects in.
/// A database whose search_path starts with a writable schema would otherwise let a planted
/// `lower(varchar)` run with our (often superuser) rights, or a planted `business_profiles`
/// stand in for the real table; every object of ours is named with its schema instead
/// (`catalog::sql::qualified`). The compatibility views are out of sight as a consequence.
pub const SAFE_SEARCH_PATH: &str = "pg_catalog, pg_temp";

fn set_safe_search_path(client: &mut Client) -> Result<()> {
    if super::query::pooled() {
        // Through a transaction-mode pooler a session setting would stay on a backend the
        // application gets next: each transaction sets it with SET LOCAL (`db::query`).
        return Ok(());
    }
    client
        .batch_execute(&format!("SET search_path = {SAFE_SEARCH_PATH}"))
        .context("setting search_path")
}

fn describe_connect_error(error: &postgres::Error) -> String {
    // The Display of a connection error ends in its cause; keep one line.
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text.replace('\n', " ")
}

/// Lifts a `statement_timeout` that the server configuration, the database or the role sets
/// (`ALTER DATABASE … SET statement_timeout`): it is meant for the application's queries, and
/// would cancel a VALIDATE or a scan of a big table half-way. Table lock waits stay bounded by
/// `lock_timeout`. One set in the connection options (`options=-c statement_timeout=…`,
/// `PGOPTIONS`) is the operator's own choice for this run and is kept.
///
/// Returns what to say on stderr, if anything.
pub fn lift_statement_timeout(client: &mut Client) -> Result<Option<String>> {
    let row = client
        .query_one(
            "SELECT setting, unit, source FROM pg_settings WHERE name = 'statement_timeout'",
            &[],
        )
        .context("reading statement_timeout")?;
    let setting: String = row.get(0);
    let unit: Option<String> = row.get(1);
    let source: String = row.get(2);
    if setting == "0" {
        return Ok(None);
    }
    let value = format!("{setting}{}", unit.unwrap_or_default());
    if source == "client" {
        return Ok(Some(format!(
            "statement_timeout = {value} from the connection options is kept: a longer statement (a VALIDATE, a scan of a big table) will be cancelled"
        )));
    }
    client
        .batch_execute("SET statement_timeout = 0")
        .context("lifting statement_timeout for this session")?;
    Ok(Some(format!(
        "statement_timeout = {value} (set for the {}) is lifted for ruleiq-db's own sessions: its scans and VALIDATE may take longer than that",
        setting_origin(&source)
    )))
}

fn setting_origin(source: &str) -> &str {
    match source {
        "database" => "database",
        "user" => "role",
        "database user" => "role in this database",
        "configuration file" => "server, in its configuration file",
        other => other,
    }
}
