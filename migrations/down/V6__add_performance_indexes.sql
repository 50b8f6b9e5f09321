-- 006 down: the indexes only; an index holds no data of its own.
--
-- pg_trgm stays installed, on purpose. It holds no data, 006 created it with IF NOT EXISTS
-- (so it may have been there before 006 and be used by objects that are not ruleIQ's), and
-- dropping an extension may need rights the migration role lacks. Leaving it is harmless: when
-- 006 runs again, its CREATE EXTENSION IF NOT EXISTS finds it and goes on.
DROP INDEX IF EXISTS idx_assessment_sessions_user_id;
DROP INDEX IF EXISTS idx_business_profiles_user_id;
DROP INDEX IF EXISTS idx_evidence_name_search;
DROP INDEX IF EXISTS idx_evidence_user_status;
DROP INDEX IF EXISTS idx_evidence_user_framework;
