//! Turning NOT VALID constraints into valid ones: `VALIDATE CONSTRAINT`, one transaction each.
//! It takes SHARE UPDATE EXCLUSIVE, so the application reads and writes while it scans.

use crate::catalog::constraints::{Constraint, CATALOG};
use crate::checker::{constraint_presence, ConstraintState};
use crate::db::{self, RetryPolicy};
use crate::progress::Log;
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

/// Validates every catalog constraint (of `only`, if given) that exists NOT VALID.
pub fn validate_not_valid(
    client: &mut Client,
    only: Option<&[&'static Constraint]>,
    retry: RetryPolicy,
    log: &Log,
) -> Result<Validation> {
    let presence = constraint_presence(client)?;
    // A foreign key not adopted yet is validated under its own name.
    let wanted: Vec<(&'static Constraint, String)> = CATALOG
        .iter()
        .filter(|c| only.is_none_or(|list| list.iter().any(|o| o.name == c.name)))
        .filter_map(|c| {
            let p = presence.get(c.name)?;
            (p.state == ConstraintState::NotValid).then(|| {
                (
                    c,
                    p.actual_name.clone().unwrap_or_else(|| c.name.to_string()),
                )
            })
        })
        .collect();
    let mut outcome = Validation::default();
    let bar = log.bar(wanted.len() as u64, "validating constraints");
    for (c, actual_name) in wanted {
        bar.set_message(c.name);
        let result = db::retry_on_lock_timeout(&format!("validate {}", c.name), retry, log, || {
            client.batch_execute(&c.validate_sql_as(&actual_name))?;
            Ok(())
        });
        match result {
            Ok(()) => outcome.validated.push(c.name),
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
