//! `rehearse`: the whole repair played on a throwaway PostgreSQL — adopt (for a dump), check,
//! cleanup, migrate, status, the application's queries old and new, rollback, migrate again (and
//! with --with-standby, a streaming standby compared with the primary at the end) — with one
//! combined report. Needs no
//! server: it starts one from the local binaries and removes it afterwards, also after Ctrl-C or
//! an error.
//!
//! Every step is reported as it went: a step after a failure is "not run", and a total whose
//! step did not run is "not run", never a zero. The sequence is one table (`table`: each step's
//! name, the command or action it plays, what counts as success), played by one loop (`play`)
//! over one state (`state`); a command step shows the line rendered from the command it runs.
//! The servers, the loading of SQL, the policy choice, the work of the steps that are not
//! commands and the report are `crate::rehearsal`'s.

mod actions;
mod command_step;
mod play;
mod state;
mod table;

use super::{Outcome, Settings};
use crate::cli::RehearseArgs;
use crate::exit::Code;
use crate::rehearsal::cluster::{self, Servers};
use crate::rehearsal::{dump, load};
use crate::rehearsal::{
    dump_scan::DumpNeeds, measured_steps, named_params, named_params::QuerySpec,
};
use crate::rehearsal::{RehearseReport, StepOutcome};
use crate::report::{Report, Summary};
use anyhow::{Context as _, Result};
use state::Rehearsal;
use std::io::Write;
use std::path::PathBuf;
use table::Source;

pub fn run(settings: &Settings, args: &RehearseArgs) -> Result<Outcome> {
    let dump = match &args.dump {
        Some(path) => Some(dump::read_dump(path)?),
        None => None,
    };
    if let Some(policy) = &args.policy {
        // A policy that cannot be read fails before a server is started; cleanup parses it.
        std::fs::metadata(policy)
            .with_context(|| format!("cannot read the policy {}", policy.display()))?;
    }
    // Read before a server starts: a queries file that does not parse, and the roles and
    // extensions a dump needs.
    let queries = match &args.queries {
        Some(path) => named_params::read_file(path)?,
        None => Vec::new(),
    };
    let dump = match dump {
        Some(path) => {
            let needs = measured_steps::scan_dump(&settings.log, &path)?;
            Some((path, needs))
        }
        None => None,
    };
    let read = Read { dump, queries };
    let servers = cluster::start(&settings.log, args.with_standby)?;
    let result = rehearse(settings, &servers, args, &read);
    cluster::wait_for_the_interrupt_to_finish();
    result
}

/// What rehearse read before starting a server: the dump and its needs, the --queries.
struct Read {
    dump: Option<(PathBuf, DumpNeeds)>,
    queries: Vec<QuerySpec>,
}

fn rehearse(
    settings: &Settings,
    servers: &Servers,
    args: &RehearseArgs,
    read: &Read,
) -> Result<Outcome> {
    load::create_database(&servers.admin)?;
    let target = &servers.target;
    let source = match &read.dump {
        Some((path, needs)) => Source::Dump {
            path,
            needs,
            accept_drift: args.accept_drift,
        },
        None => Source::Fixture,
    };
    let table = table::sequence(&source, args.policy.as_deref(), servers.standby.as_ref());
    let mut state = Rehearsal::new(
        // A throwaway database: nothing to confirm, and what the steps do to it is not what a
        // failure of rehearse reports.
        settings.for_throwaway(target.clone()),
        target,
        &read.queries,
        args.policy.as_deref(),
        matches!(source, Source::Fixture),
    );
    play::play(table, &mut state)?;
    let report = report(state, &source, servers);
    let all_ok = report.steps.iter().all(|s| s.ok);
    let schema_version = report
        .steps
        .iter()
        .rev()
        .find_map(|s| s.read.schema_version)
        .unwrap_or(0);
    let code = if all_ok { Code::Ok } else { Code::Error };
    if let Some(failed) = report
        .steps
        .iter()
        .find(|s| s.outcome == StepOutcome::Failed)
    {
        let _ = writeln!(
            std::io::stderr(),
            "ruleiq-db: rehearse stopped at `{}`: {}",
            failed.command,
            failed.summary
        );
    }
    Ok(Outcome::new(
        Report {
            command: "rehearse",
            ok: all_ok,
            dry_run: false,
            schema_version,
            details: report,
        },
        code,
    ))
}

/// The combined report: the steps, and the totals read from the steps that ran well.
fn report(mut state: Rehearsal, source: &Source, servers: &Servers) -> RehearseReport {
    let number = |step: &str, read: fn(&Summary) -> Option<u64>| -> Option<u64> {
        state
            .step(step)
            .filter(|s| s.outcome == StepOutcome::Ok)
            .and_then(|s| read(&s.read))
    };
    let violations_found = number("check", |s| s.violations);
    let rows_cleaned = number("cleanup", |s| s.rows);
    let violations_left = number("final check", |s| s.violations);
    // The table always holds cleanup, which chooses the policy whether it runs or not.
    let policy = match state.policy.take() {
        Some(chosen) => chosen,
        None => state.policy_choice(),
    };
    RehearseReport {
        source: match source {
            Source::Fixture => format!("bundled fixture ({})", load::FIXTURE_NAME),
            Source::Dump { path, .. } => path.display().to_string(),
        },
        server: servers.description.clone(),
        violations_found,
        rows_cleaned,
        violations_left,
        policy,
        needs_decision: state.needs_decision,
        steps: state.steps,
        standby: state.standby_check,
        roles_created: state.roles_created,
        queries: state.after.queries,
        compat_grants: state.after.compat_grants,
    }
}
