//! Whether the server may be changed at all: a standby or a read-only server is refused before
//! a changing command does anything.

use crate::db::Query;
use crate::refusal::Refusal;
use anyhow::{Context, Result};
use postgres::Client;
use serde::Serialize;

/// Refuses (exit 4) a changing command on a standby or a read-only server, naming its state.
/// Called before anything else a changing command does on the server.
pub fn refuse_unless_writable(client: &mut Client, server: &str) -> Result<()> {
    let row = client
        .row(
            "SELECT pg_is_in_recovery(),
                    current_setting('transaction_read_only'),
                    current_setting('default_transaction_read_only'),
                    (SELECT source FROM pg_settings WHERE name = 'default_transaction_read_only')",
            &[],
        )
        .context("asking the server whether it is a standby or read-only")?;
    let in_recovery: bool = row.get(0);
    let transaction_read_only: String = row.get(1);
    let default_read_only: String = row.get(2);
    let source: Option<String> = row.get(3);
    if in_recovery {
        return Err(Refusal::NotWritable(format!(
            "the server ({server}) is a standby (in recovery: pg_is_in_recovery() is true): it replays its primary's changes and cannot take any of its own. Point ruleiq-db at the primary; nothing was changed"
        ))
        .into());
    }
    if default_read_only == "on" {
        return Err(Refusal::NotWritable(format!(
            "the server ({server}) is read-only: default_transaction_read_only = on, {}. Lift it there when changes are allowed again; nothing was changed",
            setting_origin(source.as_deref().unwrap_or("unknown"))
        ))
        .into());
    }
    if transaction_read_only == "on" {
        return Err(Refusal::NotWritable(format!(
            "the server ({server}) is read-only: transaction_read_only = on for this session; nothing was changed"
        ))
        .into());
    }
    Ok(())
}

/// Where a setting comes from, as a DBA would change it.
fn setting_origin(source: &str) -> String {
    match source {
        "database" => "set on the database (ALTER DATABASE … SET)".into(),
        "user" => "set on the role (ALTER ROLE … SET)".into(),
        "database user" => {
            "set on the role in this database (ALTER ROLE … IN DATABASE … SET)".into()
        }
        "configuration file" => "set in the server's configuration file".into(),
        "client" | "session" => "set by the connection (options / PGOPTIONS)".into(),
        other => format!("set by {other}"),
    }
}

/// Whether the server is a primary or a standby.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerRole {
    Primary,
    Standby,
}

impl ServerRole {
    pub fn of(client: &mut Client) -> Result<ServerRole> {
        let in_recovery: bool = client.row("SELECT pg_is_in_recovery()", &[])?.get(0);
        Ok(if in_recovery {
            ServerRole::Standby
        } else {
            ServerRole::Primary
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ServerRole::Primary => "primary",
            ServerRole::Standby => "standby",
        }
    }
}
