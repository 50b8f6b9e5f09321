//! A throwaway PostgreSQL cluster started from the local server binaries: `rehearse` and the
//! test harness both use it. Stopped and removed on drop.
//!
//! `binaries.rs` finds the local PostgreSQL installation, `system.rs` holds what the cluster
//! asks of the operating system (a certificate, a free port, the user to run as).

mod binaries;
pub mod bouncer;
mod system;

pub use binaries::{extension_available, find_bindir};
pub use system::{give_to, running_as_root, self_signed_certificate};

/// The user the server binaries (and PgBouncer) run as when ruleiq-db runs as root.
pub const SERVER_USER: &str = "postgres";

use crate::db::config::{ProcessEnv, Target};
use crate::db::Query;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use system::{free_port, openssl, path_str};

/// Options for a throwaway cluster.
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// Serve TLS with a fresh self-signed certificate (needs the `openssl` command).
    pub ssl: bool,
    /// `max_prepared_transactions` (0, the server's default, disables PREPARE TRANSACTION).
    pub max_prepared_transactions: u32,
    /// Libraries for `shared_preload_libraries` (e.g. `pg_stat_statements`); see
    /// [`extension_available`].
    pub preload: Vec<String>,
}

/// A running throwaway cluster.
pub struct Cluster {
    root: Option<tempfile::TempDir>,
    bindir: PathBuf,
    run_as: Option<String>,
    port: u16,
    password: String,
}

const SUPERUSER: &str = "postgres";

impl Cluster {
    pub fn start(options: &ClusterOptions) -> Result<Cluster> {
        let bindir = find_bindir()?;
        let run_as = running_as_root().then(|| SERVER_USER.to_string());
        let root = tempfile::Builder::new()
            .prefix("ruleiq-db-pg-")
            .tempdir()
            .context("creating a temporary directory")?;
        let data = root.path().join("data");
        let sockets = root.path().join("sockets");
        std::fs::create_dir(&sockets)?;
        let password = uuid::Uuid::new_v4().simple().to_string();
        let pwfile = root.path().join("pwfile");
        std::fs::write(&pwfile, &password)?;
        if let Some(user) = &run_as {
            give_to(root.path(), user)?;
            give_to(&sockets, user)?;
            give_to(&pwfile, user)?;
        }
        let cluster = Cluster {
            root: Some(root),
            bindir,
            run_as,
            port: free_port()?,
            password,
        };
        cluster.run_tool(
            "initdb",
            &[
                "-D",
                path_str(&data)?,
                "-U",
                SUPERUSER,
                "--pwfile",
                path_str(&pwfile)?,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
                "-N",
            ],
        )?;
        let mut settings = cluster.settings()?;
        if options.max_prepared_transactions > 0 {
            settings.push_str(&format!(
                " -c max_prepared_transactions={}",
                options.max_prepared_transactions
            ));
        }
        if !options.preload.is_empty() {
            settings.push_str(&format!(
                " -c shared_preload_libraries={}",
                options.preload.join(",")
            ));
        }
        if options.ssl {
            cluster.make_certificate(&data)?;
            settings.push_str(" -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key");
        }
        cluster.start_server(&settings)?;
        Ok(cluster)
    }

    /// The server's settings (wal_level replica and wal senders so that a standby can stream
    /// from it; they are PostgreSQL's defaults, said here so nothing depends on that).
    fn settings(&self) -> Result<String> {
        Ok(format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=100 -c wal_level=replica -c max_wal_senders=10",
            self.port,
            path_str(&self.socket_dir())?
        ))
    }

    fn start_server(&self, settings: &str) -> Result<()> {
        let data = self.root_path().join("data");
        let log = self.root_path().join("server.log");
        let started = self.run_tool(
            "pg_ctl",
            &[
                "-D",
                path_str(&data)?,
                "-l",
                path_str(&log)?,
                "-w",
                "-t",
                "60",
                "-o",
                settings,
                "start",
            ],
        );
        if let Err(e) = started {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(5).collect();
            bail!(
                "{e:#}\nserver log: {}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        Ok(())
    }

    /// Starts a hot standby of this cluster: a base backup (`pg_basebackup -R`, as the same
    /// user as initdb) streaming from it under the application name `name`, on its own port.
    /// Returns once the primary lists it as streaming. Stopped and removed on drop, like any
    /// cluster.
    pub fn start_standby(&self, name: &str) -> Result<Cluster> {
        let root = tempfile::Builder::new()
            .prefix("ruleiq-db-standby-")
            .tempdir()
            .context("creating a temporary directory")?;
        let sockets = root.path().join("sockets");
        std::fs::create_dir(&sockets)?;
        if let Some(user) = &self.run_as {
            give_to(root.path(), user)?;
            give_to(&sockets, user)?;
        }
        let standby = Cluster {
            root: Some(root),
            bindir: self.bindir.clone(),
            run_as: self.run_as.clone(),
            port: free_port()?,
            password: self.password.clone(),
        };
        let data = standby.root_path().join("data");
        let conninfo = format!(
            "host={} port={} user={SUPERUSER} application_name={name}",
            path_str(&self.socket_dir())?,
            self.port
        );
        standby
            .run_tool(
                "pg_basebackup",
                &[
                    "-D",
                    path_str(&data)?,
                    "-R",
                    "-X",
                    "stream",
                    "-c",
                    "fast",
                    "-d",
                    &conninfo,
                ],
            )
            .context("taking the standby's base backup")?;
        // -R wrote primary_conninfo; a later line wins, and this one names the standby.
        use std::io::Write as _;
        let mut auto = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.auto.conf"))
            .context("opening the standby's postgresql.auto.conf")?;
        writeln!(auto, "primary_conninfo = '{conninfo}'")?;
        // Queries on the standby (a test's pg_dump) are never cancelled by replay; replay
        // waits for them instead.
        let settings = format!(
            "{} -c hot_standby=on -c hot_standby_feedback=on -c max_standby_streaming_delay=-1",
            standby.settings()?
        );
        standby.start_server(&settings)?;
        self.wait_until_streaming(name)?;
        Ok(standby)
    }

    /// Waits (up to a minute) until the standby `name` streams from this cluster.
    fn wait_until_streaming(&self, name: &str) -> Result<()> {
        let mut client = crate::db::connect(&self.target("postgres")?)?;
        let started = std::time::Instant::now();
        loop {
            let streaming: bool = client
                .row(
                    "SELECT EXISTS (SELECT 1 FROM pg_stat_replication
                                     WHERE application_name = $1 AND state = 'streaming')",
                    &[&name],
                )?
                .get(0);
            if streaming {
                return Ok(());
            }
            if started.elapsed() > std::time::Duration::from_secs(60) {
                bail!("the standby '{name}' did not start streaming within a minute");
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// The directory holding the cluster's data, socket and log.
    pub fn root_path(&self) -> &Path {
        self.root.as_ref().expect("cluster directory").path()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The certificate authority that signed the server's certificate (with
    /// [`ClusterOptions::ssl`]): the root for verify-ca and verify-full.
    pub fn certificate(&self) -> PathBuf {
        self.root_path().join("data/ca.crt")
    }

    /// The directory of the server's Unix socket (local connections need no password).
    pub fn socket_dir(&self) -> PathBuf {
        self.root_path().join("sockets")
    }

    /// A URL for a database on this cluster, with the superuser's password.
    pub fn url(&self, dbname: &str) -> String {
        format!(
            "postgres://{SUPERUSER}:{}@127.0.0.1:{}/{dbname}?sslmode=disable",
            self.password, self.port
        )
    }

    pub fn password(&self) -> &str {
        &self.password
    }

    pub fn target(&self, dbname: &str) -> Result<Target> {
        Target::resolve(Some(&self.url(dbname)), &ProcessEnv)
    }

    fn make_certificate(&self, data: &Path) -> Result<()> {
        // A certificate authority and a server certificate it signs, for the name localhost:
        // what verify-ca and verify-full need (a self-signed CA cannot serve as the end entity).
        let ca_key = data.join("ca.key");
        self_signed_certificate(&ca_key, &self.certificate(), "ruleiq-db test CA")?;
        let request = data.join("server.csr");
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            path_str(&data.join("server.key"))?,
            "-out",
            path_str(&request)?,
        ])?;
        let extensions = data.join("server.ext");
        std::fs::write(
            &extensions,
            "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        )?;
        openssl(&[
            "x509",
            "-req",
            "-in",
            path_str(&request)?,
            "-CA",
            path_str(&self.certificate())?,
            "-CAkey",
            path_str(&ca_key)?,
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            path_str(&data.join("server.crt"))?,
            "-extfile",
            path_str(&extensions)?,
        ])?;
        std::fs::set_permissions(
            data.join("server.key"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )?;
        if let Some(user) = &self.run_as {
            give_to(&data.join("server.key"), user)?;
            give_to(&data.join("server.crt"), user)?;
        }
        Ok(())
    }

    fn run_tool(&self, tool: &str, args: &[&str]) -> Result<()> {
        let program = self.bindir.join(tool);
        let mut command = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("setpriv");
                c.args(["--reuid", user, "--regid", user, "--init-groups", "--"])
                    .arg(&program);
                c
            }
            None => Command::new(&program),
        };
        let output = command
            .args(args)
            .current_dir(self.root_path())
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot run {}", program.display()))?;
        if !output.status.success() {
            bail!(
                "{tool} failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(())
    }

    /// Restarts the server with the settings it was started with (`pg_ctl restart` keeps
    /// them): its shared buffers start empty, as after a reboot or a failover.
    pub fn restart(&self) -> Result<()> {
        let data = self.root_path().join("data");
        // With its log file, as at the start: without one the new server would write to (and
        // hold open) the pipe this process reads pg_ctl's output from.
        let log = self.root_path().join("server.log");
        self.run_tool(
            "pg_ctl",
            &[
                "-D",
                path_str(&data)?,
                "-l",
                path_str(&log)?,
                "-m",
                "fast",
                "-w",
                "-t",
                "60",
                "restart",
            ],
        )
    }

    /// Stops the server and removes its files.
    pub fn stop(&mut self) {
        if let Some(root) = self.root.take() {
            let data = root.path().join("data");
            if let Some(data) = data.to_str() {
                let mut command = match &self.run_as {
                    Some(user) => {
                        let mut c = Command::new("setpriv");
                        c.args(["--reuid", user, "--regid", user, "--init-groups", "--"])
                            .arg(self.bindir.join("pg_ctl"));
                        c
                    }
                    None => Command::new(self.bindir.join("pg_ctl")),
                };
                let _ = command
                    .args(["-D", data, "-m", "immediate", "-w", "stop"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
            drop(root);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}
