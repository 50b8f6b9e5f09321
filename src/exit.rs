//! Exit codes (docs/design.md §2), the contract with CI scripts. Which one an error selects is
//! `crate::refusal::code_of`.

/// The process exit codes, the contract with CI scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// Done, or nothing to do; for `check-constraints`, no violation; for `status`, everything
    /// as expected.
    Ok = 0,
    /// Cannot connect, SQL failure, unreadable file; for `status`, drift it could not check.
    Error = 1,
    /// Usage error (clap's own).
    Usage = 2,
    /// Rows break the constraints; for `status`, a constraint not valid or drift that stops
    /// the next step.
    Violations = 3,
    /// Refused for safety.
    Refused = 4,
    /// Stopped by Ctrl-C or SIGTERM (128 + SIGINT, as shells report it); the report says what
    /// was done before.
    Interrupted = 130,
}

impl Code {
    pub fn as_i32(self) -> i32 {
        self as i32
    }
}
