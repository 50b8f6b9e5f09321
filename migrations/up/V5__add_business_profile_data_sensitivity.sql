-- 005 (Alembic add_business_profile_data_sensitivity). Production's column is NOT NULL with no
-- default (the application writes 'Low'). On a table that already has rows a NOT NULL column
-- needs a value, so it is added with a constant default (PostgreSQL 11+ stores it without a
-- rewrite) that is dropped again in the same transaction.
ALTER TABLE public.business_profiles ADD COLUMN data_sensitivity varchar NOT NULL DEFAULT 'Low';
ALTER TABLE public.business_profiles ALTER COLUMN data_sensitivity DROP DEFAULT;
