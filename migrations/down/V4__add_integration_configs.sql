-- 004 down. The table is archived in schema ruleiq_archive, not dropped (see V1's note); its
-- enum column becomes text in the archive, so the type can go.
DROP TABLE public.integration_configs;
DROP TYPE public.integrationstatus;
