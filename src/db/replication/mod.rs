//! Streaming standbys (docs/design.md §8): whether the server may be changed at all
//! (`writable.rs`), which standbys it feeds and how far behind they are (`standbys.rs`), keeping
//! long data work from running ahead of them (`throttle.rs`), and comparing a standby's data
//! with its primary's (`fingerprint.rs`).

mod fingerprint;
mod standbys;
mod throttle;
mod writable;

pub use fingerprint::fingerprint;
pub use standbys::{standbys, Standby};
pub use throttle::{parse_max_lag, wait_until_replayed, MaxLag, ReplicaThrottle};
pub use writable::{refuse_unless_writable, ServerRole};

use std::time::Duration;

/// "1.5 s", "250 ms", "10 min".
pub fn seconds(d: Duration) -> String {
    if d >= Duration::from_secs(120) && d.as_secs() % 60 == 0 {
        format!("{} min", d.as_secs() / 60)
    } else if d >= Duration::from_secs(1) {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// "512 B", "64.0 kB", "1.5 MB".
pub fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} kB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}
