-- 005 down. The rollback engine first copies id and data_sensitivity into schema
-- ruleiq_archive, then drops the column.
ALTER TABLE public.business_profiles DROP COLUMN data_sensitivity;
