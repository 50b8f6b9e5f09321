//! `baseline`: not built yet.

use super::{Context, Outcome};
use crate::cli::BaselineArgs;
use anyhow::Result;

pub fn run(_ctx: &Context, _args: &BaselineArgs) -> Result<Outcome> {
    anyhow::bail!("`baseline` is not available in this build yet")
}
