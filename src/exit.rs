//! Exit codes (DESIGN.md §2) and the error types that select them.

use std::fmt;

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
}

impl Code {
    pub fn as_i32(self) -> i32 {
        self as i32
    }
}

/// A refusal for safety: the command stops before changing anything, exit 4.
///
/// Raised as an `anyhow` error so it can come from deep inside a command; `main` finds it in
/// the error chain.
#[derive(Debug)]
pub struct Refused(pub String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// A refusal whose failure document carries more keys than the message (e.g. `blockers`), so
/// JSON and YAML readers get the list as well as the sentence. Exit 4 like [`Refused`].
#[derive(Debug)]
pub struct RefusedWith {
    pub message: String,
    pub keys: serde_json::Map<String, serde_json::Value>,
}

impl fmt::Display for RefusedWith {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RefusedWith {}

/// Shorthand for returning a refusal.
pub fn refuse<T>(message: impl Into<String>) -> anyhow::Result<T> {
    Err(Refused(message.into()).into())
}

/// The exit code an error maps to.
pub fn code_of(error: &anyhow::Error) -> Code {
    if error
        .chain()
        .any(|cause| cause.is::<Refused>() || cause.is::<RefusedWith>())
    {
        Code::Refused
    } else {
        Code::Error
    }
}
