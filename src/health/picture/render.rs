//! The health picture as tables for a person.

use super::Health;
use crate::report;
use std::io::Write;

/// Bytes for people: 8.0 kB, 1.2 MB, 3.4 GB.
pub fn human_bytes(bytes: i64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < units.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

impl Health {
    pub fn write_table(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let c = &self.connections;
        let states: Vec<String> = c
            .by_state
            .iter()
            .map(|s| format!("{} {}", s.count, s.state))
            .collect();
        writeln!(
            out,
            "Health\nconnections: {} of max_connections {} ({} reserved for superusers), {} on this database; {}",
            c.total,
            c.max_connections,
            c.superuser_reserved,
            c.this_database,
            states.join(", ")
        )?;
        let mut t = report::table(&[
            "table",
            "live rows",
            "table size",
            "indexes size",
            "total",
            "dead rows",
            "last autovacuum",
        ]);
        for s in &self.tables {
            t.add_row(vec![
                s.table.clone(),
                s.live_rows.to_string(),
                human_bytes(s.table_bytes),
                human_bytes(s.indexes_bytes),
                human_bytes(s.total_bytes),
                s.dead_rows.to_string(),
                s.last_autovacuum.clone().unwrap_or_else(|| "never".into()),
            ]);
        }
        writeln!(out, "{t}")?;
        let since = self
            .stats_reset
            .as_deref()
            .map_or("since the statistics began".to_string(), |r| {
                format!("since {r}")
            });
        if self.unused_indexes.is_empty() {
            writeln!(out, "Every index has been scanned {since}.")?;
        } else {
            let mut t = report::table(&["unused index", "table", "size", "note"]);
            for i in &self.unused_indexes {
                t.add_row(vec![
                    i.index.clone(),
                    i.table.clone(),
                    human_bytes(i.bytes),
                    if i.unique {
                        "enforces uniqueness: keep".into()
                    } else {
                        String::new()
                    },
                ]);
            }
            writeln!(out, "Indexes not scanned {since}:\n{t}")?;
        }
        let slow = &self.slow_queries;
        if slow.statements.is_empty() {
            writeln!(out, "Slowest statements: {}", slow.note)?;
        } else {
            let mut t = report::table(&["mean", "calls", "total", "statement"]);
            for s in &slow.statements {
                t.add_row(vec![
                    format!("{:.2} ms", s.mean_ms),
                    s.calls.to_string(),
                    format!("{:.0} ms", s.total_ms),
                    s.query.clone(),
                ]);
            }
            writeln!(out, "Slowest statements ({}):\n{t}", slow.note)?;
        }
        if self.bloat.is_empty() {
            writeln!(out, "No table looks bloated.")
        } else {
            let mut t = report::table(&[
                "bloated?",
                "dead rows",
                "dead share",
                "last autovacuum",
                "why",
            ]);
            for b in &self.bloat {
                t.add_row(vec![
                    b.table.clone(),
                    b.dead_rows.to_string(),
                    format!("{:.0} %", b.dead_ratio * 100.0),
                    b.last_autovacuum.clone().unwrap_or_else(|| "never".into()),
                    b.reason.clone(),
                ]);
            }
            writeln!(out, "{t}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_as_people_write_them() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(8192), "8.0 kB");
        assert_eq!(human_bytes(3 * 1024 * 1024 / 2), "1.5 MB");
    }
}
