//! Cleanup internals: the policy, its actions and the audit trail (see commands/cleanup.rs).
//!
//! - `policy`, `policy_file`: what to do per constraint; built-in defaults, YAML overrides.
//! - `fixes`: each action as SQL over one row.
//! - `plan`: a table's rules chained into one update (and a delete phase), rendered as the
//!   preview and batch statements.
//! - `preview`: counts and examples, read-only.
//! - `batches`: keyset batches, one audited statement each.
//! - `decisions`: rules that would write NULL into a NOT NULL column wait for the DBA.
//! - `proof`: the plan checked against the live database before the first change.
//! - `failure`: what a run that fails part-way reports (tables changed, run id, undo).
//! - `audit`: schema `ruleiq_audit`.
//! - `undo`: putting a run's rows back, with conflict detection.
//! - `rowjson`: audit JSON keyed by current column names at any schema version.

pub mod audit;
pub mod batches;
pub mod decisions;
pub mod failure;
pub mod fixes;
pub mod plan;
pub mod policy;
pub mod policy_file;
pub mod preview;
pub mod proof;
pub mod rowjson;
pub mod undo;
