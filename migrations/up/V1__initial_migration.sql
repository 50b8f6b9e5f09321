-- 001: users, as the application's models created it on production: no server-side defaults
-- (the application fills ids and timestamps), unbounded varchar, the models' NOT NULLs.
-- Migrations 001-007 reproduce production exactly (legacy-schema.md); 008 repairs it.
CREATE TABLE public.users (
    id uuid NOT NULL,
    email varchar NOT NULL,
    hashed_password varchar NOT NULL,
    is_active boolean,
    created_at timestamp without time zone,
    CONSTRAINT users_pkey PRIMARY KEY (id),
    CONSTRAINT users_email_key UNIQUE (email)
);
