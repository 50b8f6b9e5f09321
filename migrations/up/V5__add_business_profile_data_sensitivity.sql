-- 005: data sensitivity. The default is a constant, so PostgreSQL 11+ adds it without a rewrite.
ALTER TABLE business_profiles ADD COLUMN data_sensitivity VARCHAR(20) DEFAULT 'Medium';
