-- 007 (Alembic add_evidence_metadata): AI metadata on both evidence tables, with their GIN
-- indexes (the index lives here because its column is born here).
ALTER TABLE evidence_items ADD COLUMN ai_metadata jsonb;
ALTER TABLE evidence ADD COLUMN ai_metadata jsonb;
CREATE INDEX idx_evidence_items_ai_metadata ON evidence_items USING gin (ai_metadata);
CREATE INDEX idx_evidence_ai_metadata ON evidence USING gin (ai_metadata);
