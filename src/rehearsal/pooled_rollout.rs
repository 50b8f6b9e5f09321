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
use anyhow::{Context, Result};
use postgres::{NoTls, SimpleQueryMessage};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The application's role in the rehearsal.
pub const APP_ROLE: &str = "ruleiq_rehearsal_app";

/// Where Debian installs pgbouncer (not on a normal user's PATH), else PATH.
pub fn pgbouncer_binary() -> Option<PathBuf> {
    let known = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    known.or_else(|| {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("pgbouncer"))
                .find(|p| p.exists())
        })
    })
}

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

/// A PgBouncer in transaction mode in front of the throwaway server, stopped when dropped.
pub struct Bouncer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Bouncer {
    /// Starts `binary` in front of `target` (127.0.0.1), letting the application's role in. A
    /// port found free may be taken before PgBouncer binds it: then it starts on another.
    pub fn start(binary: &Path, target: &Target, password: &str) -> Result<Bouncer> {
        for _ in 0..4 {
            let mut bouncer = Bouncer::start_once(binary, target, password)?;
            if bouncer.listening() {
                return Ok(bouncer);
            }
        }
        anyhow::bail!("PgBouncer did not start listening (four ports tried)")
    }

    /// Waits until PgBouncer says it listens on its port; false when it exits first.
    fn listening(&mut self) -> bool {
        let said = format!("listening on 127.0.0.1:{}", self.port);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return false;
            }
            let log = std::fs::read_to_string(self._dir.path().join("pgbouncer.log"));
            if log.is_ok_and(|l| l.contains(&said)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn start_once(binary: &Path, target: &Target, password: &str) -> Result<Bouncer> {
        let server_port = target.config.get_ports().first().copied().unwrap_or(5432);
        let dir = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let auth = dir.path().join("users.txt");
        std::fs::write(&auth, format!("\"{APP_ROLE}\" \"{password}\"\n"))?;
        let ini = dir.path().join("pgbouncer.ini");
        std::fs::write(
            &ini,
            format!(
                "[databases]\n* = host=127.0.0.1 port={server_port}\n\n[pgbouncer]\n\
                 listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
                 auth_type = trust\nauth_file = {}\npool_mode = transaction\n\
                 default_pool_size = 4\nignore_startup_parameters = extra_float_digits\n\
                 logfile = {}\npidfile = {}\n",
                auth.display(),
                dir.path().join("pgbouncer.log").display(),
                dir.path().join("pgbouncer.pid").display()
            ),
        )?;
        // PgBouncer will not run as root: as root, run it as the server's own user.
        let mut command = if crate::sandbox::running_as_root() {
            for path in [dir.path(), &auth, &ini] {
                crate::sandbox::give_to(path, crate::sandbox::SERVER_USER)?;
            }
            let mut c = Command::new("setpriv");
            c.args([
                "--reuid",
                crate::sandbox::SERVER_USER,
                "--regid",
                crate::sandbox::SERVER_USER,
                "--init-groups",
                "--",
            ])
            .arg(binary);
            c
        } else {
            Command::new(binary)
        };
        let child = command
            .arg(&ini)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let bouncer = Bouncer {
            child,
            port,
            _dir: dir,
        };
        Ok(bouncer)
    }

    /// The application's URL through the pooler.
    pub fn app_url(&self, target: &Target, password: &str) -> String {
        format!(
            "postgres://{APP_ROLE}:{password}@127.0.0.1:{}/{}?sslmode=disable",
            self.port,
            target.config.get_dbname().unwrap_or("postgres")
        )
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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

/// The step: the application's statements through the pooler, old names (and after 008 new
/// names too), all to succeed.
pub fn step(log: &Log, url: Option<&str>, after_008: bool) -> Step {
    let name = if after_008 {
        "pooled application after 008"
    } else {
        "pooled application before 008"
    };
    let line = format!(
        "the application's role through PgBouncer (transaction mode, no connection option): old and new names, {} 008",
        if after_008 { "after" } else { "before" }
    );
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
