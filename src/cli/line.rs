//! A command written back as the arguments a user types after `ruleiq-db`, so that a report
//! that names a command it ran (rehearse's steps) shows exactly what ran.

use super::{
    BaselineArgs, CheckArgs, CleanupArgs, Cli, Command, CompatArgs, MigrateArgs, RehearseArgs,
    RollbackArgs, StatusArgs,
};
use crate::units::{as_flag, parse_duration, parse_window};
use clap::CommandFactory;
use std::fmt::Display;
use std::time::Duration;

impl Command {
    /// The arguments that run this command: its name, then each option that differs from its
    /// default, in the order `--help` lists them. With `yes`, a run that would ask first
    /// ([`Command::confirms`]) shows `--yes` where `--dry-run` stands for a dry run.
    pub fn line(&self, yes: bool) -> String {
        let mut line = Line(vec![self.name().to_string()]);
        let confirmed = yes && self.confirms();
        // Every struct is taken apart field by field: an option added to the command line does
        // not compile until it is written here too.
        match self {
            Command::Migrate(MigrateArgs {
                target,
                dry_run,
                no_compat,
            }) => {
                line.value("--target", *target);
                line.flag("--dry-run", *dry_run);
                line.flag("--no-compat", *no_compat);
            }
            Command::Status(StatusArgs { health }) => line.flag("--health", *health),
            Command::CheckConstraints(CheckArgs {
                dry_run,
                constraints,
                live_window,
            }) => {
                line.flag("--dry-run", *dry_run);
                line.each("--constraint", constraints);
                if Some(*live_window) != default_of(self, "live_window", parse_window) {
                    line.value("--live-window", Some(as_flag(*live_window)));
                }
            }
            Command::Cleanup(CleanupArgs {
                dry_run,
                policy,
                undo,
            }) => {
                line.dry_run_or_yes(*dry_run, confirmed);
                line.value("--policy", policy.as_ref().map(|p| p.display()));
                line.value("--undo", undo.as_ref());
            }
            Command::Rollback(RollbackArgs { to, steps, dry_run }) => {
                line.value("--to", *to);
                line.value("--steps", *steps);
                line.dry_run_or_yes(*dry_run, confirmed);
            }
            Command::Baseline(BaselineArgs {
                version,
                accept_drift,
            }) => {
                line.value("--version", *version);
                line.flag("--accept-drift", *accept_drift);
            }
            Command::Compat(CompatArgs {
                drop,
                for_role,
                wait,
                observe,
                unverified,
                dry_run,
                probe_url,
            }) => {
                line.flag("--drop", *drop);
                line.each("--for-role", for_role);
                line.value("--wait", wait.map(as_flag));
                // --observe and --unverified go with --drop only (clap refuses them alone).
                if *drop && Some(*observe) != default_of(self, "observe", parse_duration) {
                    line.value("--observe", Some(as_flag(*observe)));
                }
                line.flag("--unverified", *drop && *unverified);
                line.dry_run_or_yes(*dry_run, confirmed);
                line.value("--probe-url", probe_url.as_ref());
            }
            Command::Rehearse(RehearseArgs {
                dump,
                with_standby,
                policy,
                accept_drift,
                queries,
            }) => {
                line.value("--dump", dump.as_ref().map(|p| p.display()));
                line.flag("--with-standby", *with_standby);
                line.value("--policy", policy.as_ref().map(|p| p.display()));
                line.flag("--accept-drift", *accept_drift);
                line.value("--queries", queries.as_ref().map(|p| p.display()));
            }
        }
        line.0.join(" ")
    }
}

/// The words of a command line, each quoted for a shell when it needs to be.
struct Line(Vec<String>);

impl Line {
    fn flag(&mut self, name: &str, set: bool) {
        if set {
            self.0.push(name.to_string());
        }
    }

    fn value(&mut self, name: &str, value: Option<impl Display>) {
        if let Some(value) = value {
            self.0.push(name.to_string());
            self.0.push(quoted(&value.to_string()));
        }
    }

    fn each(&mut self, name: &str, values: &[String]) {
        for value in values {
            self.value(name, Some(value));
        }
    }

    /// A run confirmed in advance is the other side of a dry run: `--yes` takes its place.
    fn dry_run_or_yes(&mut self, dry_run: bool, confirmed: bool) {
        self.flag("--dry-run", dry_run);
        self.flag("--yes", !dry_run && confirmed);
    }
}

/// The value clap gives the option `id` of `command` when the flag is absent, read from the
/// clap definition itself (its `default_value`), so that a default is written down once.
fn default_of(
    command: &Command,
    id: &str,
    parse: fn(&str) -> Result<Duration, String>,
) -> Option<Duration> {
    let cli = Cli::command();
    let sub = cli.find_subcommand(command.name())?;
    let arg = sub.get_arguments().find(|a| a.get_id() == id)?;
    let text = arg.get_default_values().first()?.to_str()?;
    parse(text).ok()
}

/// A word as a POSIX shell reads it back: as it is when it is plain, else in single quotes.
fn quoted(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use clap::Parser;

    /// The line parsed back as a user's command line gives the same command.
    fn round_trip(command: &Command, yes: bool) -> String {
        let line = command.line(yes);
        let words = std::iter::once("ruleiq-db").chain(line.split(' '));
        let parsed = Cli::try_parse_from(words).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(
            format!("{:?}", parsed.command),
            format!("{command:?}"),
            "{line}"
        );
        assert_eq!(parsed.global.yes, line.contains(" --yes"), "{line}");
        line
    }

    #[test]
    fn a_command_is_written_as_a_user_types_it() {
        let cases = [
            (
                Command::Migrate(MigrateArgs {
                    target: Some(7),
                    ..Default::default()
                }),
                "migrate --target 7",
            ),
            (Command::Migrate(MigrateArgs::default()), "migrate"),
            (
                Command::Cleanup(CleanupArgs {
                    dry_run: true,
                    policy: Some("FILE".into()),
                    ..Default::default()
                }),
                "cleanup --dry-run --policy FILE",
            ),
            (
                Command::Cleanup(CleanupArgs {
                    policy: Some("fixtures/cleanup-policy.example.yaml".into()),
                    ..Default::default()
                }),
                "cleanup --yes --policy fixtures/cleanup-policy.example.yaml",
            ),
            (
                Command::Rollback(RollbackArgs {
                    to: Some(7),
                    ..Default::default()
                }),
                "rollback --to 7 --yes",
            ),
            (
                Command::CheckConstraints(CheckArgs {
                    dry_run: true,
                    ..Default::default()
                }),
                "check-constraints --dry-run",
            ),
            (
                Command::Baseline(BaselineArgs {
                    version: None,
                    accept_drift: true,
                }),
                "baseline --accept-drift",
            ),
            (
                Command::Compat(CompatArgs {
                    for_role: vec!["app".into()],
                    observe: Duration::from_secs(300),
                    ..Default::default()
                }),
                "compat --for-role app",
            ),
            (Command::Status(StatusArgs::default()), "status"),
        ];
        for (command, expected) in cases {
            assert_eq!(round_trip(&command, true), expected);
        }
        // --observe goes with --drop only: whatever it holds, the line leaves it out.
        let pointed = Command::Compat(CompatArgs {
            for_role: vec!["app".into()],
            ..Default::default()
        });
        assert_eq!(pointed.line(true), "compat --for-role app");
    }

    #[test]
    fn yes_shows_only_where_the_command_would_ask() {
        let rollback = Command::Rollback(RollbackArgs {
            to: Some(7),
            ..Default::default()
        });
        assert_eq!(round_trip(&rollback, false), "rollback --to 7");
        let dry = Command::Rollback(RollbackArgs {
            steps: Some(2),
            dry_run: true,
            ..Default::default()
        });
        assert_eq!(round_trip(&dry, true), "rollback --steps 2 --dry-run");
        let drop = Command::Compat(CompatArgs {
            drop: true,
            observe: Duration::from_secs(30),
            unverified: true,
            ..Default::default()
        });
        assert_eq!(
            round_trip(&drop, true),
            "compat --drop --observe 30s --unverified --yes"
        );
    }

    #[test]
    fn options_at_their_default_are_left_out_and_others_written_back() {
        let check = Command::CheckConstraints(CheckArgs {
            dry_run: true,
            constraints: vec!["chk_evidence_status".into(), "chk_data_sensitivity".into()],
            live_window: Duration::from_millis(1500),
        });
        assert_eq!(
            round_trip(&check, false),
            "check-constraints --dry-run --constraint chk_evidence_status --constraint chk_data_sensitivity --live-window 1500ms"
        );
        let drop = Command::Compat(CompatArgs {
            drop: true,
            observe: Duration::from_secs(300),
            ..Default::default()
        });
        assert_eq!(round_trip(&drop, false), "compat --drop");
        let rehearse = Command::Rehearse(RehearseArgs {
            dump: Some("prod.sql".into()),
            with_standby: true,
            accept_drift: true,
            ..Default::default()
        });
        assert_eq!(
            round_trip(&rehearse, false),
            "rehearse --dump prod.sql --with-standby --accept-drift"
        );
    }

    #[test]
    fn a_value_with_spaces_is_quoted_for_a_shell() {
        let cleanup = Command::Cleanup(CleanupArgs {
            dry_run: true,
            policy: Some("my policies/it's.yaml".into()),
            ..Default::default()
        });
        assert_eq!(
            cleanup.line(false),
            r"cleanup --dry-run --policy 'my policies/it'\''s.yaml'"
        );
    }
}
