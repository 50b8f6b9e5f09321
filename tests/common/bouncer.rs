//! A real PgBouncer in front of the test server, started like the throwaway PostgreSQL: one per
//! test that needs it, in a temporary directory, stopped when the value goes. Debian's
//! `pgbouncer` package provides it (`.ci/run` installs it when missing).

use postgres::{Client, NoTls, SimpleQueryMessage};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

/// A running PgBouncer.
pub struct Bouncer {
    pub port: u16,
    /// The database's URL with the pooler's port in place of the server's.
    url_template: String,
    child: Child,
    _dir: tempfile::TempDir,
}

/// Where Debian installs pgbouncer (not on a normal user's PATH).
fn binary() -> PathBuf {
    for candidate in ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"] {
        if std::path::Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    PathBuf::from("pgbouncer")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Bouncer {
    /// Starts PgBouncer in `mode` in front of `db`'s server. `users` are (role, password)
    /// pairs besides the test superuser that may connect through it.
    ///
    /// The port is free when chosen but may be taken before PgBouncer binds it (the tests start
    /// servers side by side): a PgBouncer that exits, or never says it listens, is started
    /// again on another port, so that no test talks to whatever else took the port.
    pub fn start(db: &super::TestDb, mode: PoolMode, users: &[(&str, &str)]) -> Bouncer {
        for _ in 0..5 {
            if let Some(bouncer) = Bouncer::start_once(db, mode, users) {
                return bouncer;
            }
        }
        panic!("pgbouncer did not come up on any of 5 ports");
    }

    fn start_once(db: &super::TestDb, mode: PoolMode, users: &[(&str, &str)]) -> Option<Bouncer> {
        let url = url::Url::parse(&db.url).expect("the test database URL");
        let server_port = url.port().unwrap_or(5432);
        let server_host = url.host_str().unwrap_or("127.0.0.1").to_string();
        let superuser = url.username().to_string();
        let password = url.password().unwrap_or("").to_string();
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut auth = format!("\"{superuser}\" \"{password}\"\n");
        for (role, pw) in users {
            auth.push_str(&format!("\"{role}\" \"{pw}\"\n"));
        }
        std::fs::write(dir.path().join("users.txt"), auth).unwrap();
        let config = format!(
            "[databases]\n* = host={server_host} port={server_port}\n\n[pgbouncer]\n\
             listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
             auth_type = trust\nauth_file = {auth}\npool_mode = {mode}\n\
             admin_users = {superuser}\n\
             default_pool_size = 4\nmax_client_conn = 200\nserver_lifetime = 3600\n\
             ignore_startup_parameters = extra_float_digits\nserver_reset_query =\n\
             logfile = {log}\npidfile = {pid}\n",
            auth = dir.path().join("users.txt").display(),
            mode = mode.name(),
            log = dir.path().join("pgbouncer.log").display(),
            pid = dir.path().join("pgbouncer.pid").display(),
        );
        let ini = dir.path().join("pgbouncer.ini");
        std::fs::write(&ini, config).unwrap();
        let is_root = unsafe { libc::geteuid() } == 0;
        let mut command = if is_root {
            // PgBouncer will not run as root.
            for file in ["users.txt", "pgbouncer.ini"] {
                chown_postgres(&dir.path().join(file));
            }
            chown_postgres(dir.path());
            let mut c = Command::new("setpriv");
            c.args([
                "--reuid",
                "postgres",
                "--regid",
                "postgres",
                "--init-groups",
                "--",
            ])
            .arg(binary());
            c
        } else {
            Command::new(binary())
        };
        let child = command
            .arg(&ini)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start pgbouncer ({e}): install Debian's `pgbouncer` package (.ci/run does)")
            });
        let mut url_template = url.clone();
        url_template.set_port(Some(port)).unwrap();
        url_template.set_path("/{db}");
        let mut bouncer = Bouncer {
            port,
            url_template: url_template.to_string().replace("%7Bdb%7D", "{db}"),
            child,
            _dir: dir,
        };
        bouncer.wait_ready(&db.name).then_some(bouncer)
    }

    /// Whether this PgBouncer came up: it runs, says it listens on its port, and takes a client.
    fn wait_ready(&mut self, dbname: &str) -> bool {
        let started = Instant::now();
        let listening = format!("listening on 127.0.0.1:{}", self.port);
        loop {
            if self.child.try_wait().ok().flatten().is_some() {
                return false;
            }
            if self.log().contains(&listening)
                && Client::connect(&self.url_for(dbname), NoTls).is_ok()
            {
                return true;
            }
            if started.elapsed() > Duration::from_secs(15) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What PgBouncer logged so far (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("pgbouncer.log")).unwrap_or_default()
    }

    /// The URL of `dbname` through the pooler, as the test superuser.
    pub fn url_for(&self, dbname: &str) -> String {
        self.url_template.replace("{db}", dbname)
    }

    /// The URL of `dbname` through the pooler as `role`.
    pub fn url_as(&self, dbname: &str, role: &str, password: &str) -> String {
        let mut url = url::Url::parse(&self.url_for(dbname)).unwrap();
        url.set_username(role).unwrap();
        url.set_password(Some(password)).unwrap();
        url.to_string()
    }

    /// Runs `command` on PgBouncer's admin console (as a DBA recycles server connections:
    /// `RECONNECT`).
    pub fn admin(&self, command: &str) {
        let mut console = Client::connect(&self.url_for("pgbouncer"), NoTls)
            .expect("connecting to pgbouncer's admin console");
        console
            .simple_query(command)
            .unwrap_or_else(|e| panic!("pgbouncer admin {command}: {e}"));
    }

    /// A client through the pooler (as an application connects).
    pub fn client(&self, dbname: &str) -> Client {
        Client::connect(&self.url_for(dbname), NoTls).unwrap_or_else(|e| {
            panic!(
                "connecting through pgbouncer on port {}: {e}\n{}",
                self.port,
                self.log()
            )
        })
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

fn chown_postgres(path: &std::path::Path) {
    let status = Command::new("chown")
        .arg("postgres:postgres")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success(), "chown postgres {}", path.display());
}

/// The first column of the first row of a simple-protocol query (what an application through
/// a transaction pooler may safely send: no named statement).
pub fn simple_value(client: &mut Client, sql: &str) -> Option<String> {
    client
        .simple_query(sql)
        .unwrap()
        .into_iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row.get(0).map(str::to_string)),
            _ => None,
        })
        .flatten()
}
