//! Where cleanup keeps its audit trail (docs/design.md §3). Cleanup writes it; the checker reads
//! when a run last finished, to tell the application's new violations from old ones.

pub const SCHEMA: &str = "ruleiq_audit";
pub const RUNS_TABLE: &str = "cleanup_runs";
pub const CHANGES_TABLE: &str = "cleanup_changes";
pub const RUNS: &str = "ruleiq_audit.cleanup_runs";
pub const CHANGES: &str = "ruleiq_audit.cleanup_changes";
