//! What `rehearse` needs besides running the other commands: a throwaway cluster (and standby)
//! that is removed however the rehearsal ends, dumps checked and loaded into it, the cleanup
//! policy it runs with, the steps that are not commands (the application's queries, the standby
//! comparison), and the combined report. The command (`commands::rehearse`) only plays the
//! sequence of steps.

pub mod application;
pub mod cluster;
pub mod dump;
pub mod dump_scan;
pub mod load;
pub mod measured_steps;
pub mod named_params;
pub mod policy;
pub mod pooled_rollout;
pub mod queries;
pub mod report;
pub mod report_measured;
pub mod roles;
pub mod standby;

pub use report::{PolicyChoice, RehearseReport, StandbyCheck, Step, StepOutcome};

/// The database the rehearsal repairs, on the throwaway server.
pub const DATABASE: &str = "ruleiq_rehearsal";

/// The application name of the rehearsal's standby.
pub const STANDBY_NAME: &str = "ruleiq_rehearsal_standby";
