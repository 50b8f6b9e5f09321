-- 003 down, children before parents. The tables are archived in schema ruleiq_archive, not
-- dropped (see V1's note); an archived table's enum columns become text first, so the archive
-- needs no type of the live schema and the enum type can go.
DROP TABLE public.report_schedules;
DROP TABLE public.integration_configurations;
DROP TABLE public.readiness_assessments;
DROP TABLE public.implementation_plans;
DROP TABLE public.chat_messages;
DROP TABLE public.chat_conversations;
DROP TYPE public.conversationstatus;
DROP TABLE public.policies;
DROP TABLE public.generated_policies;
DROP TABLE public.evidence;
DROP TABLE public.evidence_items;
DROP TABLE public.assessment_questions;
DROP TABLE public.assessment_sessions;
