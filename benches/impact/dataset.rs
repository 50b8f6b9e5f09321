//! The version-7 database the benchmark works on, in production's shape (legacy-schema.md):
//! built by the real binary (`migrate --target 7`), then filled server-side with
//! generate_series. The legacy schema has no server-side defaults, so every id, timestamp and
//! NOT NULL column is written explicitly, as the application does. Every id is
//! `md5(prefix || n)::uuid`, so a child row can name its parent by number without a lookup, and
//! the ids still scatter over the primary key index as production's random UUIDs do. The text
//! and jsonb columns hold values of realistic size: rows are about as wide as production's
//! (roughly three times the narrow rows of the benchmark's first dataset).
//!
//! One row in a hundred violates each catalog constraint, each at its own residue of n mod 100,
//! so the expected count of every constraint is exact and the checker's answer can be verified.
//! The violating values are the ones the application writes (legacy-schema.md): evidence status
//! 'pending_review' and 'pending', sensitivity 'Moderate' and 'Confidential', evidence approved
//! without approved_at or approved_by. Production already has foreign keys on both
//! `business_profil` columns, so their orphans can only exist the way a restore with triggers
//! disabled leaves them: the loaders run with `session_replication_role = replica`, which skips
//! the foreign-key triggers, and plant them then.

use crate::server::Server;
use anyhow::{bail, ensure, Context, Result};
use postgres::Client;
use ruleiq_db::catalog::sql::{qualified, quote_ident};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How the generated rows' statuses spread, planted violations aside (those are the same one
/// in a hundred per constraint in both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Distribution {
    /// A young database: a tenth of the evidence approved, the rest spread over four statuses,
    /// so an index on status narrows the approval-workflow check to a ninth of the table.
    Default,
    /// A database a few audits old: two fifths of the evidence approved (with its approver and
    /// date), the rest spread over the four other statuses so that no status index narrows
    /// much; most assessments completed, most policies approved or published.
    Mature,
}

impl std::fmt::Display for Distribution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Distribution {
    pub const ALL: [Distribution; 2] = [Distribution::Default, Distribution::Mature];

    pub fn name(self) -> &'static str {
        match self {
            Distribution::Default => "default",
            Distribution::Mature => "mature",
        }
    }

    /// What the data set is, in words, for the results.
    pub fn described(self) -> &'static str {
        match self {
            Distribution::Default => {
                "a tenth of the evidence approved, in runs: the status index narrows the check"
            }
            Distribution::Mature => {
                "two fifths of the evidence approved, on nearly every page: no index narrows much"
            }
        }
    }

    pub fn parse(text: &str) -> Result<Distribution> {
        Distribution::ALL
            .into_iter()
            .find(|d| d.name() == text)
            .with_context(|| format!("unknown distribution '{text}': default or mature"))
    }

    /// Evidence row n is properly approved when n % 100 lies from 10 through the first number
    /// and n * 7 % 9 is below the second: default, the ten residues 10-19 together (as the
    /// data set always had); mature, four in nine of residues 10-98, scattered in short runs so
    /// that nearly every page holds approved rows. Residues below 10 and 99 stay the planted
    /// ones' alone.
    fn approved(self) -> (i64, i64) {
        match self {
            Distribution::Default => (19, 9),
            Distribution::Mature => (98, 4),
        }
    }

    /// assessment_sessions.status, by n % 4.
    fn session_statuses(self) -> Vec<String> {
        let statuses: [&str; 4] = match self {
            Distribution::Default => ["in_progress", "completed", "completed", "abandoned"],
            Distribution::Mature => ["completed", "completed", "completed", "in_progress"],
        };
        statuses.iter().map(|s| s.to_string()).collect()
    }

    /// generated_policies.status, by n % 4.
    fn policy_statuses(self) -> Vec<String> {
        let statuses: [&str; 4] = match self {
            Distribution::Default => ["draft", "reviewed", "approved", "published"],
            Distribution::Mature => ["reviewed", "approved", "published", "published"],
        };
        statuses.iter().map(|s| s.to_string()).collect()
    }
}

/// Row counts of the generated tables, and how their statuses spread.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Scale {
    pub distribution: Distribution,
    /// One per business profile: production's `business_profiles.user_id` is UNIQUE.
    pub users: i64,
    pub business_profiles: i64,
    pub assessment_sessions: i64,
    pub evidence_items: i64,
    pub generated_policies: i64,
}

impl Scale {
    pub fn of(factor: f64, distribution: Distribution) -> Scale {
        let rows = |base: f64| ((base * factor).round() as i64).max(100);
        Scale {
            distribution,
            users: rows(200_000.0),
            business_profiles: rows(200_000.0),
            assessment_sessions: rows(500_000.0),
            evidence_items: rows(2_000_000.0),
            generated_policies: rows(200_000.0),
        }
    }

    /// How many of `1..=rows` have `n % 100 == residue`.
    fn one_in_a_hundred(rows: i64, residue: i64) -> u64 {
        if rows < residue {
            0
        } else {
            ((rows - residue) / 100 + 1) as u64
        }
    }

    /// The violations the generator plants, by constraint name.
    pub fn expected_violations(&self) -> BTreeMap<&'static str, u64> {
        BTreeMap::from([
            (
                "chk_employee_count_positive",
                Self::one_in_a_hundred(self.business_profiles, 1),
            ),
            (
                "chk_data_sensitivity",
                Self::one_in_a_hundred(self.business_profiles, 2),
            ),
            (
                "chk_evidence_status",
                Self::one_in_a_hundred(self.evidence_items, 3),
            ),
            (
                "chk_approval_workflow",
                Self::one_in_a_hundred(self.evidence_items, 4),
            ),
            (
                "fk_assessment_business_profile",
                Self::one_in_a_hundred(self.assessment_sessions, 5),
            ),
            (
                "fk_generated_policy_business_profile",
                Self::one_in_a_hundred(self.generated_policies, 6),
            ),
        ])
    }
}

/// The tables the constraints read; the count(*) baseline scans the same ones.
pub const CHECKED_TABLES: &[&str] = &[
    "evidence_items",
    "business_profiles",
    "assessment_sessions",
    "generated_policies",
];

/// The five frameworks every framework_id points at: `md5('fw:' || k)::uuid`, k = 1..5, named by
/// the k-th of ISO27001, GDPR, SOC2, PCI_DSS, CYBER_ESSENTIALS.
const FRAMEWORKS: &str = r#"
INSERT INTO compliance_frameworks (id, name, display_name, description, category,
    applicable_indu, employee_thresh, revenue_thresho, geographic_scop, key_requirement,
    control_domains, evidence_types, relevance_facto, complexity_scor, implementation_,
    estimated_cost_, policy_template, control_templat, evidence_templa, is_active, version,
    created_at, updated_at)
SELECT md5('fw:' || k)::uuid, f.name, f.display_name,
       f.display_name || ': ' || f.summary || '. The framework defines the controls an organisation must operate, the evidence an auditor expects for each, and how often that evidence must be refreshed.',
       f.category,
       '["Technology", "Financial Services", "Healthcare", "Retail"]'::jsonb,
       (ARRAY[1, 50, 10, 1, 1])[k], '£0+', f.scope::jsonb,
       '["Risk assessment", "Access control", "Incident management", "Supplier management", "Business continuity"]'::jsonb,
       '["Governance", "People", "Physical", "Technological"]'::jsonb,
       '["policy", "procedure", "record", "screenshot", "log_export", "configuration"]'::jsonb,
       '{"handles_personal_data": 3, "processes_payments": 2, "stores_health_data": 2}'::jsonb,
       (ARRAY[4, 3, 4, 5, 2])[k], (ARRAY[9, 6, 12, 9, 3])[k],
       (ARRAY['£20K-£60K', '£10K-£30K', '£30K-£90K', '£25K-£75K', '£1K-£5K'])[k],
       repeat('# ' || f.display_name || E' policy\n\nPurpose, scope, roles and responsibilities, policy statements, compliance and review.\n', 4),
       '[{"id": "A.5.1", "title": "Policies for information security"}, {"id": "A.5.15", "title": "Access control"}]'::jsonb,
       '[{"type": "policy", "title": "Approved policy document"}, {"type": "record", "title": "Review minutes"}]'::jsonb,
       true, f.version,
       localtimestamp - interval '900 days', localtimestamp - interval '30 days'
  FROM (VALUES (1, 'ISO27001', 'ISO/IEC 27001', 'Information security management systems', 'security', '["Global"]', '2022'),
               (2, 'GDPR', 'UK GDPR', 'Protection of personal data of individuals', 'privacy', '["United Kingdom", "European Union"]', '2018'),
               (3, 'SOC2', 'SOC 2 Type II', 'Trust services criteria for service organisations', 'security', '["United States", "Global"]', '2017'),
               (4, 'PCI_DSS', 'PCI DSS', 'Security of payment card data', 'security', '["Global"]', '4.0'),
               (5, 'CYBER_ESSENTIALS', 'Cyber Essentials', 'UK baseline technical controls', 'security', '["United Kingdom"]', '3.1'))
       AS f(k, name, display_name, summary, category, scope, version)"#;

/// $1 rows. User n owns business profile n.
const USERS: &str = r#"
INSERT INTO users (id, email, hashed_password, is_active, created_at)
SELECT md5('u:' || n)::uuid,
       'compliance.lead' || n || '@company' || n || '.example.com',
       '$2b$12$' || substr(md5('salt:' || n) || md5('hash:' || n), 1, 53),
       n % 17 <> 0,
       localtimestamp - n * interval '1 minute'
  FROM generate_series(1, $1::bigint) AS n"#;

/// $1 rows. Residue 1: employee_count <= 0; residue 2: a sensitivity outside the list (the
/// application's 'Moderate' and 'Confidential', and others).
const BUSINESS_PROFILES: &str = r#"
INSERT INTO business_profiles (id, user_id, company_name, industry, employee_count,
    annual_revenue, country, data_sensitivity, handles_persona, processes_payme,
    stores_health_d, provides_financ, operates_critic, has_internation, cloud_providers,
    saas_tools, development_too, existing_framew, planned_framewo, compliance_budg,
    compliance_time, assessment_comp, assessment_data, created_at, updated_at)
SELECT md5('bp:' || n)::uuid,
       md5('u:' || n)::uuid,
       (ARRAY['Northwind', 'Contoso', 'Globex', 'Initech', 'Umbrella', 'Hooli', 'Vandelay', 'Acme'])[1 + n % 8]
           || ' ' || (ARRAY['Analytics', 'Health', 'Payments', 'Logistics', 'Software', 'Energy'])[1 + n / 8 % 6]
           || ' ' || n || ' Ltd',
       (ARRAY['Financial Services', 'Healthcare', 'Technology', 'Retail', 'Manufacturing', 'Education', 'Energy', 'Media'])[1 + n % 8],
       CASE WHEN n % 100 = 1 THEN -(n / 100 % 4)::int ELSE (1 + n * 7919 % 5000)::int END,
       (ARRAY['Under £1M', '£1M-£5M', '£5M-£25M', '£25M-£100M', 'Over £100M'])[1 + n % 5],
       (ARRAY['United Kingdom', 'Ireland', 'Germany', 'France', 'Netherlands', 'United States'])[1 + n % 6],
       CASE WHEN n % 100 = 2 THEN (ARRAY['Moderate', 'Confidential', 'high ', 'LOW', 'Restricted'])[1 + n / 100 % 5]
            ELSE (ARRAY['Low', 'Medium', 'High', 'Critical'])[1 + n % 4] END,
       n % 2 = 0, n % 3 = 0, n % 5 = 0, n % 7 = 0, n % 11 = 0, n % 13 = 0,
       (ARRAY['["AWS"]', '["AWS", "Azure"]', '["Google Cloud"]', '["Azure"]', '["AWS", "Google Cloud", "Cloudflare"]', '[]'])[1 + n % 6]::jsonb,
       (ARRAY['["Microsoft 365", "Slack", "Salesforce", "Xero"]', '["Google Workspace", "Slack", "HubSpot", "Zoom"]',
              '["Microsoft 365", "Teams", "SharePoint", "Sage"]', '["Google Workspace", "Notion", "Jira", "Okta"]'])[1 + n % 4]::jsonb,
       (ARRAY['["GitHub", "GitHub Actions", "Docker", "Terraform"]', '["GitLab", "Jenkins", "Kubernetes"]', '[]', '["Azure DevOps", "Visual Studio"]'])[1 + n % 4]::jsonb,
       (ARRAY['[]', '["GDPR"]', '["ISO27001", "GDPR"]', '["Cyber Essentials"]', '["SOC2"]'])[1 + n % 5]::jsonb,
       (ARRAY['["ISO27001"]', '["SOC2", "ISO27001"]', '["PCI_DSS"]', '["Cyber Essentials", "GDPR"]'])[1 + n % 4]::jsonb,
       (ARRAY['Under £10K', '£10K-£25K', '£25K-£50K', '£50K-£100K', 'Over £100K'])[1 + n % 5],
       (ARRAY['1-3 months', '3-6 months', '6-12 months', '12+ months'])[1 + n % 4],
       n % 3 <> 0,
       CASE WHEN n % 3 <> 0 THEN ('{"score": ' || n % 101 || ', "has_dpo": ' || (n % 2 = 0)
            || ', "remote_workers": "' || (ARRAY['none', 'some', 'most', 'all'])[1 + n % 4] || '"}')::jsonb END,
       localtimestamp - n * interval '1 minute', localtimestamp - n * interval '1 second'
  FROM generate_series(1, $1::bigint) AS n"#;

/// $1 rows, $2 profiles, $3 the statuses by n % 4. Residue 5: a link to no profile (planted with the foreign-key
/// triggers off); one in forty has no profile at all (NULL is allowed and passes).
const ASSESSMENT_SESSIONS: &str = r#"
INSERT INTO assessment_sessions (id, user_id, business_profil, session_type, status,
    current_stage, total_stages, questions_answe, total_questions, responses, calculated_scor,
    recommendations, started_at, last_activity, completed_at, recommended_fra, priority_order,
    next_steps, created_at, updated_at)
SELECT md5('as:' || n)::uuid,
       md5('u:' || p)::uuid,
       CASE WHEN n % 100 = 5 THEN md5('orphan-as:' || n)::uuid
            WHEN n % 40 = 3 THEN NULL
            ELSE md5('bp:' || p)::uuid END,
       (ARRAY['compliance_scoping', 'quick_assessment', 'full_assessment'])[1 + n % 3],
       ($3::text[])[1 + n % 4],
       (1 + n % 5)::int, 5, (n % 31)::int, 30,
       ('{"business_type": "' || (ARRAY['b2b_saas', 'retail', 'healthcare', 'fintech'])[1 + n % 4]
        || '", "employees": "' || (ARRAY['1-10', '11-50', '51-250', '251-1000'])[1 + n % 4]
        || '", "personal_data": ' || (n % 2 = 0) || ', "card_data": ' || (n % 5 = 0) || '}')::jsonb,
       ('{"overall": ' || (40 + n % 60) || ', "access_control": ' || (30 + n % 70)
        || ', "data_protection": ' || (20 + n % 80) || '}')::jsonb,
       CASE WHEN n % 4 IN (1, 2) THEN ('[{"framework": "' || (ARRAY['ISO27001', 'GDPR', 'SOC2', 'PCI_DSS', 'CYBER_ESSENTIALS'])[1 + n % 5]
        || '", "priority": "high"}]')::jsonb END,
       localtimestamp - n * interval '1 minute' - interval '2 hours',
       localtimestamp - n * interval '1 minute',
       CASE WHEN n % 4 IN (1, 2) THEN localtimestamp - n * interval '1 minute' END,
       (ARRAY['["ISO27001", "GDPR"]', '["SOC2"]', '["PCI_DSS", "ISO27001"]', '["CYBER_ESSENTIALS", "GDPR"]'])[1 + n % 4]::jsonb,
       (ARRAY['["GDPR", "ISO27001"]', '["SOC2"]', '["PCI_DSS", "ISO27001"]', '["GDPR", "CYBER_ESSENTIALS"]'])[1 + n % 4]::jsonb,
       CASE WHEN n % 4 IN (1, 2) THEN '["Appoint a security owner", "Run a gap analysis", "Train the staff"]'::jsonb END,
       localtimestamp - n * interval '1 minute' - interval '2 hours', localtimestamp - n * interval '1 second'
  FROM generate_series(1, $1::bigint) AS n,
       LATERAL (SELECT 1 + n * 7 % $2::bigint AS p) AS owner"#;

/// $1 rows, $2 profiles, $3 the statuses by n % 4. Residue 6: a link to no profile (planted with the foreign-key
/// triggers off; the column is NOT NULL, so there is no NULL link).
const GENERATED_POLICIES: &str = r#"
INSERT INTO generated_policies (id, user_id, business_profil, framework_id, policy_name,
    framework_name, policy_type, generation_prompt, generation_model, generation_time_seconds,
    policy_content, procedures, tool_recommendations, sections, controls, responsibilities,
    word_count, estimated_reading_time, compliance_coverage, status, review_notes, generated_at,
    reviewed_at, approved_at, created_at, updated_at)
SELECT md5('gp:' || n)::uuid,
       md5('u:' || p)::uuid,
       CASE WHEN n % 100 = 6 THEN md5('orphan-gp:' || n)::uuid ELSE md5('bp:' || p)::uuid END,
       md5('fw:' || k)::uuid,
       initcap(replace(kind, '_', ' ')) || ' Policy ' || n,
       (ARRAY['ISO27001', 'GDPR', 'SOC2', 'PCI_DSS', 'CYBER_ESSENTIALS'])[k],
       kind,
       'Write a ' || replace(kind, '_', ' ') || ' policy for company ' || p || ', a '
           || (ARRAY['small', 'medium-sized', 'large'])[1 + n % 3] || ' organisation in the '
           || (ARRAY['technology', 'healthcare', 'financial services', 'retail'])[1 + n % 4]
           || ' sector, aligned with ' || (ARRAY['ISO27001', 'GDPR', 'SOC2', 'PCI_DSS', 'CYBER_ESSENTIALS'])[k]
           || '. Name the roles responsible.',
       (ARRAY['gpt-4o', 'gpt-4o-mini', 'claude-3-5-sonnet'])[1 + n % 3],
       2 + (n % 900) / 10.0,
       '# ' || initcap(replace(kind, '_', ' ')) || E' Policy\n\n## 1. Purpose\nThis policy sets out how company ' || p
           || ' protects the confidentiality, integrity and availability of its information when it comes to '
           || replace(kind, '_', ' ') || E'.\n\n## 2. Scope\nAll employees, contractors and third parties with access to company systems.\n\n'
           || E'## 3. Policy statements\n' || repeat(E'- Access is granted on least privilege and reviewed every quarter.\n', (n % 3)::int)
           || E'\n## 4. Review\nThe policy is reviewed at least annually.\n',
       '[{"name": "Access review", "steps": ["Export the user list", "Confirm each role", "Remove leavers"]}]'::jsonb,
       '[{"tool": "Okta", "purpose": "SSO and MFA"}]'::jsonb,
       '["Purpose", "Scope", "Policy statements", "Compliance"]'::jsonb,
       ('[{"id": "A.5.' || (1 + n % 37) || '", "title": "Control ' || (1 + n % 37) || '"}, {"id": "A.8.' || (1 + n % 34) || '", "title": "Control ' || (1 + n % 34) || '"}]')::jsonb,
       '{"owner": "Information Security Manager", "approver": "Managing Director"}'::jsonb,
       (220 + n % 400)::int, (1 + n % 4)::int, (n % 100) / 100.0,
       ($3::text[])[1 + n % 4],
       CASE WHEN n % 4 >= 1 THEN 'Reviewed by the compliance lead; wording of section 3 tightened.' END,
       localtimestamp - n * interval '1 minute',
       CASE WHEN n % 4 >= 1 THEN localtimestamp - n * interval '30 seconds' END,
       CASE WHEN n % 4 >= 2 THEN localtimestamp - n * interval '20 seconds' END,
       localtimestamp - n * interval '1 minute', localtimestamp - n * interval '1 second'
  FROM generate_series(1, $1::bigint) AS n,
       LATERAL (SELECT 1 + n * 11 % $2::bigint AS p, (1 + n % 5)::int AS k,
                       (ARRAY['access_control', 'data_retention', 'incident_response', 'acceptable_use'])[1 + n % 4] AS kind) AS row_of"#;

/// $1 rows, $2 profiles, $3 and $4 which rows are properly approved
/// (`Distribution::approved`). Residue 3: a status outside the list (the application's
/// 'pending_review' and 'pending', and others); residue 4: approved without approved_at or
/// without approved_by; 99: no status at all (NULL passes).
const EVIDENCE_ITEMS: &str = r#"
INSERT INTO evidence_items (id, user_id, business_profile_id, framework_id, evidence_name,
    evidence_type, control_reference, description, required_for_audit, collection_frequency,
    collection_method, automation_source, automation_guidance, file_path, file_type,
    file_size_bytes, status, collection_notes, review_notes, collected_by, collected_at,
    reviewed_by, reviewed_at, approved_by, approved_at, priority, effort_estimate, audit_section,
    compliance_score_impact, ai_metadata, created_at, updated_at)
SELECT md5('ev:' || n)::uuid,
       md5('u:' || p)::uuid,
       md5('bp:' || p)::uuid,
       md5('fw:' || (1 + n % 5))::uuid,
       name || ' ' || n,
       (ARRAY['document', 'screenshot', 'policy', 'log_export', 'configuration', 'record'])[1 + n % 6],
       'A.' || (5 + n % 4) || '.' || (1 + n % 37),
       name || ' for control A.' || (5 + n % 4) || '.' || (1 + n % 37)
           || ': shows that the control operated throughout the audit period, with its owner and the systems in scope.',
       n % 3 <> 0,
       (ARRAY['monthly', 'quarterly', 'annually', 'on_change'])[1 + n % 4],
       (ARRAY['manual', 'automated', 'semi_automated'])[1 + n % 3],
       (ARRAY['aws_config', 'github', 'okta', 'google_workspace', NULL])[1 + n % 5],
       'Export the report from the admin console and upload it as a PDF.',
       '/evidence/' || p || '/' || n || '.pdf',
       'application/pdf',
       (10000 + n * 37 % 5000000)::int,
       CASE WHEN n % 100 = 3 THEN (ARRAY['pending_review', 'pending', 'Pending Review', 'done', 'awaiting upload'])[1 + n / 100 % 5]
            WHEN n % 100 = 4 OR n % 100 BETWEEN 10 AND $3::bigint AND n * 7 % 9 < $4::bigint THEN 'approved'
            WHEN n % 100 = 99 THEN NULL
            ELSE (ARRAY['not_started', 'in_progress', 'collected', 'rejected'])[1 + n % 4] END,
       CASE WHEN n % 2 = 0 THEN 'Collected from the production account.' END,
       CASE WHEN n % 100 BETWEEN 10 AND $3::bigint AND n * 7 % 9 < $4::bigint OR n % 4 = 3 THEN 'Checked against the control wording; dates and scope match.' END,
       collector,
       localtimestamp - (n % 365) * interval '1 day' - interval '2 days',
       CASE WHEN n % 100 BETWEEN 10 AND $3::bigint AND n * 7 % 9 < $4::bigint OR n % 4 = 3 THEN 'auditor' || (n % 50) || '@company' || p || '.example.com' END,
       CASE WHEN n % 100 BETWEEN 10 AND $3::bigint AND n * 7 % 9 < $4::bigint OR n % 4 = 3 THEN localtimestamp - (n % 365) * interval '1 day' - interval '1 day' END,
       CASE WHEN n % 100 BETWEEN 10 AND $3::bigint AND n * 7 % 9 < $4::bigint OR (n % 100 = 4 AND n / 100 % 2 = 0) THEN md5('u:' || p)::uuid::text END,
       CASE WHEN n % 100 BETWEEN 10 AND $3::bigint AND n * 7 % 9 < $4::bigint OR (n % 100 = 4 AND n / 100 % 2 = 1) THEN localtimestamp - (n % 365) * interval '1 day' END,
       (ARRAY['low', 'medium', 'high', 'critical'])[1 + n % 4],
       (ARRAY['30 minutes', '2 hours', '1 day', '3 days'])[1 + n % 4],
       'Annex A.' || (5 + n % 4),
       (n % 50) / 10.0,
       CASE WHEN n % 10 = 0 THEN ('{"classifier": "v2", "confidence": ' || (n % 100) / 100.0
            || ', "labels": ["' || (ARRAY['access_review', 'backup', 'training', 'vendor'])[1 + n % 4]
            || '"]}')::jsonb END,
       localtimestamp - n * interval '1 minute', localtimestamp - n * interval '1 second'
  FROM generate_series(1, $1::bigint) AS n,
       LATERAL (SELECT 1 + n * 13 % $2::bigint AS p,
                       (ARRAY['Access review', 'Firewall rules', 'Backup test', 'Training record', 'Vendor assessment', 'Incident log'])[1 + n % 6] AS name,
                       'compliance.lead' || (1 + n * 13 % $2::bigint) || '@company' || (1 + n * 13 % $2::bigint) || '.example.com' AS collector) AS row_of"#;

/// What building the dataset took.
#[derive(Debug, Clone, Serialize)]
pub struct Built {
    pub seconds: f64,
    pub database_bytes: i64,
}

/// Builds database `name` at version 7 and fills it; ends with VACUUM ANALYZE.
pub fn build(server: &Server, name: &str, scale: &Scale) -> Result<Built> {
    let started = Instant::now();
    server.create(name)?;
    let migrated = crate::child::run(&server.url(name), &["migrate", "--target", "7"])?;
    ensure!(
        migrated.code == 0,
        "ruleiq-db migrate --target 7 failed (exit {}): {}",
        migrated.code,
        migrated.last_error_line()
    );

    let mut client = server.connect(name)?;
    let indexes = secondary_indexes(&mut client)?;
    for (index, _) in &indexes {
        client.batch_execute(&format!("DROP INDEX {}", quote_ident(index)))?;
    }
    let s = *scale;
    let d = s.distribution;
    // Two loaders, one for the big table, one for the rest: the machine has two cores.
    let jobs: Vec<Vec<(&str, &str, Vec<Value>)>> = vec![
        vec![(
            "evidence_items",
            EVIDENCE_ITEMS,
            vec![
                Box::new(s.evidence_items),
                Box::new(s.business_profiles),
                Box::new(d.approved().0),
                Box::new(d.approved().1),
            ],
        )],
        vec![
            ("users", USERS, vec![Box::new(s.users)]),
            ("compliance_frameworks", FRAMEWORKS, vec![]),
            (
                "business_profiles",
                BUSINESS_PROFILES,
                vec![Box::new(s.business_profiles)],
            ),
            (
                "assessment_sessions",
                ASSESSMENT_SESSIONS,
                vec![
                    Box::new(s.assessment_sessions),
                    Box::new(s.business_profiles),
                    Box::new(d.session_statuses()),
                ],
            ),
            (
                "generated_policies",
                GENERATED_POLICIES,
                vec![
                    Box::new(s.generated_policies),
                    Box::new(s.business_profiles),
                    Box::new(d.policy_statuses()),
                ],
            ),
        ],
    ];
    run_in_parallel(server, name, jobs.into_iter().map(load_job).collect())?;

    // Index builds after the load are several times faster than maintaining them row by row.
    // Two builders: each index goes to the one with less work so far, biggest tables first
    // (an index's cost follows its table's size; the GIN index counts double).
    let mut sized: Vec<(i64, String)> = Vec::new();
    for (_, def) in &indexes {
        let table = indexed_table(def)?;
        let bytes: i64 = client
            .query_one(
                "SELECT pg_relation_size(to_regclass(quote_ident($1)))",
                &[&table],
            )?
            .get(0);
        let weight = if def.contains(" USING gin ") { 2 } else { 1 };
        sized.push((bytes * weight, def.clone()));
    }
    sized.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let mut halves: [(i64, Vec<String>); 2] = [(0, Vec::new()), (0, Vec::new())];
    for (cost, def) in sized {
        let lighter = usize::from(halves[1].0 < halves[0].0);
        halves[lighter].0 += cost;
        halves[lighter].1.push(def);
    }
    let index_jobs: Vec<Job> = halves
        .into_iter()
        .map(|(_, defs)| -> Job {
            Box::new(move |client: &mut Client| {
                client.batch_execute("SET maintenance_work_mem = '256MB'")?;
                for def in &defs {
                    client
                        .batch_execute(def)
                        .with_context(|| format!("recreating: {def}"))?;
                }
                Ok(())
            })
        })
        .collect();
    run_in_parallel(server, name, index_jobs)?;
    let after = secondary_indexes(&mut client)?;
    ensure!(
        after == indexes,
        "the secondary indexes after the load differ from version 7's"
    );

    client.batch_execute("VACUUM (ANALYZE)")?;
    let database_bytes: i64 = client
        .query_one("SELECT pg_database_size(current_database())", &[])?
        .get(0);
    Ok(Built {
        seconds: started.elapsed().as_secs_f64(),
        database_bytes,
    })
}

type Job = Box<dyn FnOnce(&mut Client) -> Result<()> + Send>;

/// A loader statement's parameter.
type Value = Box<dyn postgres::types::ToSql + Sync + Send>;

/// The table of a `CREATE [UNIQUE] INDEX name ON [schema.]table USING …` definition.
fn indexed_table(def: &str) -> Result<String> {
    let table = def
        .split_once(" ON ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .with_context(|| format!("unexpected index definition: {def}"))?;
    let table = table.rsplit('.').next().unwrap_or(table);
    Ok(table.trim_matches('"').to_string())
}

fn load_job(statements: Vec<(&'static str, &'static str, Vec<Value>)>) -> Job {
    Box::new(move |client: &mut Client| {
        // Replica role: the foreign-key triggers do not fire (superuser only, this session
        // only). That is what makes a bulk load fast (every other link holds by construction),
        // and the only way to plant the orphans of the two business_profil foreign keys
        // production already has, as a restore with triggers disabled would leave them.
        client.batch_execute("SET session_replication_role = replica")?;
        for (table, sql, counts) in statements {
            let params: Vec<&(dyn postgres::types::ToSql + Sync)> = counts
                .iter()
                .map(|c| c.as_ref() as &(dyn postgres::types::ToSql + Sync))
                .collect();
            client
                .execute(sql, &params)
                .with_context(|| format!("filling {table}"))?;
        }
        Ok(())
    })
}

fn run_in_parallel(server: &Server, db: &str, jobs: Vec<Job>) -> Result<()> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .into_iter()
            .map(|job| {
                scope.spawn(move || -> Result<()> {
                    let mut client = server.connect(db)?;
                    job(&mut client)
                })
            })
            .collect();
        for handle in handles {
            match handle.join() {
                Ok(result) => result?,
                Err(_) => bail!("a loader thread panicked"),
            }
        }
        Ok(())
    })
}

/// Indexes that back no constraint, with their definitions, by name.
fn secondary_indexes(client: &mut Client) -> Result<Vec<(String, String)>> {
    Ok(client
        .query(
            "SELECT i.indexname::text, i.indexdef
               FROM pg_indexes AS i
              WHERE i.schemaname = current_schema()
                AND NOT EXISTS (SELECT 1 FROM pg_constraint AS c
                                 WHERE c.conindid = to_regclass(quote_ident(i.indexname)))
              ORDER BY 1",
            &[],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// Turns off the pending list of every GIN index. With it on (PostgreSQL's default), an INSERT
/// that finds the list over `gin_pending_list_limit` merges it into the index itself, and
/// waits for that: the application's own periodic stalls, migration or not.
pub fn gin_fastupdate_off(client: &mut Client) -> Result<()> {
    let indexes: Vec<String> = client
        .query(
            "SELECT indexname::text FROM pg_indexes
              WHERE schemaname = current_schema() AND indexdef LIKE '% USING gin %'",
            &[],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for index in indexes {
        client.batch_execute(&format!(
            "ALTER INDEX {} SET (fastupdate = off)",
            quote_ident(&index)
        ))?;
    }
    Ok(())
}

/// Time of one `SELECT count(*)` over each checked table, back to back on one connection.
pub fn count_pass(client: &mut Client) -> Result<Duration> {
    let started = Instant::now();
    for table in CHECKED_TABLES {
        client.query_one(&format!("SELECT count(*) FROM {}", qualified(table)), &[])?;
    }
    Ok(started.elapsed())
}
