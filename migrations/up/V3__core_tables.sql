-- 003: every other table the application's models create, parents before children. As on
-- production: no server-side defaults, foreign keys without ON DELETE actions, and the
-- truncated assessment_sessions/generated_policies names that 008 renames (their foreign keys
-- on business_profil exist already; 008 adopts them rather than adding a second one).
CREATE TABLE public.assessment_sessions (
    id uuid NOT NULL,
    user_id uuid NOT NULL,
    business_profil uuid,
    session_type varchar,
    status varchar,
    current_stage integer,
    total_stages integer,
    questions_answe integer,
    total_questions integer,
    responses jsonb,
    calculated_scor jsonb,
    recommendations jsonb,
    started_at timestamp without time zone,
    last_activity timestamp without time zone,
    completed_at timestamp without time zone,
    recommended_fra jsonb,
    priority_order jsonb,
    next_steps jsonb,
    created_at timestamp without time zone,
    updated_at timestamp without time zone,
    CONSTRAINT assessment_sessions_pkey PRIMARY KEY (id),
    CONSTRAINT assessment_sessions_business_profil_fkey FOREIGN KEY (business_profil) REFERENCES public.business_profiles(id),
    CONSTRAINT assessment_sessions_user_id_fkey FOREIGN KEY (user_id) REFERENCES public.users(id)
);

CREATE TABLE public.assessment_questions (
    id uuid NOT NULL,
    session_id uuid NOT NULL,
    question_text text NOT NULL,
    answer_text text,
    question_type varchar(50) NOT NULL,
    options json,
    "order" integer NOT NULL,
    created_at timestamp without time zone,
    updated_at timestamp without time zone,
    CONSTRAINT assessment_questions_pkey PRIMARY KEY (id),
    CONSTRAINT assessment_questions_session_id_fkey FOREIGN KEY (session_id) REFERENCES public.assessment_sessions(id)
);

CREATE TABLE public.evidence_items (
    id uuid NOT NULL,
    user_id uuid NOT NULL,
    business_profile_id uuid NOT NULL,
    framework_id uuid NOT NULL,
    evidence_name varchar NOT NULL,
    evidence_type varchar NOT NULL,
    control_reference varchar NOT NULL,
    description text NOT NULL,
    required_for_audit boolean,
    collection_frequency varchar,
    collection_method varchar,
    automation_source varchar,
    automation_guidance text,
    file_path varchar,
    file_type varchar,
    file_size_bytes integer,
    status varchar,
    collection_notes text,
    review_notes text,
    collected_by varchar,
    collected_at timestamp without time zone,
    reviewed_by varchar,
    reviewed_at timestamp without time zone,
    approved_by varchar,
    approved_at timestamp without time zone,
    priority varchar,
    effort_estimate varchar,
    audit_section varchar,
    compliance_score_impact double precision,
    created_at timestamp without time zone,
    updated_at timestamp without time zone,
    CONSTRAINT evidence_items_pkey PRIMARY KEY (id),
    CONSTRAINT evidence_items_business_profile_id_fkey FOREIGN KEY (business_profile_id) REFERENCES public.business_profiles(id),
    CONSTRAINT evidence_items_framework_id_fkey FOREIGN KEY (framework_id) REFERENCES public.compliance_frameworks(id),
    CONSTRAINT evidence_items_user_id_fkey FOREIGN KEY (user_id) REFERENCES public.users(id)
);

CREATE TABLE public.evidence (
    id uuid NOT NULL,
    user_id uuid NOT NULL,
    business_profile_id uuid NOT NULL,
    framework_id uuid NOT NULL,
    control_id varchar(100) NOT NULL,
    title varchar(255) NOT NULL,
    description text,
    source varchar(50),
    tags json,
    file_path varchar(255),
    status varchar(20),
    created_at timestamp without time zone,
    updated_at timestamp without time zone,
    CONSTRAINT evidence_pkey PRIMARY KEY (id),
    CONSTRAINT evidence_business_profile_id_fkey FOREIGN KEY (business_profile_id) REFERENCES public.business_profiles(id),
    CONSTRAINT evidence_framework_id_fkey FOREIGN KEY (framework_id) REFERENCES public.compliance_frameworks(id),
    CONSTRAINT evidence_user_id_fkey FOREIGN KEY (user_id) REFERENCES public.users(id)
);

CREATE TABLE public.generated_policies (
    id uuid NOT NULL,
    user_id uuid NOT NULL,
    business_profil uuid NOT NULL,
    framework_id uuid NOT NULL,
    policy_name varchar NOT NULL,
    framework_name varchar NOT NULL,
    policy_type varchar,
    generation_prompt text NOT NULL,
    generation_model varchar,
    generation_time_seconds double precision NOT NULL,
    policy_content text NOT NULL,
    procedures jsonb,
    tool_recommendations jsonb,
    sections jsonb,
    controls jsonb,
    responsibilities jsonb,
    word_count integer,
    estimated_reading_time integer,
    compliance_coverage double precision,
    status varchar,
    review_notes text,
    generated_at timestamp without time zone,
    reviewed_at timestamp without time zone,
    approved_at timestamp without time zone,
    created_at timestamp without time zone,
    updated_at timestamp without time zone,
    CONSTRAINT generated_policies_pkey PRIMARY KEY (id),
    CONSTRAINT generated_policies_business_profil_fkey FOREIGN KEY (business_profil) REFERENCES public.business_profiles(id),
    CONSTRAINT generated_policies_framework_id_fkey FOREIGN KEY (framework_id) REFERENCES public.compliance_frameworks(id),
    CONSTRAINT generated_policies_user_id_fkey FOREIGN KEY (user_id) REFERENCES public.users(id)
);

CREATE TABLE public.policies (
    id uuid NOT NULL,
    user_id uuid NOT NULL,
    business_profile_id uuid NOT NULL,
    framework_name varchar(100) NOT NULL,
    policy_title varchar(255) NOT NULL,
    content text NOT NULL,
    version varchar(20),
    created_at timestamp without time zone,
    updated_at timestamp without time zone,
    CONSTRAINT policies_pkey PRIMARY KEY (id),
    CONSTRAINT policies_business_profile_id_fkey FOREIGN KEY (business_profile_id) REFERENCES public.business_profiles(id),
    CONSTRAINT policies_user_id_fkey FOREIGN KEY (user_id) REFERENCES public.users(id)
);

CREATE TYPE public.conversationstatus AS ENUM ('ACTIVE', 'ARCHIVED', 'DELETED');

CREATE TABLE public.chat_conversations (
    id uuid NOT NULL,
    user_id uuid NOT NULL,
    business_profile_id uuid NOT NULL,
    title varchar(255) NOT NULL,
    status public.conversationstatus NOT NULL,
    created_at timestamp without time zone NOT NULL,
    updated_at timestamp without time zone NOT NULL,
    CONSTRAINT chat_conversations_pkey PRIMARY KEY (id),
    CONSTRAINT chat_conversations_business_profile_id_fkey FOREIGN KEY (business_profile_id) REFERENCES public.business_profiles(id),
    CONSTRAINT chat_conversations_user_id_fkey FOREIGN KEY (user_id) REFERENCES public.users(id)
);

CREATE TABLE public.chat_messages (
    id uuid NOT NULL,
    conversation_id uuid NOT NULL,
    role varchar(20) NOT NULL,
    content text NOT NULL,
    message_metadata json,
    sequence_number integer NOT NULL,
    created_at timestamp without time zone NOT NULL,
    CONSTRAINT chat_messages_pkey PRIMARY KEY (id),
    CONSTRAINT chat_messages_conversation_id_fkey FOREIGN KEY (conversation_id) REFERENCES public.chat_conversations(id)
);

CREATE TABLE public.implementation_plans (
    id uuid NOT NULL,
    user_id uuid NOT NULL,
    business_profile_id uuid NOT NULL,
    framework_id uuid NOT NULL,
    title varchar NOT NULL,
    status varchar,
    phases json,
    planned_start_date timestamp without time zone,
    planned_end_date timestamp without time zone,
    actual_start_date timestamp without time zone,
    actual_end_date timestamp without time zone,
    created_at timestamp without time zone,
    updated_at timestamp without time zone,
    CONSTRAINT implementation_plans_pkey PRIMARY KEY (id),
    CONSTRAINT implementation_plans_business_profile_id_fkey FOREIGN KEY (business_profile_id) REFERENCES public.business_profiles(id),
    CONSTRAINT implementation_plans_framework_id_fkey FOREIGN KEY (framework_id) REFERENCES public.compliance_frameworks(id),
    CONSTRAINT implementation_plans_user_id_fkey FOREIGN KEY (user_id) REFERENCES public.users(id)
);

CREATE TABLE public.readiness_assessments (
    id uuid NOT NULL,
    user_id uuid NOT NULL,
    framework_id uuid NOT NULL,
    business_profile_id uuid NOT NULL,
    overall_score double precision NOT NULL,
    score_breakdown json NOT NULL,
    priority_actions json,
    quick_wins json,
    score_trend varchar,
    estimated_readiness_date timestamp without time zone,
    created_at timestamp without time zone NOT NULL,
    updated_at timestamp without time zone NOT NULL,
    CONSTRAINT readiness_assessments_pkey PRIMARY KEY (id),
    CONSTRAINT readiness_assessments_business_profile_id_fkey FOREIGN KEY (business_profile_id) REFERENCES public.business_profiles(id),
    CONSTRAINT readiness_assessments_framework_id_fkey FOREIGN KEY (framework_id) REFERENCES public.compliance_frameworks(id),
    CONSTRAINT readiness_assessments_user_id_fkey FOREIGN KEY (user_id) REFERENCES public.users(id)
);

CREATE TABLE public.integration_configurations (
    id uuid NOT NULL,
    user_id uuid NOT NULL,
    provider varchar(100) NOT NULL,
    credentials text,
    settings json,
    status varchar(50),
    last_sync_at timestamp without time zone,
    last_sync_status varchar(50),
    last_sync_message text,
    is_enabled boolean,
    created_at timestamp without time zone,
    updated_at timestamp without time zone,
    CONSTRAINT integration_configurations_pkey PRIMARY KEY (id),
    CONSTRAINT integration_configurations_user_id_fkey FOREIGN KEY (user_id) REFERENCES public.users(id)
);
CREATE INDEX ix_integration_configurations_provider ON public.integration_configurations USING btree (provider);
CREATE INDEX ix_integration_configurations_user_id ON public.integration_configurations USING btree (user_id);

CREATE TABLE public.report_schedules (
    id uuid NOT NULL,
    user_id uuid NOT NULL,
    business_profile_id uuid NOT NULL,
    report_type varchar NOT NULL,
    frequency varchar NOT NULL,
    parameters json,
    recipients json NOT NULL,
    active boolean NOT NULL,
    created_at timestamp without time zone NOT NULL,
    last_run_at timestamp without time zone,
    CONSTRAINT report_schedules_pkey PRIMARY KEY (id),
    CONSTRAINT report_schedules_business_profile_id_fkey FOREIGN KEY (business_profile_id) REFERENCES public.business_profiles(id),
    CONSTRAINT report_schedules_user_id_fkey FOREIGN KEY (user_id) REFERENCES public.users(id)
);
