//! `rehearse`: not built yet.

use super::{Context, Outcome};
use crate::cli::RehearseArgs;
use anyhow::Result;

pub fn run(_ctx: &Context, _args: &RehearseArgs) -> Result<Outcome> {
    anyhow::bail!("`rehearse` is not available in this build yet")
}
