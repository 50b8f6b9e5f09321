//! What a command says on stderr while it works: log lines (unless --quiet) and progress bars
//! with an ETA (only on a terminal, unless --no-progress or a machine-readable --format).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Write};

/// Where log lines and progress go. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Log {
    pub quiet: bool,
    pub bars: bool,
}

impl Log {
    pub fn new(quiet: bool, no_progress: bool) -> Log {
        Log {
            quiet,
            bars: !quiet && !no_progress && std::io::stderr().is_terminal(),
        }
    }

    /// A silent log, for library callers and tests.
    pub fn silent() -> Log {
        Log {
            quiet: true,
            bars: false,
        }
    }

    /// One line on stderr. A closed stderr (the reader went away) is not worth dying for:
    /// the work, and the cleanup after it, go on.
    pub fn line(&self, message: &str) {
        if !self.quiet {
            let _ = writeln!(std::io::stderr(), "ruleiq-db: {message}");
        }
    }

    /// A bar over `total` steps; hidden off a terminal.
    pub fn bar(&self, total: u64, what: &str) -> ProgressBar {
        if !self.bars {
            return ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed}, about {eta} left)",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(what.to_string());
        bar
    }

    /// A bar over `total` bytes of tables to read, for steps whose parts differ in size (a
    /// scan of a big table, a VALIDATE of it): the ETA follows the bytes, not the step count.
    pub fn bytes_bar(&self, total: u64, what: &str) -> ProgressBar {
        if !self.bars {
            return ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {prefix} [{bar:30}] {bytes}/{total_bytes} {msg} ({elapsed}, about {eta} left)",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(what.to_string());
        bar.enable_steady_tick(std::time::Duration::from_millis(250));
        bar
    }

    /// A spinner for work of unknown length.
    pub fn spinner(&self, what: &str) -> ProgressBar {
        if !self.bars {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix} {msg} ({elapsed})")
                .expect("valid template"),
        );
        bar.set_prefix(what.to_string());
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar
    }
}
