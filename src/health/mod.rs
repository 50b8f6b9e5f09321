//! Looking before taking a lock (docs/design.md §9): the health picture `status --health` shows,
//! the blockers every changing command looks for before its first table lock, and the duration
//! estimate of `migrate --dry-run`.

pub mod blockers;
pub mod estimate;
pub mod picture;
