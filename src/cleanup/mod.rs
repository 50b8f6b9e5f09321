//! Cleanup: the policy, its actions, the run that applies them and the audit trail
//! (commands/cleanup.rs parses the options, confirms, and calls `run` or `undo_run`).
//!
//! - `run`: a cleanup run, look → (confirmation) → start → batches → recount.
//! - `undo_run`: a `--undo` run, find the run → (confirmation) → restore.
//! - `report`: what cleanup reports, and its table.
//! - `policy`, `policy_file`: what to do per constraint; built-in defaults, YAML overrides.
//! - `fixes`: each action as SQL over one row.
//! - `plan`: a table's rules chained into one update (and a delete phase): which rules, in
//!   what order, reading and writing which columns.
//! - `statements`: a plan rendered as the preview and batch statements.
//! - `preview`: counts and examples, read-only.
//! - `batches`: keyset batches, one audited statement each.
//! - `shares`: a big table's keys split among several sessions that repair it at once.
//! - `decisions`: rules that would write NULL into a NOT NULL column wait for the DBA.
//! - `proof`: the plan checked against the live database before the first change.
//! - `failure`: what a run that fails part-way reports (tables changed, run id, undo).
//! - `audit`: schema `ruleiq_audit`.
//! - `undo`: putting a run's rows back, with conflict detection.
//! - `rowjson`: audit JSON keyed by current column names at any schema version.

pub mod audit;
pub mod batches;
mod bound;
pub mod decisions;
pub mod failure;
pub mod fixes;
pub mod plan;
pub mod policy;
pub mod policy_file;
pub mod preview;
pub mod proof;
pub mod report;
pub mod rowjson;
pub mod run;
pub mod shares;
pub mod statements;
pub mod undo;
pub mod undo_run;
