//! `migrate`'s report as a table.

use super::MigrateReport;
use crate::commands::check::write_findings;
use crate::db::blockers;
use crate::report::{self, Details};
use std::io::Write;

impl Details for MigrateReport {
    fn summary(&self, _dry_run: bool, _schema_version: i32) -> report::Summary {
        report::Summary::line(format!(
            "version {} → {}, {} applied, {} constraints validated",
            self.from_version,
            self.to_version,
            self.applied.len(),
            self.validated.len()
        ))
    }

    fn write_table(&self, out: &mut dyn Write) -> std::io::Result<()> {
        report::write_versions(out, self.from_version, self.to_version)?;
        if let Some(plan) = &self.plan {
            if plan.is_empty() {
                writeln!(out, "Plan: nothing to apply.")?;
            }
            for m in plan {
                let t = report::statements_table(&m.statements);
                writeln!(out, "V{} {}\n{t}", m.version, m.name)?;
            }
        }
        report::write_migrations(out, "applied", &self.applied)?;
        if let Some(planned) = self.would_restore.as_ref().filter(|p| !p.is_empty()) {
            writeln!(out, "Would restore from schema {}:", crate::archive::SCHEMA)?;
            let mut t = report::table(&["version", "object", "from", "rows"]);
            for p in planned {
                t.add_row(vec![
                    format!("V{}", p.version),
                    p.object.clone(),
                    p.archive.clone(),
                    p.rows.to_string(),
                ]);
            }
            writeln!(out, "{t}")?;
        }
        if let Some(p) = &self.preflight {
            writeln!(
                out,
                "preflight: {} ({})",
                if p.ok {
                    "every row satisfies the catalog constraints".to_string()
                } else {
                    format!("{} violating rows", p.total_violations)
                },
                took(p.duration_ms)
            )?;
            if let Some(note) = &p.live_note {
                writeln!(out, "preflight: {note}.")?;
            }
        }
        if !self.blocked_by.is_empty() {
            writeln!(out, "Blocked by:")?;
            write_findings(out, &self.blocked_by)?;
            writeln!(out, "Next: `ruleiq-db cleanup --dry-run`, then `ruleiq-db cleanup`, then migrate again.")?;
        }
        if !self.validate_ms.is_empty() {
            let timed: Vec<String> = self
                .validate_ms
                .iter()
                .map(|t| format!("{} ({})", t.constraint, took(t.ms)))
                .collect();
            writeln!(out, "validated: {}", timed.join(", "))?;
        } else if !self.validated.is_empty() {
            writeln!(out, "validated: {}", self.validated.join(", "))?;
        }
        if !self.restored.is_empty() {
            writeln!(out, "Restored from schema {}:", crate::archive::SCHEMA)?;
            let mut t = report::table(&["object", "from", "rows", "archive"]);
            for r in &self.restored {
                t.add_row(vec![
                    r.object.clone(),
                    r.archive.clone(),
                    r.rows.to_string(),
                    if r.archive_dropped { "dropped" } else { "kept" }.to_string(),
                ]);
            }
            writeln!(out, "{t}")?;
        }
        if let Some(e) = &self.estimate {
            writeln!(out, "{}", e.line())?;
        }
        if let Some(found) = &self.blockers {
            blockers::write_table(out, found)?;
        }
        if self.replica_wait_ms > 0 {
            writeln!(
                out,
                "waited {} ms for the standbys to replay",
                self.replica_wait_ms
            )?;
        }
        if let Some(compat) = &self.compat {
            writeln!(
                out,
                "Compatibility schema {} (old and new column names, until `ruleiq-db compat --drop`):",
                compat.found.schema
            )?;
            writeln!(out, "{}", crate::compat::views_table(&compat.found.views))?;
            writeln!(
                out,
                "Application code that still uses legacy column names connects with {} (search_path={}).",
                compat.connection_option, compat.search_path
            )?;
        }
        Ok(())
    }
}

/// "1.5 s", "250 ms": how long a step took.
fn took(ms: u64) -> String {
    crate::db::replication::seconds(std::time::Duration::from_millis(ms))
}
