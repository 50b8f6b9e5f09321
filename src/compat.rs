//! The compatibility schema against a live database (docs/design.md §7): what it holds, creating
//! it and removing it, and the roles pointed at it. The SQL is `catalog::compat`'s, the same 008 and its down run.

use crate::catalog::compat::{self, SCHEMA};
use crate::catalog::repair::PlannedStatement;
use crate::db::{Query, Session};
use crate::refusal::Refusal;
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
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

/// Runs planned statements in the caller's transaction.
pub fn run(tx: &mut (impl Query + ?Sized), statements: &[PlannedStatement]) -> Result<()> {
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

// ── Roles pointed at the views (docs/design.md §7: through production's pooler) ──────────────

/// A session of a recorded role that started before the role's setting: it resolves names as
/// it did before (a role setting is read when a server session starts).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Predating {
    pub pid: i32,
    pub application_name: String,
    pub client_addr: Option<String>,
    pub backend_start: DateTime<Utc>,
}

/// A privilege a role has on a table and not on its view, or the other way round.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RightsDifference {
    pub view: String,
    pub privilege: String,
    pub on_table: bool,
    pub on_view: bool,
}

/// A role pointed at the views: since when, which of its sessions still predate that, and
/// whether it can use on each view what it can use on the table.
#[derive(Debug, Clone, Serialize)]
pub struct RoleState {
    pub role: String,
    /// When the setting was made (None in a dry run for a role not set yet).
    pub set_at: Option<DateTime<Utc>>,
    pub predating: Vec<Predating>,
    pub in_effect: bool,
    /// USAGE on the schema, when the role lacks it.
    pub schema_usage: bool,
    pub rights_drift: Vec<RightsDifference>,
}

impl RoleState {
    /// The sessions that predate the setting, as "pid 123 (app, 10.0.0.1) since …".
    pub fn describe_predating(&self) -> String {
        self.predating
            .iter()
            .map(|p| {
                format!(
                    "{} since {}",
                    crate::db::who::session_label(
                        p.pid,
                        &p.application_name,
                        p.client_addr.as_deref()
                    ),
                    p.backend_start.format("%Y-%m-%d %H:%M:%S%.3f UTC")
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// How to get rid of sessions that predate a role setting; ruleiq-db never terminates them.
pub const RECYCLE_HINT: &str = "ruleiq-db never terminates them: recycle the pooler's server connections (PgBouncer: `RECONNECT` on its admin console; Neon: restart the compute), or wait for the pooler's server_lifetime";

/// The roles recorded as pointed at the views, with the time of their setting, oldest first.
pub fn recorded_roles(client: &mut (impl Query + ?Sized)) -> Result<Vec<(String, DateTime<Utc>)>> {
    let exists: bool = client
        .row(
            "SELECT to_regclass($1) IS NOT NULL",
            &[&compat::roles_table()],
        )?
        .get(0);
    if !exists {
        return Ok(Vec::new());
    }
    Ok(client
        .rows(
            &format!(
                "SELECT role::text, set_at FROM {} ORDER BY set_at, role",
                compat::roles_table()
            ),
            &[],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// `role`'s sessions in this database that started before `since` (all of them when `since` is
/// None: a setting not made yet reaches none).
pub fn predating(
    client: &mut (impl Query + ?Sized),
    role: &str,
    since: Option<DateTime<Utc>>,
) -> Result<Vec<Predating>> {
    Ok(client
        .rows(
            "SELECT pid, coalesce(application_name, ''), client_addr::text, backend_start
               FROM pg_catalog.pg_stat_activity
              WHERE usename::text = $1 AND datname = current_database()
                AND pid <> pg_backend_pid() AND backend_start IS NOT NULL
                AND ($2::timestamptz IS NULL OR backend_start < $2)
              ORDER BY backend_start, pid",
            &[&role, &since],
        )?
        .iter()
        .map(|r| Predating {
            pid: r.get(0),
            application_name: r.get(1),
            client_addr: r.get(2),
            backend_start: r.get(3),
        })
        .collect())
}

/// For `role`: USAGE on the schema, and each privilege it has on a table but not on its view
/// (or on the view but not the table). Table-level privileges, as has_table_privilege sees
/// them (ownership, membership and PUBLIC included). Nothing when the schema does not exist.
pub fn rights_of(
    client: &mut (impl Query + ?Sized),
    role: &str,
) -> Result<(bool, Vec<RightsDifference>)> {
    let privileges: Vec<&str> = compat::VIEW_PRIVILEGES.to_vec();
    let tables: Vec<&str> = crate::catalog::renames::renamed_tables();
    let usage: Option<bool> = client
        .row(
            "SELECT CASE WHEN n.oid IS NULL THEN NULL ELSE has_schema_privilege($1::text::name, n.oid, 'USAGE') END
               FROM (SELECT 1) x LEFT JOIN pg_namespace n ON n.nspname = $2",
            &[&role, &compat::SCHEMA],
        )?
        .get(0);
    let Some(usage) = usage else {
        return Ok((true, Vec::new()));
    };
    let rows = client.rows(
        "SELECT v.relname::text, p.privilege,
                has_table_privilege($1::text::name, t.oid, p.privilege),
                has_table_privilege($1::text::name, v.oid, p.privilege)
           FROM pg_class v
           JOIN pg_namespace vn ON vn.oid = v.relnamespace AND vn.nspname = $2
           JOIN pg_class t ON t.relname = v.relname AND t.relkind IN ('r', 'p')
           JOIN pg_namespace tn ON tn.oid = t.relnamespace AND tn.nspname = $3
          CROSS JOIN unnest($4::text[]) WITH ORDINALITY AS p(privilege, ord)
          WHERE v.relkind = 'v' AND v.relname::text = ANY($5)
            AND has_table_privilege($1::text::name, t.oid, p.privilege)
                <> has_table_privilege($1::text::name, v.oid, p.privilege)
          ORDER BY v.relname, p.ord",
        &[
            &role,
            &compat::SCHEMA,
            &crate::catalog::sql::APP_SCHEMA,
            &privileges,
            &tables,
        ],
    )?;
    Ok((
        usage,
        rows.iter()
            .map(|r| RightsDifference {
                view: r.get(0),
                privilege: r.get(1),
                on_table: r.get(2),
                on_view: r.get(3),
            })
            .collect(),
    ))
}

/// Each role's state: its sessions that predate `set_at`, and its rights on the views.
pub fn role_states(
    client: &mut (impl Query + ?Sized),
    roles: &[(String, Option<DateTime<Utc>>)],
) -> Result<Vec<RoleState>> {
    let mut states = Vec::new();
    for (role, set_at) in roles {
        let predating = predating(client, role, *set_at)?;
        let (schema_usage, rights_drift) = rights_of(client, role)?;
        states.push(RoleState {
            role: role.clone(),
            set_at: *set_at,
            in_effect: set_at.is_some() && predating.is_empty(),
            predating,
            schema_usage,
            rights_drift,
        });
    }
    Ok(states)
}

/// The recorded roles' states.
pub fn recorded_states(client: &mut (impl Query + ?Sized)) -> Result<Vec<RoleState>> {
    let roles: Vec<(String, Option<DateTime<Utc>>)> = recorded_roles(client)?
        .into_iter()
        .map(|(r, t)| (r, Some(t)))
        .collect();
    role_states(client, &roles)
}

/// Whether `role` already has this database's compat search_path as its role setting.
fn setting_in_place(tx: &mut (impl Query + ?Sized), role: &str) -> Result<bool> {
    Ok(tx
        .row(
            "SELECT EXISTS (
                SELECT 1 FROM pg_db_role_setting s
                  JOIN pg_roles r ON r.oid = s.setrole
                  JOIN pg_database d ON d.oid = s.setdatabase AND d.datname = current_database()
                 WHERE r.rolname::text = $1 AND $2 = ANY (s.setconfig))",
            &[&role, &compat::ROLE_SETTING],
        )?
        .get(0))
}

/// In the caller's transaction: records `roles`, grants them USAGE on the schema and points
/// their new sessions in this database at the views. Returns the roles whose setting was made
/// now (a role already set keeps its time: sessions opened since have the setting).
pub fn point_roles(tx: &mut (impl Query + ?Sized), roles: &[String]) -> Result<Vec<String>> {
    let database: String = tx.row("SELECT current_database()::text", &[])?.get(0);
    tx.batch(&compat::roles_table_ddl())
        .context("creating ruleiq_meta.compat_roles")?;
    let mut newly = Vec::new();
    for role in roles {
        tx.batch(&compat::grant_usage(role))
            .with_context(|| format!("granting USAGE on schema {SCHEMA} to {role}"))?;
        let recorded: bool = tx
            .row(
                &format!(
                    "SELECT EXISTS (SELECT 1 FROM {} WHERE role = $1::text::name)",
                    compat::roles_table()
                ),
                &[role],
            )?
            .get(0);
        if recorded && setting_in_place(tx, role)? {
            continue;
        }
        tx.batch(&compat::set_role_path(role, &database))
            .with_context(|| format!("setting the search_path of role {role}"))?;
        tx.exec(
            &format!(
                "INSERT INTO {} (role, set_at) VALUES ($1::text::name, clock_timestamp())
                 ON CONFLICT (role) DO UPDATE SET set_at = excluded.set_at, set_by = current_user, reset_at = NULL",
                compat::roles_table()
            ),
            &[role],
        )?;
        newly.push(role.clone());
    }
    Ok(newly)
}

/// After the transaction of [`point_roles`] committed: the roles' time becomes the commit's
/// (or a little later). A session opened between the transaction's start and its commit did
/// not get the setting, so the time errs late: such a session is counted as predating, never
/// one that predates as having it.
pub fn stamp_roles(client: &mut (impl Query + ?Sized), roles: &[String]) -> Result<()> {
    if roles.is_empty() {
        return Ok(());
    }
    client.exec(
        &format!(
            "UPDATE {} SET set_at = clock_timestamp() WHERE role::text = ANY($1)",
            compat::roles_table()
        ),
        &[&roles.to_vec()],
    )?;
    Ok(())
}

/// In the caller's transaction: gives each role on each view the table privileges it has on
/// the table, and takes back direct grants it has on a view beyond them. Returns what ran.
pub fn sync_rights(tx: &mut (impl Query + ?Sized), roles: &[String]) -> Result<Vec<String>> {
    let mut ran = Vec::new();
    for role in roles {
        let (usage, differences) = rights_of(tx, role)?;
        let mut statements = Vec::new();
        if !usage {
            statements.push(compat::grant_usage(role));
        }
        for d in differences {
            statements.push(if d.on_table {
                compat::grant_on_view(&d.privilege, &d.view, role)
            } else {
                compat::revoke_on_view(&d.privilege, &d.view, role)
            });
        }
        for s in statements {
            tx.batch(&s).with_context(|| s.clone())?;
            ran.push(s);
        }
    }
    Ok(ran)
}

/// In the caller's transaction: creates (or re-creates) the views for the database at
/// `version` and gives the recorded roles their rights on them.
pub fn create_at(tx: &mut (impl Query + ?Sized), version: i32) -> Result<()> {
    run(tx, &compat::create_statements_at(version)).context("creating the compatibility schema")?;
    let roles: Vec<String> = recorded_roles(tx)?.into_iter().map(|(r, _)| r).collect();
    sync_rights(tx, &roles)?;
    Ok(())
}

/// Which time a session must not predate: the role's setting, or its reset by `compat --drop`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    Set,
    Reset,
}

/// The recorded roles whose setting was reset (`compat --drop`), with the time.
pub fn reset_roles_since(
    client: &mut (impl Query + ?Sized),
) -> Result<Vec<(String, DateTime<Utc>)>> {
    if recorded_roles(client)?.is_empty() {
        return Ok(Vec::new());
    }
    Ok(client
        .rows(
            &format!(
                "SELECT role::text, reset_at FROM {} WHERE reset_at IS NOT NULL ORDER BY role",
                compat::roles_table()
            ),
            &[],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// Waits up to `wait` until no session of the recorded roles predates their setting (or its
/// reset); refuses (`compat_not_in_effect`) naming the sessions left, `what` saying what that
/// stopped. Never terminates one.
pub fn wait_in_effect(
    client: &mut (impl Query + ?Sized),
    wait: std::time::Duration,
    log: &crate::progress::Log,
    what: &str,
) -> Result<Vec<RoleState>> {
    wait_for_sessions(client, wait, log, what, Since::Set)?;
    recorded_states(client)
}

/// [`wait_in_effect`] for either time.
pub fn wait_for_sessions(
    client: &mut (impl Query + ?Sized),
    wait: std::time::Duration,
    log: &crate::progress::Log,
    what: &str,
    since: Since,
) -> Result<()> {
    let started = std::time::Instant::now();
    let mut said = false;
    loop {
        let roles = match since {
            Since::Set => recorded_roles(client)?,
            Since::Reset => reset_roles_since(client)?,
        };
        let mut left = Vec::new();
        for (role, at) in roles {
            let predating = predating(client, &role, Some(at))?;
            if !predating.is_empty() {
                let state = RoleState {
                    role: role.clone(),
                    set_at: Some(at),
                    predating,
                    in_effect: false,
                    schema_usage: true,
                    rights_drift: Vec::new(),
                };
                left.push(format!("role {role}: {}", state.describe_predating()));
            }
        }
        if left.is_empty() {
            return Ok(());
        }
        let described = left.join("; ");
        let which = match since {
            Since::Set => "predate their role's compat search_path and still resolve names as before it",
            Since::Reset => "predate the reset of their role's compat search_path and may still resolve names through the views",
        };
        if started.elapsed() >= wait {
            return Refusal::CompatNotInEffect(format!(
                "{what}: sessions {which}: {described}. {RECYCLE_HINT}"
            ))
            .fail();
        }
        if !said {
            log.line(&format!(
                "waiting up to {wait:?} for sessions that {which} to end: {described}"
            ));
            said = true;
        }
        std::thread::sleep(std::time::Duration::from_millis(250).min(wait - started.elapsed()));
        crate::db::interrupt::check()?;
    }
}

/// In the caller's transaction: takes the recorded roles' setting away (`compat --drop`), so
/// their new sessions resolve names in `public` again. Returns the roles reset now.
pub fn reset_roles(tx: &mut (impl Query + ?Sized)) -> Result<Vec<String>> {
    let database: String = tx.row("SELECT current_database()::text", &[])?.get(0);
    let mut reset = Vec::new();
    for (role, _) in recorded_roles(tx)? {
        if setting_in_place(tx, &role)? {
            tx.batch(&compat::reset_role_path(&role, &database))
                .with_context(|| format!("resetting the search_path of role {role}"))?;
        }
        let changed = tx.exec(
            &format!(
                "UPDATE {} SET reset_at = clock_timestamp() WHERE role = $1::text::name AND reset_at IS NULL",
                compat::roles_table()
            ),
            &[&role],
        )?;
        if changed > 0 {
            reset.push(role);
        }
    }
    Ok(reset)
}

/// After [`reset_roles`] committed: their time becomes the commit's, erring late as in
/// [`stamp_roles`].
pub fn stamp_reset(client: &mut (impl Query + ?Sized), roles: &[String]) -> Result<()> {
    if roles.is_empty() {
        return Ok(());
    }
    client.exec(
        &format!(
            "UPDATE {} SET reset_at = clock_timestamp() WHERE role::text = ANY($1)",
            compat::roles_table()
        ),
        &[&roles.to_vec()],
    )?;
    Ok(())
}

/// In the caller's transaction: forgets the recorded roles (the views are gone with them).
pub fn forget_roles(tx: &mut (impl Query + ?Sized)) -> Result<()> {
    if !recorded_roles(tx)?.is_empty() {
        tx.exec(&format!("DELETE FROM {}", compat::roles_table()), &[])?;
    }
    Ok(())
}

/// The roles as a table: role, since, sessions predating it, in effect, rights that differ.
pub fn roles_table(roles: &[RoleState]) -> comfy_table::Table {
    let mut t = crate::report::table(&[
        "role",
        "search_path set at",
        "sessions predating it",
        "in effect",
        "rights differing from the tables'",
    ]);
    for r in roles {
        let mut rights: Vec<String> = r
            .rights_drift
            .iter()
            .map(|d| {
                format!(
                    "{} on {SCHEMA}.{} ({})",
                    d.privilege,
                    d.view,
                    if d.on_table {
                        "table only"
                    } else {
                        "view only"
                    }
                )
            })
            .collect();
        if !r.schema_usage {
            rights.insert(0, format!("no USAGE on schema {SCHEMA}"));
        }
        t.add_row(vec![
            r.role.clone(),
            r.set_at.map_or("not set".into(), |t| {
                t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
            }),
            if r.predating.is_empty() {
                "none".into()
            } else {
                r.describe_predating()
            },
            if r.in_effect { "yes" } else { "no" }.into(),
            rights.join(", "),
        ]);
    }
    t
}

// ── Is a legacy name still used? (docs/design.md §7: measured, not believed) ─────────────────

/// A renamed column whose legacy name statements still spell, with their calls.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LegacyUse {
    pub table: String,
    pub column: String,
    pub full_name: String,
    pub calls: i64,
    /// Up to three of the statements, shortened.
    pub statements: Vec<String>,
}

/// One pg_stat_statements entry naming legacy columns: its calls and which renames it names.
#[derive(Debug, Clone)]
pub struct Counted {
    pub calls: i64,
    pub query: String,
    pub renames: Vec<usize>,
}

/// The calls so far of each statement (by queryid) that names a legacy column together with
/// its table, made by `roles` (by anyone but the current user, ruleiq-db itself, when `roles`
/// is empty); utility statements (ruleiq-db's own DDL among them) left out. `Err` says why
/// pg_stat_statements cannot be read.
pub fn legacy_statements(
    client: &mut (impl Query + ?Sized),
    roles: &[String],
) -> Result<std::result::Result<std::collections::BTreeMap<i64, Counted>, String>> {
    let schema = crate::db::introspect::extension_schema(client, "pg_stat_statements")?;
    let Some(schema) = schema else {
        return Ok(Err(
            "pg_stat_statements is not installed in this database (shared_preload_libraries, then CREATE EXTENSION pg_stat_statements)".into(),
        ));
    };
    let renames = crate::catalog::renames::RENAMES;
    let tables: Vec<&str> = renames.iter().map(|r| r.table).collect();
    let legacies: Vec<&str> = renames.iter().map(|r| r.legacy).collect();
    let roles = roles.to_vec();
    let sql = format!(
        r"WITH s AS (
            SELECT coalesce(p.queryid, 0) AS queryid, sum(p.calls)::int8 AS calls, min(p.query) AS query
              FROM {}.pg_stat_statements p
             WHERE p.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
               AND CASE WHEN cardinality($3::text[]) = 0
                        THEN p.userid <> (SELECT oid FROM pg_roles WHERE rolname = current_user)
                        ELSE p.userid IN (SELECT oid FROM pg_roles WHERE rolname::text = ANY($3)) END
               AND p.query !~* '^\s*(DO|CREATE|ALTER|DROP|COMMENT|GRANT|REVOKE|SET|RESET|LOCK|SHOW|BEGIN|START|COMMIT|ROLLBACK|SAVEPOINT|RELEASE|PREPARE|DEALLOCATE|DISCARD)\M'
             GROUP BY 1)
         SELECT s.queryid, s.calls, s.query, array_agg((r.ord - 1)::int4 ORDER BY r.ord)
           FROM s JOIN unnest($1::text[], $2::text[]) WITH ORDINALITY AS r(tbl, legacy, ord)
             ON s.query ~* ('\m' || r.legacy || '\M') AND s.query ~* ('\m' || r.tbl || '\M')
          GROUP BY s.queryid, s.calls, s.query",
        crate::catalog::sql::quote_ident(&schema)
    );
    // Installed but not preloaded, the view raises an error: then it cannot measure.
    let rows = match client.rows(&sql, &[&tables, &legacies, &roles]) {
        Ok(rows) => rows,
        Err(error) => {
            return Ok(Err(format!(
                "pg_stat_statements cannot be read: {}",
                error
                    .as_db_error()
                    .map_or_else(|| error.to_string(), |e| e.message().to_string())
            )))
        }
    };
    Ok(Ok(rows
        .iter()
        .map(|r| {
            let renames: Vec<i32> = r.get(3);
            (
                r.get::<_, i64>(0),
                Counted {
                    calls: r.get(1),
                    query: r.get(2),
                    renames: renames.into_iter().map(|i| i as usize).collect(),
                },
            )
        })
        .collect()))
}

/// The legacy columns named between two readings of [`legacy_statements`] (all of `end` when
/// `start` is None: since the statistics were reset), one entry per renamed column with calls.
pub fn legacy_use(
    start: Option<&std::collections::BTreeMap<i64, Counted>>,
    end: &std::collections::BTreeMap<i64, Counted>,
) -> Vec<LegacyUse> {
    let renames = crate::catalog::renames::RENAMES;
    let mut uses: Vec<LegacyUse> = renames
        .iter()
        .map(|r| LegacyUse {
            table: r.table.into(),
            column: r.legacy.into(),
            full_name: r.current.into(),
            calls: 0,
            statements: Vec::new(),
        })
        .collect();
    for (id, counted) in end {
        let before = start.and_then(|s| s.get(id)).map_or(0, |c| c.calls);
        // A reset in between makes the counter smaller: then all of it is new.
        let calls = if counted.calls >= before {
            counted.calls - before
        } else {
            counted.calls
        };
        if calls == 0 {
            continue;
        }
        for &i in &counted.renames {
            let u = &mut uses[i];
            u.calls += calls;
            if u.statements.len() < 3 {
                u.statements
                    .push(counted.query.chars().take(200).collect::<String>());
            }
        }
    }
    uses.retain(|u| u.calls > 0);
    uses
}

/// Watches pg_stat_statements for `observe` and returns the legacy columns named meanwhile by
/// `roles`' statements; `Err` when it cannot be read.
pub fn observe_legacy_use(
    client: &mut (impl Query + ?Sized),
    roles: &[String],
    observe: std::time::Duration,
    log: &crate::progress::Log,
) -> Result<std::result::Result<Vec<LegacyUse>, String>> {
    let mut start = match legacy_statements(client, roles)? {
        Ok(s) => s,
        Err(why) => return Ok(Err(why)),
    };
    // Statements that differ only in a renamed column's spelling are one pg_stat_statements
    // entry when they reach the same table (it identifies a column by number): after 008 a
    // full-name statement on the table counts under the legacy text recorded before 008, and
    // through a view it does not. Removing the legacy-named entries first makes the next
    // execution record its own text, so only statements that really spell a legacy name (the
    // ones that need the views) come back under one. Without the right to, deltas are used.
    if forget_entries(client, &start)? {
        start.clear();
    } else {
        log.line("cannot reset pg_stat_statements entries (pg_stat_statements_reset): counting calls on the existing entries, where a full-name statement on a table may count under the legacy text recorded before 008");
    }
    log.line(&format!(
        "watching pg_stat_statements for {observe:?} for statements that name a legacy column"
    ));
    let started = std::time::Instant::now();
    while started.elapsed() < observe {
        std::thread::sleep(std::time::Duration::from_millis(200).min(observe - started.elapsed()));
        crate::db::interrupt::check()?;
    }
    let end = match legacy_statements(client, roles)? {
        Ok(s) => s,
        Err(why) => return Ok(Err(why)),
    };
    Ok(Ok(legacy_use(Some(&start), &end)))
}

/// Removes the pg_stat_statements entries of `entries` in this database (all users); false
/// when this role may not (pg_stat_statements_reset is the superuser's unless granted).
fn forget_entries(
    client: &mut (impl Query + ?Sized),
    entries: &std::collections::BTreeMap<i64, Counted>,
) -> Result<bool> {
    let Some(schema) = client
        .row_opt(
            "SELECT n.nspname::text FROM pg_extension e
               JOIN pg_namespace n ON n.oid = e.extnamespace
              WHERE e.extname = 'pg_stat_statements'",
            &[],
        )?
        .map(|r| r.get::<_, String>(0))
    else {
        return Ok(false);
    };
    // queryid 0 would mean every statement: never passed.
    let ids: Vec<i64> = entries.keys().copied().filter(|id| *id != 0).collect();
    if ids.len() != entries.len() {
        return Ok(false);
    }
    let sql = format!(
        "SELECT count({schema}.pg_stat_statements_reset(0::oid, d.oid, q.id))
           FROM pg_database d, unnest($1::int8[]) AS q(id)
          WHERE d.datname = current_database()",
        schema = crate::catalog::sql::quote_ident(&schema)
    );
    Ok(client.row(&sql, &[&ids]).is_ok())
}

/// The database the roles' setting is made in.
pub fn database_name(client: &mut (impl Query + ?Sized)) -> Result<String> {
    Ok(client.row("SELECT current_database()::text", &[])?.get(0))
}

/// `compat --for-role` in one transaction of `session`: the views for `version` when `create`,
/// the roles pointed at them and recorded, every recorded role's rights synced; then the new
/// roles' time stamped after the commit. Returns (roles set now, grants and revokes run).
pub fn point_roles_retried(
    session: &mut Session,
    roles: &[String],
    version: i32,
    create: bool,
) -> Result<(Vec<String>, Vec<String>)> {
    let (newly, synced) =
        session.transaction("pointing roles at the compatibility views", |tx| {
            if create {
                run(tx, &compat::create_statements_at(version))
                    .context("creating the compatibility schema")?;
            }
            let newly = point_roles(tx, roles)?;
            let all: Vec<String> = recorded_roles(tx)?.into_iter().map(|(r, _)| r).collect();
            let synced = sync_rights(tx, &all)?;
            Ok((newly, synced))
        })?;
    stamp_roles(session.client(), &newly)?;
    Ok((newly, synced))
}

/// [`create_at`] in its own transaction of `session`.
pub fn create_at_retried(session: &mut Session, version: i32) -> Result<()> {
    session.transaction("creating the compatibility schema", |tx| {
        create_at(tx, version)
    })
}

/// [`reset_roles`] in its own transaction, stamped after the commit; the roles reset now.
pub fn reset_roles_retried(session: &mut Session) -> Result<Vec<String>> {
    let reset = session.transaction("resetting the roles' search_path", |tx| reset_roles(tx))?;
    stamp_reset(session.client(), &reset)?;
    Ok(reset)
}

/// Drops the views and the schema and forgets the roles, in one transaction.
pub fn drop_and_forget_retried(session: &mut Session) -> Result<()> {
    session.transaction("dropping the compatibility schema", |tx| {
        drop(tx)?;
        forget_roles(tx)
    })
}
