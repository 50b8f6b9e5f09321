//! Test harness: a real PostgreSQL, one fresh database per test.
//!
//! The server is `RULEIQ_TEST_DATABASE_URL` when set (a postgres:// URL of a role that may
//! create databases), else a throwaway cluster started with the same code as `rehearse`, once
//! per run (every area is a module of the one test binary, `tests/tests.rs`) and stopped when
//! the binary exits.

pub mod bouncer;

use postgres::{Client, NoTls};
use ruleiq_db::sandbox::{Cluster, ClusterOptions};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

struct Server {
    /// URL template: `{db}` stands for the database name.
    url_template: String,
}

static SERVER: OnceLock<Server> = OnceLock::new();
static CLUSTER: Mutex<Option<Cluster>> = Mutex::new(None);
static TUNED_SERVER: OnceLock<Server> = OnceLock::new();
static TUNED_CLUSTER: Mutex<Option<Cluster>> = Mutex::new(None);

extern "C" fn stop_cluster() {
    for slot in [&CLUSTER, &TUNED_CLUSTER] {
        if let Ok(mut guard) = slot.lock() {
            if let Some(mut cluster) = guard.take() {
                cluster.stop();
            }
        }
    }
}

/// Whether the server binaries have pg_stat_statements, so the tuned cluster preloads it.
pub fn pg_stat_statements_available() -> bool {
    ruleiq_db::sandbox::extension_available("pg_stat_statements").unwrap_or(false)
}

/// A second throwaway cluster for the tests that need server settings the default one lacks:
/// PREPARE TRANSACTION (max_prepared_transactions) and pg_stat_statements preloaded (when the
/// binaries have it). With RULEIQ_TEST_DATABASE_URL it is that server; tests check what it
/// allows and say why they skip.
fn tuned_server() -> &'static Server {
    if std::env::var("RULEIQ_TEST_DATABASE_URL").is_ok() {
        return server();
    }
    TUNED_SERVER.get_or_init(|| {
        let options = ClusterOptions {
            max_prepared_transactions: 10,
            preload: if pg_stat_statements_available() {
                vec!["pg_stat_statements".into()]
            } else {
                Vec::new()
            },
            ..Default::default()
        };
        let cluster = Cluster::start(&options).expect("starting a tuned throwaway PostgreSQL");
        let template = cluster.url("{db}");
        *TUNED_CLUSTER.lock().unwrap() = Some(cluster);
        unsafe {
            libc::atexit(stop_cluster);
        }
        Server {
            url_template: template,
        }
    })
}

fn server() -> &'static Server {
    SERVER.get_or_init(|| {
        if let Ok(url) = std::env::var("RULEIQ_TEST_DATABASE_URL") {
            let (base, query) = url
                .split_once('?')
                .map_or((url.as_str(), ""), |(b, q)| (b, q));
            let (prefix, _) = base
                .rsplit_once('/')
                .expect("RULEIQ_TEST_DATABASE_URL must be postgres://…/dbname");
            let query = if query.is_empty() {
                String::new()
            } else {
                format!("?{query}")
            };
            return Server {
                url_template: format!("{prefix}/{{db}}{query}"),
            };
        }
        let cluster =
            Cluster::start(&ClusterOptions::default()).expect("starting a throwaway PostgreSQL");
        let template = cluster.url("{db}");
        *CLUSTER.lock().unwrap() = Some(cluster);
        unsafe {
            libc::atexit(stop_cluster);
        }
        Server {
            url_template: template,
        }
    })
}

/// The throwaway cluster's socket directory and port (None with RULEIQ_TEST_DATABASE_URL).
pub fn local_socket() -> Option<(std::path::PathBuf, u16)> {
    server();
    let guard = CLUSTER.lock().unwrap();
    guard.as_ref().map(|c| (c.socket_dir(), c.port()))
}

pub fn url_for(db: &str) -> String {
    server().url_template.replace("{db}", db)
}

pub fn connect_url(url: &str) -> Client {
    Client::connect(url, NoTls).expect("connecting to the test server")
}

/// The bounds a test's own `Session` keeps: short lock waits, a few retries.
pub fn test_safety() -> ruleiq_db::db::Safety {
    use std::time::Duration;
    ruleiq_db::db::Safety {
        lock_wait: Duration::from_secs(5),
        lock_timeout: Duration::from_secs(2),
        retry: ruleiq_db::db::RetryPolicy::new(3),
        patient_lock_timeout: Duration::from_secs(2),
        blocker_age: Duration::from_secs(60),
        ignore_blockers: false,
        max_replica_lag: ruleiq_db::db::replication::MaxLag::Time(Duration::from_secs(60)),
        max_replica_wait: Duration::from_secs(60),
    }
}

/// The newest migration's version, from the catalog: where a plain `migrate` ends. Tests that
/// mean version 8 itself (008, the repair) say 8.
pub fn latest() -> i32 {
    ruleiq_db::catalog::Catalog::embedded().latest()
}

/// The policy that decides what production's shape needs decided (NOT NULL columns).
pub const EXAMPLE_POLICY: &str = "fixtures/cleanup-policy.example.yaml";

/// The columns `insert_evidence` and tests that build evidence rows in bulk fill.
pub const EVIDENCE_COLUMNS: &str = "(id, user_id, business_profile_id, framework_id, evidence_name, evidence_type, control_reference, description, status, created_at, updated_at)";

/// user_id, business_profile_id and framework_id of a clean evidence row in the dirty fixture.
pub const FIXTURE_OWNER: &str = "'10000000-0000-0000-0000-000000000001', '20000000-0000-0000-0000-000000000001', '90000000-0000-0000-0000-000000000001'";

/// A fresh database, dropped when the value goes.
pub struct TestDb {
    pub name: String,
    pub url: String,
    /// The maintenance database of its server, for CREATE and DROP DATABASE.
    admin_url: String,
}

impl TestDb {
    pub fn new() -> TestDb {
        TestDb::new_on(&server().url_template)
    }

    /// A fresh database on the tuned cluster (prepared transactions, pg_stat_statements).
    pub fn new_tuned() -> TestDb {
        TestDb::new_on(&tuned_server().url_template)
    }

    /// A fresh database on another server: `template` is its URL with `{db}` for the database
    /// name (e.g. a primary with a standby).
    pub fn new_on(template: &str) -> TestDb {
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        let admin_url = template.replace("{db}", "postgres");
        let mut admin = connect_url(&admin_url);
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("CREATE DATABASE");
        TestDb {
            url: template.replace("{db}", &name),
            name,
            admin_url,
        }
    }

    /// This database's URL for another role.
    pub fn url_as(&self, role: &str, password: &str) -> String {
        let (scheme, rest) = self.url.split_once("://").unwrap();
        let (_, server) = rest.split_once('@').unwrap();
        format!("{scheme}://{role}:{password}@{server}")
    }

    /// The real binary, connecting as `role`, reports in JSON, without progress bars.
    pub fn cli_as(&self, role: &str, password: &str) -> assert_cmd::Command {
        let mut cmd = cli_at(&self.url_as(role, password));
        cmd.args(["--format", "json"]);
        cmd
    }

    /// A version-7 database holding the dirty legacy fixture, on another server.
    pub fn dirty_legacy_on(template: &str) -> TestDb {
        let db = TestDb::new_on(template);
        db.migrate_to(7);
        db.execute_file("fixtures/legacy_dirty.sql");
        db
    }

    pub fn client(&self) -> Client {
        connect_url(&self.url)
    }

    pub fn target(&self) -> ruleiq_db::db::config::Target {
        ruleiq_db::db::config::Target::resolve(Some(&self.url), &ruleiq_db::db::config::ProcessEnv)
            .unwrap()
    }

    /// The real binary, pointed at this database, without progress bars.
    pub fn cli(&self) -> assert_cmd::Command {
        cli_at(&self.url)
    }

    /// The real binary as a process to spawn (for runs that must overlap or be killed),
    /// pointed at this database, without progress bars.
    pub fn command(&self) -> std::process::Command {
        command_at(&self.url)
    }

    /// [`TestDb::command`] with these arguments, started, its stdout and stderr captured.
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        self.command()
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Runs the binary with these arguments and returns (exit code, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.cli().args(args).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs with `--format json` and parses stdout.
    pub fn run_json(&self, args: &[&str]) -> (i32, serde_json::Value, String) {
        let mut all = vec!["--format", "json"];
        all.extend_from_slice(args);
        let (code, stdout, stderr) = self.run(&all);
        let value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!("stdout is not one JSON document ({e}):\n{stdout}\nstderr:\n{stderr}")
        });
        (code, value, stderr)
    }

    /// The status ruleiq_audit records for cleanup run `run_id`.
    pub fn cleanup_run_status(&self, run_id: &str) -> String {
        self.client()
            .query_one(
                "SELECT status FROM ruleiq_audit.cleanup_runs WHERE run_id = $1::text::uuid",
                &[&run_id],
            )
            .unwrap()
            .get(0)
    }

    /// How many advisory locks sessions of this database hold (ruleiq-db's migration lock is
    /// one): 0 once every run has let go.
    pub fn advisory_locks_held(&self) -> i64 {
        self.scalar_i64(
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database
              WHERE l.locktype = 'advisory' AND d.datname = current_database()",
        )
    }

    /// A session holding ruleiq-db's migration lock, as another running ruleiq-db would;
    /// the lock goes when the returned client does.
    pub fn hold_migration_lock(&self) -> Client {
        let mut holder = self.client();
        holder
            .execute(
                "SELECT pg_advisory_lock($1)",
                &[&ruleiq_db::db::MIGRATION_LOCK_KEY],
            )
            .unwrap();
        holder
    }

    pub fn execute(&self, sql: &str) {
        self.client()
            .batch_execute(sql)
            .unwrap_or_else(|e| panic!("{e}: {sql}"));
    }

    pub fn execute_file(&self, path: &str) {
        let sql = std::fs::read_to_string(path).unwrap();
        self.execute(&sql);
    }

    pub fn scalar_i64(&self, sql: &str) -> i64 {
        self.client().query_one(sql, &[]).unwrap().get(0)
    }

    /// Migrates with the library's binary to `version` and asserts success.
    pub fn migrate_to(&self, version: i32) {
        let v = version.to_string();
        let (code, _, stderr) = self.run(&["migrate", "--target", &v]);
        assert_eq!(code, 0, "migrate --target {version} failed: {stderr}");
    }

    /// A version-7 database holding the dirty legacy fixture.
    pub fn dirty_legacy() -> TestDb {
        TestDb::new().with_dirty_legacy()
    }

    /// The dirty fixture with its violations repaired by hand: a clean version-7 database with
    /// rows in every table.
    pub fn clean_legacy() -> TestDb {
        let db = TestDb::dirty_legacy();
        db.execute(
            "UPDATE evidence_items SET status = 'collected' WHERE status NOT IN ('not_started','in_progress','collected','approved','rejected');
             UPDATE evidence_items SET approved_at = now(), approved_by = user_id::text WHERE status = 'approved';
             UPDATE business_profiles SET employee_count = 1 WHERE employee_count <= 0;
             UPDATE business_profiles SET data_sensitivity = 'High' WHERE data_sensitivity NOT IN ('Low','Medium','High','Critical');
             UPDATE assessment_sessions SET business_profil = NULL WHERE business_profil NOT IN (SELECT id FROM business_profiles);
             DELETE FROM generated_policies WHERE business_profil NOT IN (SELECT id FROM business_profiles);",
        );
        db
    }

    /// This database migrated to version 7 and loaded with the dirty legacy fixture.
    pub fn with_dirty_legacy(self) -> TestDb {
        self.migrate_to(7);
        self.execute_file("fixtures/legacy_dirty.sql");
        self
    }

    /// Inserts one evidence_items row with `status`, filling production's NOT NULL columns with
    /// the dirty fixture's user, profile and framework (the fixture must be loaded). `id` is
    /// a uuid literal; `status_sql` an SQL expression (`'collected'`, `NULL`).
    pub fn insert_evidence(&self, id: &str, status_sql: &str) {
        self.execute(&format!("INSERT INTO evidence_items {EVIDENCE_COLUMNS} VALUES ('{id}', {FIXTURE_OWNER}, 'added by a test', 'note', 'T.1', 'a test row', {status_sql}, now(), now())"));
    }

    /// A schema-and-data dump, for "nothing changed" comparisons.
    pub fn dump(&self) -> String {
        self.dump_with(&[])
    }

    pub fn dump_with(&self, extra: &[&str]) -> String {
        dump_url(&self.url, extra)
    }

    /// A dump whose rows compare regardless of their physical order (an UPDATE moves a row, a
    /// re-inserted row lands elsewhere): each COPY block's lines sorted; the audit schema, the
    /// one thing cleanup + undo is meant to add, left out.
    pub fn canonical_dump(&self) -> String {
        rows_sorted(&self.dump_with(&["--exclude-schema=ruleiq_audit"]))
    }

    /// Runs the binary on a pseudo-terminal (util-linux `script`), typing `answer` at its
    /// prompt once the prompt shows; returns the exit code and what the terminal showed.
    pub fn on_a_terminal(&self, args: &str, answer: &str) -> (i32, String) {
        use std::io::{Read, Write};
        let args: Vec<&str> = args.split_whitespace().collect();
        let mut child = self
            .on_a_pty(&args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("script (util-linux) runs the binary on a pseudo-terminal");
        let screen = std::sync::Arc::new(Mutex::new(Vec::new()));
        let reader = {
            let screen = screen.clone();
            let mut stdout = child.stdout.take().unwrap();
            std::thread::spawn(move || {
                let mut chunk = [0u8; 4096];
                while let Ok(n @ 1..) = stdout.read(&mut chunk) {
                    screen.lock().unwrap().extend_from_slice(&chunk[..n]);
                }
            })
        };
        let shown = || String::from_utf8_lossy(&screen.lock().unwrap()).into_owned();
        // The answer is typed once the question is on the screen (or the command has ended
        // without asking, which the caller's assertions then show).
        poll_until(std::time::Duration::from_secs(60), || {
            shown().contains("[y/N]") || matches!(child.try_wait(), Ok(Some(_)))
        });
        let mut stdin = child.stdin.take().unwrap();
        let _ = stdin.write_all(answer.as_bytes());
        drop(stdin);
        let status = child.wait().unwrap();
        reader.join().unwrap();
        (status.code().unwrap_or(-1), shown())
    }

    /// The real binary with these arguments, pointed at this database, on a pseudo-terminal
    /// (util-linux `script`), so that it draws what a person sees; the URL variables removed as
    /// for [`binary`].
    pub fn on_a_pty(&self, args: &[&str]) -> std::process::Command {
        let binary = assert_cmd::cargo::cargo_bin("ruleiq-db");
        let mut line = format!("'{}' --database-url '{}'", binary.display(), self.url);
        for a in args {
            line.push_str(&format!(" '{a}'"));
        }
        let mut cmd = Command::new("script");
        cmd.args(["-qec", &line, "/dev/null"]);
        for name in ruleiq_db::db::config::URL_VARIABLES {
            cmd.env_remove(name);
        }
        cmd
    }

    /// The rows `sql` returns, each a map from column name to its value as PostgreSQL prints
    /// it (None for NULL), so a test reads `row["status"]` rather than positions and types.
    pub fn rows(&self, sql: &str) -> Vec<Row> {
        let messages = self
            .client()
            .simple_query(sql)
            .unwrap_or_else(|e| panic!("{e}: {sql}"));
        messages
            .iter()
            .filter_map(|m| match m {
                postgres::SimpleQueryMessage::Row(row) => Some(
                    row.columns()
                        .iter()
                        .enumerate()
                        .map(|(i, c)| (c.name().to_string(), row.get(i).map(str::to_string)))
                        .collect(),
                ),
                _ => None,
            })
            .collect()
    }

    /// Asserts the database's dump equals `before`, printing only the differing lines. Rows
    /// compare whatever their physical order: an UPDATE that changes no value (the
    /// application's, running beside the test) still moves its row.
    pub fn assert_unchanged(&self, before: &str) {
        let after = self.dump();
        if rows_sorted(&after) != rows_sorted(before) {
            let old: std::collections::BTreeSet<&str> = before.lines().collect();
            let new: std::collections::BTreeSet<&str> = after.lines().collect();
            let gone: Vec<&&str> = old.difference(&new).take(20).collect();
            let added: Vec<&&str> = new.difference(&old).take(20).collect();
            panic!("the database changed.\nlines gone: {gone:#?}\nlines added: {added:#?}");
        }
    }
}

/// `dump` with the lines of each COPY block sorted, so that rows compare whatever their
/// physical order.
fn rows_sorted(dump: &str) -> String {
    let mut out = Vec::new();
    let mut block: Vec<&str> = Vec::new();
    let mut in_copy = false;
    for line in dump.lines() {
        if in_copy {
            if line == "\\." {
                block.sort_unstable();
                out.append(&mut block);
                out.push(line);
                in_copy = false;
            } else {
                block.push(line);
            }
        } else {
            in_copy = line.starts_with("COPY ");
            out.push(line);
        }
    }
    out.join("\n")
}

/// One row of [`TestDb::rows`]: column name → value as text, None for NULL.
pub type Row = std::collections::BTreeMap<String, Option<String>>;

/// What one run of the binary gave.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// stdout as the one JSON document a `--format json` run prints.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON document ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// The real binary as every CLI test runs it: none of the URL variables of the environment it
/// was started from (the connection is what the test passes), bounded at five minutes.
pub fn binary() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("ruleiq-db").unwrap();
    for name in ruleiq_db::db::config::URL_VARIABLES {
        cmd.env_remove(name);
    }
    cmd.timeout(std::time::Duration::from_secs(300));
    cmd
}

/// [`binary`] as a process to spawn (for runs that must overlap, be read as they go, or be
/// killed).
pub fn binary_process() -> std::process::Command {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("ruleiq-db"));
    for name in ruleiq_db::db::config::URL_VARIABLES {
        cmd.env_remove(name);
    }
    cmd
}

/// [`binary`] pointed at `url` (another role, a pooler, a standby), without progress bars.
pub fn cli_at(url: &str) -> assert_cmd::Command {
    let mut cmd = binary();
    cmd.args(["--database-url", url, "--no-progress"]);
    cmd
}

/// [`binary_process`] pointed at `url`, without progress bars.
pub fn command_at(url: &str) -> std::process::Command {
    let mut cmd = binary_process();
    cmd.args(["--database-url", url, "--no-progress"]);
    cmd
}

/// Runs the binary with exactly these arguments and environment additions, pointed at no
/// database of the harness (the URL variables removed unless `env` sets them), stdin closed.
pub fn run_bare(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = binary();
    cmd.args(args);
    for (name, value) in env {
        cmd.env(name, value);
    }
    let out = cmd.output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Calls `done` every 50 ms until it is true; panics once `deadline` has passed, so a test
/// waits only as long as it must instead of a fixed sleep.
pub fn poll_until(deadline: std::time::Duration, done: impl FnMut() -> bool) {
    poll_until_named(deadline, "the condition held", done);
}

/// [`poll_until`], naming what it waits for in the panic.
pub fn poll_until_named(deadline: std::time::Duration, what: &str, mut done: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !done() {
        assert!(
            started.elapsed() < deadline,
            "gave up after {deadline:?} waiting until {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Polls `sql` (a boolean) on `client` until it is true; the bound only keeps a broken test
/// from hanging.
pub fn wait_until(client: &mut postgres::Client, sql: &str, what: &str) {
    poll_until_named(std::time::Duration::from_secs(300), what, || {
        client.query_one(sql, &[]).unwrap().get::<_, bool>(0)
    });
}

/// The changes cleanup's audit trail holds: 0 until a run has made the trail.
pub fn audit_records(client: &mut postgres::Client) -> i64 {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('ruleiq_audit.cleanup_changes') IS NOT NULL",
            &[],
        )
        .unwrap()
        .get(0);
    if !exists {
        return 0;
    }
    client
        .query_one("SELECT count(*) FROM ruleiq_audit.cleanup_changes", &[])
        .unwrap()
        .get(0)
}

/// A schema-and-data dump of the database at `url` (any server, a standby too).
pub fn dump_url(url: &str, extra: &[&str]) -> String {
    let bindir = ruleiq_db::sandbox::find_bindir().expect("pg_dump");
    let out = Command::new(bindir.join("pg_dump"))
        .args(["--no-owner", "--no-privileges", "--dbname", url])
        .args(extra)
        .output()
        .expect("running pg_dump");
    assert!(
        out.status.success(),
        "pg_dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // pg_dump 15.14+ brackets its output with \restrict/\unrestrict and a random key.
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut admin) = Client::connect(&self.admin_url, NoTls) {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}
