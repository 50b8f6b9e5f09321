//! The rehearsal's servers: a throwaway cluster (and with --with-standby its streaming standby),
//! stopped and removed however the rehearsal ends: normally, by an error, a panic or Ctrl-C.

use super::{DATABASE, STANDBY_NAME};
use crate::db::config::Target;
use crate::progress::Log;
use crate::sandbox::{Cluster, ClusterOptions};
use anyhow::Result;
use std::io::Write;
use std::sync::Mutex;

/// The rehearsal's cluster, reachable from the Ctrl-C handler.
static CLUSTER: Mutex<Option<Cluster>> = Mutex::new(None);
/// Its standby, with --with-standby.
static STANDBY: Mutex<Option<Cluster>> = Mutex::new(None);

/// The running servers; dropping this stops and removes them.
pub struct Servers {
    /// The rehearsal's database on the primary.
    pub target: Target,
    /// The primary's `postgres` database, to create the rehearsal's from.
    pub admin: Target,
    /// The rehearsal's database on the standby.
    pub standby: Option<Target>,
    /// What the report says of the servers.
    pub description: String,
    // Stops the cluster however the rehearsal is left, a panic included.
    _stop: StopOnDrop,
}

/// Starts the cluster (and the standby), with the Ctrl-C handler in place first.
pub fn start(log: &Log, with_standby: bool) -> Result<Servers> {
    install_interrupt_handler();
    log.line("starting a throwaway PostgreSQL cluster");
    let cluster = Cluster::start(&ClusterOptions::default())?;
    let target = cluster.target(DATABASE)?;
    let admin = cluster.target("postgres")?;
    let server = format!(
        "PostgreSQL on 127.0.0.1:{} (removed afterwards)",
        cluster.port()
    );
    log.line(&format!(
        "started {server}, files in {}",
        cluster.root_path().display()
    ));
    let standby = if with_standby {
        log.line("starting a streaming standby of it (pg_basebackup -R)");
        match cluster.start_standby(STANDBY_NAME) {
            Ok(standby) => Some(standby),
            Err(e) => {
                drop(cluster);
                return Err(e.context("starting the rehearsal's standby"));
            }
        }
    } else {
        None
    };
    let standby_target = match &standby {
        Some(s) => Some(s.target(DATABASE)?),
        None => None,
    };
    let description = match &standby {
        Some(s) => format!(
            "{server}, standby '{STANDBY_NAME}' on 127.0.0.1:{}",
            s.port()
        ),
        None => server,
    };
    *CLUSTER.lock().expect("cluster lock") = Some(cluster);
    *STANDBY.lock().expect("cluster lock") = standby;
    Ok(Servers {
        target,
        admin,
        standby: standby_target,
        description,
        _stop: StopOnDrop,
    })
}

struct StopOnDrop;

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        stop_cluster();
    }
}

fn stop_cluster() {
    if let Ok(mut guard) = STANDBY.lock() {
        if let Some(mut standby) = guard.take() {
            standby.stop();
        }
    }
    if let Ok(mut guard) = CLUSTER.lock() {
        if let Some(mut cluster) = guard.take() {
            cluster.stop();
        }
    }
}

/// Set first thing by the Ctrl-C handler.
static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// After Ctrl-C the handler stops the server and ends the process with 130; the rehearsal's
/// own thread, whose connection that stop just cut, must not end it first with an error.
pub fn wait_for_the_interrupt_to_finish() {
    if INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
        loop {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

fn install_interrupt_handler() {
    // Ctrl-C must not leave a server running in a temporary directory. The process has one
    // signal handler (db::interrupt), which runs this after cancelling our statements.
    crate::db::interrupt::on_signal_run(|| {
        INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = writeln!(
            std::io::stderr(),
            "ruleiq-db: interrupted; stopping the throwaway PostgreSQL"
        );
        stop_cluster();
        std::process::exit(130);
    });
}
