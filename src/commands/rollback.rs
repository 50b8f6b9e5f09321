//! `rollback`: not built yet.

use super::{Context, Outcome};
use crate::cli::RollbackArgs;
use anyhow::Result;

pub fn run(_ctx: &Context, _args: &RollbackArgs) -> Result<Outcome> {
    anyhow::bail!("`rollback` is not available in this build yet")
}
