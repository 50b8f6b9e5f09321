//! A command played as a step of the rehearsal: run against the throwaway database and recorded
//! with its exit code, its report and what rehearse totals from it.

use super::super::{dispatch, Settings};
use crate::cli::Command;
use crate::exit::Code;
use crate::rehearsal::{Step, StepOutcome};
use crate::report::Summary;
use std::time::Instant;

/// How a command step is judged: the exit codes that count as success, and an exit outside
/// them that its report still makes one.
#[derive(Clone, Copy)]
pub struct Success {
    pub codes: &'static [Code],
    pub accept: fn(Code, &Summary) -> bool,
}

impl Success {
    /// Exit 0, and nothing else.
    pub const EXIT_0: Success = Success {
        codes: &[Code::Ok],
        accept: no_exception,
    };
}

pub fn no_exception(_: Code, _: &Summary) -> bool {
    false
}

/// Runs `command`; `line` is what it shows, the arguments after `ruleiq-db`.
pub fn run(
    settings: &Settings,
    name: &str,
    line: &str,
    command: &Command,
    success: Success,
) -> Step {
    settings.log.line(&format!("rehearse: {line}"));
    let started = Instant::now();
    let result = dispatch(settings, command);
    let duration_ms = started.elapsed().as_millis() as u64;
    let (exit, report, read) = match result {
        Ok(outcome) => (
            outcome.code,
            outcome.report.to_value(),
            outcome.report.summary(),
        ),
        Err(error) => (
            crate::refusal::code_of(&error),
            serde_json::json!({ "error": format!("{error:#}") }),
            Summary::of_error(&format!("{error:#}")),
        ),
    };
    let ok = success.codes.contains(&exit) || (success.accept)(exit, &read);
    Step {
        step: name.to_string(),
        command: shown(line),
        outcome: if ok {
            StepOutcome::Ok
        } else {
            StepOutcome::Failed
        },
        ok,
        exit_code: Some(exit.as_i32()),
        duration_ms,
        summary: read.line.clone(),
        report,
        read,
    }
}

/// A command's line as the report shows it.
pub fn shown(line: &str) -> String {
    format!("ruleiq-db {line}")
}
