//! What ruleiq-db knows about the ruleIQ schema, each fact written once: the migrations, the
//! rename map, the constraint catalog and the SQL helpers that render them.

pub mod audit;
pub mod compat;
pub mod constraints;
pub mod down;
pub mod migrations;
pub mod release;
pub mod renames;
pub mod repair;
pub mod sql;

pub use release::Catalog;

/// The history table refinery keeps (its default name, so refinery's own tooling reads it).
pub const HISTORY_TABLE: &str = "refinery_schema_history";

/// The schema the history table lives in: refinery (and ruleiq-db before it named every object
/// with its schema) created it through the default search path, in `public`, next to ruleIQ's
/// tables; it stays there, so that a database migrated before finds its history.
pub const HISTORY_SCHEMA: &str = sql::APP_SCHEMA;

/// The history table as SQL names it, with its schema: `public."refinery_schema_history"`.
pub fn history_table() -> String {
    format!("{HISTORY_SCHEMA}.{}", sql::quote_ident(HISTORY_TABLE))
}

/// Every table ruleIQ's migrations create, in creation order (parents before children).
pub const TABLES: &[&str] = &[
    "users",
    "business_profiles",
    "compliance_frameworks",
    "assessment_sessions",
    "assessment_questions",
    "evidence_items",
    "evidence",
    "generated_policies",
    "policies",
    "chat_conversations",
    "chat_messages",
    "implementation_plans",
    "readiness_assessments",
    "integration_configurations",
    "report_schedules",
    "integration_configs",
];

/// The primary key column of every ruleIQ table.
pub const PRIMARY_KEY: &str = "id";
