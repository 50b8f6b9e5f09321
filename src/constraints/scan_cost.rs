//! How one of the check's scans is reported (its table, constraints, path and time), sampled
//! (`cost.rs`) or timed as the check ran it (`check.rs`): the one shape both fill.

use serde::Serialize;
use std::time::Duration;

/// One scan of the check: a table's CHECKs together, or one foreign key.
#[derive(Debug, Clone, Serialize)]
pub struct ScanCost {
    pub table: &'static str,
    pub constraints: Vec<&'static str>,
    /// `index`: only the pages an index says hold rows that can violate; `sequential`: one pass
    /// over the whole table evaluating all its CHECKs at once (or a foreign key's anti-join).
    pub path: &'static str,
    /// Where an index could narrow the scan: the share of the table's pages it would read,
    /// counted on a sample (the index is taken at 0.5 or less).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index_page_share: Option<f64>,
    /// Sampled (`cost.rs`): the scan alone, on one process; timed (`check.rs`): as it ran
    /// beside the others. In milliseconds.
    pub ms: u64,
}

/// A check's scans at what they took, beside one another: what a dry run that ran the check in
/// full reports instead of sampling the same scans again.
#[derive(Debug, Clone, Default)]
pub struct TimedScans {
    pub scans: Vec<ScanCost>,
    /// The sessions they shared.
    pub sessions: usize,
    /// The bytes they read (a narrowed scan its share of its table).
    pub bytes: i64,
    /// Their times added up.
    pub busy: Duration,
}
