//! Refusals for safety (exit 4, docs/design.md §2): every kind the tool makes, each with the
//! machine-readable `reason` the failure document carries, decided here and nowhere else.
//!
//! A refusal travels as an `anyhow` error so it can come from deep inside a command;
//! [`crate::refusal::code_of`] and [`Refusal::of`] find it in the error chain.

use crate::exit::Code;
use std::fmt;

/// Declares [`Refusal`] from one list: each variant that carries only its sentence, with its
/// doc and its `reason`, written once; `reason` and `message` follow from the list.
macro_rules! refusals {
    ($($(#[$doc:meta])* $variant:ident => $reason:literal,)*) => {
        /// Why a command stopped before changing anything (or before changing more). Each
        /// variant carries the sentence a person reads.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Refusal {
            $($(#[$doc])* $variant(String),)*
            /// Sessions that would block the table locks were still there after `--lock-wait`;
            /// the failure document lists them under `blockers`.
            Blockers {
                message: String,
                blockers: serde_json::Value,
            },
        }

        impl Refusal {
            /// The snake_case `reason` of the failure document.
            pub fn reason(&self) -> &'static str {
                match self {
                    $(Refusal::$variant(_) => $reason,)*
                    Refusal::Blockers { .. } => "blockers",
                }
            }

            /// The sentence a person reads.
            pub fn message(&self) -> &str {
                match self {
                    $(Refusal::$variant(m))|* => m,
                    Refusal::Blockers { message, .. } => message,
                }
            }
        }
    };
}

refusals! {
    /// A migration in the history was edited since it was applied, or is unknown to this build.
    EditedHistory => "edited_history",
    /// ruleIQ tables without a ruleiq-db history: `baseline` must adopt them first.
    NotAdopted => "not_adopted",
    /// `baseline` on a database that already has a history.
    HistoryExists => "history_exists",
    /// No `--yes` off a terminal, or the prompt was not answered yes.
    NotConfirmed => "not_confirmed",
    /// Another ruleiq-db held the migration lock past `--lock-wait`.
    LockBusy => "lock_busy",
    /// A table has both the legacy and the full name of a renamed column.
    RenameConflict => "rename_conflict",
    /// A `--target`, `--version` or `--to` that names no migration.
    UnknownTarget => "unknown_target",
    /// A target on the wrong side of the current version, or a step count that does not fit.
    TargetOutOfRange => "target_out_of_range",
    /// A migration to revert that has no down migration in this build.
    NoDownMigration => "no_down_migration",
    /// A `--constraint` the catalog does not have.
    UnknownConstraint => "unknown_constraint",
    /// A standby or a read-only server.
    NotWritable => "not_writable",
    /// Standbys still too far behind after `--max-replica-wait`.
    ReplicaLag => "replica_lag",
    /// Cleanup rules whose built-in action would break the live schema, undecided by a policy.
    NeedsDecision => "needs_decision",
    /// A policy file whose decision the live schema cannot carry out.
    PolicyNotFeasible => "policy_not_feasible",
    /// A cleanup the role may not carry out (audit schema, tables or sequence).
    MissingGrants => "missing_grants",
    /// `baseline`: differences 008 cannot repair, or drift not accepted with `--accept-drift`.
    Drift => "drift",
    /// A rollback would strand the user's views or functions on what it archives.
    Dependents => "dependents",
    /// A changing command on a connection through a transaction-mode pooler.
    PooledConnection => "pooled_connection",
    /// Sessions of a role pointed at the compatibility views that predate the role's setting
    /// (docs/design.md §7): they resolve names as before it.
    CompatNotInEffect => "compat_not_in_effect",
    /// `compat --drop` while statements still name a legacy column (docs/design.md §7).
    LegacyNamesInUse => "legacy_names_in_use",
}

impl Refusal {
    /// Every refusal exits 4.
    pub fn code(&self) -> Code {
        Code::Refused
    }

    /// Keys the failure document carries besides the message (the blockers, as a list).
    pub fn keys(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut keys = serde_json::Map::new();
        if let Refusal::Blockers { blockers, .. } = self {
            keys.insert("blockers".into(), blockers.clone());
        }
        keys
    }

    /// This refusal as the error of a `Result`.
    pub fn fail<T>(self) -> anyhow::Result<T> {
        Err(self.into())
    }

    /// The refusal in an error's chain, if it is one.
    pub fn of(error: &anyhow::Error) -> Option<&Refusal> {
        error
            .chain()
            .find_map(|cause| cause.downcast_ref::<Refusal>())
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for Refusal {}

/// The exit code an error maps to: a refusal's anywhere in its chain, else 1.
pub fn code_of(error: &anyhow::Error) -> Code {
    Refusal::of(error).map_or(Code::Error, |refusal| refusal.code())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn every_kind() -> Vec<Refusal> {
        let m = || "why".to_string();
        vec![
            Refusal::EditedHistory(m()),
            Refusal::NotAdopted(m()),
            Refusal::HistoryExists(m()),
            Refusal::NotConfirmed(m()),
            Refusal::LockBusy(m()),
            Refusal::Blockers {
                message: m(),
                blockers: serde_json::json!([]),
            },
            Refusal::RenameConflict(m()),
            Refusal::UnknownTarget(m()),
            Refusal::TargetOutOfRange(m()),
            Refusal::NoDownMigration(m()),
            Refusal::UnknownConstraint(m()),
            Refusal::NotWritable(m()),
            Refusal::ReplicaLag(m()),
            Refusal::NeedsDecision(m()),
            Refusal::PolicyNotFeasible(m()),
            Refusal::MissingGrants(m()),
            Refusal::Drift(m()),
            Refusal::Dependents(m()),
            Refusal::PooledConnection(m()),
            Refusal::CompatNotInEffect(m()),
            Refusal::LegacyNamesInUse(m()),
        ]
    }

    #[test]
    fn every_refusal_exits_4_with_a_distinct_snake_case_reason() {
        let kinds = every_kind();
        let reasons: BTreeSet<&str> = kinds.iter().map(Refusal::reason).collect();
        assert_eq!(reasons.len(), kinds.len(), "{reasons:?}");
        for refusal in &kinds {
            assert_eq!(refusal.code(), Code::Refused, "{refusal:?}");
            let reason = refusal.reason();
            assert!(
                reason.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{reason}"
            );
            assert_eq!(refusal.message(), "why");
            let error: anyhow::Error = refusal.clone().into();
            assert_eq!(crate::refusal::code_of(&error), Code::Refused);
            assert_eq!(Refusal::of(&error).map(Refusal::reason), Some(reason));
        }
    }

    #[test]
    fn a_refusal_is_found_under_context_and_keeps_its_words() {
        let error = Refusal::LockBusy("another ruleiq-db holds it".into()).fail::<()>();
        let error = error.unwrap_err().context("migrating");
        assert_eq!(Refusal::of(&error).unwrap().reason(), "lock_busy");
        assert_eq!(
            format!("{error:#}"),
            "migrating: another ruleiq-db holds it"
        );
        assert_eq!(Refusal::of(&anyhow::anyhow!("SQL failed")), None);
        assert_eq!(crate::refusal::code_of(&anyhow::anyhow!("x")), Code::Error);
    }

    #[test]
    fn only_blockers_add_keys() {
        let blockers = Refusal::Blockers {
            message: "waited".into(),
            blockers: serde_json::json!([{"pid": 7}]),
        };
        assert_eq!(blockers.keys()["blockers"][0]["pid"], 7);
        assert!(Refusal::Drift("d".into()).keys().is_empty());
    }
}
