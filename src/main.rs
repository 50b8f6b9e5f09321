//! The `ruleiq-db` binary: parse, run, print, exit. Exit codes are documented in `exit.rs`
//! and DESIGN.md §2.

use clap::Parser;
use ruleiq_db::{cli::Cli, commands, exit};

fn main() {
    let cli = Cli::parse();
    let code = match commands::run(&cli) {
        Ok(code) => code,
        Err(error) => {
            let code = exit::code_of(&error);
            commands::print_failure(&cli, &error, code);
            code
        }
    };
    std::process::exit(code.as_i32());
}
