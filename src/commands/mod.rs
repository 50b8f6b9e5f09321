//! One module per command; this one holds what they share: the settings resolved from the
//! global flags (`settings.rs`), the outcome type, and printing.

pub mod baseline;
pub mod check;
pub mod cleanup;
pub mod compat;
pub mod migrate;
pub mod rehearse;
pub mod rollback;
mod settings;
pub mod status;

pub use settings::Settings;

use crate::cli::{Cli, Command, Format};
use crate::db;
use crate::exit::Code;
use crate::journal::{Done, Journal};
use crate::output::Sink;
use crate::refusal::Refusal;
use crate::report::Render;
use anyhow::Result;
use std::io::Write;

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

    /// The same outcome, its report carrying one more key (what a step after the command's
    /// engine found, as `compat --probe-url`'s `probe`).
    pub fn with_key(outcome: Outcome, key: &'static str, value: serde_json::Value) -> Outcome {
        Outcome {
            report: Box::new(WithKey {
                inner: outcome.report,
                key,
                value,
            }),
            code: outcome.code,
        }
    }
}

/// A report with one key added to its documents (and nothing to its table).
struct WithKey {
    inner: Box<dyn Render>,
    key: &'static str,
    value: serde_json::Value,
}

impl Render for WithKey {
    fn to_value(&self) -> serde_json::Value {
        let mut value = self.inner.to_value();
        if let Some(object) = value.as_object_mut() {
            object.insert(self.key.into(), self.value.clone());
        }
        value
    }

    fn write_human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        self.inner.write_human(out)
    }

    fn summary(&self) -> crate::report::Summary {
        self.inner.summary()
    }
}

/// Runs the command line and prints its one report (or its failure); returns the exit code.
///
/// `--output` is opened before the command starts, so an unwritable path changes nothing.
pub fn run(cli: &Cli) -> Code {
    db::interrupt::install();
    let settings = Settings::from_cli(cli);
    let mut sink = match Sink::open(cli.global.format, cli.global.output.as_deref()) {
        Ok(sink) => sink,
        Err(error) => {
            let mut stdout_only = Sink::stdout_only(cli.global.format);
            print_failure(
                cli,
                &settings.journal,
                &mut stdout_only,
                &error,
                Code::Error,
            );
            return Code::Error;
        }
    };
    let result = dispatch(&settings, &cli.command).and_then(|outcome| {
        // A session dropped on the way (an error handled inside the command) that could not
        // release the migration lock is a failure, whatever else the command achieved.
        let release_failures = db::session::take_release_failures();
        if !release_failures.is_empty() {
            anyhow::bail!("{}", release_failures.join("; "));
        }
        sink.report(&WithConnection(outcome.report.as_ref()))?;
        Ok(outcome.code)
    });
    match result {
        Ok(code) => code,
        Err(error) => {
            let mut code = crate::refusal::code_of(&error);
            if db::interrupt::requested() {
                code = Code::Interrupted;
            }
            let role = settings
                .target()
                .ok()
                .and_then(|t| t.config.get_user().map(str::to_string));
            let error = crate::hints::explain(error, role.as_deref());
            print_failure(cli, &settings.journal, &mut sink, &error, code);
            code
        }
    }
}

/// The `connection` key every report on a connection carries: how the run reached the server
/// and where its URL came from.
fn connection_value() -> Option<serde_json::Value> {
    db::pooler::first().and_then(|path| serde_json::to_value(path).ok())
}

/// A report with the `connection` key added to its documents.
struct WithConnection<'a>(&'a dyn Render);

impl Render for WithConnection<'_> {
    fn to_value(&self) -> serde_json::Value {
        let mut value = self.0.to_value();
        if let (Some(object), Some(connection)) = (value.as_object_mut(), connection_value()) {
            object.insert("connection".into(), connection);
        }
        value
    }

    fn write_human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        self.0.write_human(out)
    }

    fn summary(&self) -> crate::report::Summary {
        self.0.summary()
    }
}

/// Runs one command without printing (used by `rehearse`).
pub fn dispatch(settings: &Settings, command: &Command) -> Result<Outcome> {
    match command {
        Command::Migrate(args) => migrate::run(settings, args),
        Command::Status(args) => status::run(settings, args),
        Command::CheckConstraints(args) => check::run(settings, args),
        Command::Cleanup(args) => cleanup::run(settings, args),
        Command::Rollback(args) => rollback::run(settings, args),
        Command::Baseline(args) => baseline::run(settings, args),
        Command::Compat(args) => compat::run(settings, args),
        Command::Rehearse(args) => rehearse::run(settings, args),
    }
}

/// The failure document: the keys of every report, the error, and what was done before it
/// (docs/design.md §2). `schema_version` is null when the database was never reached.
pub fn failure_document(
    command: Option<&str>,
    dry_run: bool,
    error: &str,
    code: Code,
    done: &Done,
) -> serde_json::Value {
    serde_json::json!({
        "command": command,
        "ok": false,
        "dry_run": dry_run,
        "schema_version": done.schema_version,
        "error": error,
        "exit_code": code.as_i32(),
        "applied": done.applied,
        "reverted": done.reverted,
        "run_id": done.run_id,
        // Which refusal (exit 4), for programs; print_failure fills it in.
        "reason": null,
    })
}

/// Renders a JSON value as `format` (table falls back to JSON: used for files only).
pub fn render_value(value: &serde_json::Value, format: Format) -> String {
    match format {
        Format::Yaml => serde_yaml::to_string(value).unwrap_or_default(),
        _ => format!(
            "{}\n",
            serde_json::to_string_pretty(value).unwrap_or_default()
        ),
    }
}

/// Prints a failure: one clear line on stderr; for json/yaml a document on stdout so that
/// machine readers always get one; and the same into `--output`, replacing nothing older.
pub fn print_failure(
    cli: &Cli,
    journal: &Journal,
    sink: &mut Sink,
    error: &anyhow::Error,
    code: Code,
) {
    let label = match code {
        Code::Refused => "refused",
        Code::Interrupted => "interrupted",
        _ => "error",
    };
    let message = format!("{error:#}");
    let _ = writeln!(std::io::stderr(), "ruleiq-db: {label}: {message}");
    let done = journal.snapshot();
    let mut document = failure_document(
        Some(cli.command.name()),
        cli.command.dry_run(),
        &message,
        code,
        &done,
    );
    // A refusal names its reason and may carry keys of its own (the blockers that made
    // migrate give up).
    if let (Some(refusal), Some(object)) = (Refusal::of(error), document.as_object_mut()) {
        object.insert("reason".into(), refusal.reason().into());
        for (key, value) in refusal.keys() {
            object.entry(key).or_insert(value);
        }
    }
    if let Some(object) = document.as_object_mut() {
        if code == Code::Interrupted {
            object.insert("interrupted".into(), true.into());
        }
        if let Some(connection) = connection_value() {
            object.insert("connection".into(), connection);
        }
    }
    match sink.format() {
        Format::Table => {
            let line = format!(
                "ruleiq-db {}: FAILED (exit {}): {message}\n",
                cli.command.name(),
                code.as_i32()
            );
            sink.failure(None, &line);
        }
        format => {
            let text = render_value(&document, format);
            sink.failure(Some(&text), &text);
        }
    }
}
