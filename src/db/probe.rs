//! Looking through the application's own connection: which search_path its transactions get.
//!
//! A role-level setting reaches the server sessions opened after it, and a pooler that tracks
//! `search_path` (PgBouncer 1.26+ with a server that reports it) may restore a client's old
//! value on every backend it hands out, hiding the change. So the check asks where the
//! application asks: through its pooled URL, as its role, several transactions held open at
//! once, so that each lands on a backend of its own. Nothing is set; only `SHOW search_path` runs,
//! in the simple protocol (no named statement for a pooler to lose).

use super::config::{ProcessEnv, Target};
use anyhow::{Context, Result};
use postgres::{Client, SimpleQueryMessage};
use serde::Serialize;

/// What the application's connection showed.
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    /// Each distinct search_path seen, in the order first seen.
    pub search_path: Vec<String>,
    /// Transactions asked.
    pub transactions: usize,
    /// Every transaction saw `schema` on its search_path.
    pub ok: bool,
}

/// Asks `transactions` transactions, held open at once on separate connections of `url`, for
/// their search_path; `ok` when every one of them has `schema` on it.
pub fn search_path_seen(url: &str, transactions: usize, schema: &str) -> Result<Probe> {
    let target = Target::resolve(Some(url), &ProcessEnv)
        .context("reading --probe-url (the application's URL)")?;
    let mut clients: Vec<Client> = Vec::new();
    for _ in 0..transactions.max(1) {
        let connector = target.tls.connector()?;
        let mut client = target
            .config
            .connect(connector)
            .with_context(|| format!("connecting to the application's URL ({target})"))?;
        client.simple_query("BEGIN")?;
        clients.push(client);
    }
    let mut seen: Vec<String> = Vec::new();
    let mut ok = true;
    for client in &mut clients {
        let path = client
            .simple_query("SHOW search_path")?
            .into_iter()
            .find_map(|m| match m {
                SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
                _ => None,
            })
            .unwrap_or_default();
        ok &= path
            .split(',')
            .any(|part| part.trim().trim_matches('"') == schema);
        if !seen.contains(&path) {
            seen.push(path);
        }
    }
    for client in &mut clients {
        let _ = client.simple_query("COMMIT");
    }
    Ok(Probe {
        search_path: seen,
        transactions: clients.len(),
        ok,
    })
}
