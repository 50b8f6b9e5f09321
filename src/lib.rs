//! ruleiq-db: migrates, checks, cleans and rolls back the ruleIQ PostgreSQL database.
//!
//! The binary (`src/main.rs`) only parses the command line and maps the outcome to an exit
//! code; everything else lives here so that the tests can drive it too.

pub mod app_queries;
pub mod apply;
pub mod archive;
pub mod catalog;
pub mod cleanup;
pub mod cli;
pub mod commands;
pub mod compat;
pub mod constraints;
pub mod db;
pub mod exit;
pub mod health;
pub mod hints;
pub mod history;
pub mod journal;
pub mod migrate;
pub mod output;
pub mod progress;
pub mod refusal;
pub mod rehearsal;
pub mod report;
#[cfg(test)]
mod report_snapshots;
pub mod sandbox;
pub mod shape;
pub mod units;
