//! The application's own queries, the three of the ruleIQ design note's PERFORMANCE_QUERIES
//! (evidence search with ILIKE and pagination, the assessment dashboard joining sessions to
//! business profiles, the compliance overview by framework), spelled with the legacy and with
//! the full column names. `rehearse` runs them after 008 the way old and new application code
//! would: through the compatibility schema, and the full-name ones also against the tables, and
//! checks that every spelling returns the same rows.

use crate::catalog::compat::SEARCH_PATH;
use crate::catalog::sql::APP_SCHEMA;
use crate::db::config::Target;
use crate::db::Query;
use anyhow::{Context, Result};
use postgres::Client;
use serde::Serialize;

/// Which column names a release of the application uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Names {
    Legacy,
    Full,
}

/// One query run: which, how spelled, through which search_path, and what came of it.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub query: &'static str,
    pub names: Names,
    pub search_path: &'static str,
    pub rows: Option<usize>,
    /// The error, or a difference from the rows the other spellings returned.
    pub problem: Option<String>,
}

/// The three queries, spelled with `names`. Parameters: $1 user id (text), $2 statuses,
/// $3 ILIKE pattern, $4 limit, $5 offset (only the evidence search takes $2..$5).
pub fn queries(names: Names) -> [(&'static str, String); 3] {
    // The legacy spellings come from the rename map, the one list of them.
    let pick = |table: &str, full: &'static str| match names {
        Names::Legacy => crate::catalog::renames::legacy_name(table, full)
            .expect("every column the queries rename is in the rename map"),
        Names::Full => full,
    };
    let persona = pick("business_profiles", "handles_personal_data");
    let profile = pick("assessment_sessions", "business_profile_id");
    let answered = pick("assessment_sessions", "questions_answered");
    [
        (
            "evidence_search",
            format!(
                "SELECT e.id, e.evidence_name, e.status, bp.{persona}
                   FROM evidence_items e JOIN business_profiles bp ON bp.id = e.business_profile_id
                  WHERE e.user_id = $1::text::uuid AND e.status = ANY($2) AND e.evidence_name ILIKE $3
                  ORDER BY e.created_at DESC, e.id LIMIT $4 OFFSET $5"
            ),
        ),
        (
            "assessment_dashboard",
            format!(
                "SELECT a.id, a.status, a.{answered}, bp.company_name
                   FROM assessment_sessions a JOIN business_profiles bp ON a.{profile} = bp.id
                  WHERE a.user_id = $1::text::uuid
                  ORDER BY a.updated_at DESC, a.id"
            ),
        ),
        (
            "compliance_overview",
            format!(
                "SELECT e.framework_id, COUNT(*) AS total_items,
                        COUNT(CASE WHEN e.status = 'approved' THEN 1 END) AS approved_count,
                        (SELECT count(*) FROM generated_policies g
                          WHERE g.framework_id = e.framework_id AND g.{profile} = e.business_profile_id) AS policies
                   FROM evidence_items e
                  WHERE e.user_id = $1::text::uuid
                  GROUP BY e.framework_id, e.business_profile_id
                  ORDER BY e.framework_id"
            ),
        ),
    ]
}

/// Runs every query, legacy and full names through the compatibility schema and full names
/// against the tables, for the user with the most evidence. A run has a problem when it fails or
/// returns other rows than the full-name query against the tables.
pub fn run_all(target: &Target) -> Result<Vec<Run>> {
    let mut tables = crate::db::connect(target)?;
    // ruleiq-db's own statement, on the safe search_path every connection of ours starts with.
    let user: String = tables
        .row(
            "SELECT coalesce((SELECT user_id::text FROM public.evidence_items GROUP BY user_id ORDER BY count(*) DESC, user_id LIMIT 1), '00000000-0000-0000-0000-000000000000')",
            &[],
        )?
        .get(0);
    // From here on both connections only play the application's queries, unqualified as the
    // application sends them, under the search_path each release of it uses: the tables' own
    // schema, and the compatibility schema before it.
    tables
        .batch(&format!("SET search_path = {APP_SCHEMA}"))
        .context("setting the application's search_path")?;
    let mut app = crate::db::connect(target)?;
    app.batch(&format!("SET search_path = {SEARCH_PATH}"))
        .context("setting the application's search_path")?;
    let mut runs = Vec::new();
    let full = queries(Names::Full);
    let legacy = queries(Names::Legacy);
    for (i, (query, sql)) in full.iter().enumerate() {
        let expected = rows(&mut tables, query, sql, &user);
        runs.push(run(query, Names::Full, APP_SCHEMA, &expected, &expected));
        let through = rows(&mut app, query, sql, &user);
        runs.push(run(query, Names::Full, SEARCH_PATH, &through, &expected));
        let old = rows(&mut app, query, &legacy[i].1, &user);
        runs.push(run(query, Names::Legacy, SEARCH_PATH, &old, &expected));
    }
    Ok(runs)
}

/// A query's rows as text, in its order.
fn rows(client: &mut Client, query: &str, sql: &str, user: &String) -> Result<Vec<String>, String> {
    let wrapped = format!("SELECT row(q.*)::text FROM ({sql}) q");
    let result = if query == "evidence_search" {
        let statuses = vec!["approved".to_string(), "collected".to_string()];
        client.rows(&wrapped, &[user, &statuses, &"%", &20i64, &0i64])
    } else {
        client.rows(&wrapped, &[user])
    };
    result
        .map(|rows| rows.iter().map(|r| r.get(0)).collect())
        .map_err(|e| {
            e.as_db_error()
                .map_or_else(|| e.to_string(), |d| d.message().to_string())
        })
}

fn run(
    query: &'static str,
    names: Names,
    search_path: &'static str,
    got: &Result<Vec<String>, String>,
    expected: &Result<Vec<String>, String>,
) -> Run {
    let problem = match (got, expected) {
        (Err(e), _) => Some(e.clone()),
        (Ok(_), Err(_)) => Some("no rows to compare with: the full-name query failed".into()),
        (Ok(g), Ok(e)) if g != e => Some(format!(
            "{} rows, where the full names against the tables give {}",
            g.len(),
            e.len()
        )),
        _ => None,
    };
    Run {
        query,
        names,
        search_path,
        rows: got.as_ref().ok().map(Vec::len),
        problem,
    }
}
