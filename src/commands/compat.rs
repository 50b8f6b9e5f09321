//! `compat`: show, re-create or drop the compatibility schema (DESIGN.md §7).

use super::{Context, Outcome};
use crate::catalog::compat::{self as sql, CONNECTION_OPTION, SCHEMA};
use crate::catalog::migrations::REPAIR_VERSION;
use crate::catalog::renames::renamed_tables;
use crate::catalog::repair::PlannedStatement;
use crate::cli::CompatArgs;
use crate::compat::{self, CompatSchema, CompatView};
use crate::exit::Code;
use crate::health::blockers::{Scope, Takes};
use crate::history;
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

pub fn run(ctx: &Context, args: &CompatArgs) -> Result<Outcome> {
    let (target, mut client) = ctx.connect()?;
    let (version, found) = state(&mut client)?;
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
        return Ok(finish(version, found, false, false, plan, summary, true));
    }
    if !matches!(action, Action::Create | Action::Drop) {
        let summary = describe(&action, &found);
        return Ok(finish(version, found, false, false, None, summary, false));
    }
    let mut session = ctx.begin_session(target, client)?;
    // Decided again under the lock: another ruleiq-db may have changed it meanwhile.
    let (version, mut found) = state(session.client())?;
    ctx.journal.version(version);
    let action = decide(args, version, &found);
    // The views' DDL locks them and reads their tables: sessions sitting on those tables
    // would make it wait, so they are named (and waited for) first, as for migrate.
    let tables = renamed_tables().into_iter().map(str::to_string).collect();
    ctx.wait_for_blockers(
        session.client(),
        &Scope::new("compat", tables, Takes::AccessExclusive),
    )?;
    let (mut created, mut dropped) = (false, false);
    let existed = found.is_some();
    match action {
        Action::Create => {
            ctx.log.line(&match &found {
                None => format!(
                    "creating schema {SCHEMA}: version {version} has renamed columns and no compatibility views"
                ),
                Some(_) => format!(
                    "re-creating the views of schema {SCHEMA}: one is missing or lacks columns its table has now"
                ),
            });
            compat::create_retried(&mut session)?;
            created = true;
        }
        Action::Drop => {
            let views = found.as_ref().map_or(0, |f| f.views.len());
            ctx.confirm(&format!(
                "Drop schema {SCHEMA} and its {views} views? Application code that still uses a legacy column name fails from then on"
            ))?;
            compat::drop_retried(&mut session)?;
            dropped = true;
        }
        _ => {}
    }
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
    Ok(finish(
        version, found, created, dropped, None, summary, false,
    ))
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

fn finish(
    version: i32,
    found: Option<CompatSchema>,
    created: bool,
    dropped: bool,
    plan: Option<Vec<PlannedStatement>>,
    summary: String,
    dry_run: bool,
) -> Outcome {
    let exists = found.is_some();
    Outcome::new(
        Report {
            command: "compat",
            ok: true,
            dry_run,
            schema_version: version,
            details: CompatReport {
                schema: exists.then_some(SCHEMA),
                views: found.map(|f| f.views).unwrap_or_default(),
                dropped,
                created,
                connection_option: exists.then_some(CONNECTION_OPTION),
                plan,
                summary,
            },
        },
        Code::Ok,
    )
}

impl Details for CompatReport {
    fn summary(&self, _dry_run: bool, _schema_version: i32) -> report::Summary {
        report::Summary::line("compat")
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
