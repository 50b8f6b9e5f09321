//! Reports: every command produces one value that renders as a table (comfy-table), JSON or
//! YAML, to stdout and optionally a file. The JSON keys are the contract (docs/design.md §2).

use anyhow::{Context, Result};
use comfy_table::{presets::UTF8_FULL_CONDENSED, ContentArrangement, Table};
use serde::Serialize;
use std::io::{IsTerminal, Write};

/// How a report is written: a table for people, JSON or YAML for programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
}

/// The keys every report has, plus the command's own details flattened beside them.
#[derive(Debug, Serialize)]
pub struct Report<D: Serialize> {
    pub command: &'static str,
    pub ok: bool,
    pub dry_run: bool,
    pub schema_version: i32,
    #[serde(flatten)]
    pub details: D,
}

/// How a run failed, as every report and failure document says it (docs/design.md §2): the
/// error, its exit code, and for a refusal (exit 4) its `reason`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Failure {
    pub error: String,
    pub exit_code: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

impl Failure {
    /// `error` ending a run with `code`; its reason when a refusal is in its chain.
    pub fn of(error: &anyhow::Error, code: crate::exit::Code) -> Failure {
        Failure {
            error: format!("{error:#}"),
            exit_code: code.as_i32(),
            reason: crate::refusal::Refusal::of(error).map(crate::refusal::Refusal::reason),
        }
    }

    /// A refusal a command reports itself rather than raising.
    pub fn refused(refusal: &crate::refusal::Refusal) -> Failure {
        Failure {
            error: refusal.message().to_string(),
            exit_code: refusal.code().as_i32(),
            reason: Some(refusal.reason()),
        }
    }
}

/// What a command's details know how to do besides serialising: draw themselves for people,
/// and say in one line what the command found or did.
pub trait Details: Serialize {
    fn write_table(&self, out: &mut dyn Write) -> std::io::Result<()>;
    /// The summary of a run; `dry_run` and `schema_version` are the report's.
    fn summary(&self, dry_run: bool, schema_version: i32) -> Summary;
}

/// A report ready to print, whatever its command.
pub trait Render {
    fn to_value(&self) -> serde_json::Value;
    fn write_human(&self, out: &mut dyn Write) -> std::io::Result<()>;
    /// What `rehearse` reads of the report: a line for a person and the numbers it adds up.
    fn summary(&self) -> Summary;
}

/// A report in one line, with the numbers `rehearse` totals; what a command does not count
/// stays None (or empty).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub line: String,
    /// Rows that break the constraints (`check-constraints`).
    pub violations: Option<u64>,
    /// Rows changed, or that a dry run would change (`cleanup`).
    pub rows: Option<u64>,
    /// The rules that need a decision (`cleanup`), as the report lists them.
    pub needs_decision: Vec<serde_json::Value>,
    /// The report's `schema_version`.
    pub schema_version: Option<i32>,
}

impl Summary {
    pub fn line(line: impl Into<String>) -> Summary {
        Summary {
            line: line.into(),
            ..Summary::default()
        }
    }

    /// The summary of a report that carries an error: its first line.
    pub fn of_error(error: &str) -> Summary {
        Summary::line(error.lines().next().unwrap_or(error))
    }
}

impl<D: Details> Render for Report<D> {
    fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("reports serialise")
    }

    fn write_human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let verdict = if self.ok { "ok" } else { "NOT OK" };
        let dry = if self.dry_run {
            " (dry run: nothing changed)"
        } else {
            ""
        };
        writeln!(
            out,
            "ruleiq-db {}: {verdict}{dry}; schema version {}",
            self.command, self.schema_version
        )?;
        self.details.write_table(out)
    }

    fn summary(&self) -> Summary {
        Summary {
            schema_version: Some(self.schema_version),
            ..self.details.summary(self.dry_run, self.schema_version)
        }
    }
}

/// Writes a report in the chosen format.
pub fn write(report: &dyn Render, format: Format, out: &mut dyn Write) -> Result<()> {
    match format {
        Format::Table => report.write_human(out)?,
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, &report.to_value())?;
            writeln!(out)?;
        }
        Format::Yaml => {
            let text = serde_yaml::to_string(&report.to_value()).context("rendering YAML")?;
            out.write_all(text.as_bytes())?;
        }
    }
    Ok(())
}

/// A table in the house style.
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.to_vec());
    // On a terminal comfy-table fits its width; elsewhere (files, CI logs, the snapshots of
    // the unit tests) a fixed width keeps the output the same from run to run.
    if cfg!(test) || !std::io::stdout().is_terminal() {
        t.set_width(150);
    }
    t
}

/// A plan's statements with the lock each takes.
pub fn statements_table(statements: &[crate::catalog::repair::PlannedStatement]) -> Table {
    let mut t = table(&["statement", "lock"]);
    for s in statements {
        t.add_row(vec![
            crate::catalog::sql::summarise_statement(&s.sql),
            s.lock.clone(),
        ]);
    }
    t
}

/// One migration applied or reverted, and how long its transaction took.
#[derive(Debug, Clone, Serialize)]
pub struct MigrationRun {
    pub version: i32,
    pub name: String,
    pub duration_ms: u64,
}

/// The head of a migrate or rollback report: where it started and where it ended.
pub fn write_versions(out: &mut dyn std::io::Write, from: i32, to: i32) -> std::io::Result<()> {
    writeln!(out, "from version {from} to version {to}")
}

/// The migrations a run applied or reverted, as a table headed `what`; nothing when none.
pub fn write_migrations(
    out: &mut dyn std::io::Write,
    what: &str,
    runs: &[MigrationRun],
) -> std::io::Result<()> {
    if runs.is_empty() {
        return Ok(());
    }
    writeln!(out, "{}", migrations_table(what, runs))
}

/// The migrations a run applied or reverted; `what` heads the first column.
fn migrations_table(what: &str, runs: &[MigrationRun]) -> Table {
    let mut t = table(&[what, "migration", "took"]);
    for r in runs {
        t.add_row(vec![
            format!("V{}", r.version),
            r.name.clone(),
            format!("{} ms", r.duration_ms),
        ]);
    }
    t
}
