//! The migrate engine: what a run would do ([`plan`]), whether the rows let 008 add its
//! constraints ([`preflight`]), and the run itself ([`steps`]): the pending migrations one
//! transaction each, 008's compatibility schema after it commits, and validating the NOT VALID
//! constraints at the end. `commands::migrate` parses the options, calls these in order and
//! builds the report.

pub mod plan;
pub mod preflight;
pub mod steps;

pub use plan::PlannedMigration;
pub use preflight::Preflight;
