//! Runs the real `ruleiq-db` binary as a child process and measures it from outside: wall time
//! from spawn to exit, and peak resident memory (`VmHWM` of /proc/<pid>/status, sampled while
//! it runs), so nothing in the product is instrumented.
//!
//! Not `wait4`'s `ru_maxrss`: on exec, Linux folds the high-water mark of the address space the
//! child leaves (the parent's, with posix_spawn's shared-memory clone) into the child's
//! maxrss, so it reports this benchmark's own size once that exceeds ruleiq-db's.

use anyhow::{bail, Context, Result};
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The binary cargo built beside this bench (same profile).
pub const BUILT: &str = env!("CARGO_BIN_EXE_ruleiq-db");

static BINARY: OnceLock<PathBuf> = OnceLock::new();

/// Where every run's report is kept (`--reports`), numbered in the order the runs ended.
static REPORTS: OnceLock<(PathBuf, AtomicUsize)> = OnceLock::new();

/// Keeps every run's JSON report in `dir` (`--reports`): what a dry run estimated step by step,
/// and what the run then did, to be read beside the benchmark's own summary.
pub fn keep_reports(dir: PathBuf) -> Result<()> {
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let _ = REPORTS.set((dir, AtomicUsize::new(0)));
    Ok(())
}

/// Writes `run`'s report where `--reports` asked, named by its order and its arguments.
fn keep_report(args: &[&str], run: &ChildRun) -> Result<()> {
    let Some((dir, count)) = REPORTS.get() else {
        return Ok(());
    };
    let n = count.fetch_add(1, Ordering::SeqCst) + 1;
    let words: Vec<String> = args
        .iter()
        .filter(|a| !a.contains('/'))
        .map(|a| a.trim_start_matches('-').to_string())
        .collect();
    let path = dir.join(format!("{n:03}-{}.json", words.join("_")));
    std::fs::write(&path, &run.stdout).with_context(|| format!("writing {}", path.display()))
}

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
    // spawn() returns once the child has exec'd (std waits for it), so from here on
    // /proc/<pid> describes ruleiq-db's own address space.
    let status_file = format!("/proc/{}/status", child.id());
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while !done.load(Ordering::SeqCst) {
                match std::fs::read_to_string(&status_file)
                    .ok()
                    .and_then(|s| high_water_kib(&s))
                {
                    Some(kib) => peak = peak.max(kib),
                    // Exited: the zombie has no address space left to report.
                    None => break,
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            peak
        })
    };
    let status = child.wait().context("waiting for ruleiq-db")?;
    let wall = started.elapsed();
    done.store(true, Ordering::SeqCst);
    let code = status
        .code()
        .unwrap_or_else(|| -status.signal().unwrap_or(0));
    let run = ChildRun {
        code,
        wall,
        peak_rss_kib: sampler.join().expect("memory sampler"),
        stdout: stdout.join().expect("stdout reader")?,
        stderr: stderr.join().expect("stderr reader")?,
    };
    keep_report(args, &run)?;
    Ok(run)
}

/// `VmHWM` (peak resident set, KiB) from the text of /proc/<pid>/status.
fn high_water_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

/// Reads a pipe to the end on its own thread, so a chatty child never blocks on a full pipe.
fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<std::io::Result<String>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        pipe.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    })
}
