//! Turning NOT VALID constraints into valid ones: `VALIDATE CONSTRAINT`, one transaction each.
//! It takes SHARE UPDATE EXCLUSIVE, so the application reads and writes while it scans.

use crate::catalog::constraints::{Constraint, CATALOG};
use crate::checker::{constraint_states, ConstraintState};
use crate::db::{self, RetryPolicy};
use crate::progress::Log;
use crate::replication::ReplicaThrottle;
use anyhow::Result;
use postgres::error::SqlState;
use postgres::Client;

/// What a validation pass did.
#[derive(Debug, Default)]
pub struct Validation {
    pub validated: Vec<&'static str>,
    /// Constraints whose VALIDATE found violating rows: still NOT VALID.
    pub blocked: Vec<&'static Constraint>,
}

/// Validates every catalog constraint (of `only`, if given) that exists NOT VALID. After each
/// VALIDATE, `replicas` waits until the standbys have replayed it, so that a standby does not
/// go on answering with the constraint not valid for long.
pub fn validate_not_valid(
    client: &mut Client,
    only: Option<&[&'static Constraint]>,
    retry: RetryPolicy,
    replicas: &mut ReplicaThrottle,
    log: &Log,
) -> Result<Validation> {
    let states = constraint_states(client)?;
    let wanted: Vec<&'static Constraint> = CATALOG
        .iter()
        .filter(|c| only.is_none_or(|list| list.iter().any(|o| o.name == c.name)))
        .filter(|c| states.get(c.name) == Some(&ConstraintState::NotValid))
        .collect();
    let mut outcome = Validation::default();
    let bar = log.bar(wanted.len() as u64, "validating constraints");
    for c in wanted {
        bar.set_message(c.name);
        let result = db::retry_on_lock_timeout(&format!("validate {}", c.name), retry, log, || {
            client.batch_execute(&c.validate_sql())?;
            Ok(())
        });
        match result {
            Ok(()) => {
                outcome.validated.push(c.name);
                replicas.wait_for_replay(client, log, &format!("VALIDATE {}", c.name))?;
            }
            Err(e)
                if matches!(
                    db::sql_state(&e),
                    Some(code) if *code == SqlState::CHECK_VIOLATION || *code == SqlState::FOREIGN_KEY_VIOLATION
                ) =>
            {
                log.line(&format!(
                    "{} stays NOT VALID: rows violate it (see check-constraints)",
                    c.name
                ));
                outcome.blocked.push(c);
            }
            Err(e) => return Err(e),
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(outcome)
}
