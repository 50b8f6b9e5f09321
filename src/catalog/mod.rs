//! What ruleiq-db knows about the ruleIQ schema, each fact written once: the migrations, the
//! rename map, the constraint catalog and the SQL helpers that render them.

pub mod audit;
pub mod compat;
pub mod constraints;
pub mod down;
pub mod migrations;
pub mod renames;
pub mod repair;
pub mod sql;

/// The history table refinery keeps (its default name, so refinery's own tooling reads it).
pub const HISTORY_TABLE: &str = "refinery_schema_history";

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
