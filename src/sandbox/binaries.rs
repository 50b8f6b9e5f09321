//! Where the local PostgreSQL server binaries are, and which extensions come with them.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether the server binaries come with an extension: its control file in the share
/// directory and its library in the package library directory (both from `pg_config`).
pub fn extension_available(name: &str) -> Result<bool> {
    let bindir = find_bindir()?;
    let pg_config = |flag: &str| -> Result<PathBuf> {
        let out = Command::new(bindir.join("pg_config"))
            .arg(flag)
            .output()
            .with_context(|| format!("running {} {flag}", bindir.join("pg_config").display()))?;
        if !out.status.success() {
            bail!("pg_config {flag} failed");
        }
        Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
    };
    let control = pg_config("--sharedir")?
        .join("extension")
        .join(format!("{name}.control"));
    let library = pg_config("--pkglibdir")?.join(format!("{name}.so"));
    Ok(control.is_file() && library.is_file())
}

/// Finds the directory holding `initdb` and `pg_ctl`: RULEIQ_PG_BINDIR, PATH, then `pg_config --bindir`, then the
/// usual package locations (newest version first).
pub fn find_bindir() -> Result<PathBuf> {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(chosen) = std::env::var_os("RULEIQ_PG_BINDIR") {
        let dir = PathBuf::from(chosen);
        if has_tools(&dir) {
            return Ok(dir);
        }
        bail!(
            "RULEIQ_PG_BINDIR={} holds no initdb and pg_ctl.\n{INSTALL_HINT}",
            dir.display()
        );
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if has_tools(&dir) {
                // A PATH entry may hold only symlinks to initdb and pg_ctl; the real directory
                // also has pg_dump and the rest.
                let real = std::fs::canonicalize(dir.join("initdb"))
                    .ok()
                    .and_then(|p| p.parent().map(Path::to_path_buf))
                    .filter(|d| has_tools(d));
                return Ok(real.unwrap_or(dir));
            }
        }
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_tools(&dir) {
            return Ok(dir);
        }
    }
    let mut candidates: Vec<PathBuf> = Vec::new();
    for pattern_root in [
        "/usr/lib/postgresql",
        "/opt/homebrew/opt",
        "/usr/local/opt",
        "/usr/pgsql",
    ] {
        if let Ok(entries) = std::fs::read_dir(pattern_root) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().to_string();
                if pattern_root == "/usr/lib/postgresql" || name.starts_with("postgresql") {
                    candidates.push(entry.path().join("bin"));
                }
            }
        }
    }
    candidates.push(PathBuf::from("/usr/local/pgsql/bin"));
    candidates.sort_by_key(|p| std::cmp::Reverse(version_in(p)));
    if let Some(dir) = candidates.into_iter().find(|d| has_tools(d)) {
        return Ok(dir);
    }
    bail!("no PostgreSQL server binaries (initdb, pg_ctl) found on PATH, through pg_config, or in the usual places.\n{INSTALL_HINT}")
}

const INSTALL_HINT: &str = "Install them:  Debian/Ubuntu: sudo apt-get install postgresql    macOS: brew install postgresql@15\n\
     (or set RULEIQ_PG_BINDIR to the directory holding initdb and pg_ctl).\n\
     Or skip the throwaway server and point ruleiq-db at an existing one with --database-url (or DATABASE_URL).";

fn version_in(path: &Path) -> u32 {
    path.to_string_lossy()
        .split(|c: char| !c.is_ascii_digit())
        .find_map(|part| part.parse().ok())
        .unwrap_or(0)
}
