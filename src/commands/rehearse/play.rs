//! The loop that plays the table: each step in turn, and once one has failed, the rest
//! recorded as not run (with what they would have run).

use super::command_step::{self, Success};
use super::state::Rehearsal;
use super::table::{Planned, Play};
use crate::cli::Command;
use crate::rehearsal::Step;
use anyhow::Result;

pub fn play(table: Vec<Planned>, state: &mut Rehearsal) -> Result<()> {
    for planned in table {
        let step = match planned.play {
            Play::Command(command) => {
                command_step(state, planned.name, &command, &command, planned.success)
            }
            Play::CleanupWithChosenPolicy => {
                let (shown, run) = state.choose_policy()?;
                let step = command_step(state, planned.name, &shown, &run, planned.success);
                // Written for this step only.
                state.example_policy = None;
                step
            }
            Play::Action(action) if state.failed() => {
                Step::not_run(planned.name, action.line(state.settings.yes))
            }
            Play::Action(action) => state.act(action),
        };
        state.steps.push(step);
    }
    Ok(())
}

/// Runs `run` unless an earlier step failed; the step shows `shown`.
fn command_step(
    state: &Rehearsal,
    name: &str,
    shown: &Command,
    run: &Command,
    success: Success,
) -> Step {
    let line = shown.line(state.settings.yes);
    if state.failed() {
        Step::not_run(name, command_step::shown(&line))
    } else {
        command_step::run(&state.settings, name, &line, run, success)
    }
}
