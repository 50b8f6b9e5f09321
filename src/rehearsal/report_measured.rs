//! The rehearsal report's table parts for a managed dump and the measured queries: the roles
//! created for the dump, one row per query before and after 008, and the compatibility views'
//! grants.

use super::queries::Comparison;
use super::roles::CompatGrant;
use crate::report;
use std::io::Write;

/// What the rehearsal measured, as its report holds it.
pub struct Measured<'a> {
    pub roles_created: &'a Option<Vec<String>>,
    pub queries: &'a [Comparison],
    pub compat_grants: &'a [CompatGrant],
}

/// Writes the roles created, the queries and the grants (nothing for what is empty).
pub fn write(r: Measured<'_>, out: &mut dyn Write) -> std::io::Result<()> {
    if let Some(roles) = &r.roles_created {
        if roles.is_empty() {
            writeln!(out, "roles: the server had every role the dump names")?;
        } else {
            writeln!(
                out,
                "roles the dump names, created NOLOGIN before loading: {}",
                roles.join(", ")
            )?;
        }
    }
    if !r.queries.is_empty() {
        writeln!(
            out,
            "queries before (version 7) and after (version 8; full names, and legacy names through ruleiq_compat), median of warm runs:"
        )?;
        let mut t = report::table(&[
            "query", "rows", "before", "after", "compat", "plan", "verdict",
        ]);
        let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2} ms"));
        for q in r.queries {
            let plan = match (&q.plan_before, &q.plan_after) {
                (Some(b), Some(a)) if q.plan_changed => {
                    let compat = q.plan_after_compat.as_deref().unwrap_or("-");
                    format!("CHANGED: {b}\nnow: {a}\ncompat: {compat}")
                }
                (Some(b), _) => b.clone(),
                _ => "-".to_string(),
            };
            let mut verdict = Vec::new();
            if !q.rows_same {
                verdict.push("ROWS DIFFER".to_string());
            }
            if q.plan_changed {
                verdict.push("plan changed".to_string());
            }
            if q.slower {
                verdict.push("SLOWER".to_string());
            }
            if let Some(p) = &q.problem {
                if q.rows_same {
                    verdict.push(p.clone());
                }
            }
            if verdict.is_empty() {
                verdict.push("same rows, same plan".to_string());
            }
            t.add_row(vec![
                q.name.clone(),
                q.rows.map_or("-".to_string(), |n| n.to_string()),
                ms(q.before_ms),
                ms(q.after_ms),
                ms(q.after_compat_ms),
                plan,
                verdict.join(", "),
            ]);
        }
        writeln!(out, "{t}")?;
        for q in r.queries.iter().filter(|q| !q.rows_same) {
            if let Some(p) = &q.problem {
                writeln!(out, "  - {}: {p}", q.name)?;
            }
        }
    }
    for g in r.compat_grants {
        writeln!(
            out,
            "grant: {} may read {}; through {}: {}",
            g.role,
            g.table,
            g.view,
            if g.view_select { "yes" } else { "NO" }
        )?;
    }
    Ok(())
}
