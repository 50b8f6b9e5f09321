-- 006: performance indexes and the trigram extension they need.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX idx_evidence_user_framework ON evidence_items(user_id, framework_id);
CREATE INDEX idx_evidence_user_status ON evidence_items(user_id, status);
CREATE INDEX idx_evidence_name_search ON evidence_items USING gin(evidence_name gin_trgm_ops);
CREATE INDEX idx_business_profiles_user_id ON business_profiles(user_id);
CREATE INDEX idx_assessment_sessions_user_id ON assessment_sessions(user_id);
