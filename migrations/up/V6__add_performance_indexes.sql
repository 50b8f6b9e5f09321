-- 006 (Alembic add_performance_indexes): the application's 24 btree indexes. Plain CREATE
-- INDEX, as Alembic ran it on production (the migration runs in one transaction, where
-- CONCURRENTLY is not allowed).
CREATE INDEX idx_users_email ON public.users USING btree (email);
CREATE INDEX idx_users_is_active ON public.users USING btree (is_active);
CREATE INDEX idx_business_profiles_user_id ON public.business_profiles USING btree (user_id);
CREATE INDEX idx_compliance_frameworks_is_active ON public.compliance_frameworks USING btree (is_active);
CREATE INDEX idx_compliance_frameworks_name ON public.compliance_frameworks USING btree (name);
CREATE INDEX idx_evidence_items_business_profile_id ON public.evidence_items USING btree (business_profile_id);
CREATE INDEX idx_evidence_items_created_at ON public.evidence_items USING btree (created_at);
CREATE INDEX idx_evidence_items_evidence_type ON public.evidence_items USING btree (evidence_type);
CREATE INDEX idx_evidence_items_framework_id ON public.evidence_items USING btree (framework_id);
CREATE INDEX idx_evidence_items_framework_status ON public.evidence_items USING btree (framework_id, status);
CREATE INDEX idx_evidence_items_status ON public.evidence_items USING btree (status);
CREATE INDEX idx_evidence_items_updated_at ON public.evidence_items USING btree (updated_at);
CREATE INDEX idx_evidence_items_user_created ON public.evidence_items USING btree (user_id, created_at);
CREATE INDEX idx_evidence_items_user_framework ON public.evidence_items USING btree (user_id, framework_id);
CREATE INDEX idx_evidence_items_user_id ON public.evidence_items USING btree (user_id);
CREATE INDEX idx_evidence_items_user_status ON public.evidence_items USING btree (user_id, status);
CREATE INDEX idx_evidence_items_user_type ON public.evidence_items USING btree (user_id, evidence_type);
CREATE INDEX idx_evidence_items_user_updated ON public.evidence_items USING btree (user_id, updated_at);
CREATE INDEX idx_chat_conversations_business_profile_id ON public.chat_conversations USING btree (business_profile_id);
CREATE INDEX idx_chat_conversations_created_at ON public.chat_conversations USING btree (created_at);
CREATE INDEX idx_chat_conversations_user_id ON public.chat_conversations USING btree (user_id);
CREATE INDEX idx_chat_messages_conversation_id ON public.chat_messages USING btree (conversation_id);
CREATE INDEX idx_chat_messages_conversation_sequence ON public.chat_messages USING btree (conversation_id, sequence_number);
CREATE INDEX idx_chat_messages_sequence_number ON public.chat_messages USING btree (sequence_number);
