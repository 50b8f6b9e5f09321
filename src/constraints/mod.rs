//! The engines that hold the constraint catalog against a live database: how it spells the
//! catalog's columns, which rows break a constraint (`check`), which rows were written during
//! the check (`live`), and validating NOT VALID constraints (`validate`).

mod beside;
pub mod check;
pub mod cost;
pub mod indexed;
pub mod live;
pub mod presence;
pub mod sample;
pub mod scan_cost;
pub mod scan_progress;
mod scan_sessions;
pub use scan_sessions::sessions_offered;
pub mod spelling;
pub mod validate;
