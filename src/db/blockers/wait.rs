//! A real run's look: it waits for the blockers to go, never ending anyone's session, then
//! refuses naming those left.

use super::{find, Blocker, Limits, Scope};
use crate::progress::Log;
use crate::refusal::Refusal;
use anyhow::Result;
use postgres::Client;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// How often a real run looks again while it waits.
const POLL: Duration = Duration::from_millis(250);

/// A duration as it was given on the command line (2s, 500ms).
fn flag_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// A real run's look: waits (polling, never ending anyone's session) until nothing would make
/// the command wait, up to `limits.wait`, naming the blockers on stderr as they appear. Then
/// refuses (exit 4) naming those left; nothing has been changed at that point.
pub fn wait_until_clear(
    client: &mut Client,
    scope: &Scope,
    limits: &Limits,
    log: &Log,
) -> Result<()> {
    let started = Instant::now();
    let mut named: BTreeSet<(Option<i32>, Option<String>)> = BTreeSet::new();
    loop {
        let found = find(client, scope, limits)?;
        if found.is_empty() {
            if !named.is_empty() {
                log.line(&format!(
                    "no blockers left after {:.1}s; {} goes ahead",
                    started.elapsed().as_secs_f64(),
                    scope.command
                ));
            }
            return Ok(());
        }
        for blocker in &found {
            if named.insert(blocker.identity()) {
                // With --quiet the refusal, if it comes to that, still names them all.
                log.line(&format!(
                    "{} waits (up to {}) for {}",
                    scope.command,
                    flag_duration(limits.wait),
                    blocker.describe()
                ));
            }
        }
        let elapsed = started.elapsed();
        if elapsed >= limits.wait {
            return Err(refusal(scope, limits, found));
        }
        std::thread::sleep(POLL.min(limits.wait - elapsed));
        crate::db::interrupt::check()?;
    }
}

fn refusal(scope: &Scope, limits: &Limits, found: Vec<Blocker>) -> anyhow::Error {
    let names: Vec<String> = found.iter().map(Blocker::describe).collect();
    let message = format!(
        "{} would wait for {} session(s) still there after {}: {}. ruleiq-db never ends another session: let them finish (or end them yourself: pg_terminate_backend(pid), COMMIT/ROLLBACK PREPARED 'gid'), or raise --lock-wait, then run it again; nothing was changed",
        scope.command,
        found.len(),
        flag_duration(limits.wait),
        names.join("; ")
    );
    let blockers = serde_json::to_value(&found).unwrap_or_default();
    Refusal::Blockers { message, blockers }.into()
}
