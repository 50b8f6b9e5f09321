//! Before and after, measured: the application's three queries (the design note's evidence
//! search, assessment dashboard and compliance overview, `crate::app_queries`) with parameters
//! taken from the loaded data, and a DBA's own (`--queries FILE`), run at version 7 with the
//! legacy names, then at version 8 with the full names against the tables and with the legacy
//! names through `ruleiq_compat`. For each: the rows (a checksum of the sorted rows), the plan's
//! shape (node types, relations and indexes from `EXPLAIN (FORMAT JSON)`, no costs) and the
//! median time of several warm runs after a warm-up.
//!
//! The queries are the application's, so they run as the application runs them: unqualified,
//! on a connection of their own, with the application's search_path set for their transaction
//! (`SET LOCAL`). Every run is in a transaction that is rolled back, so a query that writes
//! leaves nothing behind. Statistics are gathered (`ANALYZE`) before each measurement: a freshly
//! loaded database has none, and the plans of both versions should come from the same data.
//! Times are server-side (planning + execution, `EXPLAIN (ANALYZE, TIMING OFF)`), so the
//! network between here and the server does not count.

use super::named_params::{QuerySpec, Untyped};
use crate::app_queries::{queries, Names};
use crate::catalog::compat::SEARCH_PATH as COMPAT_PATH;
use crate::db::config::Target;
use crate::db::{Param, Query};
use anyhow::{Context as _, Result};
use postgres::Client;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// Timed runs per query and version, after one warm-up run.
pub const RUNS: usize = 5;

/// A slowdown is named when the new time exceeds the old by more than this share…
pub const SLOWER_SHARE: f64 = 0.5;
/// …and by more than this many milliseconds (below it, noise).
pub const SLOWER_FLOOR_MS: f64 = 1.0;

/// How one query went at one version.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Measured {
    pub rows: i64,
    /// md5 of the rows as text, sorted.
    pub checksum: String,
    pub plan: String,
    pub median_ms: f64,
}

/// The queries measured at version 7, ready to be compared with version 8.
#[derive(Debug, Clone)]
pub struct Before {
    pub specs: Vec<QuerySpec>,
    pub measured: Vec<Result<Measured, String>>,
}

/// One query, before and after (the report's `queries` entries).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Comparison {
    pub name: String,
    pub params: BTreeMap<String, Option<String>>,
    /// Rows at version 7 (null when the query failed there).
    pub rows: Option<i64>,
    /// Whether all three runs returned the same rows.
    pub rows_same: bool,
    pub before_ms: Option<f64>,
    pub after_ms: Option<f64>,
    pub after_compat_ms: Option<f64>,
    pub plan_before: Option<String>,
    pub plan_after: Option<String>,
    pub plan_after_compat: Option<String>,
    pub plan_changed: bool,
    pub slower: bool,
    /// What went wrong or changed, in words (null when nothing did).
    pub problem: Option<String>,
}

/// The application's three queries with parameters from the data (the user with the most
/// evidence, the statuses of most of their evidence, a word of one of its names), spelled
/// with the legacy names before and the full names after. Reads version 7's tables.
pub fn application(client: &mut Client) -> Result<Vec<QuerySpec>> {
    let user: String = client
        .row(
            "SELECT coalesce((SELECT e.user_id::text FROM public.evidence_items e GROUP BY e.user_id ORDER BY pg_catalog.count(*) DESC, e.user_id LIMIT 1), '00000000-0000-0000-0000-000000000000')",
            &[],
        )
        .context("choosing a user with evidence")?
        .get(0);
    let mut statuses: Vec<String> = client
        .rows(
            "SELECT e.status::text FROM public.evidence_items e WHERE e.user_id = $1::uuid AND e.status IS NOT NULL GROUP BY e.status ORDER BY pg_catalog.count(*) DESC, e.status LIMIT 2",
            &[&user],
        )
        .context("choosing the statuses to search")?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if statuses.is_empty() {
        statuses.push("collected".into());
    }
    let name: Option<String> = client
        .row_opt(
            "SELECT e.evidence_name::text FROM public.evidence_items e WHERE e.user_id = $1::uuid AND e.status::text = ANY($2) AND e.evidence_name IS NOT NULL ORDER BY e.created_at DESC, e.id LIMIT 1",
            &[&user, &statuses],
        )
        .context("choosing a name to search for")?
        .map(|r| r.get(0));
    let pattern = name_pattern(name.as_deref().unwrap_or(""));
    let status_list = format!(
        "{{{}}}",
        statuses
            .iter()
            .map(|s| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")))
            .collect::<Vec<_>>()
            .join(",")
    );
    let legacy = queries(Names::Legacy);
    let full = queries(Names::Full);
    Ok(legacy
        .into_iter()
        .zip(full)
        .map(|((name, before), (_, after))| {
            let mut shown = BTreeMap::from([("user_id".to_string(), Some(user.clone()))]);
            let mut params = vec![Some(user.clone())];
            if name == "evidence_search" {
                shown.insert("statuses".into(), Some(status_list.clone()));
                shown.insert("name_pattern".into(), Some(pattern.clone()));
                shown.insert("limit".into(), Some("20".into()));
                shown.insert("offset".into(), Some("0".into()));
                params.extend([
                    Some(status_list.clone()),
                    Some(pattern.clone()),
                    Some("20".into()),
                    Some("0".into()),
                ]);
            }
            QuerySpec {
                name: name.to_string(),
                sql_before: before,
                sql_after: after,
                params,
                shown,
            }
        })
        .collect())
}

/// An ILIKE pattern for the first word of `name` (its wildcards escaped); `%` for none.
fn name_pattern(name: &str) -> String {
    let word = name.split_whitespace().next().unwrap_or("");
    let escaped = word
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// At version 7: the application's queries and `extra` with the legacy names.
pub fn before(target: &Target, extra: &[QuerySpec]) -> Result<Before> {
    let mut client = crate::db::connect(target)?;
    analyze(&mut client)?;
    let mut specs = application(&mut client)?;
    specs.extend(extra.iter().cloned());
    let measured = specs
        .iter()
        .map(|s| measure(&mut client, &s.sql_before, &s.params, "public"))
        .collect();
    Ok(Before { specs, measured })
}

/// At version 8: each query with the full names against the tables and with the legacy names
/// through the compatibility schema, compared with version 7.
pub fn after(target: &Target, before: &Before) -> Result<Vec<Comparison>> {
    let mut client = crate::db::connect(target)?;
    analyze(&mut client)?;
    Ok(before
        .specs
        .iter()
        .zip(&before.measured)
        .map(|(spec, was)| {
            let now = measure(&mut client, &spec.sql_after, &spec.params, "public");
            let compat = measure(&mut client, &spec.sql_before, &spec.params, COMPAT_PATH);
            compare(spec, was, &now, &compat)
        })
        .collect())
}

/// Gathers statistics, so that both versions are planned from the same picture of the data.
fn analyze(client: &mut Client) -> Result<()> {
    client
        .batch("ANALYZE")
        .context("gathering statistics (ANALYZE) before measuring the queries")
}

/// One query at one version: rows, plan, median time. Each statement runs in a transaction
/// that is rolled back, with the application's search_path.
pub fn measure(
    client: &mut Client,
    sql: &str,
    params: &[Option<String>],
    search_path: &str,
) -> Result<Measured, String> {
    let values: Vec<Untyped> = params.iter().cloned().map(Untyped).collect();
    let bound: Vec<&dyn Param> = values.iter().map(|v| v as &dyn Param).collect();
    let mut run = |statement: &str| -> Result<postgres::Row, String> {
        let mut tx = client.transaction().map_err(|e| message(&e))?;
        tx.batch(&format!("SET LOCAL search_path = {search_path}"))
            .map_err(|e| message(&e))?;
        let row = tx.row(statement, &bound).map_err(|e| message(&e))?;
        tx.rollback().map_err(|e| message(&e))?;
        Ok(row)
    };
    let rows = run(&format!(
        "WITH q AS ({sql}\n) SELECT pg_catalog.count(*)::int8, coalesce(pg_catalog.md5(pg_catalog.string_agg(q::text, E'\\n' ORDER BY q::text COLLATE pg_catalog.\"C\")), '') FROM q"
    ))?;
    let explain = format!("EXPLAIN (ANALYZE, TIMING OFF, SUMMARY ON, FORMAT JSON) {sql}");
    let mut plan = String::new();
    let mut times = Vec::with_capacity(RUNS);
    for i in 0..=RUNS {
        let row = run(&explain)?;
        let json: Value = row.get(0);
        let top = &json[0];
        if i == 0 {
            // The warm-up run: its plan is the one shown, its time is not counted.
            plan = plan_shape(&top["Plan"]);
            continue;
        }
        let ms = top["Planning Time"].as_f64().unwrap_or(0.0)
            + top["Execution Time"].as_f64().unwrap_or(0.0);
        times.push(ms);
    }
    Ok(Measured {
        rows: rows.get(0),
        checksum: rows.get(1),
        plan,
        median_ms: median(&mut times),
    })
}

fn message(e: &postgres::Error) -> String {
    e.as_db_error()
        .map_or_else(|| e.to_string(), |d| d.message().to_string())
}

/// The median, rounded to a hundredth of a millisecond.
fn median(times: &mut [f64]) -> f64 {
    if times.is_empty() {
        return 0.0;
    }
    times.sort_by(f64::total_cmp);
    let mid = times.len() / 2;
    let m = if times.len() % 2 == 0 {
        (times[mid - 1] + times[mid]) / 2.0
    } else {
        times[mid]
    };
    (m * 100.0).round() / 100.0
}

/// A plan's shape without costs, rows or times: `Limit → Sort → Hash Join(Seq Scan on
/// evidence_items, Hash → Seq Scan on business_profiles)`; an index scan names its index.
pub fn plan_shape(node: &Value) -> String {
    let mut text = node["Node Type"].as_str().unwrap_or("?").to_string();
    if let Some(strategy) = node["Strategy"].as_str().filter(|_| text == "Aggregate") {
        text = format!("{strategy} {text}");
    }
    if let Some(index) = node["Index Name"].as_str() {
        text.push_str(&format!(" using {index}"));
    }
    if let Some(relation) = node["Relation Name"].as_str() {
        text.push_str(&format!(" on {relation}"));
    }
    let children: Vec<String> = node["Plans"]
        .as_array()
        .map(|plans| plans.iter().map(plan_shape).collect())
        .unwrap_or_default();
    match children.len() {
        0 => text,
        1 => format!("{text} → {}", children[0]),
        _ => format!("{text}({})", children.join(", ")),
    }
}

/// Whether `after` is slower than `before` beyond both the share and the floor.
pub fn is_slower(before_ms: f64, after_ms: f64) -> bool {
    after_ms > before_ms * (1.0 + SLOWER_SHARE) && after_ms - before_ms > SLOWER_FLOOR_MS
}

/// One query's three runs compared.
pub fn compare(
    spec: &QuerySpec,
    before: &Result<Measured, String>,
    after: &Result<Measured, String>,
    compat: &Result<Measured, String>,
) -> Comparison {
    let ok = |m: &Result<Measured, String>| m.as_ref().ok().cloned();
    let (b, a, c) = (ok(before), ok(after), ok(compat));
    let mut problems = Vec::new();
    for (what, result) in [
        ("at version 7", before),
        ("at version 8 with the full names", after),
        ("at version 8 through ruleiq_compat", compat),
    ] {
        if let Err(e) = result {
            problems.push(format!("failed {what}: {e}"));
        }
    }
    let same = |x: &Option<Measured>, y: &Option<Measured>| match (x, y) {
        (Some(x), Some(y)) => x.rows == y.rows && x.checksum == y.checksum,
        _ => false,
    };
    let rows_same = same(&b, &a) && same(&b, &c);
    if b.is_some() && a.is_some() && !same(&b, &a) {
        problems.push(format!(
            "other rows at version 8 ({} rows, where version 7 gave {})",
            a.as_ref().map_or(0, |m| m.rows),
            b.as_ref().map_or(0, |m| m.rows)
        ));
    }
    if b.is_some() && c.is_some() && !same(&b, &c) {
        problems.push(format!(
            "other rows through ruleiq_compat ({} rows, where version 7 gave {})",
            c.as_ref().map_or(0, |m| m.rows),
            b.as_ref().map_or(0, |m| m.rows)
        ));
    }
    let plan = |m: &Option<Measured>| m.as_ref().map(|m| m.plan.clone());
    let plan_changed = [&a, &c]
        .iter()
        .any(|m| b.is_some() && m.is_some() && plan(m) != plan(&b));
    let time = |m: &Option<Measured>| m.as_ref().map(|m| m.median_ms);
    let slower = match time(&b) {
        Some(was) => [time(&a), time(&c)]
            .into_iter()
            .flatten()
            .any(|now| is_slower(was, now)),
        None => false,
    };
    Comparison {
        name: spec.name.clone(),
        params: spec.shown.clone(),
        rows: b.as_ref().map(|m| m.rows),
        rows_same,
        before_ms: time(&b),
        after_ms: time(&a),
        after_compat_ms: time(&c),
        plan_before: plan(&b),
        plan_after: plan(&a),
        plan_after_compat: plan(&c),
        plan_changed,
        slower,
        problem: (!problems.is_empty()).then(|| problems.join("; ")),
    }
}

/// The summary of the measurement at version 8, for the rehearsal's step.
pub fn summary(compared: &[Comparison]) -> String {
    let named = |pick: fn(&Comparison) -> bool| -> Vec<&str> {
        compared
            .iter()
            .filter(|c| pick(c))
            .map(|c| c.name.as_str())
            .collect()
    };
    let failed = named(|c| !c.rows_same || c.problem.is_some());
    let changed = named(|c| c.plan_changed);
    let slower = named(|c| c.slower);
    let mut parts = vec![if failed.is_empty() {
        format!("{} queries, same rows before and after", compared.len())
    } else {
        format!(
            "{} of {} queries differ or fail: {}",
            failed.len(),
            compared.len(),
            failed.join(", ")
        )
    }];
    parts.push(if changed.is_empty() {
        "no plan changed".to_string()
    } else {
        format!("plan changed: {}", changed.join(", "))
    });
    parts.push(if slower.is_empty() {
        "none slower".to_string()
    } else {
        format!("slower: {}", slower.join(", "))
    });
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_is_its_nodes_relations_and_indexes_without_costs() {
        let plan = serde_json::json!({
            "Node Type": "Limit", "Total Cost": 12.5,
            "Plans": [{
                "Node Type": "Nested Loop", "Plans": [
                    {"Node Type": "Index Scan", "Index Name": "idx_evidence_items_user_status", "Relation Name": "evidence_items", "Actual Rows": 3},
                    {"Node Type": "Seq Scan", "Relation Name": "business_profiles"}
                ]
            }]
        });
        assert_eq!(
            plan_shape(&plan),
            "Limit → Nested Loop(Index Scan using idx_evidence_items_user_status on evidence_items, Seq Scan on business_profiles)"
        );
    }

    #[test]
    fn slower_means_beyond_half_and_beyond_a_millisecond() {
        assert!(!is_slower(0.2, 0.9), "tripled, but under a millisecond");
        assert!(!is_slower(10.0, 14.0), "40 % slower");
        assert!(is_slower(10.0, 15.5));
        assert!(is_slower(1.0, 2.5));
        assert!(!is_slower(3.0, 2.0));
    }

    #[test]
    fn the_median_ignores_one_outlier() {
        assert_eq!(median(&mut [1.0, 50.0, 1.2, 1.1, 0.9]), 1.1);
        assert_eq!(median(&mut [1.0, 2.0]), 1.5);
    }

    #[test]
    fn a_name_pattern_escapes_wildcards() {
        assert_eq!(name_pattern("100%_done report"), "%100\\%\\_done%");
        assert_eq!(name_pattern(""), "%%");
    }
}
