//! The benchmark's command line: `cargo bench --bench impact -- [OPTIONS]`.

use crate::dataset::Distribution;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;

pub const USAGE: &str = "\
cargo bench --bench impact -- [OPTIONS]

Measures what the application feels while ruleiq-db checks, cleans and migrates a generated
version-7 database, side by side with the plain-SQL equivalents.

OPTIONS
  --scale F           rows relative to 200k business_profiles, 500k assessment_sessions,
                      2M evidence_items, 200k generated_policies (default 1.0)
  --distribution D    measure one data set only: default (a tenth of the evidence approved)
                      or mature (two fifths approved, statuses spread so that no index
                      narrows the check much); without it, both
  --quick             one timed repetition instead of three
  --repetitions N     timed repetitions of each measurement (default 3)
  --database-url URL  a postgres:// URL of a role that may create databases (default:
                      RULEIQ_TEST_DATABASE_URL, else a throwaway cluster)
  --connections N     workload connections (default 4)
  --rate N            workload statements per second per connection during the stall and
                      failed-statement runs; 0 = as fast as each connection can go (default 0)
  --headroom-rate N   the same during the duration runs, where the server keeps headroom
                      (default 2000): migrate's duration is judged against the naive
                      migration's there
  --idle-rate N       the same for one more pair of runs, as context: a pace that leaves
                      most of the CPUs idle (default 500; 0 skips them). Each run reports how
                      busy the CPUs were with the workload alone, which says whether
                      --headroom-rate left the server any headroom on this machine
  --binary FILE       measure this ruleiq-db build instead of the one cargo just built
  --json FILE         where the JSON results go (default target/bench/impact.json)
  --reports DIR       also keep every ruleiq-db run's JSON report there, numbered in order
                      (what each dry run estimated, step by step, and what the run did)
  --gin-fastupdate-off
                      migrate on data whose GIN indexes have no pending list: the
                      application's own insert stalls (pending-list flushes) out of the way
  --migrate-flag F    pass F to `ruleiq-db migrate` (repeatable), e.g. --migrate-flag
                      --lock-timeout=100ms; by default none: a DBA's plain `migrate`
  --no-reader         migrate under the workload alone, without its long-running reader (a
                      REPEATABLE READ report on evidence_items, idle in transaction 500 ms
                      of every 750 ms)
  --write-docs        also rewrite the results block of docs/performance.md's latest results
                      and the latency picture docs/impact-latency.svg
  --keep              keep the benchmark's databases, the dirty data set among them (only
                      with --database-url)
";

#[derive(Debug, Clone)]
pub struct Options {
    pub scale: f64,
    /// The one data set to measure; None: both.
    pub distribution: Option<Distribution>,
    pub repetitions: usize,
    pub database_url: Option<String>,
    pub connections: usize,
    pub rate: u32,
    pub headroom_rate: u32,
    /// The pace of the context runs where most of the CPUs stay idle; 0: none.
    pub idle_rate: u32,
    pub json: PathBuf,
    pub binary: Option<PathBuf>,
    /// Where every ruleiq-db run's report is kept (`--reports`).
    pub reports: Option<PathBuf>,
    pub write_docs: bool,
    pub gin_fastupdate_off: bool,
    pub keep: bool,
    /// The long-running reader beside the workload (reader.rs).
    pub reader: bool,
    /// Extra flags for `ruleiq-db migrate` (before the subcommand).
    pub migrate_flags: Vec<String>,
}

impl Options {
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Options> {
        let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let mut options = Options {
            scale: 1.0,
            distribution: None,
            repetitions: 3,
            database_url: std::env::var("RULEIQ_TEST_DATABASE_URL")
                .ok()
                .filter(|u| !u.is_empty()),
            connections: 4,
            rate: 0,
            headroom_rate: 2000,
            idle_rate: 500,
            json: manifest.join("target/bench/impact.json"),
            binary: None,
            reports: None,
            write_docs: false,
            gin_fastupdate_off: false,
            keep: false,
            reader: true,
            migrate_flags: Vec::new(),
        };
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let mut value = |name: &str| {
                args.next()
                    .with_context(|| format!("{name} needs a value\n\n{USAGE}"))
            };
            match arg.as_str() {
                // `cargo bench` passes --bench to every bench target.
                "--bench" => {}
                "--scale" => options.scale = number(&value("--scale")?, "--scale")?,
                "--distribution" => {
                    options.distribution = Some(Distribution::parse(&value("--distribution")?)?)
                }
                "--quick" => options.repetitions = 1,
                "--repetitions" => {
                    options.repetitions = number(&value("--repetitions")?, "--repetitions")?
                }
                "--database-url" => options.database_url = Some(value("--database-url")?),
                "--connections" => {
                    options.connections = number(&value("--connections")?, "--connections")?
                }
                "--rate" => options.rate = number(&value("--rate")?, "--rate")?,
                "--headroom-rate" => {
                    options.headroom_rate = number(&value("--headroom-rate")?, "--headroom-rate")?
                }
                "--idle-rate" => options.idle_rate = number(&value("--idle-rate")?, "--idle-rate")?,
                "--binary" => options.binary = Some(PathBuf::from(value("--binary")?)),
                "--reports" => options.reports = Some(PathBuf::from(value("--reports")?)),
                "--json" => options.json = PathBuf::from(value("--json")?),
                "--write-docs" => options.write_docs = true,
                "--gin-fastupdate-off" => options.gin_fastupdate_off = true,
                "--keep" => options.keep = true,
                "--no-reader" => options.reader = false,
                "--migrate-flag" => options.migrate_flags.push(value("--migrate-flag")?),
                "-h" | "--help" => {
                    print!("{USAGE}");
                    std::process::exit(0);
                }
                other => bail!("unknown option '{other}'\n\n{USAGE}"),
            }
        }
        if !(options.scale > 0.0 && options.scale <= 100.0) {
            bail!("--scale must be above 0 and at most 100");
        }
        if options.headroom_rate == 0 {
            bail!("--headroom-rate must be at least 1: the duration runs need a paced workload");
        }
        if options.connections == 0 || options.repetitions == 0 {
            bail!("--connections and --repetitions must be at least 1");
        }
        Ok(options)
    }
}

fn number<T: std::str::FromStr>(text: &str, name: &str) -> Result<T> {
    text.parse()
        .ok()
        .with_context(|| format!("{name}: '{text}' is not a number"))
}
