//! What the application feels while ruleiq-db works on its database, and what it costs at scale.
//!
//! `cargo bench --bench impact -- [--scale F] [--quick] [--write-docs]` builds a version-7
//! database of production's shape (by default 200k business_profiles, 500k assessment_sessions,
//! 2M evidence_items, 200k generated_policies, 1 % of rows violating each constraint), then
//! measures, in one run:
//!
//! - `check-constraints --dry-run` against one `SELECT count(*)` of each checked table;
//! - `cleanup --yes --policy` (the benchmark's policy decides the two rules whose built-in
//!   set_null cannot write into production's NOT NULL columns) against bare UPDATEs (and a
//!   DELETE) of the same rows writing the same values, without audit;
//! - `migrate` 7→8 against a naive one-transaction migration, each while a workload of single-row
//!   statements runs: its longest stall, p99 latency and failed statements;
//! - the peak memory of every ruleiq-db process.
//!
//! It prints a table, writes target/bench/impact.json, and with --write-docs the results block
//! of docs/performance.md (with its method and analysis). See `-- --help` for every option.

#[path = "impact/child.rs"]
mod child;
#[path = "impact/dataset.rs"]
mod dataset;
#[path = "impact/foretold.rs"]
mod foretold;
#[path = "impact/machine.rs"]
mod machine;
#[path = "impact/options.rs"]
mod options;
#[path = "impact/reader.rs"]
mod reader;
#[path = "impact/results.rs"]
mod results;
#[path = "impact/scenarios.rs"]
mod scenarios;
#[path = "impact/server.rs"]
mod server;
#[path = "impact/timeline.rs"]
mod timeline;
#[path = "impact/workload.rs"]
mod workload;

use anyhow::Result;
use options::Options;
use results::{DataSet, Headroom, Memory, Migrations, Results, Settings};
use scenarios::{MigrationRun, MigrationSeries, Migrator, RunSetup};
use server::Server;
use std::time::{Duration, Instant};

fn main() {
    if let Err(error) = run() {
        eprintln!("impact: {error:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let options = Options::parse(std::env::args().skip(1))?;
    if let Some(binary) = &options.binary {
        child::use_binary(binary.clone());
    }
    if let Some(dir) = &options.reports {
        child::keep_reports(dir.clone())?;
    }
    let started = Instant::now();
    let mut server = Server::start(options.database_url.as_deref())?;
    let measured = measure(&server, &options, started);
    if server.throwaway || !options.keep {
        server.clean_up();
    }
    server.stop();
    let results = measured?;
    results.print();
    results.write_json(&options.json)?;
    let markdown = options.json.with_extension("md");
    results.write_markdown(&markdown)?;
    eprintln!(
        "impact: wrote {} and {}",
        options.json.display(),
        markdown.display()
    );
    if options.write_docs {
        // The numbers live at the top of docs/performance.md, with what explains them.
        let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/performance.md");
        results::update_docs(&docs, &results.markdown())?;
        eprintln!("impact: updated {}", docs.display());
    }
    Ok(())
}

/// Says what is happening on stderr, with the time since the start.
fn phase(started: Instant, what: &str) {
    eprintln!("impact [{:>6.1}s] {what}", started.elapsed().as_secs_f64());
}

/// Names this run's databases, and drops them when done unless --keep asks otherwise.
struct Databases<'a> {
    server: &'a Server,
    keep: bool,
}

impl Databases<'_> {
    fn name(&self, what: &str) -> String {
        format!("impact_{}_{what}", std::process::id())
    }

    fn discard(&self, db: &str) -> Result<()> {
        if self.keep && !self.server.throwaway {
            Ok(())
        } else {
            self.server.drop_database(db)
        }
    }
}

fn measure(server: &Server, options: &Options, started: Instant) -> Result<Results> {
    let machine = machine::Machine::describe(&server.version);
    let mut data_sets = Vec::new();
    for (distribution, described) in distributions(options) {
        data_sets.push(measure_data_set(
            server,
            options,
            &distribution,
            &described,
            started,
        )?);
    }
    let picture = draw_picture(&data_sets, options)?;
    Ok(Results {
        machine,
        settings: Settings {
            scale: options.scale,
            repetitions: options.repetitions,
            connections: options.connections,
            rate_per_connection: options.rate,
            headroom_rate_per_connection: options.headroom_rate,
            idle_rate_per_connection: options.idle_rate,
            gin_fastupdate: !options.gin_fastupdate_off,
            long_running_reader: options.reader,
            migrate_flags: options.migrate_flags.clone(),
            server: if server.throwaway {
                "throwaway cluster (sandbox: fsync, synchronous_commit and full_page_writes off; other settings default)"
            } else {
                "the server given by --database-url"
            },
        },
        data_sets,
        picture,
        total_seconds: started.elapsed().as_secs_f64(),
    })
}

/// The data sets this run measures, each with what it is in words: the one --distribution
/// names, else both.
fn distributions(options: &Options) -> Vec<(dataset::Distribution, String)> {
    let chosen = match options.distribution {
        Some(one) => vec![one],
        None => dataset::Distribution::ALL.to_vec(),
    };
    chosen
        .into_iter()
        .map(|d| (d, d.described().to_string()))
        .collect()
}

/// Everything on one data set: build, check, cleanup, the migrations under the saturating
/// workload (stalls, failures) and with headroom (duration, estimates).
fn measure_data_set(
    server: &Server,
    options: &Options,
    distribution: &dataset::Distribution,
    described: &str,
    started: Instant,
) -> Result<DataSet> {
    let scale = dataset::Scale::of(options.scale, *distribution);
    let dbs = Databases {
        server,
        keep: options.keep,
    };
    let dirty = dbs.name(&format!("{distribution}_dirty"));

    phase(
        started,
        &format!("data set {distribution}: building the version-7 dataset: {scale:?}"),
    );
    let built = dataset::build(server, &dirty, &scale)?;
    phase(
        started,
        &format!(
            "built {:.0} MiB in {:.0} s",
            built.database_bytes as f64 / 1048576.0,
            built.seconds
        ),
    );

    phase(started, "check-constraints --dry-run against count(*)");
    let check = scenarios::check(server, &dirty, &scale, options.repetitions)?;
    phase(
        started,
        &format!(
            "check {:.0} ms, hand-written SQL {:.0} ms (ratio {:.2}), longest table's seq scan {:.0} ms (ratio {:.2}), estimate {}",
            check.median_ms,
            check.handwritten_median_ms,
            check.ratio_to_handwritten,
            check.longest_table_scan_median_ms,
            check.ratio_to_longest_table,
            check.foretold.estimate_ms.map_or_else(|| "none".into(), |e| format!("{e:.0} ms"))
        ),
    );

    phase(started, "cleanup against bare UPDATEs");
    let (cleanup, clean) = measure_cleanup(&dbs, &dirty, options.repetitions)?;
    phase(
        started,
        &format!(
            "cleanup: {}; bare UPDATEs {:.0} ms for {} rows",
            cleanup
                .wall_ms
                .map_or_else(|| cleanup.status.to_string(), |ms| format!("{ms:.0} ms")),
            cleanup.bare_update_ms,
            cleanup.bare_rows
        ),
    );

    let migrations = measure_migrations(&dbs, &clean, options, started)?;
    dbs.discard(&clean)?;
    let (migrate, headroom, idle) = migrations;

    let memory = Memory::new(&check, &cleanup, &migrate.ruleiq_db);
    Ok(DataSet {
        distribution: distribution.to_string(),
        described: described.to_string(),
        rows: scale,
        dataset: built,
        check,
        cleanup,
        migrate,
        headroom,
        idle,
        memory,
    })
}

/// The picture of what the application felt: the first data set's first saturating run of
/// each migrator, on one time axis. Written beside the JSON, and into docs/ with --write-docs.
fn draw_picture(data_sets: &[DataSet], options: &Options) -> Result<Option<String>> {
    let Some(first) = data_sets.first() else {
        return Ok(None);
    };
    let m = &first.migrate;
    let series: Vec<timeline::Series> = [
        ("ruleiq-db migrate", &m.ruleiq_db),
        ("naive migration", &m.naive),
        ("no migration (control)", &m.control),
    ]
    .into_iter()
    .filter_map(|(label, series)| {
        Some(timeline::Series {
            label: label.into(),
            timeline: &series.runs.first()?.timeline,
        })
    })
    .collect();
    let title = format!(
        "What the application felt during migrate 7→8 (data set {}, {} connections{})",
        first.distribution,
        options.connections,
        if options.rate == 0 {
            ", as fast as each can go".to_string()
        } else {
            format!(", {}/s each", options.rate)
        }
    );
    let name = "impact-latency.svg";
    timeline::draw(&options.json.with_file_name(name), &title, &series)?;
    if options.write_docs {
        let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
        timeline::draw(&docs.join(name), &title, &series)?;
    }
    Ok(Some(name.to_string()))
}

/// Cleanup and the bare UPDATEs, each repetition on its own pair of copies of the dirty data
/// (which becomes the last bare copy). Returns the last bare copy, clean data for the migrations.
fn measure_cleanup(
    dbs: &Databases,
    dirty: &str,
    repetitions: usize,
) -> Result<(scenarios::CleanupResult, String)> {
    let names: Vec<(String, String)> = (1..=repetitions)
        .map(|r| {
            (
                dbs.name(&format!("cleanup_{r}")),
                dbs.name(&format!("bare_{r}")),
            )
        })
        .collect();
    // The last bare side is the dirty database itself, renamed, not a copy: at scale 5 a copy
    // is 12 GB, and this keeps the disk to two copies at a time. Unless the databases are
    // kept: then the dirty data stays too, for a look at what the check read.
    let keep_dirty = dbs.keep && !dbs.server.throwaway;
    for (i, (cleaned, bare)) in names.iter().enumerate() {
        dbs.server.copy(dirty, cleaned)?;
        if i + 1 < names.len() || keep_dirty {
            dbs.server.copy(dirty, bare)?;
        } else {
            dbs.server.rename(dirty, bare)?;
        }
    }
    let copies: Vec<scenarios::CleanupCopies> = names
        .iter()
        .map(|(cleanup, bare)| scenarios::CleanupCopies { cleanup, bare })
        .collect();
    let cleanup = scenarios::cleanup(dbs.server, &copies)?;
    let (_, clean) = names.last().expect("at least one repetition");
    for (cleaned, bare) in &names {
        dbs.discard(cleaned)?;
        if bare != clean {
            dbs.discard(bare)?;
        }
    }
    Ok((cleanup, clean.clone()))
}

/// Under the saturating workload: ruleiq-db's migration, the workload alone for as long, and
/// the naive migration, in turn. With headroom: ruleiq-db (its dry run's estimate first) and
/// the naive migration in turn, then one ruleiq-db run after a cold start. Each on a fresh
/// copy of the clean data.
fn measure_migrations(
    dbs: &Databases,
    clean: &str,
    options: &Options,
    started: Instant,
) -> Result<(Migrations, Headroom, Option<Headroom>)> {
    // The migrations need clean data (the preflight refuses dirty rows, and a validating ADD
    // CONSTRAINT fails on them): the bare-UPDATE copy is exactly that.
    let mut client = dbs.server.connect(clean)?;
    client.batch_execute("VACUUM (ANALYZE)")?;
    if options.gin_fastupdate_off {
        dataset::gin_fastupdate_off(&mut client)?;
    }
    let sample = workload::Sample::take(&mut client)?;
    drop(client);
    let run = |migrator: Migrator,
               rate: u32,
               estimate: Option<&str>,
               control: Duration,
               what: &str|
     -> Result<MigrationRun> {
        let db = dbs.name(&format!("{migrator:?}_{what}").to_lowercase());
        if estimate.is_some_and(|e| e != "warm") {
            dbs.server.copy(clean, &db)?;
            dbs.server.cold_start()?;
        } else {
            dbs.server.settled_copy(clean, &db)?;
        }
        phase(started, &format!("{migrator:?} {what}"));
        let setup = RunSetup {
            migrator,
            rate,
            control,
            estimate,
        };
        let run = scenarios::migration(dbs.server, &db, &sample, options, &setup)?;
        dbs.discard(&db)?;
        phase(
            started,
            &format!(
                "{migrator:?}: {:.0} ms, longest stall {:.0} ms, longest lock wait {:.0} ms{}, p99 {:.1} ms, failed {}{}{}{}",
                run.migration_ms,
                run.during.longest_stall_ms,
                run.during.longest_lock_wait_ms,
                run.during
                    .own_lock_wait
                    .as_ref()
                    .map_or_else(String::new, |own| format!(" (for its own sessions: {own})")),
                run.during.p99_ms,
                run.failed_whole_run,
                run.error
                    .as_ref()
                    .map_or_else(String::new, |e| format!(", FAILED: {e}")),
                run.foretold
                    .last()
                    .and_then(|f| f.estimate_ms)
                    .map_or_else(String::new, |e| format!(", estimated {e:.0} ms")),
                match (run.cpu_busy_before, run.cpu_busy_during) {
                    (Some(before), Some(during)) =>
                        format!(", CPUs busy {before:.0} % with the workload alone, {during:.0} % during"),
                    _ => String::new(),
                }
            ),
        );
        Ok(run)
    };
    let mut ours = Vec::new();
    let mut plain = Vec::new();
    let mut control = Vec::new();
    let n = options.repetitions;
    // Alternate, so that a busy spell on the machine does not fall on one side only.
    for repetition in 1..=n {
        let what = format!("{repetition}/{n} under the saturating workload");
        let r = run(
            Migrator::RuleiqDb,
            options.rate,
            None,
            Duration::ZERO,
            &what,
        )?;
        let as_long_as_ours = Duration::from_secs_f64(r.migration_ms / 1000.0);
        ours.push(r);
        control.push(run(
            Migrator::Control,
            options.rate,
            None,
            as_long_as_ours,
            &what,
        )?);
        plain.push(run(
            Migrator::Naive,
            options.rate,
            None,
            Duration::ZERO,
            &what,
        )?);
    }
    let saturated = Migrations::new(
        MigrationSeries::of(Migrator::RuleiqDb, ours),
        MigrationSeries::of(Migrator::Naive, plain),
        MigrationSeries::of(Migrator::Control, control),
    );
    // ruleiq-db and the naive migration alternated at `rate`, each run labelled with `how`;
    // ruleiq-db's estimate held against it when `estimate` says how warm the server was.
    let pair = |rate: u32, estimate: Option<&str>, how: &str| -> Result<_> {
        let (mut ours, mut plain) = (Vec::new(), Vec::new());
        for repetition in 1..=n {
            let what = format!("{repetition}/{n} {how}");
            ours.push(run(
                Migrator::RuleiqDb,
                rate,
                estimate,
                Duration::ZERO,
                &what,
            )?);
            plain.push(run(Migrator::Naive, rate, None, Duration::ZERO, &what)?);
        }
        Ok((
            MigrationSeries::of(Migrator::RuleiqDb, ours),
            MigrationSeries::of(Migrator::Naive, plain),
        ))
    };
    let rate = options.headroom_rate;
    let (ours, plain) = pair(
        rate,
        Some("warm"),
        &format!("with headroom ({rate}/s per connection)"),
    )?;
    let cold = match dbs.server.cold_conditions() {
        Some(conditions) => Some(run(
            Migrator::RuleiqDb,
            rate,
            Some(conditions),
            Duration::ZERO,
            &format!("with headroom ({rate}/s per connection), {conditions}"),
        )?),
        None => None,
    };
    let headroom = Headroom::new(rate, ours, plain, cold, true);
    // Context: the same pair where the workload leaves most of the CPUs idle, so that the
    // duration with headroom can be told apart from the duration on a busy machine.
    let idle = if options.idle_rate == 0 {
        None
    } else {
        let rate = options.idle_rate;
        let (ours, plain) = pair(rate, None, &format!("at {rate}/s per connection"))?;
        Some(Headroom::new(rate, ours, plain, None, false))
    };
    Ok((saturated, headroom, idle))
}
