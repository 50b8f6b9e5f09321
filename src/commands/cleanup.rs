//! `cleanup`: not built yet.

use super::{Context, Outcome};
use crate::cli::CleanupArgs;
use anyhow::Result;

pub fn run(_ctx: &Context, _args: &CleanupArgs) -> Result<Outcome> {
    anyhow::bail!("`cleanup` is not available in this build yet")
}
