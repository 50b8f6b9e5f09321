//! Counts as a DBA reads them in cleanup's messages and reports.

/// "1 row", "5 rows".
pub fn rows(n: u64) -> String {
    if n == 1 {
        "1 row".into()
    } else {
        format!("{n} rows")
    }
}
