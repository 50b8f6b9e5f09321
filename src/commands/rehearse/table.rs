//! The rehearsal as a table: each step's name, what it plays (a command, or an action that is
//! not one) and, for a command, what counts as success. Built once from the inputs; the
//! display line of a command step is rendered from the command itself ([`Command::line`]).

use super::command_step::{no_exception, Success};
use crate::cli::{
    BaselineArgs, CheckArgs, CleanupArgs, Command, CompatArgs, MigrateArgs, RollbackArgs,
};
use crate::db::config::Target;
use crate::exit::Code;
use crate::rehearsal::dump_scan::DumpNeeds;
use crate::rehearsal::pooled_rollout::APP_ROLE;
use crate::rehearsal::report::loading;
use crate::rehearsal::{application, load, measured_steps, pooled_rollout, standby};
use crate::report::Summary;
use std::path::Path;

/// One step of the rehearsal.
pub struct Planned<'a> {
    pub name: &'static str,
    pub play: Play<'a>,
    /// How a command is judged (an action says itself whether it went well).
    pub success: Success,
}

/// What a step plays.
pub enum Play<'a> {
    Command(Command),
    /// `cleanup` with the policy chosen once its dry run has said what needs deciding
    /// (`rehearsal::policy::choose_policy`).
    CleanupWithChosenPolicy,
    Action(Action<'a>),
}

/// The steps that are not commands (their work is `crate::rehearsal`'s).
#[derive(Clone, Copy)]
pub enum Action<'a> {
    LoadFixture,
    /// Create the roles the dump names, check its extensions.
    PrepareDump(&'a DumpNeeds),
    LoadDump(&'a Path),
    MeasureBefore,
    /// The application's role pointed at the compatibility views, behind PgBouncer.
    PooledRollout,
    PooledApplication {
        after_008: bool,
    },
    ApplicationQueries,
    MeasureAfter,
    Standby(&'a Target),
}

/// Where the rehearsal's data comes from.
pub enum Source<'a> {
    Fixture,
    Dump {
        path: &'a Path,
        needs: &'a DumpNeeds,
        accept_drift: bool,
    },
}

/// The whole sequence for `source`, with the standby's comparison at the end when there is one.
pub fn sequence<'a>(
    source: &Source<'a>,
    policy: Option<&Path>,
    standby: Option<&'a Target>,
) -> Vec<Planned<'a>> {
    let mut table = match *source {
        Source::Fixture => vec![
            command("build version 7", migrate_to(Some(7))),
            action("load fixture", Action::LoadFixture),
        ],
        Source::Dump {
            path,
            needs,
            accept_drift,
        } => vec![
            action("prepare dump", Action::PrepareDump(needs)),
            action("load dump", Action::LoadDump(path)),
            command(
                "adopt",
                Command::Baseline(BaselineArgs {
                    version: None,
                    accept_drift,
                }),
            ),
        ],
    };
    table.extend([
        Planned {
            success: Success {
                codes: &[Code::Ok, Code::Violations],
                accept: no_exception,
            },
            ..command("check", check_dry_run())
        },
        Planned {
            success: Success {
                accept: needs_decisions,
                ..Success::EXIT_0
            },
            ..command(
                "plan cleanup",
                Command::Cleanup(CleanupArgs {
                    dry_run: true,
                    policy: policy.map(Path::to_path_buf),
                    ..Default::default()
                }),
            )
        },
        step("cleanup", Play::CleanupWithChosenPolicy),
        action("measure before", Action::MeasureBefore),
        action("pooled rollout", Action::PooledRollout),
        action(
            "pooled application before 008",
            Action::PooledApplication { after_008: false },
        ),
        command("migrate", migrate_to(None)),
        action(
            "pooled application after 008",
            Action::PooledApplication { after_008: true },
        ),
        command("status", Command::Status(Default::default())),
        action("application queries", Action::ApplicationQueries),
        action("measure after", Action::MeasureAfter),
        command(
            "rollback",
            Command::Rollback(RollbackArgs {
                to: Some(7),
                ..Default::default()
            }),
        ),
        command("migrate again", migrate_to(None)),
        command("final check", check_dry_run()),
    ]);
    if let Some(standby) = standby {
        table.push(action("standby", Action::Standby(standby)));
    }
    table
}

impl Action<'_> {
    /// What the action does, as its step's `command` in the report, run or not.
    pub fn line(&self, yes: bool) -> String {
        match self {
            Action::LoadFixture => loading(load::FIXTURE_NAME),
            Action::PrepareDump(_) => measured_steps::prepare_line(),
            Action::LoadDump(path) => loading(&path.display().to_string()),
            Action::MeasureBefore => measured_steps::before_line(),
            Action::PooledRollout => format!("ruleiq-db {}", pooled_rollout_line(yes)),
            Action::PooledApplication { after_008 } => pooled_rollout::line(*after_008),
            Action::ApplicationQueries => application::line(),
            Action::MeasureAfter => measured_steps::after_line(),
            Action::Standby(_) => standby::line(),
        }
    }
}

/// The command that points the application's role at the compatibility views before 008
/// (docs/design.md §7.1).
pub fn point_the_app_role() -> Command {
    Command::Compat(CompatArgs {
        for_role: vec![APP_ROLE.to_string()],
        ..Default::default()
    })
}

/// The pooled rollout as a user plays it: the command, then the pooler.
pub fn pooled_rollout_line(yes: bool) -> String {
    format!(
        "{}, then PgBouncer (transaction mode)",
        point_the_app_role().line(yes)
    )
}

fn step<'a>(name: &'static str, play: Play<'a>) -> Planned<'a> {
    Planned {
        name,
        play,
        success: Success::EXIT_0,
    }
}

fn command(name: &'static str, command: Command) -> Planned<'static> {
    step(name, Play::Command(command))
}

fn action<'a>(name: &'static str, action: Action<'a>) -> Planned<'a> {
    step(name, Play::Action(action))
}

fn migrate_to(target: Option<i32>) -> Command {
    Command::Migrate(MigrateArgs {
        target,
        ..MigrateArgs::default()
    })
}

fn check_dry_run() -> Command {
    Command::CheckConstraints(CheckArgs {
        dry_run: true,
        ..Default::default()
    })
}

/// A dry run of cleanup that refuses because rules need decisions did its job: it found them.
fn needs_decisions(code: Code, summary: &Summary) -> bool {
    code == Code::Refused && !summary.needs_decision.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(table: &[Planned]) -> Vec<(String, String)> {
        table
            .iter()
            .map(|p| {
                let line = match &p.play {
                    Play::Command(c) => format!("ruleiq-db {}", c.line(true)),
                    Play::CleanupWithChosenPolicy => "(chosen)".into(),
                    Play::Action(a) => a.line(true),
                };
                (p.name.to_string(), line)
            })
            .collect()
    }

    #[test]
    fn the_command_steps_show_what_a_user_types() {
        let table = sequence(&Source::Fixture, Some(Path::new("mine.yaml")), None);
        let shown = lines(&table);
        let of = |name: &str| shown.iter().find(|(n, _)| n == name).unwrap().1.clone();
        assert_eq!(of("build version 7"), "ruleiq-db migrate --target 7");
        assert_eq!(of("load fixture"), "psql -f fixtures/legacy_dirty.sql");
        assert_eq!(of("check"), "ruleiq-db check-constraints --dry-run");
        assert_eq!(
            of("plan cleanup"),
            "ruleiq-db cleanup --dry-run --policy mine.yaml"
        );
        assert_eq!(
            of("pooled rollout"),
            format!("ruleiq-db compat --for-role {APP_ROLE}, then PgBouncer (transaction mode)")
        );
        assert_eq!(of("migrate"), "ruleiq-db migrate");
        assert_eq!(of("rollback"), "ruleiq-db rollback --to 7 --yes");
        assert_eq!(of("final check"), "ruleiq-db check-constraints --dry-run");
        assert_eq!(shown.len(), 16);
    }

    #[test]
    fn a_dump_is_prepared_loaded_and_adopted_instead_of_built() {
        let needs = DumpNeeds::default();
        let source = Source::Dump {
            path: Path::new("prod.sql"),
            needs: &needs,
            accept_drift: true,
        };
        let shown = lines(&sequence(&source, None, None));
        let names: Vec<&str> = shown.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names[..4], ["prepare dump", "load dump", "adopt", "check"]);
        assert_eq!(shown[1].1, "psql -f prod.sql");
        assert_eq!(shown[2].1, "ruleiq-db baseline --accept-drift");
        assert_eq!(shown[4].1, "ruleiq-db cleanup --dry-run");
        assert_eq!(names.last(), Some(&"final check"));
    }
}
