//! One module per command; this one holds what they share: the context built from the global
//! flags, the outcome type, and printing.

pub mod baseline;
pub mod check;
pub mod cleanup;
pub mod compat;
pub mod migrate;
pub mod rehearse;
pub mod rollback;
pub mod status;

use crate::cli::{Cli, Command, Format, GlobalArgs};
use crate::config::{ProcessEnv, Target};
use crate::db::{self, RetryPolicy};
use crate::exit::{Code, Refused};
use crate::progress::Log;
use crate::report::{self, Render};
use anyhow::Result;
use postgres::Client;
use std::io::{BufRead, IsTerminal, Write};

/// What a command hands back: its report and the exit code it earned.
pub struct Outcome {
    pub report: Box<dyn Render>,
    pub code: Code,
}

impl Outcome {
    pub fn new(report: impl Render + 'static, code: Code) -> Outcome {
        Outcome {
            report: Box::new(report),
            code,
        }
    }
}

/// Everything a command needs besides its own arguments.
#[derive(Clone)]
pub struct Context {
    pub global: GlobalArgs,
    pub log: Log,
    /// Set by `rehearse` (and tests) to point commands at a throwaway server.
    pub target_override: Option<Target>,
}

impl Context {
    pub fn from_global(global: &GlobalArgs) -> Context {
        Context {
            global: global.clone(),
            log: Log::new(global.quiet, global.no_progress),
            target_override: None,
        }
    }

    pub fn target(&self) -> Result<Target> {
        match &self.target_override {
            Some(target) => Ok(target.clone()),
            None => Target::resolve(self.global.database_url.as_deref(), &ProcessEnv),
        }
    }

    pub fn connect(&self) -> Result<(Target, Client)> {
        let target = self.target()?;
        let client = db::connect(&target)?;
        Ok((target, client))
    }

    /// Takes the migration lock and then sets lock_timeout: every changing command does this
    /// before its first change.
    pub fn lock_for_changes(&self, client: &mut Client) -> Result<()> {
        db::acquire_migration_lock(client, self.global.lock_wait, &self.log)?;
        db::set_lock_timeout(client, self.global.lock_timeout)
    }

    pub fn retry(&self) -> RetryPolicy {
        RetryPolicy::new(self.global.lock_retries)
    }

    /// Asks before a change: on a terminal a y/N prompt, elsewhere `--yes` is required.
    pub fn confirm(&self, question: &str) -> Result<()> {
        if self.global.yes {
            return Ok(());
        }
        if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
            return Err(Refused(format!(
                "{question} — not confirmed: pass --yes to run without a terminal; nothing was changed"
            ))
            .into());
        }
        eprint!("{question} [y/N] ");
        std::io::stderr().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if matches!(answer.trim(), "y" | "Y" | "yes" | "YES") {
            Ok(())
        } else {
            Err(Refused("not confirmed; nothing was changed".into()).into())
        }
    }
}

/// Runs the command line and prints its report; returns the exit code.
pub fn run(cli: &Cli) -> Result<Code> {
    let ctx = Context::from_global(&cli.global);
    let outcome = dispatch(&ctx, &cli.command)?;
    report::emit(
        outcome.report.as_ref(),
        cli.global.format,
        cli.global.output.as_deref(),
    )?;
    Ok(outcome.code)
}

/// Runs one command without printing (used by `rehearse`).
pub fn dispatch(ctx: &Context, command: &Command) -> Result<Outcome> {
    match command {
        Command::Migrate(args) => migrate::run(ctx, args),
        Command::Status => status::run(ctx),
        Command::CheckConstraints(args) => check::run(ctx, args),
        Command::Cleanup(args) => cleanup::run(ctx, args),
        Command::Rollback(args) => rollback::run(ctx, args),
        Command::Baseline(args) => baseline::run(ctx, args),
        Command::Compat(args) => compat::run(ctx, args),
        Command::Rehearse(args) => rehearse::run(ctx, args),
    }
}

/// Prints a failure: one clear line on stderr, and for json/yaml a document on stdout so that
/// machine readers always get one.
pub fn print_failure(cli: &Cli, error: &anyhow::Error, code: Code) {
    let label = if code == Code::Refused {
        "refused"
    } else {
        "error"
    };
    let _ = writeln!(std::io::stderr(), "ruleiq-db: {label}: {error:#}");
    if cli.global.format != Format::Table {
        let document = serde_json::json!({
            "command": cli.command.name(),
            "ok": false,
            "dry_run": cli.command.dry_run(),
            "error": format!("{error:#}"),
            "exit_code": code.as_i32(),
        });
        let text = match cli.global.format {
            Format::Yaml => serde_yaml::to_string(&document).unwrap_or_default(),
            _ => format!(
                "{}\n",
                serde_json::to_string_pretty(&document).unwrap_or_default()
            ),
        };
        print!("{text}");
        if let Some(path) = &cli.global.output {
            let _ = std::fs::write(path, &text);
        }
    }
}
