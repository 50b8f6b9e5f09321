-- 007 down. Each column is first copied (id and value) into schema ruleiq_archive by the
-- rollback engine; dropping approved_by also drops its foreign key.
DROP INDEX IF EXISTS idx_evidence_ai_metadata_gin;
ALTER TABLE evidence_items DROP COLUMN approved_by;
ALTER TABLE evidence_items DROP COLUMN approved_at;
ALTER TABLE evidence_items DROP COLUMN ai_metadata;
