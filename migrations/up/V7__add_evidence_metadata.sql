-- 007 (Alembic add_evidence_metadata): AI metadata on both evidence tables, with their GIN
-- indexes (the index lives here because its column is born here).
ALTER TABLE public.evidence_items ADD COLUMN ai_metadata jsonb;
ALTER TABLE public.evidence ADD COLUMN ai_metadata jsonb;
CREATE INDEX idx_evidence_items_ai_metadata ON public.evidence_items USING gin (ai_metadata);
CREATE INDEX idx_evidence_ai_metadata ON public.evidence USING gin (ai_metadata);
