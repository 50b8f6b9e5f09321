//! The compatibility schema against a live database (DESIGN.md §7): what it holds, creating it
//! and removing it. The SQL is `catalog::compat`'s, the same 008 and its down run.

use crate::catalog::compat::{self, SCHEMA};
use crate::catalog::repair::PlannedStatement;
use crate::db::{Query, Session};
use anyhow::{Context, Result};
use serde::Serialize;

/// One view of the compatibility schema.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CompatView {
    /// The view's name (schema `ruleiq_compat`).
    pub view: String,
    /// The table it shows, schema-qualified when it is not in the search_path.
    pub table: String,
    /// The view's columns that the table does not have: the legacy names.
    pub legacy_columns: Vec<String>,
    /// The table's columns that the view does not show: added after the view was made (a view
    /// keeps the column list it was created with). `compat` re-creates such a view.
    pub missing_columns: Vec<String>,
}

/// What the compatibility schema holds; `None` from [`inspect`] when it does not exist.
#[derive(Debug, Clone, Serialize)]
pub struct CompatSchema {
    pub schema: &'static str,
    pub views: Vec<CompatView>,
}

/// The schema and its views, read from the catalog (never from our own rendering, so a view
/// changed or dropped by hand shows as it is).
pub fn inspect(client: &mut (impl Query + ?Sized)) -> Result<Option<CompatSchema>> {
    let exists: bool = client
        .row(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
            &[&SCHEMA],
        )?
        .get(0);
    if !exists {
        return Ok(None);
    }
    // A view's table is the relation its rewrite rule depends on (pg_depend), besides the view
    // itself; its legacy columns are the ones the table does not have.
    let rows = client.rows(
        "SELECT v.relname::text, coalesce(b.base::regclass::text, ''),
                array(SELECT a.attname::text FROM pg_attribute a
                       WHERE a.attrelid = v.oid AND a.attnum > 0
                         AND NOT EXISTS (SELECT 1 FROM pg_attribute t
                                          WHERE t.attrelid = b.base AND t.attname = a.attname
                                            AND t.attnum > 0 AND NOT t.attisdropped)
                       ORDER BY a.attnum),
                array(SELECT t.attname::text FROM pg_attribute t
                       WHERE t.attrelid = b.base AND t.attnum > 0 AND NOT t.attisdropped
                         AND NOT EXISTS (SELECT 1 FROM pg_attribute a
                                          WHERE a.attrelid = v.oid AND a.attname = t.attname)
                       ORDER BY t.attnum)
           FROM pg_class v JOIN pg_namespace n ON n.oid = v.relnamespace
           LEFT JOIN LATERAL (
                SELECT d.refobjid AS base FROM pg_rewrite r
                  JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
                 WHERE r.ev_class = v.oid AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> v.oid
                 ORDER BY d.refobjid LIMIT 1) b ON true
          WHERE n.nspname = $1 AND v.relkind = 'v'
          ORDER BY v.relname",
        &[&SCHEMA],
    )?;
    let views = rows
        .iter()
        .map(|r| CompatView {
            view: r.get(0),
            table: r.get(1),
            legacy_columns: r.get(2),
            missing_columns: r.get(3),
        })
        .collect();
    Ok(Some(CompatSchema {
        schema: SCHEMA,
        views,
    }))
}

/// Whether the schema is there with a view for every table 008 renames columns of, each
/// showing every column its table has now.
pub fn complete(found: &Option<CompatSchema>) -> bool {
    found.as_ref().is_some_and(|s| {
        crate::catalog::renames::renamed_tables().iter().all(|t| {
            s.views
                .iter()
                .any(|v| v.view == *t && v.missing_columns.is_empty())
        })
    })
}

/// Creates (or re-creates) the schema and its views in the caller's transaction.
pub fn create(tx: &mut (impl Query + ?Sized)) -> Result<()> {
    run(tx, &compat::create_statements()).context("creating the compatibility schema")
}

/// Removes the views and the schema in the caller's transaction.
pub fn drop(tx: &mut (impl Query + ?Sized)) -> Result<()> {
    run(tx, &compat::drop_statements()).context("dropping the compatibility schema")
}

fn run(tx: &mut (impl Query + ?Sized), statements: &[PlannedStatement]) -> Result<()> {
    for s in statements {
        tx.batch(&s.sql)?;
    }
    Ok(())
}

/// Creates the schema in its own transaction of `session`, retried when a lock is not granted
/// within lock_timeout.
pub fn create_retried(session: &mut Session) -> Result<()> {
    session.transaction("creating the compatibility schema", |tx| create(tx))
}

/// Drops the schema in its own transaction, retried like [`create_retried`]. Dropping a view
/// waits for the queries that use it; lock_timeout keeps the application's next queries from
/// queueing behind that wait for long.
pub fn drop_retried(session: &mut Session) -> Result<()> {
    session.transaction("dropping the compatibility schema", |tx| drop(tx))
}

/// What `migrate` reports when 008 created the schema: the views and how to connect to them.
#[derive(Debug, Clone, Serialize)]
pub struct Created {
    #[serde(flatten)]
    pub found: CompatSchema,
    /// The search_path the application should use during the rollout.
    pub search_path: &'static str,
    /// The same as a libpq connection option.
    pub connection_option: &'static str,
}

impl Created {
    pub fn new(found: CompatSchema) -> Created {
        Created {
            found,
            search_path: compat::SEARCH_PATH,
            connection_option: compat::CONNECTION_OPTION,
        }
    }
}

/// The views as a table: view, table, legacy columns (and the table's columns a view lacks,
/// when one does).
pub fn views_table(views: &[CompatView]) -> comfy_table::Table {
    let stale = views.iter().any(|v| !v.missing_columns.is_empty());
    let mut header = vec!["view", "table", "legacy columns"];
    if stale {
        header.push("not shown (added since; `ruleiq-db compat` re-creates)");
    }
    let mut t = crate::report::table(&header);
    for v in views {
        let mut row = vec![
            format!("{SCHEMA}.{}", v.view),
            v.table.clone(),
            v.legacy_columns.join(", "),
        ];
        if stale {
            row.push(v.missing_columns.join(", "));
        }
        t.add_row(row);
    }
    t
}
