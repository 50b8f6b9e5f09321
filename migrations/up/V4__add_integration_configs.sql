-- 004 (Alembic add_integration_configs): the newer integration table, its status enum and its
-- three indexes, as production has them.
CREATE TYPE public.integrationstatus AS ENUM ('connected', 'disconnected', 'error', 'refreshing', 'rate_limited');

CREATE TABLE public.integration_configs (
    id uuid NOT NULL,
    user_id uuid NOT NULL,
    provider varchar NOT NULL,
    credentials json,
    settings json,
    status public.integrationstatus NOT NULL,
    last_sync timestamp without time zone,
    last_error varchar,
    created_at timestamp without time zone,
    updated_at timestamp without time zone,
    CONSTRAINT integration_configs_pkey PRIMARY KEY (id)
);
CREATE INDEX ix_integration_configs_provider ON public.integration_configs USING btree (provider);
CREATE INDEX ix_integration_configs_user_id ON public.integration_configs USING btree (user_id);
CREATE UNIQUE INDEX ix_user_provider ON public.integration_configs USING btree (user_id, provider);
