//! A dump is checked before a server is started, so that a bad file fails at once with what to
//! do about it.

use anyhow::{bail, Context as _, Result};
use std::path::{Path, PathBuf};

/// Checks a dump up front so a bad file fails before a server is started: it must be a
/// non-empty plain-SQL file, not an archive or a compressed one (which psql would reject, or
/// worse, partly load).
pub fn read_dump(path: &Path) -> Result<PathBuf> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read the dump {}", path.display()))?;
    if meta.is_dir() {
        bail!(
            "the dump {} is a directory (a directory-format pg_dump?); rehearse needs plain SQL: convert it with `pg_restore -f dump.sql {}`",
            path.display(),
            path.display()
        );
    }
    if !meta.is_file() {
        bail!("the dump {} is not a file", path.display());
    }
    let mut head = Vec::with_capacity(HEAD_BYTES);
    std::fs::File::open(path)
        .and_then(|f| {
            std::io::Read::read_to_end(&mut std::io::Read::take(f, HEAD_BYTES as u64), &mut head)
        })
        .with_context(|| format!("cannot read the dump {}", path.display()))?;
    if let Some(problem) = dump_problem(&head) {
        bail!("the dump {} {problem}", path.display());
    }
    Ok(path.to_path_buf())
}

/// How much of a dump is looked at: enough for every signature below (tar's sits at 257).
const HEAD_BYTES: usize = 4096;

/// What makes a dump unusable, judged from its first bytes; None for plausible plain SQL.
fn dump_problem(head: &[u8]) -> Option<String> {
    const PLAIN: &str = "rehearse needs a plain-SQL dump: take it with `pg_dump -Fp`";
    let compressed = [
        (&[0x1f, 0x8b][..], "gzip", "gunzip"),
        (&[0x28, 0xb5, 0x2f, 0xfd][..], "zstd", "zstd -d"),
        (&[0x04, 0x22, 0x4d, 0x18][..], "lz4", "lz4 -d"),
        (&b"BZh"[..], "bzip2", "bunzip2"),
        (&[0xfd, b'7', b'z', b'X', b'Z', 0x00][..], "xz", "unxz"),
    ];
    if head.iter().all(u8::is_ascii_whitespace) {
        return Some("is empty: it holds no SQL".to_string());
    }
    if head.starts_with(b"PGDMP") {
        return Some(format!(
            "is a custom-format pg_dump archive, not SQL; {PLAIN}, or convert it with `pg_restore -f - FILE > dump.sql`"
        ));
    }
    if let Some((_, kind, tool)) = compressed
        .iter()
        .find(|(magic, _, _)| head.starts_with(magic))
    {
        return Some(format!(
            "is {kind}-compressed; decompress it first (`{tool}`) and pass the plain SQL"
        ));
    }
    if head.get(257..262) == Some(&b"ustar"[..]) {
        return Some(format!(
            "is a tar archive (a tar-format pg_dump?), not SQL; {PLAIN}, or convert it with `pg_restore -f - FILE > dump.sql`"
        ));
    }
    if head.contains(&0) || std::str::from_utf8(head).is_err_and(|e| e.error_len().is_some()) {
        return Some(format!("is binary, not SQL text; {PLAIN}"));
    }
    None
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_sql_passes_and_archives_do_not() {
        assert_eq!(
            dump_problem(b"-- PostgreSQL database dump\nSET x = 1;\n"),
            None
        );
        assert!(dump_problem(b"").unwrap().contains("empty"));
        assert!(dump_problem(b" \n\t").unwrap().contains("empty"));
        assert!(dump_problem(b"PGDMP\x01\x0e")
            .unwrap()
            .contains("pg_restore -f -"));
        assert!(dump_problem(&[0x1f, 0x8b, 8, 0]).unwrap().contains("gzip"));
        assert!(dump_problem(&[0x28, 0xb5, 0x2f, 0xfd, 1])
            .unwrap()
            .contains("zstd"));
        assert!(dump_problem(&[0x04, 0x22, 0x4d, 0x18])
            .unwrap()
            .contains("lz4"));
        assert!(dump_problem(b"BZh91AY&SY").unwrap().contains("bzip2"));
        let mut tar = vec![b'a'; 512];
        tar[257..262].copy_from_slice(b"ustar");
        assert!(dump_problem(&tar).unwrap().contains("tar"));
        // A multi-byte character cut at the end of the head is still text.
        assert_eq!(dump_problem(&"SELECT é".as_bytes()[..8]), None);
    }
}
