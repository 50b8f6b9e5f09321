//! Cleanup internals: the policy, its actions and the audit trail (see commands/cleanup.rs).
