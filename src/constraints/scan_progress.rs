//! How far a heap scan has come, read from the rows it returns: a sequential scan (parallel or
//! not) and a bitmap heap scan hand out the table's blocks in ascending order, so the block of
//! the latest violating row says how much of the table is behind it. PostgreSQL has no
//! progress view for a SELECT; this costs one column per violating row and nothing per row
//! that passes, and only when a bar is drawn. A synchronized scan may start mid-table and wrap around: blocks count from
//! the first one seen. Between two violating rows the bar stands still, so on a clean table it
//! moves only when the scan ends.

/// `ctid`'s block number, as a column of the scan.
pub fn block_column(alias: &str) -> String {
    format!("({alias}.ctid::text::point)[0]::int8")
}

/// The share of a table's blocks a scan has passed.
#[derive(Debug, Clone)]
pub struct ScanProgress {
    blocks: i64,
    first: Option<i64>,
    passed: i64,
}

impl ScanProgress {
    pub fn new(blocks: i64) -> ScanProgress {
        ScanProgress {
            blocks: blocks.max(1),
            first: None,
            passed: 0,
        }
    }

    /// Takes the block of a returned row; returns the share passed so far (0–1).
    pub fn seen(&mut self, block: i64) -> f64 {
        let first = *self.first.get_or_insert(block);
        let from_first = (block - first).rem_euclid(self.blocks);
        // Parallel workers' rows arrive a little out of order: never step back.
        self.passed = self.passed.max(from_first + 1);
        (self.passed as f64 / self.blocks as f64).min(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_the_first_block_and_wraps_around() {
        let mut p = ScanProgress::new(100);
        assert!((p.seen(50) - 0.01).abs() < 1e-9);
        assert!((p.seen(99) - 0.50).abs() < 1e-9);
        assert!((p.seen(98) - 0.50).abs() < 1e-9, "never steps back");
        assert!((p.seen(10) - 0.61).abs() < 1e-9, "wrapped");
        assert!((p.seen(49) - 1.0).abs() < 1e-9);
    }
}
