-- 002 down. The tables are archived in schema ruleiq_archive, not dropped (see V1's note).
DROP TABLE public.compliance_frameworks;
DROP TABLE public.business_profiles;
