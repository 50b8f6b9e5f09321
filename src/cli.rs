//! The command line: clap types only. Doc comments here are the `--help` text.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

/// Migrate, check, clean and roll back the ruleIQ PostgreSQL database.
///
/// Typical order on a database built by the legacy tool: `baseline` (adopt it), `check-constraints`
/// (name the rows that would break the new constraints), `cleanup` (repair them, audited and
/// undoable), `migrate` (apply 008 and validate). `rehearse` plays all of it on a throwaway server.
///
/// Exit codes: 0 done or nothing to do; 1 error (connection, SQL, file); 2 usage; 3 rows violate
/// the constraints; 4 refused for safety (edited history, missing --yes, lock busy, rename
/// conflict, unknown target).
#[derive(Debug, Parser)]
#[command(name = "ruleiq-db", version, about, long_about, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes.
#[derive(Debug, Args, Clone)]
pub struct GlobalArgs {
    /// PostgreSQL URL or key=value string. Without it: libpq's PGHOST, PGPORT, PGUSER,
    /// PGPASSWORD, PGDATABASE, PGSSLMODE, the password file and the local socket.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,

    /// Report format on stdout.
    #[arg(long, value_enum, default_value_t = Format::Table, global = true)]
    pub format: Format,

    /// Also write the report to this file (same format).
    #[arg(long, global = true, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// How long one DDL statement may wait for a table lock before it is rolled back and
    /// retried (e.g. 500ms, 2s). Bounds how long the application's queries queue behind it.
    #[arg(long, default_value = "2s", value_parser = parse_duration, global = true)]
    pub lock_timeout: Duration,

    /// How many times a statement that hit the lock timeout is retried, with backoff.
    #[arg(long, default_value_t = 30, global = true)]
    pub lock_retries: u32,

    /// How long to wait for another ruleiq-db that holds the migration lock.
    #[arg(long, default_value = "60s", value_parser = parse_duration, global = true)]
    pub lock_wait: Duration,

    /// No log lines on stderr (errors still print).
    #[arg(long, short, global = true)]
    pub quiet: bool,

    /// No progress bars (they only show on a terminal anyway).
    #[arg(long, global = true)]
    pub no_progress: bool,

    /// Confirm changing commands (cleanup, rollback) without a prompt.
    #[arg(long, short = 'y', global = true)]
    pub yes: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply pending migrations up to the latest (or --target), with a preflight check of every
    /// row before 008 and validation of its constraints after.
    #[command(
        after_help = "Examples:\n  ruleiq-db migrate --dry-run          the plan: statements, locks, the preflight's verdict\n  ruleiq-db migrate                    apply everything pending\n  ruleiq-db migrate --target 7         stop before the repair\n\nExit 3 when rows violate the constraints 008 adds (nothing is changed): run\n`ruleiq-db check-constraints --dry-run`, then `ruleiq-db cleanup`."
    )]
    Migrate(MigrateArgs),
    /// Show each migration (applied, pending, divergent, missing), each constraint (absent,
    /// not_valid, valid) and drift from the expected schema.
    Status,
    /// Count and name the rows that break each catalog constraint. Without --dry-run, also
    /// validate NOT VALID constraints that have no violation left.
    #[command(
        after_help = "Examples:\n  ruleiq-db check-constraints --dry-run\n  ruleiq-db check-constraints --dry-run --format json --output violations.json   (for CI)\n  ruleiq-db check-constraints --dry-run --constraint chk_evidence_status\n\nConstraints: chk_evidence_status, chk_employee_count_positive, chk_data_sensitivity,\nchk_approval_workflow, fk_assessment_business_profile, fk_generated_policy_business_profile.\nExit 0 when no row violates them, 3 when some do."
    )]
    CheckConstraints(CheckArgs),
    /// Repair violating rows by policy, recording every change in schema ruleiq_audit.
    #[command(
        after_help = "Examples:\n  ruleiq-db cleanup --dry-run                      what the policy would change, with examples\n  ruleiq-db cleanup --yes                          apply the built-in policy\n  ruleiq-db cleanup --policy policy.yaml --yes     override it per constraint\n  ruleiq-db cleanup --undo RUN_ID --yes            put a run's rows back\n\nThe policy options are documented in fixtures/cleanup-policy.example.yaml."
    )]
    Cleanup(CleanupArgs),
    /// Revert applied migrations, archiving dropped tables and columns in schema ruleiq_archive.
    #[command(
        after_help = "Examples:\n  ruleiq-db rollback --dry-run         the plan for the last migration: statements, locks, archives\n  ruleiq-db rollback --yes             revert the last applied migration\n  ruleiq-db rollback --to 7 --yes      revert down to version 7\n  ruleiq-db rollback --steps 2 --yes   revert the last two"
    )]
    Rollback(RollbackArgs),
    /// Adopt a database built by another tool: read its version from alembic_version (else its
    /// shape), compare, and record history without running anything.
    #[command(
        after_help = "Examples:\n  ruleiq-db baseline                  adopt at the version alembic_version names ('007' is 7)\n  ruleiq-db baseline --accept-drift   adopt, recording the differences 008 does not need as accepted\n  ruleiq-db baseline --version 7      adopt at version 7 whatever the evidence says"
    )]
    Baseline(BaselineArgs),
    /// Play the whole repair on a throwaway PostgreSQL: no server to set up.
    #[command(
        after_help = "Examples:\n  ruleiq-db rehearse                                    the bundled dirty fixture\n  ruleiq-db rehearse --dump prod.sql --policy policy.yaml  a plain-SQL pg_dump of production, your cleanup policy"
    )]
    Rehearse(RehearseArgs),
}

impl Command {
    /// The name used in reports (`command` key).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Migrate(_) => "migrate",
            Command::Status => "status",
            Command::CheckConstraints(_) => "check-constraints",
            Command::Cleanup(_) => "cleanup",
            Command::Rollback(_) => "rollback",
            Command::Baseline(_) => "baseline",
            Command::Rehearse(_) => "rehearse",
        }
    }

    /// Whether this invocation is a dry run.
    pub fn dry_run(&self) -> bool {
        match self {
            Command::Migrate(a) => a.dry_run,
            Command::CheckConstraints(a) => a.dry_run,
            Command::Cleanup(a) => a.dry_run,
            Command::Rollback(a) => a.dry_run,
            Command::Status | Command::Baseline(_) | Command::Rehearse(_) => false,
        }
    }
}

#[derive(Debug, Args, Clone, Default)]
pub struct MigrateArgs {
    /// Stop at this version instead of the latest.
    #[arg(long, value_name = "N")]
    pub target: Option<i32>,
    /// Print the plan (statements and the locks they take) and the preflight verdict; change
    /// nothing, not even the history table.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args, Clone, Default)]
pub struct CheckArgs {
    /// Only count; change nothing and take no lock stronger than ACCESS SHARE.
    #[arg(long)]
    pub dry_run: bool,
    /// Check only this constraint (repeatable).
    #[arg(long = "constraint", value_name = "NAME")]
    pub constraints: Vec<String>,
}

#[derive(Debug, Args, Clone, Default)]
pub struct CleanupArgs {
    /// Show what the policy would change, with examples; change nothing.
    #[arg(long, conflicts_with = "undo")]
    pub dry_run: bool,
    /// YAML policy overriding the built-in one per constraint
    /// (see fixtures/cleanup-policy.example.yaml).
    #[arg(long, value_name = "FILE", conflicts_with = "undo")]
    pub policy: Option<PathBuf>,
    /// Put back the rows a previous cleanup run changed.
    #[arg(long, value_name = "RUN_ID")]
    pub undo: Option<String>,
}

#[derive(Debug, Args, Clone, Default)]
pub struct RollbackArgs {
    /// Roll back down to this version (0 = empty).
    #[arg(long, value_name = "N", conflicts_with = "steps")]
    pub to: Option<i32>,
    /// Roll back this many migrations.
    #[arg(long, value_name = "K")]
    pub steps: Option<u32>,
    /// Show the plan: statements, locks, what would be archived; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args, Clone, Default)]
pub struct BaselineArgs {
    /// Verify and record this version instead of reading it from alembic_version or the shape.
    #[arg(long, value_name = "N")]
    pub version: Option<i32>,
    /// Adopt despite differences that 008 does not need (an index missing, a nullability that
    /// differs), recording them as accepted beside the history; `status` then shows them as
    /// accepted. Differences 008 needs still refuse.
    #[arg(long)]
    pub accept_drift: bool,
}

#[derive(Debug, Args, Clone, Default)]
pub struct RehearseArgs {
    /// A plain-SQL pg_dump of production at version 7, instead of the bundled dirty fixture.
    #[arg(long, value_name = "FILE")]
    pub dump: Option<PathBuf>,
    /// The cleanup policy to rehearse with (see fixtures/cleanup-policy.example.yaml); without
    /// it, when cleanup needs decisions, the bundled example policy decides them.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// With --dump: adopt it with `baseline --accept-drift`.
    #[arg(long, requires = "dump")]
    pub accept_drift: bool,
}

/// Parses `500ms`, `2s`, `1m`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration (try 500ms, 2s or 1m)"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" | "min" => value * 60.0,
        other => {
            return Err(format!(
                "unknown unit '{other}' in '{text}' (use ms, s or m)"
            ))
        }
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!("'{text}' is not a valid duration"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert!(parse_duration("2h").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn check_help_names_exactly_the_catalog_constraints() {
        use clap::CommandFactory;
        let help = Cli::command()
            .find_subcommand("check-constraints")
            .and_then(|c| c.get_after_help().map(|h| h.to_string()))
            .unwrap();
        let listed = help
            .split("Constraints: ")
            .nth(1)
            .unwrap()
            .split(".\n")
            .next()
            .unwrap();
        let listed: Vec<&str> = listed.split(',').map(str::trim).collect();
        assert_eq!(listed, crate::catalog::constraints::names());
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
