//! A real PgBouncer in front of the test server, started like the throwaway PostgreSQL: one per
//! test that needs it, in a temporary directory, stopped when the value goes. Debian's
//! `pgbouncer` package provides it (`.ci/run` installs it when missing).

use postgres::{Client, NoTls, SimpleQueryMessage};
pub use ruleiq_db::sandbox::bouncer::PoolMode;
use ruleiq_db::sandbox::bouncer::{pgbouncer_binary, BouncerOptions};

/// A running PgBouncer (the library's, `rehearse` starts the same) and how the tests reach it.
pub struct Bouncer {
    pub port: u16,
    /// The database's URL with the pooler's port in place of the server's.
    url_template: String,
    inner: ruleiq_db::sandbox::bouncer::Bouncer,
}

impl Bouncer {
    /// Starts PgBouncer in `mode` in front of `db`'s server. `users` are (role, password)
    /// pairs besides the test superuser that may connect through it; the superuser may use its
    /// admin console.
    pub fn start(db: &super::TestDb, mode: PoolMode, users: &[(&str, &str)]) -> Bouncer {
        Bouncer::start_sized(
            db,
            mode,
            users,
            BouncerOptions::DEFAULT_POOL_SIZE,
            BouncerOptions::DEFAULT_QUERY_WAIT_TIMEOUT,
        )
    }

    /// [`Bouncer::start`] with `pool_size` server connections a pool, and clients dropped after
    /// waiting `query_wait_timeout` seconds for one.
    pub fn start_sized(
        db: &super::TestDb,
        mode: PoolMode,
        users: &[(&str, &str)],
        pool_size: u16,
        query_wait_timeout: u32,
    ) -> Bouncer {
        let url = url::Url::parse(&db.url).expect("the test database URL");
        let superuser = url.username().to_string();
        let mut all = vec![(superuser.clone(), url.password().unwrap_or("").to_string())];
        all.extend(users.iter().map(|(r, p)| (r.to_string(), p.to_string())));
        let binary = pgbouncer_binary()
            .expect("pgbouncer not found: install Debian's `pgbouncer` package (.ci/run does)");
        let inner = ruleiq_db::sandbox::bouncer::Bouncer::start(
            &binary,
            &BouncerOptions {
                server_port: url.port().unwrap_or(5432),
                mode,
                users: all,
                admin_user: Some(superuser),
                pool_size,
                query_wait_timeout,
            },
        )
        .unwrap_or_else(|e| panic!("starting pgbouncer: {e:#}"));
        let port = inner.port();
        let mut url_template = url.clone();
        url_template.set_port(Some(port)).unwrap();
        url_template.set_path("/{db}");
        Bouncer {
            port,
            url_template: url_template.to_string().replace("%7Bdb%7D", "{db}"),
            inner,
        }
    }

    /// What PgBouncer logged so far (for a failing test's message).
    pub fn log(&self) -> String {
        self.inner.log()
    }

    /// The URL of `dbname` through the pooler, as the test superuser.
    pub fn url_for(&self, dbname: &str) -> String {
        self.url_template.replace("{db}", dbname)
    }

    /// The URL of `dbname` through the pooler as `role`.
    pub fn url_as(&self, dbname: &str, role: &str, password: &str) -> String {
        let mut url = url::Url::parse(&self.url_for(dbname)).unwrap();
        url.set_username(role).unwrap();
        url.set_password(Some(password)).unwrap();
        url.to_string()
    }

    /// Runs `command` on PgBouncer's admin console (as a DBA recycles server connections:
    /// `RECONNECT`).
    pub fn admin(&self, command: &str) {
        let mut console = Client::connect(&self.url_for("pgbouncer"), NoTls)
            .expect("connecting to pgbouncer's admin console");
        console
            .simple_query(command)
            .unwrap_or_else(|e| panic!("pgbouncer admin {command}: {e}"));
    }

    /// A client through the pooler (as an application connects).
    pub fn client(&self, dbname: &str) -> Client {
        Client::connect(&self.url_for(dbname), NoTls).unwrap_or_else(|e| {
            panic!(
                "connecting through pgbouncer on port {}: {e}\n{}",
                self.port,
                self.log()
            )
        })
    }
}

/// The first column of the first row of a simple-protocol query (what an application through
/// a transaction pooler may safely send: no named statement).
pub fn simple_value(client: &mut Client, sql: &str) -> Option<String> {
    client
        .simple_query(sql)
        .unwrap()
        .into_iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row.get(0).map(str::to_string)),
            _ => None,
        })
        .flatten()
}
