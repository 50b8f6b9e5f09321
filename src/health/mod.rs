//! Looking before taking a lock (docs/design.md §9): the health picture `status --health` shows
//! and the duration estimate of `migrate --dry-run`. The blockers every changing command looks
//! for before its first table lock are the session's (`db::blockers`).

pub mod estimate;
pub mod picture;
