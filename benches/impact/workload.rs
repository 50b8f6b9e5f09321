//! The application, as the database sees it: N connections, each looping over single-row
//! statements at a steady pace (INSERT and SELECT on evidence_items, UPDATE and SELECT on
//! business_profiles), recording when each statement started and ended and whether it failed.
//!
//! The statements are the application's on production's legacy schema (legacy-schema.md), which
//! has no server-side defaults: an INSERT names every NOT NULL column and gives the id and the
//! timestamps itself, with values as wide as the generated rows'. Only columns that keep their
//! name through 008 are touched, so the workload is valid on both sides of the renames, as a
//! deployed application must be.

use crate::reader::READER;
use crate::server::Server;
use anyhow::{Context, Result};
use postgres::{Client, Statement};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// How the workload's connections name themselves, so the lock monitor can find them.
const APPLICATION_NAME: &str = "impact-workload";

/// How often the lock monitor looks at pg_stat_activity.
const LOCK_POLL: Duration = Duration::from_millis(10);

fn workload_target(server: &Server, db: &str) -> Result<ruleiq_db::db::config::Target> {
    let mut target = server.target(db)?;
    target.config.application_name(APPLICATION_NAME);
    Ok(target)
}

/// A business profile and the user who owns it (production has one profile per user).
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    pub id: Uuid,
    pub user_id: Uuid,
}

/// Existing rows the workload reads and updates, sampled once before the copies are made.
#[derive(Debug, Clone)]
pub struct Sample {
    pub profiles: Vec<Profile>,
    pub frameworks: Vec<Uuid>,
    pub evidence: Vec<Uuid>,
}

impl Sample {
    pub fn take(client: &mut Client) -> Result<Sample> {
        // A block sample where the table is big enough to give one, else its first rows.
        let rows = |client: &mut Client, sql: &str| -> Result<Vec<postgres::Row>> {
            let mut rows = client.query(sql, &[])?;
            if rows.is_empty() {
                let fallback = sql.split(" TABLESAMPLE").next().unwrap_or(sql);
                rows = client.query(&format!("{fallback} LIMIT 2000"), &[])?;
            }
            Ok(rows)
        };
        let sample = Sample {
            profiles: rows(
                client,
                "SELECT id, user_id FROM business_profiles TABLESAMPLE SYSTEM (5) REPEATABLE (7) LIMIT 2000",
            )?
            .iter()
            .map(|r| Profile {
                id: r.get(0),
                user_id: r.get(1),
            })
            .collect(),
            frameworks: rows(client, "SELECT id FROM compliance_frameworks ORDER BY name")?
                .iter()
                .map(|r| r.get(0))
                .collect(),
            evidence: rows(
                client,
                "SELECT id FROM evidence_items TABLESAMPLE SYSTEM (1) REPEATABLE (7) LIMIT 2000",
            )?
            .iter()
            .map(|r| r.get(0))
            .collect(),
        };
        anyhow::ensure!(
            !sample.profiles.is_empty()
                && !sample.frameworks.is_empty()
                && !sample.evidence.is_empty(),
            "the dataset is too small to sample workload rows from"
        );
        Ok(sample)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    InsertEvidence,
    UpdateProfile,
    SelectEvidence,
    SelectProfile,
    /// The long-running reader's BEGIN and read (see reader.rs).
    ReadReport,
    /// The long-running reader's COMMIT.
    CommitReport,
}

const CYCLE: [Op; 4] = [
    Op::InsertEvidence,
    Op::SelectEvidence,
    Op::UpdateProfile,
    Op::SelectProfile,
];

/// One statement the workload ran: times are offsets from the workload's start.
#[derive(Debug, Clone)]
pub struct Event {
    pub connection: usize,
    pub op: Op,
    pub start: Duration,
    pub end: Duration,
    pub error: Option<String>,
}

impl Event {
    pub fn latency(&self) -> Duration {
        self.end.saturating_sub(self.start)
    }
}

/// A moment when a workload backend was waiting for a lock (pg_stat_activity).
#[derive(Debug, Clone)]
pub struct LockSample {
    pub at: Duration,
    /// Which look at pg_stat_activity it came from: a wait seen in consecutive looks is one
    /// wait.
    pub round: u64,
    pub pid: i32,
    /// Whether a session other than the application's was ahead of it (`pg_blocking_pids`: one
    /// holding the lock, or one queued for it first): the migration's lock. Otherwise the
    /// application waited for itself, e.g. for the extension lock of a table its own UPDATEs
    /// grow, held by another of its connections that the saturated CPUs left unscheduled.
    pub behind_migration: bool,
    /// `pg_stat_activity.wait_event`: `relation`, `extend`, `tuple`, `transactionid`, ….
    pub event: String,
}

/// Everything a workload run recorded.
pub struct Recorded {
    pub events: Vec<Event>,
    pub lock_samples: Vec<LockSample>,
    /// How often each connection issues a statement: the pace it was given, or for an unpaced
    /// workload the pace it kept before `quiet_until` (see `calibrate`).
    pub interval: Duration,
}

impl Recorded {
    /// For an unpaced workload, takes each connection's normal pace from the quiet period, so
    /// that a stall can be counted with the requests that would have arrived during it.
    pub fn calibrate(&mut self, quiet_until: Duration) {
        if !self.interval.is_zero() {
            return;
        }
        let paced = || self.events.iter().filter(|e| e.connection != READER);
        let connections = paced()
            .map(|e| e.connection)
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        let done = paced().filter(|e| e.end <= quiet_until).count();
        if done > 0 {
            self.interval = quiet_until * connections as u32 / done as u32;
        }
    }
}

/// A running workload; `stop` ends it and hands back every event. Beside the workers, a
/// monitor samples which of their backends wait for a lock: a stall the migration causes shows
/// there, one the application causes itself (or the machine) does not.
pub struct Workload {
    origin: Instant,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Result<Vec<Event>>>>,
    monitor: JoinHandle<Result<Vec<LockSample>>>,
    interval: Duration,
}

impl Workload {
    /// Connects every worker first, then lets them all go at once.
    pub fn start(
        server: &Server,
        db: &str,
        sample: &Sample,
        connections: usize,
        rate: u32,
        with_reader: bool,
    ) -> Result<Workload> {
        // Rate 0: as fast as each connection can go, the pressure of a busy application.
        let interval = if rate == 0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(1.0 / f64::from(rate))
        };
        let stop = Arc::new(AtomicBool::new(false));
        let gate = Arc::new(Barrier::new(connections + 1));
        let mut threads = Vec::new();
        let mut clients = Vec::new();
        let target = workload_target(server, db)?;
        for _ in 0..connections {
            clients.push(application_connection(&target).context("workload connection")?);
        }
        let mut observer = server.connect(db).context("lock monitor connection")?;
        let reader = if with_reader {
            Some(application_connection(&target).context("reader connection")?)
        } else {
            None
        };
        let origin = Instant::now();
        if let Some(client) = reader {
            let stop = stop.clone();
            threads.push(std::thread::spawn(move || {
                crate::reader::run(client, origin, stop)
            }));
        }
        for (index, client) in clients.into_iter().enumerate() {
            let worker = Worker {
                index,
                client,
                sample: sample.clone(),
                origin,
                interval,
                stop: stop.clone(),
                target: target.clone(),
                rng: 0x9E37_79B9_7F4A_7C15 ^ (index as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9),
            };
            let gate = gate.clone();
            threads.push(std::thread::spawn(move || {
                gate.wait();
                worker.run()
            }));
        }
        let watching = stop.clone();
        let monitor = std::thread::spawn(move || -> Result<Vec<LockSample>> {
            let query = observer.prepare(
                "SELECT a.pid, coalesce(a.wait_event, ''),
                        EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity AS b
                                 WHERE b.pid = ANY (pg_catalog.pg_blocking_pids(a.pid))
                                   AND b.application_name IS DISTINCT FROM $1)
                   FROM pg_catalog.pg_stat_activity AS a
                  WHERE a.application_name = $1 AND a.wait_event_type = 'Lock'",
            )?;
            let mut samples = Vec::new();
            let mut round = 0;
            while !watching.load(Ordering::SeqCst) {
                let at = origin.elapsed();
                for row in observer.query(&query, &[&APPLICATION_NAME])? {
                    samples.push(LockSample {
                        at,
                        round,
                        pid: row.get(0),
                        event: row.get(1),
                        behind_migration: row.get(2),
                    });
                }
                round += 1;
                std::thread::sleep(LOCK_POLL);
            }
            Ok(samples)
        });
        gate.wait();
        Ok(Workload {
            origin,
            stop,
            threads,
            monitor,
            interval,
        })
    }

    /// Time since the workload's origin, on the same clock as its events.
    pub fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    pub fn stop(self) -> Result<Recorded> {
        self.stop.store(true, Ordering::SeqCst);
        let mut events = Vec::new();
        for thread in self.threads {
            events.extend(
                thread
                    .join()
                    .map_err(|_| anyhow::anyhow!("a workload thread panicked"))??,
            );
        }
        events.sort_by_key(|e| e.start);
        let lock_samples = self
            .monitor
            .join()
            .map_err(|_| anyhow::anyhow!("the lock monitor panicked"))??;
        Ok(Recorded {
            events,
            lock_samples,
            interval: self.interval,
        })
    }
}

struct Worker {
    index: usize,
    client: Client,
    sample: Sample,
    origin: Instant,
    interval: Duration,
    stop: Arc<AtomicBool>,
    target: ruleiq_db::db::config::Target,
    rng: u64,
}

struct Prepared {
    insert: Statement,
    update: Statement,
    select_evidence: Statement,
    select_profile: Statement,
}

/// The application's evidence INSERT: no column has a server-side default, so it names every
/// NOT NULL column, the id and the timestamps, and the optional ones it fills on creation.
const INSERT_EVIDENCE: &str = "
INSERT INTO evidence_items (id, user_id, business_profile_id, framework_id, evidence_name,
    evidence_type, control_reference, description, required_for_audit, collection_frequency,
    collection_method, automation_guidance, status, priority, effort_estimate, audit_section,
    compliance_score_impact, ai_metadata, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, true, 'quarterly', 'manual', $9, 'not_started', 'medium',
    '2 hours', $10, 0.5, $11, $12, $12)";

/// What the inserted evidence is called (and a number).
const EVIDENCE_NAMES: &[&str] = &[
    "Access review",
    "Firewall rules",
    "Backup test",
    "Training record",
];

impl Prepared {
    fn on(client: &mut Client) -> Result<Prepared> {
        Ok(Prepared {
            insert: client.prepare(INSERT_EVIDENCE)?,
            update: client.prepare("UPDATE business_profiles SET updated_at = $2 WHERE id = $1")?,
            select_evidence: client
                .prepare("SELECT id, status, evidence_name FROM evidence_items WHERE id = $1")?,
            select_profile: client.prepare(
                "SELECT id, company_name, employee_count FROM business_profiles WHERE id = $1",
            )?,
        })
    }
}

impl Worker {
    fn run(mut self) -> Result<Vec<Event>> {
        let mut prepared = Prepared::on(&mut self.client)?;
        let mut events = Vec::new();
        let mut inserted: Vec<Uuid> = Vec::new();
        let mut next = self.origin.elapsed();
        let mut step = 0usize;
        while !self.stop.load(Ordering::SeqCst) {
            let now = self.origin.elapsed();
            if now < next {
                std::thread::sleep(next - now);
            }
            let op = CYCLE[step % CYCLE.len()];
            step += 1;
            let start = self.origin.elapsed();
            let result = self.execute(&prepared, op, &mut inserted);
            let end = self.origin.elapsed();
            // A statement that overran its slot does not make the next ones burst to catch up:
            // the missed arrivals are accounted for in the statistics instead.
            next = (next + self.interval).max(end);
            let error = result.err().map(|e| format!("{e:#}"));
            if error.is_some() && self.client.is_closed() {
                // The application's pool would reconnect; so do we, and count the failure.
                if let Ok(client) = application_connection(&self.target) {
                    self.client = client;
                    prepared = Prepared::on(&mut self.client)?;
                }
            }
            events.push(Event {
                connection: self.index,
                op,
                start,
                end,
                error,
            });
        }
        Ok(events)
    }

    fn execute(&mut self, prepared: &Prepared, op: Op, inserted: &mut Vec<Uuid>) -> Result<()> {
        match op {
            Op::InsertEvidence => {
                let profile = pick(&mut self.rng, &self.sample.profiles);
                let framework = pick(&mut self.rng, &self.sample.frameworks);
                let r = next_random(&mut self.rng);
                let id = Uuid::new_v4();
                let name = format!(
                    "{} {}",
                    EVIDENCE_NAMES[(r % EVIDENCE_NAMES.len() as u64) as usize],
                    r % 1_000_000
                );
                let section = 5 + r % 4;
                let control = format!("A.{section}.{}", 1 + r % 37);
                let description = format!(
                    "{name} for control {control}: shows that the control operated throughout \
                     the audit period, with its owner and the systems in scope."
                );
                let guidance = "Export the report from the admin console and upload it as a PDF.";
                // One in ten carries AI metadata, as in the generated rows (a GIN entry).
                let ai_metadata = (r % 10 == 0).then(|| {
                    serde_json::json!({"classifier": "v2", "confidence": 0.9, "labels": ["access_review"]})
                });
                let now = chrono::Utc::now().naive_utc();
                self.client.execute(
                    &prepared.insert,
                    &[
                        &id,
                        &profile.user_id,
                        &profile.id,
                        &framework,
                        &name,
                        &"document",
                        &control,
                        &description,
                        &guidance,
                        &format!("Annex A.{section}"),
                        &ai_metadata,
                        &now,
                    ],
                )?;
                inserted.push(id);
            }
            Op::UpdateProfile => {
                let profile = pick(&mut self.rng, &self.sample.profiles);
                let now = chrono::Utc::now().naive_utc();
                self.client
                    .execute(&prepared.update, &[&profile.id, &now])?;
            }
            Op::SelectEvidence => {
                // Half the reads go to rows this connection just wrote, as an application's do.
                let id = match inserted.last() {
                    Some(id) if next_random(&mut self.rng) % 2 == 0 => *id,
                    _ => pick(&mut self.rng, &self.sample.evidence),
                };
                self.client.query_opt(&prepared.select_evidence, &[&id])?;
            }
            Op::SelectProfile => {
                let profile = pick(&mut self.rng, &self.sample.profiles);
                self.client
                    .query_opt(&prepared.select_profile, &[&profile.id])?;
            }
            // The reader's own statements (reader.rs), never in a worker's cycle.
            Op::ReadReport | Op::CommitReport => {}
        }
        Ok(())
    }
}

fn pick<T: Copy>(rng: &mut u64, from: &[T]) -> T {
    from[(next_random(rng) % from.len() as u64) as usize]
}

/// xorshift64*: plenty for picking rows, and no dependency.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// What the workload felt in a window of time.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Felt {
    /// Statements that overlapped the window.
    pub statements: usize,
    pub failed: usize,
    /// The longest single statement: how long the application was stuck at worst.
    pub longest_stall_ms: f64,
    /// Which statement that was, and when it started relative to the window.
    pub longest_stall_op: Option<Op>,
    /// The longest time any one connection went without a statement completing (at this
    /// pace, about one interval when nothing is in the way).
    pub longest_gap_ms: f64,
    pub p50_ms: f64,
    /// The 99th percentile counting the arrivals a stalled connection could not make (each
    /// stall of L also stands for the requests that would have arrived during it, waiting
    /// L - interval, L - 2*interval, ..., at the connection's normal pace): the latency users
    /// would see.
    pub p99_ms: f64,
    /// The 99th percentile of the statements actually run, uncorrected.
    pub p99_measured_ms: f64,
    /// The longest time one workload backend was seen waiting for a lock that a session
    /// other than the application's held or had asked for first (sampled every 10 ms, so
    /// ±10 ms): the part of the stalls the migration's locks caused.
    pub longest_lock_wait_ms: f64,
    /// The application's longest wait for its own sessions' locks: part of what it felt, not
    /// a lock the migration took. None when it never waited for them.
    pub own_lock_wait: Option<OwnLockWait>,
    /// Distinct error messages, at most five.
    pub errors: Vec<String>,
}

/// The statements that ran (at least partly) between `from` and `to`.
pub fn felt(recorded: &Recorded, from: Duration, to: Duration) -> Felt {
    let interval = recorded.interval;
    let inside: Vec<&Event> = recorded
        .events
        .iter()
        .filter(|e| e.end >= from && e.start <= to)
        .collect();
    if inside.is_empty() {
        return Felt::default();
    }
    let mut measured: Vec<f64> = inside.iter().map(|e| ms(e.latency())).collect();
    measured.sort_by(f64::total_cmp);
    let step = ms(interval);
    let longest = inside
        .iter()
        .max_by_key(|e| e.latency())
        .expect("not empty");
    let waits = lock_waits(&recorded.lock_samples);
    let longest_wait = |behind_migration| longest_lock_wait(&waits, from, to, behind_migration);
    let mut errors: Vec<String> = Vec::new();
    for e in &inside {
        if let Some(message) = &e.error {
            // The first line names the error; the DETAIL lines carry pids that never repeat.
            let message = message.lines().next().unwrap_or_default().to_string();
            if errors.len() < 5 && !errors.contains(&message) {
                errors.push(message);
            }
        }
    }
    Felt {
        statements: inside.len(),
        failed: inside.iter().filter(|e| e.error.is_some()).count(),
        longest_stall_ms: ms(longest.latency()),
        longest_stall_op: Some(longest.op),
        longest_gap_ms: longest_gap(&inside),
        p50_ms: percentile(&measured, 0.50),
        p99_ms: corrected_percentile(&measured, step, 0.99),
        p99_measured_ms: percentile(&measured, 0.99),
        longest_lock_wait_ms: longest_wait(true).map_or(0.0, |w| ms(w.length())),
        own_lock_wait: longest_wait(false).map(|w| OwnLockWait {
            ms: ms(w.length()),
            event: w.event.to_string(),
        }),
        errors,
    }
}

/// How long the application waited for a lock of its own sessions, and the lock's kind
/// (`pg_stat_activity.wait_event`: `extend`, `tuple`, `transactionid`, …).
#[derive(Debug, Clone, serde::Serialize)]
pub struct OwnLockWait {
    pub ms: f64,
    pub event: String,
}

impl std::fmt::Display for OwnLockWait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.0} ms, {}", self.ms, self.event)
    }
}

/// One backend's wait, seen in consecutive looks.
struct LockWait<'s> {
    first: Duration,
    last: Duration,
    round: u64,
    /// Whether any sighting of it was behind a session other than the application's.
    behind_migration: bool,
    event: &'s str,
}

impl<'s> LockWait<'s> {
    fn starting(sample: &'s LockSample) -> LockWait<'s> {
        LockWait {
            first: sample.at,
            last: sample.at,
            round: sample.round,
            behind_migration: sample.behind_migration,
            event: &sample.event,
        }
    }

    fn length(&self) -> Duration {
        self.last - self.first + LOCK_POLL
    }
}

/// The samples grouped into waits: one backend's consecutive sightings are one wait.
fn lock_waits(samples: &[LockSample]) -> Vec<LockWait<'_>> {
    let mut waits: Vec<LockWait> = Vec::new();
    let mut current: std::collections::BTreeMap<i32, LockWait> = Default::default();
    for sample in samples {
        match current.get_mut(&sample.pid) {
            Some(wait) if sample.round == wait.round + 1 => {
                wait.last = sample.at;
                wait.round = sample.round;
                wait.behind_migration |= sample.behind_migration;
            }
            Some(wait) => waits.push(std::mem::replace(wait, LockWait::starting(sample))),
            None => {
                current.insert(sample.pid, LockWait::starting(sample));
            }
        }
    }
    waits.extend(current.into_values());
    waits
}

/// The longest of `waits` overlapping the window, among those behind the migration
/// (`behind_migration`) or the application's waits for itself.
fn longest_lock_wait<'w, 's>(
    waits: &'w [LockWait<'s>],
    from: Duration,
    to: Duration,
    behind_migration: bool,
) -> Option<&'w LockWait<'s>> {
    waits
        .iter()
        .filter(|w| {
            w.behind_migration == behind_migration && w.last + LOCK_POLL >= from && w.first <= to
        })
        .max_by_key(|w| w.length())
}

fn longest_gap(events: &[&Event]) -> f64 {
    let mut by_connection: std::collections::BTreeMap<usize, Vec<Duration>> = Default::default();
    for e in events.iter().filter(|e| e.connection != READER) {
        by_connection.entry(e.connection).or_default().push(e.end);
    }
    by_connection
        .values_mut()
        .flat_map(|ends| {
            ends.sort();
            ends.windows(2)
                .map(|pair| ms(pair[1] - pair[0]))
                .collect::<Vec<_>>()
        })
        .fold(0.0, f64::max)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The percentile of the latencies once each is joined by the requests its connection could
/// not make while it ran (HdrHistogram's expected-interval correction): a statement of latency
/// L also stands for requests that waited L - step, L - 2*step, ... down to zero. Found by
/// bisection on the value, so a long stall at a short step costs no memory.
fn corrected_percentile(latencies: &[f64], step: f64, q: f64) -> f64 {
    if latencies.is_empty() {
        return 0.0;
    }
    if step <= 0.0 {
        let mut sorted = latencies.to_vec();
        sorted.sort_by(f64::total_cmp);
        return percentile(&sorted, q);
    }
    // The values a latency stands for: L - j*step for j = 0..=extra(L), all above zero.
    let extra = |l: f64| ((l / step).ceil() - 1.0).max(0.0);
    let total: f64 = latencies.iter().map(|&l| extra(l) + 1.0).sum();
    let at_most = |x: f64| -> f64 {
        latencies
            .iter()
            .map(|&l| {
                if l <= x {
                    extra(l) + 1.0
                } else {
                    // j >= (l - x) / step
                    (extra(l) - ((l - x) / step).ceil() + 1.0).max(0.0)
                }
            })
            .sum()
    };
    let (mut low, mut high) = (0.0, latencies.iter().copied().fold(0.0, f64::max));
    for _ in 0..50 {
        let middle = (low + high) / 2.0;
        if at_most(middle) >= q * total {
            high = middle;
        } else {
            low = middle;
        }
    }
    high
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A connection as the application makes it: its tables named without their schema, found on
/// its search_path (the library's connect gives ruleiq-db's own `pg_catalog, pg_temp`).
fn application_connection(target: &ruleiq_db::db::config::Target) -> Result<Client> {
    let mut client = ruleiq_db::db::connect(target)?;
    client.batch_execute("SET search_path = public")?;
    Ok(client)
}
