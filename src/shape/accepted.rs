//! Differences the DBA accepted with `baseline --accept-drift`, kept beside the history (schema
//! `ruleiq_meta`, written in the same transaction as the history rows), so that `status` shows
//! them as accepted afterwards instead of alarming again.
//!
//! A difference is recognised by its object under current names and what was found (missing,
//! mismatch, …), not by its wording, so it survives 008's renames and a reworded message.

use super::compare::{Difference, Verdict};
use super::Class;
use crate::catalog::sql::quote_ident;
use crate::db::Query;
use anyhow::{Context, Result};
use postgres::Transaction;
use std::collections::BTreeSet;

pub const SCHEMA: &str = "ruleiq_meta";
pub const TABLE: &str = "accepted_drift";

fn qualified() -> String {
    format!("{}.{}", quote_ident(SCHEMA), quote_ident(TABLE))
}

/// Records the accepted differences of `differences`, adopted at `version`.
pub fn record(tx: &mut Transaction, version: i32, differences: &[Difference]) -> Result<()> {
    let accepted: Vec<&Difference> = differences
        .iter()
        .filter(|d| d.verdict == Verdict::Accepted)
        .collect();
    if accepted.is_empty() {
        return Ok(());
    }
    let table = qualified();
    tx.batch(&format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE TABLE IF NOT EXISTS {table} (
             object_key  text NOT NULL,
             finding     text NOT NULL,
             object      text NOT NULL,
             problem     text NOT NULL,
             version     int4 NOT NULL,
             accepted_at timestamptz NOT NULL DEFAULT now(),
             accepted_by text NOT NULL DEFAULT current_user,
             PRIMARY KEY (object_key, finding)
         );
         COMMENT ON TABLE {table} IS 'Differences from the expected schema accepted with ruleiq-db baseline --accept-drift'",
        schema = quote_ident(SCHEMA)
    ))
    .context("creating the table of accepted differences")?;
    let insert = format!(
        "INSERT INTO {table} (object_key, finding, object, problem, version) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (object_key, finding) DO NOTHING"
    );
    for d in accepted {
        tx.exec(
            &insert,
            &[&d.key, &d.finding.as_str(), &d.object, &d.problem, &version],
        )
        .with_context(|| format!("recording the accepted difference {}", d.object))?;
    }
    Ok(())
}

/// The accepted differences on record: (object key, finding). Empty when none was ever accepted.
pub fn read(client: &mut impl Query) -> Result<BTreeSet<(String, String)>> {
    if !crate::db::introspect::table_exists_in(client, SCHEMA, TABLE)? {
        return Ok(BTreeSet::new());
    }
    Ok(client
        .rows(
            &format!("SELECT object_key, finding FROM {}", qualified()),
            &[],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// Marks the differences accepted on record as accepted.
pub fn mark(differences: &mut [Difference], on_record: &BTreeSet<(String, String)>) {
    for d in differences.iter_mut() {
        if d.kind == Class::Accepted
            && on_record.contains(&(d.key.clone(), d.finding.as_str().to_string()))
        {
            d.accept();
        }
    }
    differences.sort_by_key(|d| d.verdict);
}
