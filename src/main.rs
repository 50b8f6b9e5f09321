//! The `ruleiq-db` binary: parse, run, print, exit. Exit codes are documented in `exit.rs`
//! and docs/design.md §2.

use clap::{CommandFactory, Parser};
use ruleiq_db::cli::{Cli, Format};
use ruleiq_db::commands;
use ruleiq_db::exit::Code;
use ruleiq_db::journal::Done;
use ruleiq_db::report::Failure;
use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let code = match Cli::try_parse_from(&args) {
        Ok(cli) => commands::run(&cli),
        Err(error) => usage_error(&error, &args),
    };
    ExitCode::from(code.as_i32() as u8)
}

/// Prints clap's message on stderr (help and version on stdout, exit 0); with `--format json`
/// or `yaml` a usage error also prints one failure document on stdout.
fn usage_error(error: &clap::Error, args: &[OsString]) -> Code {
    let _ = error.print();
    if error.exit_code() == 0 {
        return Code::Ok;
    }
    let format = requested_format(args);
    if format != Format::Table {
        let rendered = error.render().to_string();
        // The first paragraph is the reason; the usage lines after it are on stderr.
        let message = rendered
            .trim()
            .trim_start_matches("error: ")
            .split("\n\n")
            .next()
            .unwrap_or_default();
        let command = subcommand_named(args);
        let failure = Failure {
            error: message.to_string(),
            exit_code: Code::Usage.as_i32(),
            reason: None,
        };
        let document = commands::failure_document(
            command.as_deref(),
            args.iter().any(|a| a == "--dry-run"),
            &failure,
            &Done::default(),
        );
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(commands::render_value(&document, format).as_bytes());
        let _ = stdout.flush();
    }
    Code::Usage
}

/// The `--format` the raw arguments ask for, when the command line as a whole did not parse.
fn requested_format(args: &[OsString]) -> Format {
    let mut format = Format::Table;
    let mut iter = args.iter().skip(1).filter_map(|a| a.to_str());
    while let Some(arg) = iter.next() {
        if arg == "--" {
            break;
        }
        let value = match arg.strip_prefix("--format") {
            Some("") => iter.next(),
            Some(rest) => rest.strip_prefix('='),
            None => None,
        };
        match value {
            Some("json") => format = Format::Json,
            Some("yaml") => format = Format::Yaml,
            Some("table") => format = Format::Table,
            _ => {}
        }
    }
    format
}

/// The first argument that names a subcommand, for the failure document's `command`.
fn subcommand_named(args: &[OsString]) -> Option<String> {
    let cli = Cli::command();
    let names: Vec<&str> = cli.get_subcommands().map(|c| c.get_name()).collect();
    args.iter()
        .skip(1)
        .filter_map(|a| a.to_str())
        .find(|a| names.contains(a))
        .map(str::to_string)
}
