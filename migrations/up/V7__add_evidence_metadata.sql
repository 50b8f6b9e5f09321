-- 007: evidence metadata. The GIN index lives here because its column is born here.
ALTER TABLE evidence_items ADD COLUMN ai_metadata JSONB;
ALTER TABLE evidence_items ADD COLUMN approved_at TIMESTAMP;
ALTER TABLE evidence_items ADD COLUMN approved_by UUID REFERENCES users(id) ON DELETE SET NULL;
CREATE INDEX idx_evidence_ai_metadata_gin ON evidence_items USING gin(ai_metadata);
