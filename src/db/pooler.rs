//! Knowing where we are connected: straight to PostgreSQL, through a pooler that gives each
//! client its own server backend (session mode), or through one that hands the backend to
//! another client after every transaction (transaction or statement mode, as Neon's `-pooler`
//! endpoint and PgBouncer in front of most managed databases).
//!
//! Behind a transaction-mode pooler a "session" is not one backend: the migration advisory
//! lock, `lock_timeout` and every session setting would land on a backend the application uses
//! next, and a lock taken there outlives ruleiq-db. So changing commands refuse such a path
//! ([`refuse_if_pooled`]) and reading ones go on without any session state (`db::query`).
//! Behind a session-mode pooler a backend is ours until we disconnect, and then the next
//! client's, settings and all: there only a `Session` and its workers, which reset what they
//! set, make a session setting.
//!
//! Two signals are combined (docs/design.md, "Production's connection path"):
//! - every connection asks for a harmless startup option (`-c ruleiq.path_probe=on`); PgBouncer
//!   refuses a startup `options` parameter, and a pooler told to ignore it drops it. PostgreSQL
//!   itself takes it. So a connection whose option arrived goes straight to a server.
//! - when the option did not arrive, or the host is a known pooler's, two connections take turns
//!   asking `pg_backend_pid()` in the simple protocol. In session mode (and directly) each keeps
//!   its own backend for as long as it is connected; in transaction mode one connection sees
//!   several backends, or the two share one.
//!
//! Neither signal leaves anything on a server: the probe is a startup option of our own
//! connection, the turns run no statement but `SELECT pg_backend_pid()`.

use super::config::Target;
use crate::refusal::Refusal;
use anyhow::Result;
use postgres::{Client, SimpleQueryMessage};
use serde::Serialize;
use std::collections::BTreeSet;
use std::sync::Mutex;

/// The startup option every connection asks for; see the module doc.
pub const PROBE_OPTION: &str = "-c ruleiq.path_probe=on";
const PROBE_SETTING: &str = "ruleiq.path_probe";

/// How a connection reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Via {
    /// Straight to PostgreSQL (or through a proxy that keeps one backend per client and passes
    /// startup options on).
    Direct,
    /// A pooler that keeps one backend per client for as long as it is connected.
    PoolerSession,
    /// A pooler that may hand the backend to another client after each transaction (or
    /// statement).
    PoolerTransaction,
}

/// What was found about one target's connection path, and why.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionPath {
    pub via: Via,
    pub url_source: String,
    /// What led to the verdict, for messages.
    #[serde(skip)]
    pub evidence: Vec<String>,
    /// The URL to use instead, when one can be named (Neon: the host without `-pooler`).
    #[serde(skip)]
    pub direct_hint: String,
    /// Whether a later connection must show it got a server connection within [`SPARE_WAIT`]
    /// before it is used: through a session-mode pooler each client keeps one for as long as
    /// it is connected, and where a second connection could not get one the pool may have
    /// none to spare (`db::connect`).
    #[serde(skip)]
    pub bounded: bool,
}

/// How long a connection after the first may wait for the pooler to give it a server
/// connection. Behind a pool with none to spare (a session pool of one, or a pool the
/// application fills) it would otherwise wait until the pooler's `query_wait_timeout` (two
/// minutes in PgBouncer) and then fail; a pooler with room starts a server connection in well
/// under a second.
pub const SPARE_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Runs `open` on a thread of its own and waits for it at most `wait`: None when it took
/// longer. The thread is left to finish alone (a connection still queued in the pooler holds
/// nothing on the server, and ends with the process at the latest).
pub fn within<T: Send + 'static>(
    wait: std::time::Duration,
    open: impl FnOnce() -> Result<T> + Send + 'static,
) -> Option<Result<T>> {
    let (sent, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = sent.send(open());
    });
    received.recv_timeout(wait).ok()
}

/// The verdicts of this run, per target (`host:port/dbname`): a run connects many times, to
/// one target (rehearse and the tests reach several).
static VERDICTS: Mutex<Vec<(String, ConnectionPath)>> = Mutex::new(Vec::new());

/// The path of the target this run connected to first: what reports carry as `connection`.
static FIRST: Mutex<Option<ConnectionPath>> = Mutex::new(None);

fn key(target: &Target) -> String {
    format!(
        "{}/{}",
        target.host_description(),
        target.config.get_dbname().unwrap_or("")
    )
}

/// The verdict already reached for `target` in this run, if any.
pub fn known(target: &Target) -> Option<ConnectionPath> {
    let verdicts = VERDICTS.lock().ok()?;
    verdicts
        .iter()
        .find(|(k, _)| *k == key(target))
        .map(|(_, path)| path.clone())
}

fn remember(target: &Target, path: &ConnectionPath) {
    if let Ok(mut verdicts) = VERDICTS.lock() {
        verdicts.push((key(target), path.clone()));
    }
    if let Ok(mut first) = FIRST.lock() {
        first.get_or_insert_with(|| path.clone());
    }
}

/// The connection path of this run's first target, for the reports' `connection` key.
pub fn first() -> Option<ConnectionPath> {
    FIRST.lock().ok()?.clone()
}

/// Whether a connection error is a pooler refusing our startup option.
pub fn refused_the_probe(error: &postgres::Error) -> bool {
    let text = format!("{error:?} {error}");
    text.contains("unsupported startup parameter")
        || text.contains("unsupported startup parameter: options")
}

/// Decides the path of `target`, given the first connection (`client`), whether the probe
/// option was refused at startup, and a way to open a second connection without the option.
/// Called once per target; later connections reuse the verdict.
pub fn decide(
    target: &Target,
    client: &mut Client,
    probe_refused: bool,
    open_plain: impl FnOnce() -> Result<Client> + Send + 'static,
) -> Result<ConnectionPath> {
    let mut evidence = Vec::new();
    let probe_arrived = !probe_refused && probe_value(client)?.as_deref() == Some("on");
    if probe_refused {
        evidence.push(
            "the server side refused the startup parameter `options`, as PgBouncer does".into(),
        );
    } else if !probe_arrived {
        evidence.push("a startup option did not reach the server (a pooler dropped it)".into());
    }
    let host_hints = pooler_host_hints(target);
    evidence.extend(host_hints.iter().cloned());
    // `bounded`: whether later connections must show they got a server connection in time.
    let (via, bounded) = if probe_arrived && host_hints.is_empty() {
        (Via::Direct, false)
    } else {
        // The second connection shows it can get a server connection at all before the turns:
        // while the first holds one, a session pool of one never gives it another. The first
        // asks first, so that it is the one holding it.
        reach_a_server(client)?;
        let spare = within(SPARE_WAIT, move || {
            let mut second = open_plain()?;
            reach_a_server(&mut second)?;
            Ok(second)
        });
        match spare {
            Some(second) => {
                let mut second = second?;
                let turns = take_turns(client, &mut second)?;
                drop(second);
                match turns {
                    Turns::Shared(detail) => {
                        evidence.push(detail);
                        (Via::PoolerTransaction, false)
                    }
                    Turns::Own if probe_arrived => (Via::Direct, false),
                    Turns::Own => (Via::PoolerSession, true),
                }
            }
            // A session pool with no server connection to spare, or a transaction pool the
            // application keeps full, cannot be told apart without one: taken as transaction
            // mode, where nothing is kept on a session and no change is made.
            None => {
                evidence.push(format!(
                    "a second connection got no server connection within {} s, so the pool has none to spare and its mode cannot be told; taken as transaction mode",
                    SPARE_WAIT.as_secs()
                ));
                (Via::PoolerTransaction, true)
            }
        }
    };
    let path = ConnectionPath {
        via,
        url_source: target.url_source.clone(),
        evidence,
        direct_hint: direct_hint(target),
        bounded,
    };
    remember(target, &path);
    Ok(path)
}

fn probe_value(client: &mut Client) -> Result<Option<String>> {
    let messages = client.simple_query(&format!(
        "SELECT pg_catalog.current_setting('{PROBE_SETTING}', true)"
    ))?;
    Ok(messages.into_iter().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
        _ => None,
    }))
}

enum Turns {
    /// Each connection kept one backend of its own.
    Own,
    /// Backends moved between or under the connections (what was seen).
    Shared(String),
}

/// Two connections ask for their backend's pid in turns: first twice in a row on one (a
/// round-robin pooler moves it on), then alternating (a last-in-first-out pooler hands the
/// backend the other just released).
fn take_turns(first: &mut Client, second: &mut Client) -> Result<Turns> {
    let mut seen_first = BTreeSet::new();
    let mut seen_second = BTreeSet::new();
    let order = [
        true, true, false, false, true, false, true, false, true, false,
    ];
    for on_first in order {
        if on_first {
            seen_first.insert(backend_pid(first)?);
        } else {
            seen_second.insert(backend_pid(second)?);
        }
    }
    let shared = seen_first.intersection(&seen_second).next().is_some();
    if shared || seen_first.len() > 1 || seen_second.len() > 1 {
        return Ok(Turns::Shared(format!(
            "between transactions the server backend changed (one connection saw backends {:?}, another {:?})",
            seen_first, seen_second
        )));
    }
    Ok(Turns::Own)
}

/// Waits until the pooler has given `client` a server connection (a statement needs one).
pub fn reach_a_server(client: &mut Client) -> Result<()> {
    backend_pid(client).map(drop)
}

fn backend_pid(client: &mut Client) -> Result<String> {
    // Before any safe search_path is set (`db::connect`): a role's own could put a planted
    // function ahead of pg_catalog's.
    let messages = client.simple_query("SELECT pg_catalog.pg_backend_pid()")?;
    messages
        .into_iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
            _ => None,
        })
        .ok_or_else(|| anyhow::anyhow!("pg_backend_pid() returned no row"))
}

/// Host names and ports the managed services give their transaction-mode poolers.
fn pooler_host_hints(target: &Target) -> Vec<String> {
    let mut hints = Vec::new();
    for (host, port) in target.host_ports() {
        if host.contains("-pooler.") {
            hints.push(format!("the host {host} is a `-pooler` endpoint (Neon)"));
        } else if host.ends_with("pooler.supabase.com") && port == 6543 {
            hints.push(format!("{host}:6543 is Supabase's transaction pooler"));
        } else if port == 6543 {
            hints.push("port 6543 is where managed services run a transaction pooler".to_string());
        }
    }
    hints
}

/// The fix to name in a refusal.
fn direct_hint(target: &Target) -> String {
    let hosts = target.host_ports();
    if let Some((host, _)) = hosts.iter().find(|(h, _)| h.contains("-pooler.")) {
        return format!(
            "use the direct URL: for Neon the same host without `-pooler` ({}), e.g. DATABASE_URL_UNPOOLED",
            host.replacen("-pooler.", ".", 1)
        );
    }
    if let Some((host, _)) = hosts
        .iter()
        .find(|(h, _)| h.ends_with("pooler.supabase.com"))
    {
        return format!(
            "use the direct URL (Supabase: db.<project>.supabase.co:5432, or the session pooler {host}:5432)"
        );
    }
    "use the direct URL to the database server (the platform's DATABASE_URL_UNPOOLED, POSTGRES_URL_NON_POOLING or DIRECT_URL), not the pooler's".into()
}

impl ConnectionPath {
    /// The line a reading command prints on stderr when it goes through a pooler.
    pub fn reading_note(&self) -> Option<String> {
        (self.via == Via::PoolerTransaction).then(|| {
            format!(
                "connected through a transaction-mode pooler ({}): reading without session state; changes need the direct URL — {}",
                self.evidence.join("; "),
                self.direct_hint
            )
        })
    }
}

/// Refuses a changing command on a transaction-mode pooler, before it changes anything.
pub fn refuse_if_pooled(target: &Target) -> Result<()> {
    let Some(path) = known(target) else {
        return Ok(());
    };
    if path.via != Via::PoolerTransaction {
        return Ok(());
    }
    Err(Refusal::PooledConnection(format!(
        "{target} is reached through a transaction-mode pooler ({}): the migration lock and every session setting would land on a backend the application uses next, and outlive this run. Nothing was changed; {}",
        path.evidence.join("; "),
        path.direct_hint
    ))
    .into())
}
