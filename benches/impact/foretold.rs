//! Estimates against what happened: what `migrate --dry-run`, `check-constraints --dry-run` and
//! `cleanup --dry-run` said the work would take, beside how long the same work then took. A DBA
//! books a maintenance window by the estimate, so it is held to a band.

use serde::Serialize;
use serde_json::Value;

/// Target: every estimate within this band of what happened (estimate ÷ actual).
pub const ESTIMATE_BAND: (f64, f64) = (0.7, 1.3);

/// One estimate and what happened.
#[derive(Debug, Clone, Serialize)]
pub struct Foretold {
    /// "check-constraints", "cleanup", "migrate: preflight", "migrate: VALIDATE <name>",
    /// "migrate: total".
    pub what: String,
    /// "warm", or how the server was made cold.
    pub conditions: String,
    /// None when the dry run gave no estimate for it.
    pub estimate_ms: Option<f64>,
    pub actual_ms: f64,
    /// estimate ÷ actual.
    pub ratio: Option<f64>,
    pub met: Option<bool>,
}

impl Foretold {
    pub fn new(what: String, conditions: &str, estimate_ms: Option<f64>, actual_ms: f64) -> Self {
        let ratio = estimate_ms.map(|e| e / actual_ms.max(1.0));
        Foretold {
            what,
            conditions: conditions.to_string(),
            estimate_ms,
            actual_ms,
            ratio,
            met: ratio.map(|r| (ESTIMATE_BAND.0..=ESTIMATE_BAND.1).contains(&r)),
        }
    }
}

/// A report's top-level `estimate_ms` (every dry run that estimates carries it).
pub fn total_ms(report: Option<&Value>) -> Option<f64> {
    report?.get("estimate_ms")?.as_f64()
}

/// `migrate --dry-run`'s estimate (`dry`) against the `migrate` report that followed
/// (`done`) and its wall time: the preflight, each VALIDATE and the total.
pub fn migrate(
    dry: Option<&Value>,
    done: Option<&Value>,
    wall_ms: f64,
    conditions: &str,
) -> Vec<Foretold> {
    let estimate = dry.and_then(|d| d.get("estimate"));
    let mut rows = Vec::new();
    if let Some(actual) = done
        .and_then(|d| d.pointer("/preflight/duration_ms"))
        .and_then(Value::as_f64)
    {
        let foretold = estimate
            .and_then(|e| e.get("preflight_ms"))
            .and_then(Value::as_f64);
        rows.push(Foretold::new(
            "migrate: preflight".into(),
            conditions,
            foretold,
            actual,
        ));
    }
    let steps = |value: Option<&Value>, key: &str| -> Vec<(String, f64)> {
        value
            .and_then(|v| v.get(key))
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(|s| {
                        Some((
                            s.get("constraint")?.as_str()?.to_string(),
                            s.get("ms")?.as_f64()?,
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let foretold = steps(estimate, "validate");
    for (constraint, actual) in steps(done, "validate_ms") {
        let estimate = foretold
            .iter()
            .find(|(name, _)| *name == constraint)
            .map(|(_, ms)| *ms);
        rows.push(Foretold::new(
            format!("migrate: VALIDATE {constraint}"),
            conditions,
            estimate,
            actual,
        ));
    }
    rows.push(Foretold::new(
        "migrate: total".into(),
        conditions,
        total_ms(dry),
        wall_ms,
    ));
    rows
}
