//! The evidence `baseline` reads before the shape: Alembic's `alembic_version`. Production was
//! built by the application and Alembic, whose revisions '001'…'007' are ruleIQ's migrations 1
//! to 7 (revision '00N' is version N). Any other revision (a later one of the application's own,
//! a hash, several rows) is reported and not trusted: the shape decides.

use crate::catalog::migrations::{self, REPAIR_VERSION};
use crate::db::Query;
use anyhow::Result;
use serde::Serialize;

/// What `alembic_version` says, and whether ruleiq-db trusts it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evidence {
    /// The revisions found (none when the table is absent or empty).
    pub revisions: Vec<String>,
    /// The version the evidence names, when it is one of ours.
    pub version: Option<i32>,
    /// One line for the report, e.g. `alembic_version = '007'`.
    pub text: String,
}

const TABLE: &str = "alembic_version";

/// Reads `public.alembic_version` (where Alembic keeps it, beside ruleIQ's tables); never fails on an odd table, only on a
/// broken connection.
pub fn read_evidence(client: &mut impl Query) -> Result<Evidence> {
    if !crate::db::table_exists(client, TABLE)? {
        return Ok(judge(None));
    }
    // Alembic's column; a table of that name without it is no Alembic evidence.
    if !crate::db::introspect::column_exists(client, TABLE, "version_num")? {
        return Ok(Evidence {
            revisions: Vec::new(),
            version: None,
            text: "alembic_version has no version_num column (not Alembic's: not trusted; the shape decides)".into(),
        });
    }
    let revisions: Vec<String> = client
        .rows(
            "SELECT version_num::text FROM public.alembic_version WHERE version_num IS NOT NULL ORDER BY 1",
            &[],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok(judge(Some(revisions)))
}

/// The verdict on what the table holds (`None`: no table).
fn judge(revisions: Option<Vec<String>>) -> Evidence {
    let Some(revisions) = revisions else {
        return Evidence {
            revisions: Vec::new(),
            version: None,
            text: "no alembic_version: the shape decides".into(),
        };
    };
    let listed = revisions
        .iter()
        .map(|r| format!("'{}'", r.replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(", ");
    let (version, text) = match revisions.as_slice() {
        [] => (
            None,
            "alembic_version is empty: the shape decides".to_string(),
        ),
        [one] => match ours(one) {
            Some(v) => (Some(v), format!("alembic_version = {listed}")),
            None => (
                None,
                format!(
                    "alembic_version = {listed} (not one of ours: not trusted; the shape decides)"
                ),
            ),
        },
        _ => (
            None,
            format!(
                "alembic_version = {listed} (several revisions: not trusted; the shape decides)"
            ),
        ),
    };
    Evidence {
        revisions,
        version,
        text,
    }
}

/// The version an Alembic revision stands for, when it is one of ruleIQ's: '001'…'007'. 008 is
/// ruleiq-db's own; an Alembic '008' is the application's, not ours.
fn ours(revision: &str) -> Option<i32> {
    let version = revision.trim();
    if version.len() != 3 || !version.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let version: i32 = version.parse().ok()?;
    ((1..REPAIR_VERSION).contains(&version) && migrations::get(version).is_some())
        .then_some(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(revisions: &[&str]) -> Evidence {
        judge(Some(revisions.iter().map(|r| r.to_string()).collect()))
    }

    #[test]
    fn only_our_revisions_are_trusted() {
        let seven = of(&["007"]);
        assert_eq!(seven.version, Some(7));
        assert_eq!(seven.text, "alembic_version = '007'");
        assert_eq!(of(&["001"]).version, Some(1));
        for odd in [
            &["009"][..],
            &["008"],
            &["000"],
            &["7"],
            &["5b2e0c7a91f4"],
            &["006", "007"],
            &[],
        ] {
            let e = of(odd);
            assert_eq!(e.version, None, "{odd:?}");
            assert!(e.text.contains("the shape decides"), "{}", e.text);
        }
        assert_eq!(
            of(&["009"]).text,
            "alembic_version = '009' (not one of ours: not trusted; the shape decides)"
        );
        assert_eq!(judge(None).text, "no alembic_version: the shape decides");
    }
}
