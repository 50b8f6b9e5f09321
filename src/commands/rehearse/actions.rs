//! The steps that are not commands, played from the table: each calls its work in
//! `crate::rehearsal` and keeps in the rehearsal's state what later steps and the report read.

use super::command_step::{self, Success};
use super::state::Rehearsal;
use super::table::{self, Action};
use crate::rehearsal::{
    application, load, measured_steps, pooled_rollout, standby, Step, StepOutcome,
};
use std::time::Instant;

impl Rehearsal<'_> {
    /// Plays `action` (an earlier step has not failed).
    pub fn act(&mut self, action: Action) -> Step {
        let log = &self.settings.log;
        let target = self.target;
        match action {
            Action::LoadFixture => {
                let started = Instant::now();
                let loaded = load::fixture(target);
                Step::loaded("load fixture", load::FIXTURE_NAME, started, loaded)
            }
            Action::PrepareDump(needs) => {
                let (step, created) = measured_steps::prepare_dump(log, target, needs);
                self.roles_created = created;
                step
            }
            Action::LoadDump(path) => {
                let started = Instant::now();
                let loaded = load::dump(target, path, log);
                Step::loaded("load dump", &path.display().to_string(), started, loaded)
            }
            Action::MeasureBefore => {
                let (step, before) =
                    measured_steps::measure_before(log, target, self.extra_queries);
                self.measured = before;
                step
            }
            Action::PooledRollout => self.pooled_rollout(),
            Action::PooledApplication { after_008 } => {
                let url = self
                    .bouncer
                    .as_ref()
                    .map(|b| pooled_rollout::app_url(b, target, &self.app_password));
                pooled_rollout::step(log, url.as_deref(), after_008)
            }
            Action::ApplicationQueries => application::step(log, target),
            Action::MeasureAfter => {
                let (step, after) =
                    measured_steps::measure_after(log, target, self.measured.as_ref());
                self.after = after;
                step
            }
            Action::Standby(standby) => {
                let (step, checked) = standby::step(log, target, standby);
                self.standby_check = checked;
                step
            }
        }
    }

    /// Production's rollout: the application's role behind a transaction pooler, pointed at
    /// the compatibility views before 008 (docs/design.md §7.1).
    fn pooled_rollout(&mut self) -> Step {
        const NAME: &str = "pooled rollout";
        let line = table::pooled_rollout_line(self.settings.yes);
        let started = Instant::now();
        let Some(binary) = pooled_rollout::pgbouncer_binary() else {
            return Step::finished(
                NAME,
                command_step::shown(&line),
                true,
                started,
                "skipped: pgbouncer not found (Debian's pgbouncer package)".into(),
                serde_json::json!({ "skipped": "pgbouncer not found" }),
            );
        };
        if let Err(e) = pooled_rollout::create_app_role(self.target, &self.app_password) {
            return Step::failed(NAME, command_step::shown(&line), started, &e);
        }
        let pointed = command_step::run(
            &self.settings,
            NAME,
            &line,
            &table::point_the_app_role(),
            Success::EXIT_0,
        );
        if pointed.outcome != StepOutcome::Ok {
            return pointed;
        }
        match pooled_rollout::start_bouncer(&binary, self.target, &self.app_password) {
            Ok(bouncer) => {
                self.bouncer = Some(bouncer);
                pointed
            }
            Err(e) => Step::failed(NAME, command_step::shown(&line), started, &e),
        }
    }
}
