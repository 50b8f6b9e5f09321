-- 003 down, children before parents. The tables are archived in schema ruleiq_archive, not
-- dropped (see V1's note).
DROP TABLE readiness_assessments;
DROP TABLE implementation_plans;
DROP TABLE chat_messages;
DROP TABLE chat_conversations;
DROP TABLE generated_policies;
DROP TABLE evidence_items;
DROP TABLE assessment_sessions;
