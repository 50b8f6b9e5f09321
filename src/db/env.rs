//! The process environment (PG* variables, $HOME), behind a trait so tests can give their own.
//! Both `config` and `tls` read it; neither reads the other for it.

/// Environment lookups, injectable so tests need not touch the process environment.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The real process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}
