//! Where the one report of a run goes: stdout, and with `--output` a file too.
//!
//! The file is opened (created, truncated) before the command runs, so an unwritable path stops
//! the run before anything changes, and an old report in it can never be mistaken for this
//! run's. Each destination receives exactly one document: the report, or else the failure.
//! A closed stdout (`ruleiq-db … | head`) is a normal end, not an error.

use crate::report::Format;
use crate::report::{self, Render};
use anyhow::{Context, Result};
use std::fs::File;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

pub struct Sink {
    format: Format,
    file: Option<(PathBuf, File)>,
    /// Whether stdout, the file, already received (or was offered) a document.
    stdout_used: bool,
    file_used: bool,
}

impl Sink {
    /// Opens `--output` for writing; the error names the path.
    pub fn open(format: Format, output: Option<&Path>) -> Result<Sink> {
        let file = match output {
            Some(path) => {
                let file = File::create(path).with_context(|| {
                    format!(
                        "cannot write the report to {}; nothing was done",
                        path.display()
                    )
                })?;
                Some((path.to_path_buf(), file))
            }
            None => None,
        };
        Ok(Sink {
            format,
            file,
            stdout_used: false,
            file_used: false,
        })
    }

    /// A sink for stdout alone (when `--output` itself could not be opened).
    pub fn stdout_only(format: Format) -> Sink {
        Sink {
            format,
            file: None,
            stdout_used: false,
            file_used: false,
        }
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// Writes the report: to the file first (so a failure there can still be reported on an
    /// untouched stdout), then to stdout.
    pub fn report(&mut self, report: &dyn Render) -> Result<()> {
        let mut text = Vec::new();
        report::write(report, self.format, &mut text)?;
        self.write_file(&text)?;
        self.write_stdout(&text)
    }

    /// Writes a failure to every destination that has not had a document yet. `stdout_text` is
    /// None for the table format, whose failure goes to stderr only; the file always records
    /// it, so that it never keeps an older run's report.
    pub fn failure(&mut self, stdout_text: Option<&str>, file_text: &str) {
        let _ = self.write_file(file_text.as_bytes());
        if let Some(text) = stdout_text {
            let _ = self.write_stdout(text.as_bytes());
        }
    }

    fn write_file(&mut self, text: &[u8]) -> Result<()> {
        if self.file_used {
            return Ok(());
        }
        self.file_used = true;
        if let Some((path, file)) = &mut self.file {
            file.write_all(text)
                .and_then(|()| file.flush())
                .with_context(|| format!("cannot write the report to {}", path.display()))?;
        }
        Ok(())
    }

    fn write_stdout(&mut self, text: &[u8]) -> Result<()> {
        if self.stdout_used {
            return Ok(());
        }
        self.stdout_used = true;
        let mut stdout = std::io::stdout().lock();
        match stdout.write_all(text).and_then(|()| stdout.flush()) {
            Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
            other => other.context("cannot write the report to stdout"),
        }
    }
}
