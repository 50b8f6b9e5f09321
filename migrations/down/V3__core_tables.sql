-- 003 down, children before parents. The tables are archived in schema ruleiq_archive, not
-- dropped (see V1's note); an archived table's enum columns become text first, so the archive
-- needs no type of the live schema and the enum type can go.
DROP TABLE report_schedules;
DROP TABLE integration_configurations;
DROP TABLE readiness_assessments;
DROP TABLE implementation_plans;
DROP TABLE chat_messages;
DROP TABLE chat_conversations;
DROP TYPE conversationstatus;
DROP TABLE policies;
DROP TABLE generated_policies;
DROP TABLE evidence;
DROP TABLE evidence_items;
DROP TABLE assessment_questions;
DROP TABLE assessment_sessions;
