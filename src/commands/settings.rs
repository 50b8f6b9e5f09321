//! What every command needs besides its own arguments, resolved once from the command line:
//! where to connect, the log, the envelope its session keeps, the report format, whether it may
//! change without asking, and the journal its failure document reads.

use crate::cli::{Cli, Format};
use crate::db::config::{ProcessEnv, Target};
use crate::db::session::{Safety, Session};
use crate::db::{self};
use crate::journal::Journal;
use crate::progress::Log;
use crate::refusal::Refusal;
use anyhow::{anyhow, Result};
use postgres::Client;
use std::io::{BufRead, IsTerminal, Write};

/// The command line's global flags, resolved: a command reads these, never clap's types.
#[derive(Clone)]
pub struct Settings {
    /// Where the command connects (--database-url, else the environment), or why that cannot
    /// be read: said by the first command that needs the server, not before.
    target: std::result::Result<Target, String>,
    pub log: Log,
    /// The envelope every changing session keeps (lock waits and timeouts, retries, blockers,
    /// standbys).
    pub safety: Safety,
    pub format: Format,
    /// --yes: a change goes ahead without a prompt.
    pub yes: bool,
    /// What the command has committed so far, for its failure document.
    pub journal: Journal,
    /// The command only reads (a dry run, `status`): it may go through a transaction-mode
    /// pooler. Anything else is refused there before it changes anything.
    pub reads_only: bool,
}

impl Settings {
    pub fn from_cli(cli: &Cli) -> Settings {
        let global = &cli.global;
        Settings {
            target: Target::resolve(global.database_url.as_deref(), &ProcessEnv)
                .map_err(|e| format!("{e:#}")),
            // A JSON or YAML run feeds a program: stderr carries log lines only.
            log: Log::new(
                global.quiet,
                global.no_progress || global.format != Format::Table,
            ),
            safety: global.safety.safety(),
            format: global.format,
            yes: global.yes,
            journal: Journal::default(),
            reads_only: cli.command.reads_only(),
        }
    }

    /// The same settings for commands run on a throwaway server (`rehearse`): nothing there to
    /// confirm, and what they commit is not what a failure of the caller reports.
    pub fn for_throwaway(&self, target: Target) -> Settings {
        Settings {
            target: Ok(target),
            yes: true,
            journal: Journal::default(),
            ..self.clone()
        }
    }

    pub fn target(&self) -> Result<Target> {
        self.target.clone().map_err(|e| anyhow!(e))
    }

    /// Connects to the command's database. The first time, says on stderr what reading the
    /// URL changed and, through a transaction-mode pooler, that changes need the direct URL.
    pub fn connect(&self) -> Result<(Target, Client)> {
        let target = self.target()?;
        let first = db::pooler::known(&target).is_none();
        let client = if self.reads_only {
            db::connect(&target)?
        } else {
            db::connect_to_change(&target)?
        };
        if first {
            for note in &target.notes {
                self.log.line(note);
            }
            if let Some(note) = db::pooler::known(&target).and_then(|p| p.reading_note()) {
                self.log.line(&note);
            }
        }
        for note in db::take_notes() {
            self.log.line(&note);
        }
        Ok((target, client))
    }

    /// Turns a connection from [`Settings::connect`] into the session every change goes
    /// through: server writable, migration lock held, lock_timeout set, the rest of the
    /// envelope kept by its methods.
    pub fn begin_session(&self, target: Target, client: Client) -> Result<Session> {
        Session::begin(target, client, self.safety, self.log.clone())
    }

    /// Asks before a change: on a terminal a y/N prompt, elsewhere `--yes` is required.
    pub fn confirm(&self, question: &str) -> Result<()> {
        if self.yes {
            return Ok(());
        }
        if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
            return Err(Refusal::NotConfirmed(format!(
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
            Refusal::NotConfirmed("not confirmed; nothing was changed".into()).fail()
        }
    }
}
