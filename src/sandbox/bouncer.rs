//! A throwaway PgBouncer in front of a throwaway server: what `rehearse` plays production's
//! pooled rollout through, and what the tests of the connection path run against. It lives in
//! a temporary directory and is stopped when dropped.

use super::{give_to, running_as_root, SERVER_USER};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

/// How the pooler hands out server connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    Session,
    Transaction,
}

impl PoolMode {
    fn name(self) -> &'static str {
        match self {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
        }
    }
}

/// What a PgBouncer is started with.
pub struct BouncerOptions {
    /// The server's port on 127.0.0.1.
    pub server_port: u16,
    pub mode: PoolMode,
    /// The (role, password) pairs that may connect through it (trust on its side, the password
    /// for the server login).
    pub users: Vec<(String, String)>,
    /// A role that may use its admin console (`RECONNECT`).
    pub admin_user: Option<String>,
    /// Server connections per database and role (PgBouncer's `default_pool_size`).
    pub pool_size: u16,
    /// Seconds a client may wait for a server connection before PgBouncer drops it
    /// (`query_wait_timeout`, 120 by default).
    pub query_wait_timeout: u32,
}

impl BouncerOptions {
    /// What the tests and `rehearse` run: four server connections a pool, PgBouncer's own
    /// wait for one.
    pub const DEFAULT_POOL_SIZE: u16 = 4;
    pub const DEFAULT_QUERY_WAIT_TIMEOUT: u32 = 120;
}

/// A running PgBouncer.
pub struct Bouncer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Bouncer {
    /// Starts `binary` with `options` on a free port of 127.0.0.1. A port found free may be
    /// taken before PgBouncer binds it (servers start side by side): one that exits, or never
    /// says it listens, is started again on another port.
    pub fn start(binary: &Path, options: &BouncerOptions) -> Result<Bouncer> {
        for _ in 0..5 {
            let mut bouncer = Bouncer::start_once(binary, options)?;
            if bouncer.listening() {
                return Ok(bouncer);
            }
        }
        anyhow::bail!("PgBouncer did not start listening (five ports tried)")
    }

    fn start_once(binary: &Path, options: &BouncerOptions) -> Result<Bouncer> {
        let dir = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let auth = dir.path().join("users.txt");
        let users: String = options
            .users
            .iter()
            .map(|(role, password)| format!("\"{role}\" \"{password}\"\n"))
            .collect();
        std::fs::write(&auth, users)?;
        let admin = options
            .admin_user
            .as_ref()
            .map_or(String::new(), |a| format!("admin_users = {a}\n"));
        let ini = dir.path().join("pgbouncer.ini");
        // No server_reset_query: what a client leaves on a server connection stays for the
        // next, as behind a transaction pool, so that leaving nothing is ours to prove.
        std::fs::write(
            &ini,
            format!(
                "[databases]\n* = host=127.0.0.1 port={}\n\n[pgbouncer]\n\
                 listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
                 auth_type = trust\nauth_file = {}\npool_mode = {}\n{admin}\
                 default_pool_size = {}\nquery_wait_timeout = {}\n\
                 max_client_conn = 200\nserver_lifetime = 3600\n\
                 ignore_startup_parameters = extra_float_digits\nserver_reset_query =\n\
                 logfile = {}\npidfile = {}\n",
                options.server_port,
                auth.display(),
                options.mode.name(),
                options.pool_size,
                options.query_wait_timeout,
                dir.path().join("pgbouncer.log").display(),
                dir.path().join("pgbouncer.pid").display()
            ),
        )?;
        // PgBouncer will not run as root: as root, run it as the server's own user.
        let mut command = if running_as_root() {
            for path in [dir.path(), &auth, &ini] {
                give_to(path, SERVER_USER)?;
            }
            let mut c = Command::new("setpriv");
            c.args([
                "--reuid",
                SERVER_USER,
                "--regid",
                SERVER_USER,
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
        Ok(Bouncer { child, port, dir })
    }

    /// Waits until PgBouncer says it listens on its port; false when it exits first.
    fn listening(&mut self) -> bool {
        let said = format!("listening on 127.0.0.1:{}", self.port);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return false;
            }
            if self.log().contains(&said) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// What PgBouncer logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
