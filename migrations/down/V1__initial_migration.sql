-- 001 down. ruleiq-db never drops this table: the rollback engine moves it into schema
-- ruleiq_archive (renamed with the version and a timestamp) so that no row is lost.
DROP TABLE public.users;
