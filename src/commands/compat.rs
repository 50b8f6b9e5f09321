//! `compat`: show, re-create or drop the compatibility schema (docs/design.md §7).

use super::{Outcome, Settings};
use crate::catalog::compat::{self as sql, CONNECTION_OPTION, SCHEMA};
use crate::catalog::migrations::REPAIR_VERSION;
use crate::catalog::renames::renamed_tables;
use crate::catalog::repair::PlannedStatement;
use crate::cli::CompatArgs;
use crate::compat::{self, CompatSchema, CompatView};
use crate::db::blockers::{Scope, Takes};
use crate::db::Session;
use crate::exit::Code;
use crate::history;
use crate::refusal::Refusal;
use crate::report::{self, Details, Report};
use anyhow::Result;
use postgres::Client;
use serde::Serialize;
use std::io::Write;

#[derive(Debug, Serialize, Default)]
pub struct CompatReport {
    /// `ruleiq_compat` when the schema exists (after the command; as it is, for a dry run).
    pub schema: Option<&'static str>,
    pub views: Vec<CompatView>,
    pub dropped: bool,
    pub created: bool,
    /// How the application connects to use the views (when they exist).
    pub connection_option: Option<&'static str>,
    /// With --dry-run: what would run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<Vec<PlannedStatement>>,
    /// The roles pointed at the views (`--for-role`, recorded in ruleiq_meta.compat_roles):
    /// since when, their sessions that predate it, their rights on the views.
    pub roles: Vec<compat::RoleState>,
    /// The grants and revokes that gave the roles on each view their rights on the table.
    pub rights_synced: Vec<String>,
    /// The legacy columns statements still name, with their calls (pg_stat_statements): over
    /// --observe for --drop, since the statistics were reset for a dry run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub legacy_names_in_use: Option<Vec<compat::LegacyUse>>,
    /// What was done or found, in a sentence.
    pub summary: String,
}

/// What the command has to do, decided from the database's state.
#[derive(Debug, PartialEq, Eq)]
enum Action {
    Show,
    Create,
    Drop,
    /// Below version 8 nothing is renamed, so there is nothing to be compatible with.
    TooEarly(i32),
    /// `--drop` with no schema to drop.
    NothingToDrop,
}

fn decide(args: &CompatArgs, version: i32, found: &Option<CompatSchema>) -> Action {
    match (args.drop, found) {
        (true, Some(_)) => Action::Drop,
        (true, None) => Action::NothingToDrop,
        (false, _) if version < REPAIR_VERSION && found.is_none() => Action::TooEarly(version),
        (false, _) if version >= REPAIR_VERSION && !compat::complete(found) => Action::Create,
        (false, _) => Action::Show,
    }
}

pub fn run(settings: &Settings, args: &CompatArgs) -> Result<Outcome> {
    let outcome = run_without_probe(settings, args)?;
    let Some(url) = &args.probe_url else {
        return Ok(outcome);
    };
    let probe = crate::db::probe::search_path_seen(url, PROBE_TRANSACTIONS, SCHEMA)?;
    if !probe.ok {
        return Refusal::CompatNotInEffect(format!(
            "the application's connection does not see schema {SCHEMA} on every transaction: {} of its transactions saw search_path {}; a session that predates the role setting (recycle it: PgBouncer's RECONNECT, on Neon restart the compute, or wait server_lifetime) or a pooler that keeps search_path per client (PgBouncer 1.26+ with track_extra_parameters) stands between it and the views",
            probe.transactions,
            probe.search_path.join(" | ")
        ))
        .fail();
    }
    settings.log.line(&format!(
        "probe: {} transactions through the application's URL all saw search_path {}",
        probe.transactions,
        probe.search_path.join(" | ")
    ));
    Ok(Outcome::with_key(
        outcome,
        "probe",
        serde_json::to_value(&probe)?,
    ))
}

/// How many transactions the probe holds open at once through the application's URL.
const PROBE_TRANSACTIONS: usize = 4;

fn run_without_probe(settings: &Settings, args: &CompatArgs) -> Result<Outcome> {
    let (target, mut client) = settings.connect()?;
    let (version, found) = state(&mut client)?;
    if !args.for_role.is_empty() {
        return for_roles(settings, args, target, client, version, found);
    }
    let action = decide(args, version, &found);
    if args.dry_run {
        let plan = match action {
            Action::Create => Some(sql::create_statements()),
            Action::Drop => Some(sql::drop_statements()),
            _ => Some(Vec::new()),
        };
        let summary = match action {
            Action::Create if found.is_some() => format!(
                "would re-create the views of schema {SCHEMA} (one is missing or lacks columns its table has now)"
            ),
            Action::Create => format!("would create schema {SCHEMA} and its views"),
            Action::Drop => format!("would drop schema {SCHEMA} and its views"),
            _ => describe(&action, &found),
        };
        let roles = compat::recorded_states(&mut client)?;
        let mut plan = plan;
        let mut legacy = None;
        if action == Action::Drop {
            // What --drop would do for the roles, and what pg_stat_statements says so far
            // (since its statistics were reset; a real run watches --observe).
            let database = compat::database_name(&mut client)?;
            let resets = roles.iter().map(|r| PlannedStatement {
                sql: sql::reset_role_path(&r.role, &database),
                lock: "none; reaches the role's server sessions opened after it".into(),
            });
            plan = plan.map(|p| resets.chain(p).collect());
            let names: Vec<String> = roles.iter().map(|r| r.role.clone()).collect();
            legacy = compat::legacy_statements(&mut client, &names)?
                .ok()
                .map(|end| compat::legacy_use(None, &end));
        }
        let mut finished = finish(version, found, false, false, plan, summary, true);
        finished.details.legacy_names_in_use = legacy;
        return Ok(finished.with_roles(roles, vec![]));
    }
    if !matches!(action, Action::Create | Action::Drop) {
        let summary = describe(&action, &found);
        let roles = compat::recorded_states(&mut client)?;
        return Ok(
            finish(version, found, false, false, None, summary, false).with_roles(roles, vec![])
        );
    }
    if action == Action::Drop {
        let views = found.as_ref().map_or(0, |f| f.views.len());
        settings.confirm(&format!(
            "Drop schema {SCHEMA} and its {views} views? Application code that still uses a legacy column name fails from then on"
        ))?;
        refuse_while_legacy_names_are_used(settings, args, &mut client)?;
    }
    let mut session = settings.begin_session(target, client)?;
    // Decided again under the lock: another ruleiq-db may have changed it meanwhile.
    let (version, mut found) = state(session.client())?;
    settings.journal.version(version);
    let action = decide(args, version, &found);
    let existed = found.is_some();
    let (created, dropped) = session.locking(&views_scope(), |session| match action {
        Action::Create => {
            settings.log.line(&match &found {
                None => format!(
                    "creating schema {SCHEMA}: version {version} has renamed columns and no compatibility views"
                ),
                Some(_) => format!(
                    "re-creating the views of schema {SCHEMA}: one is missing or lacks columns its table has now"
                ),
            });
            // The recorded roles get their rights on the new views in the same transaction.
            compat::create_at_retried(session, version)?;
            Ok((true, false))
        }
        Action::Drop => {
            // The roles' setting goes first, and the views only once no session that
            // predates the reset is left: never while a session still resolves names through
            // them (docs/design.md §7).
            let reset = compat::reset_roles_retried(session)?;
            for role in &reset {
                settings.log.line(&format!(
                    "role {role}: new sessions in this database resolve names in public again"
                ));
            }
            compat::wait_for_sessions(
                session.client(),
                args.wait.unwrap_or_default(),
                &settings.log,
                &format!("compat --drop: the roles' search_path is reset, schema {SCHEMA} is kept (run `ruleiq-db compat --drop` again, or `compat --for-role` to point them back), because"),
                compat::Since::Reset,
            )?;
            compat::drop_and_forget_retried(session)?;
            Ok((false, true))
        }
        _ => Ok((false, false)),
    })?;
    let summary = if created && existed {
        format!("re-created the views of schema {SCHEMA}")
    } else if created {
        format!("created schema {SCHEMA}")
    } else if dropped {
        format!("dropped schema {SCHEMA} and its views")
    } else {
        describe(&action, &found)
    };
    if created || dropped {
        found = compat::inspect(session.client())?;
    }
    let roles = compat::recorded_states(session.client())?;
    Ok(finish(version, found, created, dropped, None, summary, false).with_roles(roles, vec![]))
}

/// What creating or dropping the views locks: their DDL locks them and reads their tables, so
/// sessions sitting on those tables would make it wait; they are named (and waited for) first,
/// as for migrate.
fn views_scope() -> Scope {
    let tables = renamed_tables().into_iter().map(str::to_string).collect();
    Scope::new("compat", tables, Takes::AccessExclusive)
}

/// `--for-role`: the views for the current version (7 included), each role's search_path in
/// this database pointed at them, recorded with the time, the roles' rights on the views
/// synced with those on the tables; then, with `--wait`, waiting until no session of theirs
/// predates the setting (docs/design.md §7).
fn for_roles(
    settings: &Settings,
    args: &CompatArgs,
    target: crate::db::config::Target,
    mut client: Client,
    version: i32,
    found: Option<CompatSchema>,
) -> Result<Outcome> {
    // The views are made over the tables 008 renames columns of, as version 7 has them:
    // earlier migrations still change those tables, and a view would stop them.
    if version < REPAIR_VERSION - 1 {
        return Refusal::TargetOutOfRange(format!(
            "compat --for-role needs version {} or later (the tables 008 renames columns of, as production has them); the database is at version {version}: `ruleiq-db migrate --target {}` first; nothing was changed",
            REPAIR_VERSION - 1,
            REPAIR_VERSION - 1
        ))
        .fail();
    }
    let mut roles: Vec<String> = Vec::new();
    for r in &args.for_role {
        if !roles.contains(r) {
            roles.push(r.clone());
        }
    }
    if args.dry_run {
        let recorded = compat::recorded_roles(&mut client)?;
        let mut plan = if compat::complete(&found) {
            Vec::new()
        } else {
            sql::create_statements_at(version)
        };
        let database = compat::database_name(&mut client)?;
        let mut shown = Vec::new();
        for role in &roles {
            let set_at = recorded.iter().find(|(r, _)| r == role).map(|(_, t)| *t);
            plan.push(PlannedStatement {
                sql: sql::grant_usage(role),
                lock: "none (catalog change only)".into(),
            });
            if set_at.is_none() {
                plan.push(PlannedStatement {
                    sql: sql::set_role_path(role, &database),
                    lock: "none; reaches the role's server sessions opened after it".into(),
                });
            }
            shown.push((role.clone(), set_at));
        }
        let states = compat::role_states(&mut client, &shown)?;
        let summary = format!(
            "would point {} at schema {SCHEMA}{}",
            roles.join(", "),
            if compat::complete(&found) {
                String::new()
            } else {
                format!(", creating its views for version {version}")
            }
        );
        return Ok(
            finish(version, found, false, false, Some(plan), summary, true)
                .with_roles(states, vec![]),
        );
    }
    let mut session = settings.begin_session(target, client)?;
    let (version, found) = state(session.client())?;
    settings.journal.version(version);
    let create = !compat::complete(&found);
    let point =
        |session: &mut Session| compat::point_roles_retried(session, &roles, version, create);
    let (newly, synced) = if create {
        session.locking(&views_scope(), point)?
    } else {
        point(&mut session)?
    };
    for role in &newly {
        settings.log.line(&format!(
            "role {role}: new sessions in this database use search_path={}; sessions opened before keep theirs",
            sql::SEARCH_PATH
        ));
    }
    let states = match args.wait {
        Some(wait) => compat::wait_in_effect(
            session.client(),
            wait,
            &settings.log,
            "compat --for-role: the setting is made and recorded, but",
        )?,
        None => compat::recorded_states(session.client())?,
    };
    let found = compat::inspect(session.client())?;
    let waiting = states.iter().filter(|s| !s.in_effect).count();
    let summary = format!(
        "{} {} at schema {SCHEMA}{}{}",
        if newly.is_empty() { "kept" } else { "pointed" },
        roles.join(", "),
        if create {
            format!(" (created its views for version {version})")
        } else {
            String::new()
        },
        if waiting == 0 {
            "; every session of the recorded roles has the setting".to_string()
        } else {
            format!("; {waiting} role(s) still have sessions that predate the setting")
        }
    );
    Ok(finish(version, found, create, false, None, summary, false).with_roles(states, synced))
}

/// `--drop` only when no code uses a legacy name any more, measured with pg_stat_statements
/// over --observe (docs/design.md §7); without it, only with --unverified.
fn refuse_while_legacy_names_are_used(
    settings: &Settings,
    args: &CompatArgs,
    client: &mut Client,
) -> Result<()> {
    if args.unverified {
        settings.log.line(
            "--unverified: dropping without measuring whether a legacy column name is still used",
        );
        return Ok(());
    }
    let roles: Vec<String> = compat::recorded_roles(client)?
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    let who = if roles.is_empty() {
        "any role but this one".to_string()
    } else {
        format!("role(s) {}", roles.join(", "))
    };
    match compat::observe_legacy_use(client, &roles, args.observe, &settings.log)? {
        Err(why) => Refusal::LegacyNamesInUse(format!(
            "compat --drop cannot tell whether application code still uses a legacy column name: {why}. Measure where pg_stat_statements is, or pass --unverified to drop unmeasured; nothing was changed"
        ))
        .fail(),
        Ok(uses) if !uses.is_empty() => {
            let named = uses
                .iter()
                .map(|u| {
                    format!(
                        "{}.{} ({} now): {} calls, e.g. `{}`",
                        u.table,
                        u.column,
                        u.full_name,
                        u.calls,
                        u.statements.first().map_or("", |s| s.as_str())
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            Refusal::LegacyNamesInUse(format!(
                "compat --drop: in the last {:?} statements of {who} still named legacy columns: {named}; nothing was changed. Roll out the code that uses the full names first",
                args.observe
            ))
            .fail()
        }
        Ok(_) => {
            settings.log.line(&format!(
                "no statement of {who} named a legacy column in the last {:?}",
                args.observe
            ));
            Ok(())
        }
    }
}

fn state(client: &mut Client) -> Result<(i32, Option<CompatSchema>)> {
    let applied = history::read(client)?;
    Ok((history::current_version(&applied), compat::inspect(client)?))
}

fn describe(action: &Action, found: &Option<CompatSchema>) -> String {
    match action {
        Action::TooEarly(version) => format!(
            "nothing to do: the database is at version {version}, and until 008 no column is renamed"
        ),
        Action::NothingToDrop => format!("nothing to drop: there is no schema {SCHEMA}"),
        _ => match found {
            Some(f) => format!("schema {SCHEMA} holds {} views", f.views.len()),
            None => format!("there is no schema {SCHEMA}"),
        },
    }
}

/// The report, before the roles are added ([`Finished::with_roles`]).
struct Finished {
    version: i32,
    dry_run: bool,
    details: CompatReport,
}

impl Finished {
    fn with_roles(mut self, roles: Vec<compat::RoleState>, synced: Vec<String>) -> Outcome {
        self.details.roles = roles;
        self.details.rights_synced = synced;
        Outcome::new(
            Report {
                command: "compat",
                ok: true,
                dry_run: self.dry_run,
                schema_version: self.version,
                details: self.details,
            },
            Code::Ok,
        )
    }
}

fn finish(
    version: i32,
    found: Option<CompatSchema>,
    created: bool,
    dropped: bool,
    plan: Option<Vec<PlannedStatement>>,
    summary: String,
    dry_run: bool,
) -> Finished {
    let exists = found.is_some();
    Finished {
        version,
        dry_run,
        details: CompatReport {
            schema: exists.then_some(SCHEMA),
            views: found.map(|f| f.views).unwrap_or_default(),
            dropped,
            created,
            connection_option: exists.then_some(CONNECTION_OPTION),
            plan,
            roles: Vec::new(),
            rights_synced: Vec::new(),
            legacy_names_in_use: None,
            summary,
        },
    }
}

impl Details for CompatReport {
    fn summary(&self, _dry_run: bool, _schema_version: i32) -> report::Summary {
        report::Summary::line(self.summary.clone())
    }

    fn write_table(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(out, "{}", self.summary)?;
        if let Some(plan) = &self.plan {
            if !plan.is_empty() {
                writeln!(out, "{}", report::statements_table(plan))?;
            }
        }
        if !self.views.is_empty() {
            writeln!(out, "{}", compat::views_table(&self.views))?;
        }
        if let Some(option) = self.connection_option {
            writeln!(
                out,
                "Application code that still uses legacy column names connects with {option} (search_path={}).",
                sql::SEARCH_PATH
            )?;
        }
        if !self.roles.is_empty() {
            writeln!(out, "{}", compat::roles_table(&self.roles))?;
            if self.roles.iter().any(|r| !r.in_effect) {
                writeln!(
                    out,
                    "Sessions that predate a role's setting still resolve names as before it; {}.",
                    compat::RECYCLE_HINT
                )?;
            }
        }
        if self.dropped {
            writeln!(
                out,
                "Re-create it with `ruleiq-db compat` while old code still runs somewhere."
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Option<CompatSchema> {
        Some(CompatSchema {
            schema: SCHEMA,
            views: crate::catalog::renames::renamed_tables()
                .into_iter()
                .map(|t| CompatView {
                    view: t.into(),
                    table: t.into(),
                    legacy_columns: vec![],
                    missing_columns: vec![],
                })
                .collect(),
        })
    }

    #[test]
    fn creates_only_from_version_8_and_drops_only_what_exists() {
        let show = CompatArgs::default();
        let drop = CompatArgs {
            drop: true,
            ..CompatArgs::default()
        };
        assert_eq!(decide(&show, 7, &None), Action::TooEarly(7));
        assert_eq!(decide(&show, 8, &None), Action::Create);
        assert_eq!(decide(&show, 8, &schema()), Action::Show);
        let mut partial = schema();
        partial.as_mut().unwrap().views.pop();
        assert_eq!(decide(&show, 8, &partial), Action::Create);
        let mut stale = schema();
        stale.as_mut().unwrap().views[0].missing_columns = vec!["added_later".into()];
        assert_eq!(decide(&show, 8, &stale), Action::Create);
        assert_eq!(decide(&drop, 8, &schema()), Action::Drop);
        assert_eq!(decide(&drop, 7, &schema()), Action::Drop);
        assert_eq!(decide(&drop, 8, &None), Action::NothingToDrop);
    }
}
