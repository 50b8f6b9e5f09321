//! Runs the real `ruleiq-db` binary as a child process and measures it from outside: wall time
//! from spawn to exit, and peak resident memory from the kernel's accounting of the reaped
//! child (`wait4`'s `ru_maxrss`), so nothing in the product is instrumented.

use anyhow::{bail, Context, Result};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The binary cargo built beside this bench (same profile).
pub const BUILT: &str = env!("CARGO_BIN_EXE_ruleiq-db");

static BINARY: OnceLock<PathBuf> = OnceLock::new();

/// Measures another build instead (`--binary`), e.g. the previous release, for a comparison.
pub fn use_binary(path: PathBuf) {
    let _ = BINARY.set(path);
}

fn binary() -> &'static Path {
    BINARY.get_or_init(|| PathBuf::from(BUILT))
}

#[derive(Debug, Clone)]
pub struct ChildRun {
    pub code: i32,
    pub wall: Duration,
    pub peak_rss_kib: u64,
    pub stdout: String,
    pub stderr: String,
}

impl ChildRun {
    pub fn peak_rss_mib(&self) -> f64 {
        self.peak_rss_kib as f64 / 1024.0
    }

    /// The JSON report on stdout, if there is one.
    pub fn report(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.stdout).ok()
    }

    /// The last line the child wrote on stderr: its error, when it failed.
    pub fn last_error_line(&self) -> String {
        self.stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("(no message)")
            .trim()
            .to_string()
    }
}

/// `ruleiq-db --no-progress --format json ARGS` against `url`. The URL travels in the
/// environment (DATABASE_URL) so that its password does not show in the process list.
pub fn run(url: &str, args: &[&str]) -> Result<ChildRun> {
    let binary = binary();
    if !binary.is_file() {
        bail!(
            "{} is missing: run through `cargo bench --bench impact`, which builds it",
            binary.display()
        );
    }
    let started = Instant::now();
    let mut child = Command::new(binary)
        .env("DATABASE_URL", url)
        .args(["--no-progress", "--format", "json"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let stdout = drain(child.stdout.take().context("child stdout")?);
    let stderr = drain(child.stderr.take().context("child stderr")?);
    let pid = child.id() as libc::pid_t;
    // Reap it ourselves instead of Child::wait: only wait4 returns the child's rusage. `child`
    // is not waited on afterwards, and dropping a std Child does not wait either.
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain old data; wait4 fills it for the pid we spawned.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: valid pointers to locals; pid is our own child, not yet reaped.
        let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if reaped == pid {
            break;
        }
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            return Err(error).context("waiting for ruleiq-db");
        }
    }
    let wall = started.elapsed();
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -libc::WTERMSIG(status)
    };
    Ok(ChildRun {
        code,
        wall,
        // Linux reports ru_maxrss in KiB.
        peak_rss_kib: usage.ru_maxrss.max(0) as u64,
        stdout: stdout.join().expect("stdout reader")?,
        stderr: stderr.join().expect("stderr reader")?,
    })
}

/// Reads a pipe to the end on its own thread, so a chatty child never blocks on a full pipe.
fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<std::io::Result<String>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        pipe.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    })
}
