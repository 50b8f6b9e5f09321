//! How far behind a standby is, measured from the primary. `pg_stat_replication.replay_lag` is
//! not enough on its own: it is NULL once the standby has caught up and the primary is idle, and
//! it only changes when the standby sends a status message (every `wal_receiver_status_interval`,
//! 10 s by default), so a standby whose replay is paused can look current. So the position is
//! what counts: a standby is caught up when its `replay_lsn` has reached the end of the
//! primary's WAL (`pg_current_wal_insert_lsn()`: what is written but not yet flushed or sent
//! still has to reach it). When it has not, it is behind by those bytes, and for at least as
//! long as the primary has been past the position it replayed: every measurement records
//! (time, end of WAL), and the first recorded LSN beyond the standby's replay position says
//! since when the primary is ahead of it. The larger of that and `replay_lag` is the time lag. A paused standby therefore counts as behind
//! as soon as the primary writes anything, and ever further behind as time goes on.
//!
//! So that positions are fresh, the throttle asks for the standbys' reports: it commits a tiny
//! transaction (an xid, nothing else) with `synchronous_commit = remote_apply`; a standby that
//! replays such a commit replies at once with its replay position. This is done only when no
//! synchronous standby is configured (`synchronous_standby_names` empty), where that setting
//! makes the commit itself wait for nobody; with synchronous standbys it would wait for their
//! replay, unbounded, so there the reports come at the standbys' own pace.

use super::standbys::{end_of_wal, senders};
use super::{bytes, seconds};
use crate::db::Query;
use crate::progress::Log;
use crate::refusal::Refusal;
use anyhow::{Context, Result};
use postgres::Client;
use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

/// How far behind a standby may fall before long data work pauses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxLag {
    /// Behind for at least this long. Zero: any WAL not replayed yet.
    Time(Duration),
    /// More than this many bytes of WAL not replayed yet.
    Bytes(u64),
}

impl fmt::Display for MaxLag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaxLag::Time(d) => write!(f, "{}", seconds(*d)),
            MaxLag::Bytes(b) => write!(f, "{}", bytes(*b)),
        }
    }
}

/// A standby's distance from the primary at one measurement.
#[derive(Debug, Clone)]
struct Lagging {
    name: String,
    state: String,
    /// The WAL position it has replayed.
    replayed: u64,
    bytes: u64,
    time: Duration,
}

impl Lagging {
    fn describe(&self) -> String {
        format!(
            "standby '{}' ({}) has {} of WAL not replayed, at least {} behind",
            self.name,
            self.state,
            bytes(self.bytes),
            seconds(self.time)
        )
    }
}

/// Waits, outside any session, until every standby has replayed everything the primary has
/// written so far (a rehearsal before it compares a standby with its primary); refuses after
/// `max_wait`. Returns how long it waited.
pub fn wait_until_replayed(
    client: &mut Client,
    log: &Log,
    what: &str,
    max_wait: Duration,
) -> Result<Duration> {
    ReplicaThrottle::new(MaxLag::Time(Duration::ZERO), max_wait).wait_for_replay(client, log, what)
}

/// Keeps long data work from running ahead of the standbys: the batch loops call
/// [`ReplicaThrottle::between_batches`] before each batch, and `migrate` calls
/// [`ReplicaThrottle::wait_for_replay`] after the steps the standbys must have before it goes on.
/// Both wait at most `max_wait` at a time, then refuse (exit 4): what was done before stays
/// whole and committed, and running the command again finishes the job.
#[derive(Debug)]
pub struct ReplicaThrottle {
    max_lag: MaxLag,
    max_wait: Duration,
    /// (when, end of WAL) at each measurement, oldest first: since when the primary has been
    /// past a given position.
    samples: VecDeque<(Instant, u64)>,
    /// Standbys whose position this role cannot see, already said on stderr.
    unmeasurable: BTreeSet<String>,
    /// Everything this throttle waited so far.
    pub waited: Duration,
    /// Whether a pause was said on stderr already.
    paused_before: bool,
}

/// How often a waiting throttle looks again.
const POLL: Duration = Duration::from_millis(200);
/// How often a waiting throttle asks the standbys for a fresh report.
const ASK_EVERY: Duration = Duration::from_millis(100);
/// How long a pause lasts before it is said on stderr (the first is said at once).
const ANNOUNCE_AFTER: Duration = Duration::from_secs(1);
/// How often a long wait says it is still waiting.
const STILL_WAITING_EVERY: Duration = Duration::from_secs(10);
/// Enough history for any sensible --max-replica-lag at one measurement per batch.
const MAX_SAMPLES: usize = 100_000;

impl ReplicaThrottle {
    pub fn new(max_lag: MaxLag, max_wait: Duration) -> ReplicaThrottle {
        ReplicaThrottle {
            max_lag,
            max_wait,
            samples: VecDeque::new(),
            unmeasurable: BTreeSet::new(),
            waited: Duration::ZERO,
            paused_before: false,
        }
    }

    /// Returns when no standby is further behind than `--max-replica-lag`, waiting (and saying
    /// so on stderr) while one is; refuses once the wait passes `--max-replica-wait`. Stops
    /// the work when Ctrl-C or SIGTERM came between two batches.
    pub fn between_batches(&mut self, client: &mut Client, log: &Log) -> Result<()> {
        crate::db::interrupt::check()?;
        let started = Instant::now();
        let mut announced = false;
        let mut last_said = Instant::now();
        let mut asked = false;
        loop {
            let too_far: Vec<Lagging> = self
                .measure(client, log)?
                .into_iter()
                .filter(|s| self.is_too_far(s))
                .collect();
            if too_far.is_empty() {
                if announced {
                    log.line(&format!(
                        "the standbys caught up after {}; resuming",
                        seconds(started.elapsed())
                    ));
                }
                if asked {
                    self.waited += started.elapsed();
                }
                return Ok(());
            }
            // The positions may be a status interval old: ask for fresh ones before pausing.
            if !asked {
                asked = true;
                request_reports(client)?;
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            let what: Vec<String> = too_far.iter().map(Lagging::describe).collect();
            // The first pause is always said; later ones once they last, so that a standby a
            // moment behind each batch does not fill stderr (their time is in `waited`).
            let worth_saying = !self.paused_before
                || started.elapsed() >= ANNOUNCE_AFTER
                || started.elapsed() >= self.max_wait;
            if !announced && worth_saying {
                announced = true;
                self.paused_before = true;
                log.line(&format!(
                    "pausing between batches: {} (--max-replica-lag {}); waiting for it to catch up, up to {} (--max-replica-wait)",
                    what.join("; "),
                    self.max_lag,
                    seconds(self.max_wait)
                ));
                last_said = Instant::now();
            } else if announced && last_said.elapsed() >= STILL_WAITING_EVERY {
                log.line(&format!(
                    "still waiting ({} of {}): {}",
                    seconds(started.elapsed()),
                    seconds(self.max_wait),
                    what.join("; ")
                ));
                last_said = Instant::now();
            }
            if started.elapsed() >= self.max_wait {
                self.waited += started.elapsed();
                return Err(Refusal::ReplicaLag(format!(
                    "stopped between batches after waiting {} for the standbys: {} (--max-replica-lag {}). Everything done before is whole and committed; once the standby replays again (or with a larger --max-replica-lag / --max-replica-wait), run the same command again to finish",
                    seconds(started.elapsed()),
                    what.join("; "),
                    self.max_lag
                ))
                .into());
            }
            request_reports(client)?;
            std::thread::sleep(POLL);
            crate::db::interrupt::check()?;
        }
    }

    /// Waits until every standby has replayed everything the primary has written so far
    /// (`what` names that work on stderr); returns how long it waited. Refuses once the wait
    /// passes `--max-replica-wait`.
    pub fn wait_for_replay(
        &mut self,
        client: &mut Client,
        log: &Log,
        what: &str,
    ) -> Result<Duration> {
        let started = Instant::now();
        let target = end_of_wal(client)?;
        let mut announced = false;
        let mut last_said = Instant::now();
        let mut slept = false;
        let mut last_asked: Option<Instant> = None;
        loop {
            let behind: Vec<Lagging> = self
                .measure(client, log)?
                .into_iter()
                .filter(|s| s.replayed < target)
                .collect();
            if behind.is_empty() {
                let took = if slept {
                    started.elapsed()
                } else {
                    Duration::ZERO
                };
                if announced {
                    log.line(&format!(
                        "the standbys replayed {what} after {}",
                        seconds(took)
                    ));
                }
                self.waited += took;
                return Ok(took);
            }
            let list: Vec<String> = behind.iter().map(Lagging::describe).collect();
            if started.elapsed() >= self.max_wait {
                self.waited += started.elapsed();
                return Err(Refusal::ReplicaLag(format!(
                    "{what} is committed on the primary, but after {} the standbys have not replayed it: {}. Once they replay again (or with a larger --max-replica-wait), run the same command again to finish",
                    seconds(started.elapsed()),
                    list.join("; ")
                ))
                .into());
            }
            if !announced && started.elapsed() >= ANNOUNCE_AFTER {
                announced = true;
                log.line(&format!(
                    "waiting for the standbys to replay {what} (up to {}, --max-replica-wait): {}",
                    seconds(self.max_wait),
                    list.join("; ")
                ));
                last_said = Instant::now();
            } else if announced && last_said.elapsed() >= STILL_WAITING_EVERY {
                log.line(&format!(
                    "still waiting for the standbys to replay {what}: {}",
                    list.join("; ")
                ));
                last_said = Instant::now();
            }
            // A report asked for comes when the standby has replayed the request; look often,
            // ask again now and then (each request is a commit of its own).
            if last_asked.is_none_or(|at| at.elapsed() >= ASK_EVERY) {
                request_reports(client)?;
                last_asked = Some(Instant::now());
            }
            // Most waits are a replay round trip: look often at first, then calmly.
            std::thread::sleep(if started.elapsed() < ANNOUNCE_AFTER {
                Duration::from_millis(10)
            } else {
                POLL
            });
            crate::db::interrupt::check()?;
            slept = true;
        }
    }

    /// The measurable standbys with their distance from the primary; records a sample.
    fn measure(&mut self, client: &mut Client, log: &Log) -> Result<Vec<Lagging>> {
        let (end, list) = senders(client)?;
        let now = Instant::now();
        if self.samples.back().is_none_or(|(_, lsn)| *lsn != end) {
            self.samples.push_back((now, end));
        }
        let mut measured = Vec::new();
        for s in list {
            let (Some(state), Some(replay)) = (s.state.clone(), s.replay) else {
                // NULL state: this role may not read the details (pg_monitor); NULL replay_lsn:
                // the standby has not reported yet. Either way, nothing to go by.
                if s.state.is_none() && self.unmeasurable.insert(s.name.clone()) {
                    log.line(&format!(
                        "cannot see how far standby '{}' is behind: this role may not read pg_stat_replication's details (GRANT pg_monitor TO it); not waiting for that standby",
                        s.name
                    ));
                }
                continue;
            };
            let bytes = end.saturating_sub(replay);
            let time = time_behind(
                &self.samples,
                replay,
                now,
                s.replay_lag_ms.map(Duration::from_millis),
            );
            measured.push(Lagging {
                name: s.name,
                state,
                replayed: replay,
                bytes,
                time,
            });
        }
        self.prune(&measured, end);
        Ok(measured)
    }

    /// Forgets samples no standby's position falls before any more.
    fn prune(&mut self, measured: &[Lagging], end: u64) {
        let oldest_needed = measured.iter().map(|s| s.replayed).min().unwrap_or(end);
        while self.samples.len() > 1 && self.samples[1].1 <= oldest_needed {
            self.samples.pop_front();
        }
        while self.samples.len() > MAX_SAMPLES {
            self.samples.pop_front();
        }
    }

    fn is_too_far(&self, s: &Lagging) -> bool {
        s.bytes > 0
            && match self.max_lag {
                MaxLag::Time(limit) => s.time >= limit,
                MaxLag::Bytes(limit) => s.bytes > limit,
            }
    }
}

/// How long a standby that replayed up to `replay` has been behind, at least: since the first
/// sample in which the primary's WAL went past it, or as PostgreSQL last reported, whichever is
/// longer. Zero when no sample is past it (it has caught up).
fn time_behind(
    samples: &VecDeque<(Instant, u64)>,
    replay: u64,
    now: Instant,
    reported: Option<Duration>,
) -> Duration {
    match samples.iter().find(|(_, lsn)| *lsn > replay) {
        None => Duration::ZERO,
        Some((at, _)) => now
            .duration_since(*at)
            .max(reported.unwrap_or(Duration::ZERO)),
    }
}

/// Asks every standby for an immediate report of its replay position (see the module comment).
fn request_reports(client: &mut Client) -> Result<()> {
    let no_sync_standbys: bool = client
        .row(
            "SELECT current_setting('synchronous_standby_names') = ''",
            &[],
        )?
        .get(0);
    if no_sync_standbys {
        let mut tx = client.transaction()?;
        tx.batch("SET LOCAL synchronous_commit = remote_apply; SELECT txid_current()")
            .context("asking the standbys to report their replay position")?;
        tx.commit()
            .context("asking the standbys to report their replay position")?;
    }
    Ok(())
}

/// Parses `--max-replica-lag`: a time (`10s`, `500ms`, `1m`; a bare number is seconds) or an
/// amount of WAL (`64MB`, `512kB`, `100B`).
pub fn parse_max_lag(text: &str) -> Result<MaxLag, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let factor: Option<u64> = match unit.trim().to_ascii_lowercase().as_str() {
        "b" => Some(1),
        "kb" => Some(1 << 10),
        "mb" => Some(1 << 20),
        "gb" => Some(1 << 30),
        _ => None,
    };
    match factor {
        Some(factor) => {
            let value: f64 = number
                .parse()
                .map_err(|_| format!("'{text}' is not an amount (try 64MB or 10s)"))?;
            let total = value * factor as f64;
            if !total.is_finite() || total < 0.0 || total > u64::MAX as f64 / 2.0 {
                return Err(format!("'{text}' is not a valid amount of WAL"));
            }
            Ok(MaxLag::Bytes(total as u64))
        }
        None => crate::units::parse_duration(trimmed).map(MaxLag::Time),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_lag_is_a_time_or_an_amount_of_wal() {
        assert_eq!(
            parse_max_lag("10s").unwrap(),
            MaxLag::Time(Duration::from_secs(10))
        );
        assert_eq!(parse_max_lag("0").unwrap(), MaxLag::Time(Duration::ZERO));
        assert_eq!(parse_max_lag("64MB").unwrap(), MaxLag::Bytes(64 << 20));
        assert_eq!(parse_max_lag("512kB").unwrap(), MaxLag::Bytes(512 << 10));
        assert_eq!(parse_max_lag("100B").unwrap(), MaxLag::Bytes(100));
        assert!(parse_max_lag("fast").is_err());
        assert!(parse_max_lag("3 parsecs").is_err());
    }

    #[test]
    fn a_standby_is_behind_since_the_primary_first_went_past_its_position() {
        let t0 = Instant::now();
        let samples: VecDeque<(Instant, u64)> = [
            (t0, 100),
            (t0 + Duration::from_secs(5), 200),
            (t0 + Duration::from_secs(8), 300),
        ]
        .into();
        let now = t0 + Duration::from_secs(10);
        assert_eq!(
            time_behind(&samples, 150, now, None),
            Duration::from_secs(5)
        );
        assert_eq!(
            time_behind(&samples, 50, now, None),
            Duration::from_secs(10)
        );
        assert_eq!(time_behind(&samples, 300, now, None), Duration::ZERO);
        assert_eq!(
            time_behind(&samples, 250, now, Some(Duration::from_secs(30))),
            Duration::from_secs(30),
            "a longer lag PostgreSQL reported wins"
        );
    }

    #[test]
    fn a_paused_standby_is_behind_as_soon_as_the_primary_writes() {
        let mut t = ReplicaThrottle::new(MaxLag::Time(Duration::ZERO), Duration::from_secs(1));
        let s = Lagging {
            name: "s".into(),
            state: "streaming".into(),
            replayed: 0,
            bytes: 1,
            time: Duration::ZERO,
        };
        assert!(t.is_too_far(&s), "0s means any WAL not replayed");
        t.max_lag = MaxLag::Time(Duration::from_secs(10));
        assert!(!t.is_too_far(&s));
        let caught_up = Lagging { bytes: 0, ..s };
        t.max_lag = MaxLag::Bytes(0);
        assert!(!t.is_too_far(&caught_up));
    }
}
