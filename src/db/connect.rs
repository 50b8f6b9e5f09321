//! Opening a connection: TLS, the error a DBA can read, where the connection goes (directly or
//! through a pooler, `db::pooler`), and the session settings every ruleiq-db connection starts
//! with: a search_path no other role can write to and a lifted server-side statement_timeout —
//! made only where they cannot outlive the run (a direct connection; through a pooler each
//! transaction makes them with `SET LOCAL`).

use super::config::Target;
use super::pooler::{self, Via};
use super::query::{self, Query};
use anyhow::{Context, Result};
use postgres::Client;

/// Opens a connection, with an error that names the server but never the password. The first
/// connection to a target finds out how it is reached; a pooler, in either mode, switches the
/// run to statements without session state (`db::query`) and Ctrl-C to cancelling through the
/// server.
pub fn connect(target: &Target) -> Result<Client> {
    match pooler::known(target) {
        Some(path) if path.bounded => {
            let (owned, via) = (target.clone(), path.via);
            let opened = pooler::within(pooler::SPARE_WAIT, move || {
                let mut client = set_up(&owned, via, open(&owned, false)?)?;
                // Through a transaction pooler nothing above needed a server connection.
                pooler::reach_a_server(&mut client)?;
                Ok(client)
            });
            opened.unwrap_or_else(|| {
                anyhow::bail!(
                    "{target}: the pooler gave this run's connection no server connection within {} s: its pool has none to spare while ruleiq-db's first connection holds one. Give the pool room for more connections, or {}",
                    pooler::SPARE_WAIT.as_secs(),
                    path.direct_hint
                )
            })
        }
        Some(path) => set_up(target, path.via, open(target, false)?),
        None => {
            let (mut client, probe_refused) = match open(target, true) {
                Ok(client) => (client, false),
                Err(error) if is_probe_refusal(&error) => (open(target, false)?, true),
                Err(error) => return Err(error),
            };
            let plain = target.clone();
            let path = pooler::decide(target, &mut client, probe_refused, move || {
                open(&plain, false)
            })
            .with_context(|| format!("finding out how {target} is reached"))?;
            if path.via != Via::Direct {
                // A session pooler hands the server connection to its next client when ours
                // closes, settings and all (unless it is set to reset them): only a `Session`,
                // which resets what it set, makes a session setting there.
                query::mark_pooled();
                let target = target.clone();
                super::interrupt::on_pooled_signal(move |ours| cancel_pooled(&target, ours));
            }
            set_up(target, path.via, client)
        }
    }
}

/// What every connection gets once open: the cancel on Ctrl-C, and (where they cannot outlive
/// the run) the safe search_path and a lifted statement_timeout.
fn set_up(target: &Target, via: Via, mut client: Client) -> Result<Client> {
    if query::pooled() {
        // Through a pooler a protocol cancel request is the pooler's to route, and PgBouncer
        // before 1.19 drops the client library's (it half-closes its socket), in either mode;
        // Ctrl-C cancels through the server instead (`cancel_pooled`), so the pooler's cancel
        // path is never exercised at all.
    } else {
        super::interrupt::watch(&client, &target.tls);
    }
    if via != Via::PoolerTransaction {
        // So that looking for blockers never names one of this process's own connections
        // (behind a transaction pooler a backend is nobody's own).
        super::own_sessions::remember(&mut client);
    }
    set_safe_search_path(&mut client)?;
    if let Some(note) = lift_statement_timeout(&mut client)? {
        if let Ok(mut notes) = NOTES.lock() {
            if !notes.contains(&note) {
                notes.push(note);
            }
        }
    }
    Ok(client)
}

/// What connecting found worth saying once per run (a lifted statement_timeout), until the
/// command takes it for stderr ([`take_notes`]).
static NOTES: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// The notes connecting collected since the last call.
pub fn take_notes() -> Vec<String> {
    NOTES
        .lock()
        .map(|mut n| std::mem::take(&mut *n))
        .unwrap_or_default()
}

/// Cancels, from a fresh connection through the pooler, what our transactions run on their
/// backends — only where the backend still runs the transaction we started there.
fn cancel_pooled(target: &Target, ours: &[(i32, String)]) {
    let Ok(mut client) = open(target, false) else {
        return;
    };
    // The multi-array unnest is FROM-clause syntax (it cannot be schema-qualified); the
    // session's search_path holds only pg_catalog.
    let mut ours = ours.to_vec();
    ours.dedup();
    let pids: Vec<i32> = ours.iter().map(|(pid, _)| *pid).collect();
    let starts: Vec<String> = ours.iter().map(|(_, started)| started.clone()).collect();
    let _ = client.rows(
        "SELECT pg_catalog.pg_cancel_backend(a.pid)
           FROM pg_catalog.pg_stat_activity AS a
           JOIN unnest($1::int4[], $2::text[]) AS o(pid, started)
             ON a.pid = o.pid AND a.xact_start = o.started::timestamptz
          WHERE a.state = 'active'",
        &[&pids, &starts],
    );
}

/// [`connect`] for a command that will change the database: refused, before anything
/// changes, when the path is a transaction-mode pooler (`Session::begin` refuses again, so
/// that no way to a change can miss it).
pub fn connect_to_change(target: &Target) -> Result<Client> {
    let client = connect(target)?;
    pooler::refuse_if_pooled(target)?;
    Ok(client)
}

fn open(target: &Target, with_probe: bool) -> Result<Client> {
    let connector = target.tls.connector()?;
    let mut config = target.config.clone();
    if with_probe {
        let options = match config.get_options() {
            Some(own) if !own.trim().is_empty() => format!("{own} {}", pooler::PROBE_OPTION),
            _ => pooler::PROBE_OPTION.to_string(),
        };
        config.options(&options);
    }
    config.connect(connector).map_err(|e| {
        let refused = pooler::refused_the_probe(&e);
        let error = anyhow::anyhow!("cannot connect to {target}: {}", describe_connect_error(&e));
        if refused {
            error.context(ProbeRefused)
        } else {
            error
        }
    })
}

/// Marks a connection error as a pooler's refusal of our startup option.
#[derive(Debug)]
struct ProbeRefused;

impl std::fmt::Display for ProbeRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the server side refused the startup parameter `options`")
    }
}

fn is_probe_refusal(error: &anyhow::Error) -> bool {
    error.downcast_ref::<ProbeRefused>().is_some()
}

/// The only search_path a ruleiq-db session has: no schema another role can create objects in.
/// A database whose search_path starts with a writable schema would otherwise let a planted
/// `lower(varchar)` run with our (often superuser) rights, or a planted `business_profiles`
/// stand in for the real table; every object of ours is named with its schema instead
/// (`catalog::sql::qualified`). The compatibility views are out of sight as a consequence.
pub const SAFE_SEARCH_PATH: &str = "pg_catalog, pg_temp";

fn set_safe_search_path(client: &mut Client) -> Result<()> {
    if query::pooled() {
        // Through a pooler a session setting would stay on a backend the application gets
        // next: each transaction sets it with SET LOCAL (`db::query`).
        return Ok(());
    }
    client
        .batch(&format!("SET search_path = {SAFE_SEARCH_PATH}"))
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
/// Returns what to say on stderr, if anything. Every connection [`connect`] opens has it done.
fn lift_statement_timeout(client: &mut Client) -> Result<Option<String>> {
    if query::pooled() {
        // Each transaction lifts it with SET LOCAL (`db::query`).
        return Ok(None);
    }
    let row = client
        .row(
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
        .batch("SET statement_timeout = 0")
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
