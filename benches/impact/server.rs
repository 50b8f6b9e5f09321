//! The PostgreSQL server the benchmark works on: a throwaway cluster (the same code as the tests
//! and `rehearse`), or an existing server given by URL. Databases are made and copied here.

use anyhow::{bail, Context, Result};
use postgres::Client;
use ruleiq_db::catalog::sql::quote_ident;
use ruleiq_db::db::config::{ProcessEnv, Target};
use ruleiq_db::sandbox::{Cluster, ClusterOptions};
use std::sync::Mutex;

pub struct Server {
    /// Keeps the throwaway cluster alive; stopped and removed on drop.
    cluster: Option<Cluster>,
    /// A URL with `{db}` where the database name goes.
    url_template: String,
    /// Databases this run created, dropped at the end unless kept.
    created: Mutex<Vec<String>>,
    /// `server_version_num`.
    pub version_num: i32,
    pub version: String,
    pub throwaway: bool,
}

impl Server {
    pub fn start(database_url: Option<&str>) -> Result<Server> {
        let (cluster, url_template) = match database_url {
            Some(url) => (None, template_of(url)?),
            None => {
                let cluster = Cluster::start(&ClusterOptions::default())
                    .context("starting a throwaway PostgreSQL")?;
                let template = cluster.url("{db}");
                (Some(cluster), template)
            }
        };
        let mut server = Server {
            throwaway: cluster.is_some(),
            cluster,
            url_template,
            created: Mutex::new(Vec::new()),
            version_num: 0,
            version: String::new(),
        };
        let mut admin = server.connect("postgres")?;
        let row = admin.query_one(
            "SELECT current_setting('server_version_num')::int, 'PostgreSQL ' || current_setting('server_version')",
            &[],
        )?;
        server.version_num = row.get(0);
        server.version = row.get(1);
        Ok(server)
    }

    pub fn url(&self, db: &str) -> String {
        self.url_template.replace("{db}", db)
    }

    pub fn target(&self, db: &str) -> Result<Target> {
        Target::resolve(Some(&self.url(db)), &ProcessEnv)
    }

    /// A connection through the library's own connect (TLS as the URL asks), with the
    /// application's search_path: the benchmark plays the application and the DBA at psql,
    /// who name ruleIQ's tables without their schema. (ruleiq-db itself, run as a child,
    /// keeps its own `pg_catalog, pg_temp`.)
    pub fn connect(&self, db: &str) -> Result<Client> {
        let mut client = ruleiq_db::db::connect(&self.target(db)?)?;
        client.batch_execute("SET search_path = public")?;
        Ok(client)
    }

    pub fn create(&self, name: &str) -> Result<()> {
        self.connect("postgres")?
            .batch_execute(&format!("CREATE DATABASE {}", quote_ident(name)))
            .with_context(|| format!("creating database {name}"))?;
        self.created.lock().expect("created").push(name.to_string());
        Ok(())
    }

    /// A copy of `source` (which must have no open connection), file by file where the server
    /// can: PostgreSQL 15's default WAL_LOG strategy writes every page through the WAL, which
    /// is much slower for a database of this size.
    pub fn copy(&self, source: &str, name: &str) -> Result<()> {
        let strategy = if self.version_num >= 150000 {
            " STRATEGY = FILE_COPY"
        } else {
            ""
        };
        self.connect("postgres")?
            .batch_execute(&format!(
                "CREATE DATABASE {} TEMPLATE {}{strategy}",
                quote_ident(name),
                quote_ident(source)
            ))
            .with_context(|| format!("copying database {source} to {name}"))?;
        self.created.lock().expect("created").push(name.to_string());
        Ok(())
    }

    /// [`Server::copy`], then, for a copy too big to sit in memory beside its source, on the
    /// throwaway cluster: the copy written out (`sync`), the source's files dropped from the
    /// operating system's page cache, and the copy read back in, so that a run on the copy
    /// finds it in memory, as at the smaller scales, and is not measured while it is being
    /// written out. At 10M evidence rows a copy is 12 GiB, and the source and the copy together
    /// did not fit a 23.5 GiB machine: "warm" runs read part of the copy from disk, a different
    /// part each time (docs/performance.md). Dropping the source after the copy is not enough:
    /// the kernel had already let go of much of the copy, written once, to keep the source,
    /// read run after run.
    ///
    /// For the warm migrations' copies only: cleanup and its bare UPDATEs each work on a copy of
    /// the dirty data, and settling one of the pair would leave the other's source read from
    /// disk; a cold run drops the page cache right after its copy, so reading it in is wasted.
    pub fn settled_copy(&self, source: &str, name: &str) -> Result<()> {
        self.copy(source, name)?;
        let Some(cluster) = &self.cluster else {
            return Ok(());
        };
        let mut admin = self.connect("postgres")?;
        // As `name`, truncated as CREATE DATABASE truncated it: a run's database is named by
        // what it measures, which can be longer.
        let mut directory = |db: &str| -> Result<(std::path::PathBuf, i64)> {
            let row = admin.query_one(
                "SELECT oid::int8, pg_database_size(oid) FROM pg_catalog.pg_database WHERE datname = $1::text::name",
                &[&db],
            )?;
            let oid: i64 = row.get(0);
            Ok((
                cluster.root_path().join("data/base").join(oid.to_string()),
                row.get(1),
            ))
        };
        let (source_dir, bytes) = directory(source)?;
        if (bytes as f64) < crate::machine::memory_bytes() * SETTLE_ABOVE_SHARE_OF_MEMORY {
            return Ok(());
        }
        let (copy_dir, _) = directory(name)?;
        std::process::Command::new("sync")
            .status()
            .context("writing out the copy (sync)")?;
        for path in files_in(&source_dir)? {
            // A file the server removed meanwhile has no pages to drop.
            if let Ok(file) = std::fs::File::open(path) {
                use std::os::fd::AsRawFd;
                // SAFETY: a valid descriptor for the call's length; the advice changes no data.
                unsafe {
                    libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
                }
            }
        }
        for path in files_in(&copy_dir)? {
            let mut file = std::fs::File::open(&path)
                .with_context(|| format!("reading {} back into memory", path.display()))?;
            std::io::copy(&mut file, &mut std::io::sink())
                .with_context(|| format!("reading {} back into memory", path.display()))?;
        }
        Ok(())
    }

    /// Renames a database this run created (nobody may be connected to it).
    pub fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.connect("postgres")?
            .batch_execute(&format!(
                "ALTER DATABASE {} RENAME TO {}",
                quote_ident(from),
                quote_ident(to)
            ))
            .with_context(|| format!("renaming database {from} to {to}"))?;
        let mut created = self.created.lock().expect("created");
        for name in created.iter_mut().filter(|n| n.as_str() == from) {
            *name = to.to_string();
        }
        Ok(())
    }

    pub fn drop_database(&self, name: &str) -> Result<()> {
        self.connect("postgres")?
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_ident(name)
            ))
            .with_context(|| format!("dropping database {name}"))?;
        self.created.lock().expect("created").retain(|n| n != name);
        Ok(())
    }

    /// Drops every database this run created (on a throwaway cluster the cluster goes anyway).
    pub fn clean_up(&self) {
        let names: Vec<String> = self.created.lock().expect("created").clone();
        for name in names {
            if let Err(e) = self.drop_database(&name) {
                eprintln!("impact: could not drop {name}: {e:#}");
            }
        }
    }

    /// How a cold start looks on this server, in words; None on a server given by URL, which
    /// the benchmark does not restart.
    pub fn cold_conditions(&self) -> Option<&'static str> {
        self.cluster.as_ref()?;
        Some(if may_drop_page_cache() {
            "cold: server restarted, OS page cache dropped before the dry run and again before the run"
        } else {
            "cold: server restarted (the OS page cache stayed: dropping it needs root)"
        })
    }

    /// A cold start (see [`Server::cold_conditions`]): the throwaway server restarted, its
    /// buffers empty, and the operating system's page cache dropped where this process may.
    pub fn cold_start(&self) -> Result<()> {
        let Some(cluster) = &self.cluster else {
            return Ok(());
        };
        cluster
            .restart()
            .context("restarting the throwaway server")?;
        self.drop_page_cache()
    }

    /// Drops the operating system's page cache where this process may, with the server
    /// running: between a cold dry run and its migration, so that the migration does not find
    /// warm what the dry run read (a restart there would end the workload's connections; the
    /// server's own buffers, 128 MB, keep what the dry run read last).
    pub fn drop_page_cache(&self) -> Result<()> {
        if self.cluster.is_some() && may_drop_page_cache() {
            let _ = std::process::Command::new("sync").status();
            std::fs::write(DROP_CACHES, "3").context("dropping the OS page cache")?;
        }
        Ok(())
    }

    pub fn stop(&mut self) {
        if let Some(mut cluster) = self.cluster.take() {
            cluster.stop();
        }
    }
}

/// `postgres://user:pw@host:port/db?query` -> the same URL with `{db}` for the database.
fn template_of(url: &str) -> Result<String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        bail!("--database-url must be a postgres:// URL (the benchmark makes databases beside it)");
    }
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let authority_end = base
        .find("://")
        .map(|i| i + 3)
        .context("URL without a scheme")?;
    let prefix = match base[authority_end..].find('/') {
        Some(slash) => &base[..authority_end + slash],
        None => base,
    };
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    Ok(format!("{prefix}/{{db}}{query}"))
}

const DROP_CACHES: &str = "/proc/sys/vm/drop_caches";

/// The files of a database's directory (a few hundred: each is opened as it is reached).
fn files_in(dir: &std::path::Path) -> Result<Vec<std::path::PathBuf>> {
    std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .map(|entry| Ok(entry?.path()))
        .collect()
}

/// A copy is settled ([`Server::settled_copy`]) when its source is at least this share of the
/// machine's memory: the two together would then take half of it or more, beside the server's
/// and the workload's own.
const SETTLE_ABOVE_SHARE_OF_MEMORY: f64 = 0.25;

fn may_drop_page_cache() -> bool {
    std::fs::OpenOptions::new()
        .write(true)
        .open(DROP_CACHES)
        .is_ok()
}
