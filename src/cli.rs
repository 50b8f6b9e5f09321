//! The command line: clap types only. Doc comments here are the `--help` text.

pub use crate::report::Format;
pub use crate::units::{parse_duration, parse_window, MAX_DURATION_MS};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

mod line;

/// Migrate, check, clean and roll back the ruleIQ PostgreSQL database.
///
/// Typical order on a database built by the legacy tool: `baseline` (adopt it), `check-constraints`
/// (name the rows that would break the new constraints), `cleanup` (repair them, audited and
/// undoable), `migrate` (apply 008 and validate; old application code keeps its column names
/// through schema ruleiq_compat), `compat --drop` (once no old code is left). `rehearse` plays
/// all of it on a throwaway server.
///
/// Exit codes: 0 done or nothing to do; 1 error (connection, SQL, file); 2 usage; 3 rows violate
/// the constraints; 4 refused for safety (edited history, missing --yes, lock busy, rename
/// conflict, unknown target, a standby or read-only server, standbys too far behind).
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
    /// PostgreSQL URL or key=value string: the DIRECT URL, not the pooled one (for Neon, the
    /// host without `-pooler`). SQLAlchemy's `postgresql+asyncpg://…` is accepted. Without it:
    /// DATABASE_URL_UNPOOLED, POSTGRES_URL_NON_POOLING, DIRECT_URL, then DATABASE_URL; else
    /// libpq's PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE, PGSSLMODE, the password file and
    /// the local socket.
    #[arg(long, global = true)]
    pub database_url: Option<String>,

    /// Report format on stdout.
    #[arg(long, value_enum, default_value_t = Format::Table, global = true)]
    pub format: Format,

    /// Also write the report to this file (same format).
    #[arg(long, global = true, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// The envelope every changing command keeps (lock waits and timeouts, retries, blockers,
    /// standbys).
    #[command(flatten)]
    pub safety: SafetyArgs,

    /// No log lines on stderr (errors still print).
    #[arg(long, short, global = true, display_order = 9)]
    pub quiet: bool,

    /// No progress bars (they only show on a terminal anyway).
    #[arg(long, global = true, display_order = 10)]
    pub no_progress: bool,

    /// Confirm changing commands (cleanup, rollback, compat --drop) without a prompt.
    #[arg(long, short = 'y', global = true, display_order = 11)]
    pub yes: bool,
}

/// The flags of a changing command's envelope (docs/design.md §9), resolved into the
/// [`Safety`](crate::db::Safety) its session keeps. In `--help` they keep their place among the
/// global flags: the replica ones come after `--yes` (hence the `display_order`s here and on
/// `--quiet`, `--no-progress` and `--yes`).
#[derive(Debug, Args, Clone)]
pub struct SafetyArgs {
    /// How long one statement may wait for a lock before it is rolled back and retried (e.g.
    /// 40ms, 2s). While it waits, the application's queries on that table queue behind it:
    /// this is the longest stall ruleiq-db adds to one. Raise it only if a busy table keeps
    /// refusing the lock after every retry (the cost: longer stalls; docs/performance.md).
    #[arg(long, default_value = "40ms", value_parser = parse_duration, global = true)]
    pub lock_timeout: Duration,

    /// How long a VALIDATE CONSTRAINT may wait for its lock before it is rolled back and
    /// retried. Its lock (SHARE UPDATE EXCLUSIVE) conflicts with no application query, so
    /// nothing the application runs queues behind it; what holds it up is another DDL or a
    /// (auto)vacuum of the table, and PostgreSQL cancels an autovacuum only for a lock request
    /// that has waited deadlock_timeout (1s by default): hence longer than that.
    #[arg(long, default_value = "2s", value_parser = parse_duration, global = true)]
    pub validate_lock_timeout: Duration,

    /// How many times a statement that hit the lock timeout is retried, with backoff (50ms,
    /// doubling up to 1s, so that at most one wait a second holds the application up: the
    /// default gives a lock about two minutes to come free). A retry goes sooner once the
    /// transactions that were holding table locks have ended; migrate does not ask for a
    /// migration's table locks while a transaction open for a while holds one of its tables.
    #[arg(long, default_value_t = 120, global = true)]
    pub lock_retries: u32,

    /// How long to wait for another ruleiq-db that holds the migration lock, and for sessions
    /// that would block the command's table locks to go.
    #[arg(long, default_value = "60s", value_parser = parse_duration, global = true)]
    pub lock_wait: Duration,

    /// Before its first table lock, a changing command looks for sessions that would make it
    /// wait; a transaction open longer than this counts as one wherever it is (e.g. 30s, 5m).
    #[arg(long, default_value = "1m", value_parser = parse_duration, global = true)]
    pub blocker_age: Duration,

    /// Go straight to the table locks even when sessions would make the command wait (they
    /// are still named on stderr); lock_timeout and retries then bound the wait.
    #[arg(long, global = true)]
    pub ignore_blockers: bool,

    /// Long data work (cleanup and undo batches, rollback steps) pauses between batches while a
    /// standby is further behind than this: a time (10s, 500ms; 0s = any WAL not replayed yet)
    /// or an amount of WAL (64MB, 512kB).
    #[arg(long, default_value = "10s", value_parser = crate::db::replication::parse_max_lag, global = true, display_order = 12)]
    pub max_replica_lag: crate::db::replication::MaxLag,

    /// How long to wait for lagging standbys (between batches, and after 008 and each VALIDATE)
    /// before stopping with exit 4; what was done before stays whole and committed.
    #[arg(long, default_value = "10m", value_parser = parse_duration, global = true, display_order = 13)]
    pub max_replica_wait: Duration,
}

impl SafetyArgs {
    pub fn safety(&self) -> crate::db::Safety {
        crate::db::Safety {
            lock_wait: self.lock_wait,
            lock_timeout: self.lock_timeout,
            patient_lock_timeout: self.validate_lock_timeout,
            retry: crate::db::RetryPolicy::new(self.lock_retries),
            blocker_age: self.blocker_age,
            ignore_blockers: self.ignore_blockers,
            max_replica_lag: self.max_replica_lag,
            max_replica_wait: self.max_replica_wait,
        }
    }
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
    Status(StatusArgs),
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
    /// Show, re-create or drop the compatibility schema `ruleiq_compat`, which lets application
    /// code that still uses the legacy column names run beside code that uses the new ones.
    ///
    /// 008 renames 17 columns (handles_persona → handles_personal_data, business_profil →
    /// business_profile_id, …). In the same transaction it creates schema ruleiq_compat with one
    /// view per renamed table, named like the table, showing every column under its current
    /// name and each renamed one again under its legacy name. The views are automatically
    /// updatable: SELECT, INSERT, UPDATE, DELETE, RETURNING and ON CONFLICT work with either
    /// spelling, and the tables' defaults and constraints apply. An application that connects
    /// with search_path=ruleiq_compat,public (libpq: options=-csearch_path%3Druleiq_compat,public)
    /// keeps working before, during and after 008, whichever names it uses.
    ///
    /// Without options: show the schema and its views; on a version-8 database without them,
    /// create them (the same SQL as 008's). With --drop: remove them, once no old code is left.
    #[command(
        after_help = "Examples:\n  ruleiq-db compat                          show the views and the roles pointed at them\n  ruleiq-db compat --for-role app --wait 1h point role app at the views (version 7 or 8), wait for its older sessions\n  ruleiq-db compat --drop --dry-run         what --drop would run\n  ruleiq-db compat --drop --yes             end the compatibility period (measured over --observe, default 5m)\n\nRolling out 008 through a transaction-mode pooler (production):\n  1. ruleiq-db compat --for-role APP_ROLE   (the role's new server sessions use ruleiq_compat, public)\n  2. recycle the pooler's server connections (PgBouncer: RECONNECT; Neon: restart the compute), or wait server_lifetime\n  3. ruleiq-db migrate                      (on the direct URL; refuses while a session of APP_ROLE predates step 1)\n  4. roll out the code that uses the new column names, process by process\n  5. ruleiq-db compat --drop --yes          when no statement names a legacy column (pg_stat_statements)\n\nConnecting directly instead: options=-csearch_path%3Druleiq_compat,public in the application's URL, then 3-5.\n`rollback` of 008 drops the schema first, or, while roles are pointed at it, re-creates it for version 7."
    )]
    Compat(CompatArgs),
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
            Command::Status(_) => "status",
            Command::CheckConstraints(_) => "check-constraints",
            Command::Cleanup(_) => "cleanup",
            Command::Rollback(_) => "rollback",
            Command::Baseline(_) => "baseline",
            Command::Compat(_) => "compat",
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
            Command::Compat(a) => a.dry_run,
            Command::Status(_) | Command::Baseline(_) | Command::Rehearse(_) => false,
        }
    }

    /// Whether this invocation asks before it changes anything, and so takes `--yes`.
    pub fn confirms(&self) -> bool {
        match self {
            Command::Cleanup(a) => !a.dry_run,
            Command::Rollback(a) => !a.dry_run,
            Command::Compat(a) => a.drop && !a.dry_run,
            _ => false,
        }
    }

    /// Whether this invocation only reads the database it is pointed at, and so may run
    /// through a transaction-mode pooler (`rehearse` works on a throwaway server of its own).
    pub fn reads_only(&self) -> bool {
        self.dry_run() || matches!(self, Command::Status(_) | Command::Rehearse(_))
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
    /// Drop the compatibility schema ruleiq_compat right after 008 commits (008 itself always
    /// creates it, so its text and checksum never depend on this flag). Use it only when every
    /// application process already uses the new column names.
    #[arg(long)]
    pub no_compat: bool,
}

#[derive(Debug, Args, Clone, Default)]
pub struct StatusArgs {
    /// Also the database's health: connections, table and index sizes, unused indexes, the
    /// slowest statements (pg_stat_statements) and tables that look bloated.
    #[arg(long)]
    pub health: bool,
}

#[derive(Debug, Args, Clone)]
pub struct CheckArgs {
    /// Only count; change nothing and take no lock stronger than ACCESS SHARE.
    #[arg(long)]
    pub dry_run: bool,
    /// Check only this constraint (repeatable).
    #[arg(long = "constraint", value_name = "NAME")]
    pub constraints: Vec<String>,
    /// When no cleanup run has completed, violating rows created or updated within this long
    /// count as live (the application still writes them); after a completed run, the rows
    /// written since it finished do (e.g. 7d, 12h, 30m, 0s).
    #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = parse_window)]
    pub live_window: Duration,
}

impl Default for CheckArgs {
    fn default() -> CheckArgs {
        CheckArgs {
            dry_run: false,
            constraints: Vec::new(),
            live_window: crate::constraints::live::DEFAULT_WINDOW,
        }
    }
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
pub struct CompatArgs {
    /// Remove the views and the schema (asks first; --yes off a terminal). Application code
    /// still using a legacy column name fails from then on.
    #[arg(long, conflicts_with = "for_role")]
    pub drop: bool,
    /// Point this role's new sessions in this database at the views (ALTER ROLE … IN DATABASE
    /// … SET search_path = ruleiq_compat, public), creating them for the current version, 7
    /// included; for an application behind a transaction-mode pooler, which passes no
    /// connection option. Repeatable. Again later: gives the roles their rights on the views.
    #[arg(long, value_name = "ROLE")]
    pub for_role: Vec<String>,
    /// Wait this long for the sessions of the recorded roles that predate their setting to
    /// end (never terminating them), else exit 4 (compat_not_in_effect).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub wait: Option<Duration>,
    /// With --drop: how long to watch pg_stat_statements for statements naming a legacy column.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "5m", requires = "drop")]
    pub observe: Duration,
    /// With --drop: go ahead without pg_stat_statements, unmeasured.
    #[arg(long, requires = "drop")]
    pub unverified: bool,
    /// Show what would be created or dropped; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The application's own URL (its pooled URL, as its role): after the command, several
    /// transactions held open at once on it must each see ruleiq_compat on their search_path
    /// (else exit 4, compat_not_in_effect). A pooler that tracks search_path could hide a
    /// role-level setting; this is how to know it does not.
    #[arg(long, value_name = "URL")]
    pub probe_url: Option<String>,
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
    /// Attach a streaming standby to the throwaway server and check at the end that it holds
    /// exactly the primary's data.
    #[arg(long)]
    pub with_standby: bool,
    /// The cleanup policy to rehearse with (see fixtures/cleanup-policy.example.yaml); without
    /// it, when cleanup needs decisions, the bundled example policy decides them.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// With --dump: adopt it with `baseline --accept-drift`.
    #[arg(long, requires = "dump")]
    pub accept_drift: bool,
    /// Your own critical queries, measured before and after 008 beside the application's
    /// three: a YAML list of `name`, `sql` (with :named parameters, bound, never spliced) and
    /// `params` (a map), optionally `sql_after` (the full column names; by default the legacy
    /// names in `sql` are replaced).
    #[arg(long, value_name = "FILE")]
    pub queries: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

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
