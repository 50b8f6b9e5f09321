//! The rollout through a pooler, rehearsed as production runs it: the application's role
//! reaches the throwaway server through a real PgBouncer in transaction mode (which takes no
//! connection option), is pointed at the compatibility views by `compat --for-role` before
//! 008, and its old-name and new-name statements must work through the pooler before and after
//! 008. Without a `pgbouncer` binary the steps say "skipped: pgbouncer not found".

use super::report::Step;
use crate::catalog::sql::quote_ident;
use crate::db::config::Target;
use crate::db::Query;
use crate::progress::Log;
use crate::sandbox::bouncer::{Bouncer, BouncerOptions, PoolMode};
use anyhow::{Context, Result};
use postgres::{NoTls, SimpleQueryMessage};
use std::path::Path;
use std::time::{Duration, Instant};

/// The application's role in the rehearsal.
pub const APP_ROLE: &str = "ruleiq_rehearsal_app";

pub use crate::sandbox::bouncer::pgbouncer_binary;

/// The application's role: it may log in and use the tables, as production's does.
pub fn create_app_role(target: &Target, password: &str) -> Result<()> {
    let mut client = crate::db::connect(target)?;
    let role = quote_ident(APP_ROLE);
    client.batch(&format!(
        "CREATE ROLE {role} LOGIN PASSWORD '{}';
         GRANT USAGE ON SCHEMA public TO {role};
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}",
        password.replace('\'', "''")
    ))?;
    Ok(())
}

/// The application's URL through `bouncer`.
pub fn app_url(bouncer: &Bouncer, target: &Target, password: &str) -> String {
    format!(
        "postgres://{APP_ROLE}:{password}@127.0.0.1:{}/{}?sslmode=disable",
        bouncer.port(),
        target.config.get_dbname().unwrap_or("postgres")
    )
}

/// A PgBouncer in transaction mode in front of the throwaway server, letting the application's
/// role in.
pub fn start_bouncer(binary: &Path, target: &Target, password: &str) -> Result<Bouncer> {
    Bouncer::start(
        binary,
        &BouncerOptions {
            server_port: target.config.get_ports().first().copied().unwrap_or(5432),
            mode: PoolMode::Transaction,
            users: vec![(APP_ROLE.to_string(), password.to_string())],
            admin_user: None,
            pool_size: BouncerOptions::DEFAULT_POOL_SIZE,
            query_wait_timeout: BouncerOptions::DEFAULT_QUERY_WAIT_TIMEOUT,
        },
    )
}

/// The application's statements, as old and new code spell them, in the simple protocol (the
/// only one PgBouncer 1.18 passes through a transaction pool without losing a statement).
fn statements(after_008: bool) -> Vec<(&'static str, &'static str)> {
    let old = [
        ("old code reads", "SELECT id, handles_persona, processes_payme FROM business_profiles ORDER BY id LIMIT 5"),
        ("old code reads", "SELECT id, business_profil FROM generated_policies ORDER BY id LIMIT 5"),
        ("old code writes", "BEGIN; UPDATE business_profiles SET handles_persona = handles_persona WHERE id = (SELECT id FROM business_profiles ORDER BY id LIMIT 1) RETURNING id, handles_persona; ROLLBACK"),
    ];
    let new = [
        ("new code reads", "SELECT id, handles_personal_data FROM business_profiles ORDER BY id LIMIT 5"),
        ("new code writes", "BEGIN; UPDATE assessment_sessions SET business_profile_id = business_profile_id WHERE id = (SELECT id FROM assessment_sessions ORDER BY id LIMIT 1) RETURNING id; ROLLBACK"),
    ];
    // The views exist from `compat --for-role` on, at version 7 too: new code works before 008.
    let _ = after_008;
    old.into_iter().chain(new).collect()
}

/// Runs the application's statements through the pooler, `rounds` times each, on a few client
/// connections at once; returns how many ran and the failures.
fn play(url: &str, after_008: bool) -> Result<(usize, Vec<String>)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut clients = Vec::new();
    for _ in 0..3 {
        let client = loop {
            match postgres::Client::connect(url, NoTls) {
                Ok(client) => break client,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Err(e) => return Err(e).context("connecting through pgbouncer as the application"),
            }
        };
        clients.push(client);
    }
    let mut ran = 0;
    let mut failures = Vec::new();
    for round in 0..4 {
        for (i, client) in clients.iter_mut().enumerate() {
            for (what, sql) in statements(after_008) {
                ran += 1;
                match client.simple_query(sql) {
                    Ok(messages) => {
                        let rows = messages
                            .iter()
                            .filter(|m| matches!(m, SimpleQueryMessage::Row(_)))
                            .count();
                        let _ = rows;
                    }
                    Err(e) => {
                        let _ = client.simple_query("ROLLBACK");
                        if failures.len() < 5 {
                            failures.push(format!(
                                "{what} (client {i}, round {round}): {}",
                                e.as_db_error()
                                    .map_or(e.to_string(), |d| d.message().to_string())
                            ));
                        }
                    }
                }
            }
        }
    }
    Ok((ran, failures))
}

/// What the step before or after 008 does, as its report's `command`.
pub fn line(after_008: bool) -> String {
    format!(
        "the application's role through PgBouncer (transaction mode, no connection option): old and new names, {} 008",
        if after_008 { "after" } else { "before" }
    )
}

/// The step: the application's statements through the pooler, old names (and after 008 new
/// names too), all to succeed.
pub fn step(log: &Log, url: Option<&str>, after_008: bool) -> Step {
    let name = if after_008 {
        "pooled application after 008"
    } else {
        "pooled application before 008"
    };
    let line = line(after_008);
    let started = Instant::now();
    let Some(url) = url else {
        return Step::finished(
            name,
            line,
            true,
            started,
            "skipped: pgbouncer not found (Debian's pgbouncer package)".into(),
            serde_json::json!({ "skipped": "pgbouncer not found" }),
        );
    };
    log.line(&format!("rehearse: {line}"));
    match play(url, after_008) {
        Ok((ran, failures)) => Step::finished(
            name,
            line,
            failures.is_empty(),
            started,
            if failures.is_empty() {
                format!("{ran} statements through the pooler, none failed")
            } else {
                format!(
                    "{} of {ran} failed: {}",
                    failures.len(),
                    failures.join("; ")
                )
            },
            serde_json::json!({ "statements": ran, "failures": failures }),
        ),
        Err(e) => Step::failed(name, line, started, &e),
    }
}
