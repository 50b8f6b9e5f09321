//! Every test of ruleiq-db in one binary, one module per area (as ripgrep's tests/tests.rs):
//! one throwaway PostgreSQL for the whole run instead of one per file, and one link of the
//! library instead of thirty. The harness is `common`; each area's file says what it holds.

mod common;

mod architecture;
mod baseline;
mod check;
mod cleanup;
mod cleanup_decisions;
mod compat;
mod compat_roles;
mod contract;
mod estimate;
mod health;
mod hostile_search_path;
mod indexed_check;
mod introspect;
mod later_migration;
mod legacy_schema;
mod live_violations;
mod migrate;
mod pooler;
mod progress_terminal;
mod refusals;
mod rehearse;
mod rehearse_managed;
mod reliability;
mod repair_lock_order;
mod retry;
mod rollback;
mod roundtrip;
mod standby;
mod tls;
mod validate_concurrently;
