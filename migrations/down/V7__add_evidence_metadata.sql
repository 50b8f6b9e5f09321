-- 007 down. Each column is first copied (id and value) into schema ruleiq_archive by the
-- rollback engine; dropping a column drops its GIN index too, but the indexes go first, by name.
DROP INDEX IF EXISTS public.idx_evidence_ai_metadata;
DROP INDEX IF EXISTS public.idx_evidence_items_ai_metadata;
ALTER TABLE public.evidence DROP COLUMN ai_metadata;
ALTER TABLE public.evidence_items DROP COLUMN ai_metadata;
