//! What a throwaway cluster asks of the operating system: a self-signed certificate (openssl),
//! a free port, and, when run as root, the `postgres` user to run the server as.

use anyhow::{bail, Context, Result};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// Makes a self-signed (certificate authority) certificate and its key.
pub fn self_signed_certificate(key: &Path, certificate: &Path, common_name: &str) -> Result<()> {
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        &format!("/CN={common_name}"),
        "-keyout",
        path_str(key)?,
        "-out",
        path_str(certificate)?,
    ])
}

pub(super) fn openssl(args: &[&str]) -> Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running openssl to make a certificate (is it installed?)")?;
    if !out.status.success() {
        bail!(
            "openssl {} failed: {}",
            args[0],
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

pub(super) fn path_str(path: &Path) -> Result<&str> {
    path.to_str().context("temporary path is not UTF-8")
}

/// Whether this process runs as root (initdb refuses to).
pub fn running_as_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

pub fn give_to(path: &Path, user: &str) -> Result<()> {
    let id = |flag: &str| -> Result<u32> {
        let out = Command::new("id")
            .arg(flag)
            .arg(user)
            .output()
            .context("running id")?;
        if !out.status.success() {
            bail!("there is no '{user}' system user to run PostgreSQL as (initdb refuses to run as root); create it or run as another user");
        }
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .context("parsing id output")
    };
    std::os::unix::fs::chown(path, Some(id("-u")?), Some(id("-g")?))
        .with_context(|| format!("chown {}", path.display()))
}

pub(super) fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}
