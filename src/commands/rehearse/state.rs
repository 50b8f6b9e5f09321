//! What the rehearsal carries from step to step: the steps so far, and what the actions found
//! that later ones and the report read (the roles created, the queries measured, the pooler,
//! the standby's comparison, the policy chosen).

use super::super::Settings;
use crate::cli::{CleanupArgs, Command};
use crate::db::config::Target;
use crate::rehearsal::measured_steps::After;
use crate::rehearsal::named_params::QuerySpec;
use crate::rehearsal::queries::Before;
use crate::rehearsal::{policy, PolicyChoice, StandbyCheck, Step, StepOutcome};
use crate::sandbox::bouncer::Bouncer;
use anyhow::Result;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct Rehearsal<'a> {
    /// The settings of the commands it plays: the throwaway database, confirmed in advance.
    pub settings: Settings,
    pub target: &'a Target,
    /// The `--queries` measured beside the application's.
    pub extra_queries: &'a [QuerySpec],
    /// The `--policy` given.
    pub given_policy: Option<&'a Path>,
    /// The source is the bundled fixture (production's NOT NULL columns: the example policy).
    pub bundled: bool,
    pub steps: Vec<Step>,
    pub roles_created: Option<Vec<String>>,
    pub measured: Option<Before>,
    pub after: After,
    /// The application role's password, for the pooler and the role alike.
    pub app_password: String,
    pub bouncer: Option<Bouncer>,
    pub standby_check: Option<StandbyCheck>,
    pub needs_decision: Vec<Value>,
    pub policy: Option<PolicyChoice>,
    /// The bundled example policy written out for cleanup, which reads a file.
    pub example_policy: Option<tempfile::NamedTempFile>,
}

impl<'a> Rehearsal<'a> {
    /// Before the first step: nothing found yet.
    pub fn new(
        settings: Settings,
        target: &'a Target,
        extra_queries: &'a [QuerySpec],
        given_policy: Option<&'a Path>,
        bundled: bool,
    ) -> Rehearsal<'a> {
        Rehearsal {
            settings,
            target,
            extra_queries,
            given_policy,
            bundled,
            steps: Vec::new(),
            roles_created: None,
            measured: None,
            after: After::default(),
            app_password: uuid::Uuid::new_v4().simple().to_string(),
            bouncer: None,
            standby_check: None,
            needs_decision: Vec::new(),
            policy: None,
            example_policy: None,
        }
    }

    pub fn failed(&self) -> bool {
        self.steps.iter().any(|s| s.outcome == StepOutcome::Failed)
    }

    pub fn step(&self, name: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.step == name)
    }

    /// The policy cleanup runs with, chosen from what its dry run said needs deciding; the
    /// bundled example is written out when cleanup is to run. Returns cleanup as shown (the
    /// example named by its place in the repository) and as run (the file written).
    pub fn choose_policy(&mut self) -> Result<(Command, Command)> {
        self.needs_decision = self
            .step("plan cleanup")
            .map(|s| s.read.needs_decision.clone())
            .unwrap_or_default();
        let chosen = self.policy_choice();
        let run_with = match chosen.source {
            "given" => self.given_policy.map(Path::to_path_buf),
            "bundled example" if !self.failed() => {
                let file = policy::write_example_policy()?;
                let path = file.path().to_path_buf();
                self.example_policy = Some(file);
                Some(path)
            }
            _ => None,
        };
        if !self.failed() && (!self.needs_decision.is_empty() || chosen.source == "bundled example")
        {
            let _ = writeln!(std::io::stderr(), "ruleiq-db: rehearse: {}", chosen.reason);
        }
        let cleanup = |policy: Option<PathBuf>| {
            Command::Cleanup(CleanupArgs {
                policy,
                ..Default::default()
            })
        };
        let shown = cleanup(chosen.file.as_ref().map(PathBuf::from));
        self.policy = Some(chosen);
        Ok((shown, cleanup(run_with)))
    }

    /// The policy for what cleanup's dry run said needs deciding (nothing, before it ran).
    pub fn policy_choice(&self) -> PolicyChoice {
        let given = self.given_policy.map(|p| p.display().to_string());
        policy::choose_policy(given.as_deref(), self.bundled, &self.needs_decision)
    }
}
