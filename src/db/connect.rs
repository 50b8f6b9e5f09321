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
    keep_compat_views_out_of_sight(&mut client)?;
    Ok(client)
}

/// ruleiq-db works on the tables, never through the compatibility views (see
/// `catalog::compat::search_path_without`), whatever search_path the connection came with.
fn keep_compat_views_out_of_sight(client: &mut Client) -> Result<()> {
    let path: String = client
        .query_one("SELECT current_setting('search_path')", &[])?
        .get(0);
    if let Some(path) = crate::catalog::compat::search_path_without(&path) {
        client
            .execute("SELECT set_config('search_path', $1, false)", &[&path])
            .context("setting search_path")?;
    }
    Ok(())
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
