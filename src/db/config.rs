//! Where to connect: `--database-url`, else the environment's direct URL under the names the
//! platforms give it (`DATABASE_URL_UNPOOLED`, `POSTGRES_URL_NON_POOLING`, `DIRECT_URL`, then
//! `DATABASE_URL`), else libpq's environment variables, password file and defaults (local
//! socket first, as psql does). URLs written for SQLAlchemy (`postgresql+asyncpg://…`) are
//! taken as the PostgreSQL URLs they are.

pub use super::env::{Env, ProcessEnv};
use super::tls::TlsMode;
use anyhow::{Context, Result};
use postgres::config::Host;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// The variables that may hold the database URL, most direct first: a platform that offers a
/// pooled and a direct URL names the direct one so, and migrations need the direct one
/// (docs/design.md, "Production's connection path").
pub const URL_VARIABLES: [&str; 4] = [
    "DATABASE_URL_UNPOOLED",
    "POSTGRES_URL_NON_POOLING",
    "DIRECT_URL",
    "DATABASE_URL",
];

/// A resolved connection target. Its `Display` never shows the password.
#[derive(Clone)]
pub struct Target {
    pub config: postgres::Config,
    pub tls: TlsMode,
    /// Where the URL came from: `flag`, the variable's name, or `environment` (PG* variables).
    pub url_source: String,
    /// What reading the URL changed, for stderr (a SQLAlchemy driver dropped, `ssl=` read).
    pub notes: Vec<String>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Target({self})")
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hosts: Vec<String> = self.config.get_hosts().iter().map(host_label).collect();
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        write!(
            f,
            "{}:{port} database {} as {}",
            hosts.join(","),
            self.config.get_dbname().unwrap_or("?"),
            self.config.get_user().unwrap_or("?")
        )
    }
}

fn host_label(host: &Host) -> String {
    match host {
        Host::Tcp(name) => name.clone(),
        Host::Unix(path) => path.display().to_string(),
    }
}

impl Target {
    /// Resolves the target from `--database-url` (if given), else the environment's URL
    /// variables ([`URL_VARIABLES`]), else the PG* variables.
    pub fn resolve(flag_url: Option<&str>, env: &dyn Env) -> Result<Target> {
        let (url, url_source) = match flag_url {
            Some(url) => (Some(url.to_string()), "flag".to_string()),
            None => match URL_VARIABLES
                .iter()
                .find_map(|name| env.var(name).map(|url| (url, *name)))
            {
                Some((url, name)) => (Some(url), name.to_string()),
                None => (None, "environment".to_string()),
            },
        };
        let mut notes = Vec::new();
        let (mut config, mut ssl) = match url.as_deref() {
            Some(url) => {
                let url = driverless(url, &mut notes);
                parse_url(&url).with_context(|| format!("reading the URL from {url_source}"))?
            }
            None => (postgres::Config::new(), SslSettings::default()),
        };
        apply_environment(&mut config, &mut ssl, env)?;
        if config.get_password().is_none() {
            if let Some(password) = password_from_file(&config, env) {
                config.password(password);
            }
        }
        config.application_name("ruleiq-db");
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        let tls = TlsMode::from_settings(ssl.mode.as_deref(), ssl.root_cert, env)?;
        config.ssl_mode(tls.postgres_mode());
        Ok(Target {
            config,
            tls,
            url_source,
            notes,
        })
    }

    /// The (host, port) pairs of the target, as written.
    pub fn host_ports(&self) -> Vec<(String, u16)> {
        let ports = self.config.get_ports();
        self.config
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, host)| {
                let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
                (host_label(host), port)
            })
            .collect()
    }

    /// The same server, another database (the test harness and `rehearse` use this).
    pub fn with_dbname(&self, dbname: &str) -> Target {
        let mut other = self.clone();
        other.config.dbname(dbname);
        other
    }

    /// The first host, for error messages.
    pub fn host_description(&self) -> String {
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        match self.config.get_hosts().first() {
            Some(host) => format!("{}:{port}", host_label(host)),
            None => format!("localhost:{port}"),
        }
    }
}

#[derive(Default)]
struct SslSettings {
    mode: Option<String>,
    root_cert: Option<PathBuf>,
}

/// A URL written for SQLAlchemy names its driver in the scheme (`postgresql+asyncpg://`,
/// `+psycopg2`, `+psycopg`, `postgres+…`) and asyncpg spells sslmode `ssl=`; the application's
/// own `DATABASE_URL` is written so, and a DBA will paste it. Returns the libpq spelling and
/// says what changed in `notes` (never the URL itself: it holds the password).
fn driverless(url: &str, notes: &mut Vec<String>) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let mut url = url.to_string();
    if let Some((base, driver)) = scheme.split_once('+') {
        if base == "postgres" || base == "postgresql" {
            notes.push(format!(
                "the URL's scheme `{scheme}` names a SQLAlchemy driver; connecting with `{base}://`"
            ));
            url = format!("{base}://{rest}");
            if driver == "asyncpg" {
                url = asyncpg_ssl(&url, notes);
            }
        }
    }
    url
}

/// asyncpg's `ssl=require` (or `true`, `disable`, …) is libpq's `sslmode`.
fn asyncpg_ssl(url: &str, notes: &mut Vec<String>) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_string();
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some(("ssl", value)) => {
                let mode = match value {
                    "true" | "on" | "1" => "require",
                    "false" | "off" | "0" => "disable",
                    other => other,
                };
                notes.push(format!("asyncpg's `ssl={value}` read as `sslmode={mode}`"));
                format!("sslmode={mode}")
            }
            _ => pair.to_string(),
        })
        .collect();
    format!("{base}?{}", pairs.join("&"))
}

/// Parses a URL or key=value string. `sslmode` and `sslrootcert` are taken out first because
/// tokio-postgres knows only disable/prefer/require; we implement libpq's full set.
fn parse_url(url: &str) -> Result<(postgres::Config, SslSettings)> {
    let mut ssl = SslSettings::default();
    let cleaned = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "sslmode" => ssl.mode = Some(value.to_string()),
                "sslrootcert" => ssl.root_cert = Some(PathBuf::from(percent_decode(value))),
                _ => kept.push(pair),
            }
        }
        if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        }
    } else {
        let mut kept = Vec::new();
        for token in url.split_whitespace() {
            match token.split_once('=') {
                Some(("sslmode", value)) => ssl.mode = Some(value.to_string()),
                Some(("sslrootcert", value)) => ssl.root_cert = Some(PathBuf::from(value)),
                _ => kept.push(token),
            }
        }
        kept.join(" ")
    };
    // The message names the part that is wrong, never echoes the URL (which holds the password).
    let config = postgres::Config::from_str(&cleaned).map_err(|e| {
        anyhow::anyhow!(
            "invalid database URL: {} (expected postgres://user:password@host:port/dbname)",
            url_problem(url).unwrap_or_else(|| parse_detail(&e))
        )
    })?;
    Ok((config, ssl))
}

/// What is wrong with a URL that did not parse, found by looking at its parts: the scheme, the
/// port, a parameter. Never quotes the user information (it holds the password).
fn url_problem(url: &str) -> Option<String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        let looks_like_url = url.starts_with("postgres") && !url.contains('=');
        return looks_like_url
            .then(|| "the scheme must be followed by `://` (postgres://…)".to_string());
    };
    if scheme != "postgres" && scheme != "postgresql" {
        return Some(format!(
            "the scheme `{scheme}` is not postgres:// or postgresql://"
        ));
    }
    let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
    let authority = authority.split('/').next().unwrap_or("");
    // The user information ends at the last `@`: a password may itself hold one.
    let hosts = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    for host in hosts.split(',') {
        let port = if host.starts_with('[') {
            host.split_once("]:").map(|(_, p)| p)
        } else {
            host.split_once(':').map(|(_, p)| p)
        };
        if let Some(port) = port {
            if port.parse::<u16>().is_err() {
                return Some(format!("the port `{port}` is not a port number"));
            }
        }
    }
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        if !pair.contains('=') {
            return Some(format!("the parameter `{pair}` has no `=value`"));
        }
    }
    None
}

/// tokio-postgres's own reason (`unknown option `foo``, `invalid value for option `port``),
/// which its Display leaves in the error's source. A quoted character is dropped: in a
/// key=value string it may belong to the password.
fn parse_detail(error: &postgres::Error) -> String {
    let mut detail = error.to_string();
    if let Some(source) = std::error::Error::source(error) {
        detail = source.to_string();
    }
    match detail.split_once(": expected") {
        Some((position, _)) if detail.starts_with("unexpected character") => position.to_string(),
        _ => detail,
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(byte) = u8::from_str_radix(&text[i + 1..i + 3], 16) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Fills what the URL left out from PG* variables and libpq's defaults.
fn apply_environment(
    config: &mut postgres::Config,
    ssl: &mut SslSettings,
    env: &dyn Env,
) -> Result<()> {
    if config.get_ports().is_empty() {
        if let Some(port) = env.var("PGPORT") {
            let port: u16 = port
                .parse()
                .with_context(|| format!("PGPORT '{port}' is not a port number"))?;
            config.port(port);
        }
    }
    let port = config.get_ports().first().copied().unwrap_or(5432);
    if config.get_hosts().is_empty() {
        match env.var("PGHOST") {
            Some(hosts) => {
                for host in hosts.split(',') {
                    config.host(host.trim());
                }
            }
            None => {
                // libpq's default is the local socket; fall back to TCP when no socket is there.
                for dir in ["/var/run/postgresql", "/run/postgresql", "/tmp"] {
                    if Path::new(dir).join(format!(".s.PGSQL.{port}")).exists() {
                        config.host_path(dir);
                    }
                }
                config.host("localhost");
            }
        }
    }
    if config.get_user().is_none() {
        let user = env
            .var("PGUSER")
            .or_else(|| env.var("USER"))
            .or_else(|| env.var("LOGNAME"))
            .unwrap_or_else(|| "postgres".to_string());
        config.user(&user);
    }
    if config.get_password().is_none() {
        if let Some(password) = env.var("PGPASSWORD") {
            config.password(password);
        }
    }
    if config.get_dbname().is_none() {
        let dbname = env
            .var("PGDATABASE")
            .unwrap_or_else(|| config.get_user().unwrap_or("postgres").to_string());
        config.dbname(&dbname);
    }
    if config.get_connect_timeout().is_none() {
        if let Some(seconds) = env
            .var("PGCONNECT_TIMEOUT")
            .and_then(|s| s.parse::<u64>().ok())
        {
            config.connect_timeout(Duration::from_secs(seconds.max(2)));
        }
    }
    if ssl.mode.is_none() {
        ssl.mode = env.var("PGSSLMODE");
    }
    if ssl.root_cert.is_none() {
        ssl.root_cert = env.var("PGSSLROOTCERT").map(PathBuf::from);
    }
    Ok(())
}

/// Looks the password up in `PGPASSFILE` or `~/.pgpass` (libpq's format and matching rules).
fn password_from_file(config: &postgres::Config, env: &dyn Env) -> Option<String> {
    let path = env
        .var("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| env.var("HOME").map(|home| Path::new(&home).join(".pgpass")))?;
    let text = std::fs::read_to_string(path).ok()?;
    let host = match config.get_hosts().first()? {
        Host::Tcp(name) => name.clone(),
        // libpq matches a socket connection against "localhost".
        Host::Unix(_) => "localhost".to_string(),
    };
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let wanted = [
        host.as_str(),
        port.as_str(),
        config.get_dbname().unwrap_or(""),
        config.get_user().unwrap_or(""),
    ];
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#') && !line.trim().is_empty())
        .find_map(|line| {
            let fields = split_pgpass_line(line);
            if fields.len() != 5 {
                return None;
            }
            let matches = fields[..4]
                .iter()
                .zip(wanted)
                .all(|(field, want)| field == "*" || field == want);
            matches.then(|| fields[4].clone())
        })
}

fn split_pgpass_line(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    fields.last_mut().expect("one field").push(next);
                }
            }
            ':' => fields.push(String::new()),
            _ => fields.last_mut().expect("one field").push(c),
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct FakeEnv(HashMap<&'static str, String>);
    impl Env for FakeEnv {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).cloned()
        }
    }

    fn env(pairs: &[(&'static str, &str)]) -> FakeEnv {
        FakeEnv(pairs.iter().map(|(k, v)| (*k, v.to_string())).collect())
    }

    #[test]
    fn url_wins_and_environment_fills_gaps() {
        let e = env(&[("PGPASSWORD", "from-env"), ("PGDATABASE", "ignored")]);
        let t = Target::resolve(Some("postgres://alice@db.example:6543/app"), &e).unwrap();
        assert_eq!(t.config.get_user(), Some("alice"));
        assert_eq!(t.config.get_dbname(), Some("app"));
        assert_eq!(t.config.get_password(), Some(&b"from-env"[..]));
        assert_eq!(t.to_string(), "db.example:6543 database app as alice");
        assert_eq!(t.url_source, "flag");
    }

    #[test]
    fn sqlalchemy_urls_lose_their_driver_and_asyncpg_ssl_is_sslmode() {
        let e = env(&[]);
        for scheme in [
            "postgresql+asyncpg",
            "postgresql+psycopg2",
            "postgresql+psycopg",
            "postgres+asyncpg",
        ] {
            // asyncpg spells it `ssl`, the psycopg drivers libpq's `sslmode`.
            let ssl = if scheme.ends_with("asyncpg") {
                "ssl"
            } else {
                "sslmode"
            };
            let url = format!("{scheme}://u:pw@h:5433/app?{ssl}=require");
            let t = Target::resolve(Some(&url), &e).unwrap();
            assert_eq!(t.config.get_dbname(), Some("app"), "{scheme}");
            assert!(t.notes.iter().any(|n| n.contains(scheme)), "{:?}", t.notes);
            assert!(t.notes.iter().all(|n| !n.contains("pw")));
            assert!(matches!(t.tls, TlsMode::Require), "{scheme}");
        }
        let err = Target::resolve(Some("mysql+pymysql://u@h/db"), &e).unwrap_err();
        assert!(format!("{err:#}").contains("mysql+pymysql"), "{err:#}");
    }

    #[test]
    fn the_direct_url_variables_come_before_database_url() {
        let e = env(&[
            ("DATABASE_URL", "postgres://u@pooled-host/app"),
            ("DIRECT_URL", "postgres://u@direct-host/app"),
        ]);
        let t = Target::resolve(None, &e).unwrap();
        assert_eq!(t.host_description(), "direct-host:5432");
        assert_eq!(t.url_source, "DIRECT_URL");
        let e = env(&[
            ("DATABASE_URL", "postgres://u@pooled-host/app"),
            ("DIRECT_URL", "postgres://u@direct-host/app"),
            ("DATABASE_URL_UNPOOLED", "postgres://u@unpooled-host/app"),
        ]);
        let t = Target::resolve(None, &e).unwrap();
        assert_eq!(t.url_source, "DATABASE_URL_UNPOOLED");
        let t = Target::resolve(Some("postgres://u@flag-host/app"), &e).unwrap();
        assert_eq!(t.host_description(), "flag-host:5432");
        let t = Target::resolve(None, &env(&[("PGHOST", "h")])).unwrap();
        assert_eq!(t.url_source, "environment");
    }

    #[test]
    fn pg_variables_without_url() {
        let e = env(&[
            ("PGHOST", "h1"),
            ("PGPORT", "5433"),
            ("PGUSER", "bob"),
            ("PGSSLMODE", "disable"),
        ]);
        let t = Target::resolve(None, &e).unwrap();
        assert_eq!(t.host_description(), "h1:5433");
        assert_eq!(t.config.get_dbname(), Some("bob"));
        assert!(matches!(t.tls, TlsMode::Disable));
    }

    #[test]
    fn password_file_matches_with_wildcards_and_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pgpass");
        std::fs::write(
            &file,
            "# comment\nother:*:*:*:nope\nh1:5433:*:bob:s\\:cret\n",
        )
        .unwrap();
        let e = env(&[
            ("PGHOST", "h1"),
            ("PGPORT", "5433"),
            ("PGUSER", "bob"),
            ("PGPASSFILE", file.to_str().unwrap()),
        ]);
        let t = Target::resolve(None, &e).unwrap();
        assert_eq!(t.config.get_password(), Some(&b"s:cret"[..]));
    }

    #[test]
    fn bad_url_error_does_not_echo_the_password() {
        let e = env(&[]);
        let err = Target::resolve(Some("postgres://u:hunter2@host:notaport/db"), &e).unwrap_err();
        let text = format!("{err:#}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("invalid database URL"), "{text}");
    }

    #[test]
    fn sslmode_verify_full_is_ours_to_parse() {
        let e = env(&[]);
        let err = Target::resolve(
            Some("postgres://u@h/db?sslmode=verify-full&sslrootcert=/nonexistent/root.crt"),
            &e,
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("/nonexistent/root.crt"));
        let t = Target::resolve(Some("postgres://u@h/db?sslmode=require"), &e).unwrap();
        assert!(matches!(t.tls, TlsMode::Require));
    }
}
