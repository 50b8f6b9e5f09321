//! SQL into the throwaway server: the rehearsal's database, and the fixture or a dump loaded
//! into it with psql (a dump may hold COPY … FROM stdin blocks, which only psql reads).

use super::DATABASE;
use crate::db::config::Target;
use crate::db::Query;
use crate::sandbox;
use anyhow::{bail, Context as _, Result};
use std::io::Write;
use std::path::Path;
use std::process::Stdio;

/// The bundled dirty legacy fixture (loaded on top of migrations 001-007).
const FIXTURE: &str = include_str!("../../fixtures/legacy_dirty.sql");
/// Where the fixture is in the repository, as reports name it.
pub const FIXTURE_NAME: &str = "fixtures/legacy_dirty.sql";

/// Creates the rehearsal's database on the throwaway server, through its `postgres` database.
pub fn create_database(admin: &Target) -> Result<()> {
    let mut client = crate::db::connect(admin)?;
    client.batch(&format!("CREATE DATABASE {DATABASE}"))?;
    Ok(())
}

/// Loads the bundled fixture.
pub fn fixture(target: &Target) -> Result<()> {
    load_sql(target, FIXTURE.as_bytes())
}

/// Loads a plain-SQL dump (checked beforehand by [`super::dump::read_dump`]), streamed from
/// the file, with the bytes read and an ETA on a terminal.
pub fn dump(target: &Target, path: &Path, log: &crate::progress::Log) -> Result<()> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot read the dump {}", path.display()))?;
    let bar = log.bytes_bar(file.metadata()?.len(), "loading the dump");
    let loaded = load_sql(target, bar.wrap_read(file));
    bar.finish_and_clear();
    loaded
}

/// Loads plain SQL (a pg_dump may hold COPY … FROM stdin blocks) with psql, stopping at the
/// first error.
fn load_sql(target: &Target, mut sql: impl std::io::Read) -> Result<()> {
    let psql = sandbox::find_bindir()?.join("psql");
    let password = target
        .config
        .get_password()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .unwrap_or_default();
    let port = target
        .config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let mut child = std::process::Command::new(&psql)
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            "postgres",
            "-d",
            DATABASE,
        ])
        .env("PGPASSWORD", password)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {}", psql.display()))?;
    // psql stops at the first error and closes its input: its message, not the broken pipe,
    // is what went wrong.
    let mut stdin = child.stdin.take().expect("piped stdin");
    let copied = std::io::copy(&mut sql, &mut stdin).and_then(|_| stdin.flush());
    drop(stdin);
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "loading SQL failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    copied.context("feeding the SQL to psql")?;
    Ok(())
}
