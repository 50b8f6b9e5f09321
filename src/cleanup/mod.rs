//! Cleanup internals: the policy, its actions and the audit trail (see commands/cleanup.rs).
//!
//! - `policy`, `policy_file`: what to do per constraint; built-in defaults, YAML overrides.

pub mod policy;
pub mod policy_file;
