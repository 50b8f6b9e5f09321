//! The version-7 database the benchmark works on: built by the real binary (`migrate --target
//! 7`), then filled server-side with generate_series. Every id is `md5(prefix || n)::uuid`, so a
//! child row can name its parent by number without a lookup, and the ids still scatter over the
//! primary key index as production's random UUIDs do.
//!
//! One row in a hundred violates each catalog constraint, each at its own residue of n mod 100,
//! so the expected count of every constraint is exact and the checker's answer can be verified.

use crate::server::Server;
use anyhow::{bail, ensure, Context, Result};
use postgres::Client;
use ruleiq_db::catalog::sql::quote_ident;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Row counts of the generated tables.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Scale {
    pub users: i64,
    pub business_profiles: i64,
    pub assessment_sessions: i64,
    pub evidence_items: i64,
    pub generated_policies: i64,
}

impl Scale {
    pub fn of(factor: f64) -> Scale {
        let rows = |base: f64| ((base * factor).round() as i64).max(100);
        Scale {
            users: rows(20_000.0),
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

const USERS: &str = r#"
INSERT INTO users (id, email, hashed_password, is_active, created_at, updated_at)
SELECT md5('u:' || n)::uuid, 'user' || n || '@example.com', 'x', n % 17 <> 0,
       now() - n * interval '1 minute', now() - n * interval '1 second'
  FROM generate_series(1, $1::bigint) AS n"#;

const FRAMEWORKS: &str = r#"
INSERT INTO compliance_frameworks (id, name, description, version, category, controls) VALUES
  ('iso27001', 'ISO/IEC 27001', 'Information security management', '2022', 'security', '[{"id": "A.5.1"}]'),
  ('gdpr', 'GDPR', 'EU data protection', '2016', 'privacy', '[]'),
  ('soc2', 'SOC 2', 'Trust services criteria', '2017', 'security', '[]'),
  ('pci_dss', 'PCI DSS', 'Payment card security', '4.0', 'security', '[]'),
  ('cyber_essentials', 'Cyber Essentials', 'UK baseline controls', '3.1', 'security', '[]')"#;

/// $1 rows, $2 users. Residue 1: employee_count <= 0; residue 2: a misspelt sensitivity.
const BUSINESS_PROFILES: &str = r#"
INSERT INTO business_profiles (id, user_id, company_name, industry, employee_count,
    handles_persona, processes_payme, stores_health_d, provides_financ, operates_critic,
    has_internation, data_sensitivity, created_at, updated_at)
SELECT md5('bp:' || n)::uuid,
       md5('u:' || (1 + n % $2::bigint))::uuid,
       'Company ' || n || ' Ltd',
       (ARRAY['retail', 'technology', 'finance', 'healthcare', 'media', 'defence'])[1 + n % 6],
       CASE WHEN n % 100 = 1 THEN -(n / 100 % 4)::int
            WHEN n % 50 = 7 THEN NULL
            ELSE (1 + n * 7919 % 5000)::int END,
       n % 2 = 0, n % 3 = 0, n % 5 = 0, n % 7 = 0, n % 11 = 0, n % 13 = 0,
       CASE WHEN n % 100 = 2 THEN (ARRAY['high ', 'critical', 'Confidential', 'LOW', ' medium'])[1 + n / 100 % 5]
            WHEN n % 50 = 9 THEN NULL
            ELSE (ARRAY['Low', 'Medium', 'High', 'Critical'])[1 + n % 4] END,
       now() - n * interval '1 minute', now() - n * interval '1 second'
  FROM generate_series(1, $1::bigint) AS n"#;

/// $1 rows, $2 users, $3 profiles. Residue 5: a link to no profile.
const ASSESSMENT_SESSIONS: &str = r#"
INSERT INTO assessment_sessions (id, user_id, business_profil, framework_id, session_name, status,
    questions_answe, progress_percentage, created_at, updated_at)
SELECT md5('as:' || n)::uuid,
       md5('u:' || (1 + n % $2::bigint))::uuid,
       CASE WHEN n % 100 = 5 THEN md5('orphan-as:' || n)::uuid
            WHEN n % 40 = 3 THEN NULL
            ELSE md5('bp:' || (1 + n * 7 % $3::bigint))::uuid END,
       (ARRAY['iso27001', 'gdpr', 'soc2', 'pci_dss', 'cyber_essentials'])[1 + n % 5],
       'Assessment ' || n,
       (ARRAY['not_started', 'in_progress', 'completed'])[1 + n % 3],
       CASE WHEN n % 3 = 0 THEN jsonb_build_object('q1', n % 2 = 0, 'q2', 'answer ' || n) END,
       (n % 101)::numeric,
       now() - n * interval '1 minute', now() - n * interval '1 second'
  FROM generate_series(1, $1::bigint) AS n"#;

/// $1 rows, $2 users, $3 profiles. Residue 6: a link to no profile.
const GENERATED_POLICIES: &str = r#"
INSERT INTO generated_policies (id, user_id, business_profil, framework_id, policy_name,
    policy_type, content, status, version, created_at, updated_at)
SELECT md5('gp:' || n)::uuid,
       md5('u:' || (1 + n % $2::bigint))::uuid,
       CASE WHEN n % 100 = 6 THEN md5('orphan-gp:' || n)::uuid
            WHEN n % 40 = 3 THEN NULL
            ELSE md5('bp:' || (1 + n * 11 % $3::bigint))::uuid END,
       (ARRAY['iso27001', 'gdpr', 'soc2', 'pci_dss', 'cyber_essentials'])[1 + n % 5],
       'Policy ' || n,
       (ARRAY['access_control', 'data_retention', 'incident_response', 'acceptable_use'])[1 + n % 4],
       repeat('This policy sets out how company ' || n || ' protects information. ', (1 + n % 8)::int),
       (ARRAY['draft', 'approved', 'published'])[1 + n % 3],
       1 + (n % 4)::int,
       now() - n * interval '1 minute', now() - n * interval '1 second'
  FROM generate_series(1, $1::bigint) AS n"#;

/// $1 rows, $2 users, $3 profiles. Residue 3: a misspelt status; residue 4: approved without
/// approved_at; residues 10-19: properly approved; 99: no status at all (NULL passes).
const EVIDENCE_ITEMS: &str = r#"
INSERT INTO evidence_items (id, user_id, business_profile_id, framework_id, evidence_name,
    control_reference, file_path, file_type, file_size, status, priority, created_at, updated_at,
    ai_metadata, approved_at, approved_by)
SELECT md5('ev:' || n)::uuid,
       md5('u:' || (1 + n % $2::bigint))::uuid,
       md5('bp:' || (1 + n * 13 % $3::bigint))::uuid,
       (ARRAY['iso27001', 'gdpr', 'soc2', 'pci_dss', 'cyber_essentials'])[1 + n % 5],
       (ARRAY['Access review', 'Firewall rules', 'Backup test', 'Training record', 'Vendor assessment', 'Incident log'])[1 + n % 6] || ' ' || n,
       'A.' || (5 + n % 14) || '.' || (1 + n % 9),
       '/evidence/' || (n % 1000) || '/' || n || '.pdf',
       'application/pdf',
       (n * 37 % 5000000)::int,
       CASE WHEN n % 100 = 3 THEN (ARRAY['Approved', 'done', 'In Progress', ' rejected', 'pending-review'])[1 + n / 100 % 5]
            WHEN n % 100 = 4 OR n % 100 BETWEEN 10 AND 19 THEN 'approved'
            WHEN n % 100 = 99 THEN NULL
            ELSE (ARRAY['not_started', 'in_progress', 'collected', 'rejected'])[1 + n % 4] END,
       (ARRAY['low', 'medium', 'high'])[1 + n % 3],
       now() - n * interval '1 minute', now() - n * interval '1 second',
       CASE WHEN n % 10 = 0 THEN jsonb_build_object('classifier', 'v2', 'confidence', (n % 100) / 100.0) END,
       CASE WHEN n % 100 BETWEEN 10 AND 19 THEN now() - (n % 365) * interval '1 day' END,
       CASE WHEN n % 100 = 4 OR n % 100 BETWEEN 10 AND 19 THEN md5('u:' || (1 + n * 3 % $2::bigint))::uuid END
  FROM generate_series(1, $1::bigint) AS n"#;

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
    // Two loaders, one for the big table, one for the rest: the machine has two cores.
    let jobs: Vec<Vec<(&str, &str, Vec<i64>)>> = vec![
        vec![(
            "evidence_items",
            EVIDENCE_ITEMS,
            vec![s.evidence_items, s.users, s.business_profiles],
        )],
        vec![
            ("users", USERS, vec![s.users]),
            ("compliance_frameworks", FRAMEWORKS, vec![]),
            (
                "business_profiles",
                BUSINESS_PROFILES,
                vec![s.business_profiles, s.users],
            ),
            (
                "assessment_sessions",
                ASSESSMENT_SESSIONS,
                vec![s.assessment_sessions, s.users, s.business_profiles],
            ),
            (
                "generated_policies",
                GENERATED_POLICIES,
                vec![s.generated_policies, s.users, s.business_profiles],
            ),
        ],
    ];
    run_in_parallel(server, name, jobs.into_iter().map(load_job).collect())?;

    // Index builds after the load are several times faster than maintaining them row by row.
    let mut halves: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    let mut by_size = indexes
        .iter()
        .map(|(_, def)| def.clone())
        .collect::<Vec<_>>();
    // The trigram index is the slowest; give it a loader of its own.
    by_size.sort_by_key(|def| std::cmp::Reverse(def.contains("gin_trgm_ops")));
    for (i, def) in by_size.into_iter().enumerate() {
        halves[usize::from(i != 0)].push(def);
    }
    let index_jobs: Vec<Job> = halves
        .into_iter()
        .map(|defs| -> Job {
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

fn load_job(statements: Vec<(&'static str, &'static str, Vec<i64>)>) -> Job {
    Box::new(move |client: &mut Client| {
        // Foreign keys of the legacy schema hold by construction; skipping their per-row
        // triggers is what makes a bulk load fast (superuser only, this session only).
        client.batch_execute("SET session_replication_role = replica")?;
        for (table, sql, counts) in statements {
            let params: Vec<&(dyn postgres::types::ToSql + Sync)> = counts
                .iter()
                .map(|c| c as &(dyn postgres::types::ToSql + Sync))
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
        client.query_one(&format!("SELECT count(*) FROM {}", quote_ident(table)), &[])?;
    }
    Ok(started.elapsed())
}
