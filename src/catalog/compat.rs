//! The compatibility schema (docs/design.md §7), as SQL rendered from the rename map: what 008 runs
//! after its renames, what `compat` runs to re-create it, and what 008's down and
//! `compat --drop` run to remove it. One rendering, so the four cannot drift apart.
//!
//! Why plain views and no triggers: a view whose select list is nothing but columns of one
//! table is automatically updatable in PostgreSQL (9.3+; column by column since 9.4), and that
//! holds for a column listed twice under two names: `handles_personal_data` and
//! `handles_personal_data AS handles_persona` are both insertable and updatable, INSERT …
//! ON CONFLICT and RETURNING included. Only a statement that sets both spellings at once fails
//! ("multiple assignments to same column"), as it should: it says two things about one value.
//! INSTEAD OF triggers would lose ON CONFLICT, which PostgreSQL does not allow on such views.
//!
//! A view depends on every column it shows: while it exists, PostgreSQL refuses to drop one of
//! them or change its type, and a column added to the table later stays out of the view until
//! the view is re-created (`compat` notices and does it).
//!
//! Why no view defaults: an INSERT through an automatically updatable view gets the table's own
//! defaults for the columns it leaves out (and for `DEFAULT`), so the table stays the one place
//! a default lives. Copying a default onto the view would even break such INSERTs: PostgreSQL
//! would then fill in both spellings of a renamed column and fail on the double assignment.

use super::renames::{renamed_tables, RENAMES};
use super::sql::PlannedStatement;
use super::sql::{qualified, quote_ident, quote_literal};

/// The schema that holds the views.
pub const SCHEMA: &str = "ruleiq_compat";

/// The search_path the application connects with during the rollout.
pub const SEARCH_PATH: &str = "ruleiq_compat,public";

/// The same, as a libpq connection option (`options=-csearch_path=…`, URL-encoded).
pub const CONNECTION_OPTION: &str = "options=-csearch_path%3Druleiq_compat,public";

/// Marks the schema and its views as ruleiq-db's, for a DBA reading `\dn+` or `\dv+`.
const COMMENT: &str = "ruleiq-db compatibility view: the table with each column 008 renamed also under its legacy name; remove with `ruleiq-db compat --drop` once no old application code is left";

/// The same for views made before 008 (`compat --for-role` at version 7): bound to the columns
/// by number, they keep both names through 008's renames.
const COMMENT_LEGACY: &str = "ruleiq-db compatibility view: the table with each column 008 renames also under its full name, made before 008 for roles pointed here; remove with `ruleiq-db compat --drop` once no old application code is left";

/// Which names the renamed columns have in the tables a view is made over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spelling {
    /// Version 8 and later: the full names.
    Repaired,
    /// Before 008: the truncated names.
    Legacy,
}

impl Spelling {
    /// The spelling of the database at `version`.
    pub fn at(version: i32) -> Spelling {
        if version >= super::migrations::REPAIR_VERSION {
            Spelling::Repaired
        } else {
            Spelling::Legacy
        }
    }
}

/// The statements that create the schema and its views for the database at `version`: 008's
/// own at version 8 and later, the views over the legacy names before.
pub fn create_statements_at(version: i32) -> Vec<PlannedStatement> {
    match Spelling::at(version) {
        Spelling::Repaired => create_statements(),
        Spelling::Legacy => {
            let mut statements = create_statements();
            statements.truncate(2);
            statements.extend(renamed_tables().into_iter().map(|table| PlannedStatement {
                sql: create_view(table, Spelling::Legacy),
                lock: format!(
                    "ACCESS SHARE on {table}; ACCESS EXCLUSIVE on view {SCHEMA}.{table} when it replaces one"
                ),
            }));
            statements
        }
    }
}

/// The statements that create the schema and one view per renamed table. State-aware, so the
/// same text serves 008 and `compat`: an existing view of ours is replaced, anything else in
/// the way stops the transaction with PostgreSQL's own error.
pub fn create_statements() -> Vec<PlannedStatement> {
    let schema = [
        PlannedStatement {
            sql: format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(SCHEMA)),
            lock: "none on the application's tables (catalog change only)".into(),
        },
        PlannedStatement {
            sql: format!(
                "COMMENT ON SCHEMA {} IS {}",
                quote_ident(SCHEMA),
                quote_literal(&format!(
                    "ruleiq-db compatibility schema: old and new column names during the rollout of 008; connect with search_path={SEARCH_PATH}; remove with `ruleiq-db compat --drop`"
                )),
            ),
            lock: "none (catalog change only)".into(),
        },
    ];
    schema
        .into_iter()
        .chain(renamed_tables().into_iter().map(|table| PlannedStatement {
            sql: create_view(table, Spelling::Repaired),
            lock: format!(
                "ACCESS SHARE on {table} (held already inside 008); ACCESS EXCLUSIVE on view {SCHEMA}.{table} when it replaces one"
            ),
        }))
        .collect()
}

/// The statements that remove the schema: each view of ours, then the schema. Neither uses
/// CASCADE: a view or a table someone else put there, or a view built on ours, stops the drop
/// with PostgreSQL's error naming it, rather than disappearing with it. Views hold no rows, so
/// nothing is archived.
pub fn drop_statements() -> Vec<PlannedStatement> {
    renamed_tables()
        .into_iter()
        .rev()
        .map(|table| PlannedStatement {
            sql: format!(
                "DROP VIEW IF EXISTS {}.{}",
                quote_ident(SCHEMA),
                quote_ident(table)
            ),
            lock: format!(
                "ACCESS EXCLUSIVE on view {SCHEMA}.{table} (waits for queries that use it; catalog change only)"
            ),
        })
        .chain(std::iter::once(PlannedStatement {
            sql: format!("DROP SCHEMA IF EXISTS {}", quote_ident(SCHEMA)),
            lock: "none on tables (fails rather than drop anything that is not ours)".into(),
        }))
        .collect()
}

/// Where the roles pointed at the views are recorded, with the time (beside the accepted drift
/// in `ruleiq_meta`).
pub const META_SCHEMA: &str = "ruleiq_meta";
pub const ROLES_TABLE: &str = "compat_roles";

/// The role setting, as `pg_db_role_setting` keeps it.
pub const ROLE_SETTING: &str = "search_path=ruleiq_compat, public";

/// Locks the views named (those that exist), before 008's own locks. A statement through a
/// view locks the view, then its table: 008 must take them in the same order, or a statement
/// that got the view and waits for the table holds 008's DROP VIEW up, every retry (docs/design.md §7).
pub fn lock_views(views: &[String]) -> Option<String> {
    if views.is_empty() {
        return None;
    }
    let names: Vec<String> = views
        .iter()
        .map(|v| format!("{}.{}", quote_ident(SCHEMA), quote_ident(v)))
        .collect();
    Some(format!(
        "LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
        names.join(", ")
    ))
}

/// `ruleiq_meta.compat_roles`, schema-qualified and quoted.
pub fn roles_table() -> String {
    format!("{}.{}", quote_ident(META_SCHEMA), quote_ident(ROLES_TABLE))
}

/// Creates the record of roles pointed at the views, when it is not there.
pub fn roles_table_ddl() -> String {
    format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE TABLE IF NOT EXISTS {table} (
             role   name PRIMARY KEY,
             set_at timestamptz NOT NULL,
             set_by text NOT NULL DEFAULT current_user,
             reset_at timestamptz
         );
         COMMENT ON TABLE {table} IS {comment}",
        schema = quote_ident(META_SCHEMA),
        table = roles_table(),
        comment = quote_literal("Roles whose search_path ruleiq-db compat --for-role points at ruleiq_compat in this database, and since when"),
    )
}

/// Points `role`'s new sessions in `database` at the views: through a transaction-mode pooler
/// no connection option reaches the server, so the choice comes from the database.
pub fn set_role_path(role: &str, database: &str) -> String {
    format!(
        "ALTER ROLE {} IN DATABASE {} SET search_path = {SCHEMA}, public",
        quote_ident(role),
        quote_ident(database)
    )
}

/// Takes the setting of [`set_role_path`] away again.
pub fn reset_role_path(role: &str, database: &str) -> String {
    format!(
        "ALTER ROLE {} IN DATABASE {} RESET search_path",
        quote_ident(role),
        quote_ident(database)
    )
}

/// A role finds the schema on its path only with USAGE on it.
pub fn grant_usage(role: &str) -> String {
    format!(
        "GRANT USAGE ON SCHEMA {} TO {}",
        quote_ident(SCHEMA),
        quote_ident(role)
    )
}

/// The table privileges a view can carry, compared between a table and its view.
pub const VIEW_PRIVILEGES: &[&str] = &["SELECT", "INSERT", "UPDATE", "DELETE"];

/// `GRANT privilege ON ruleiq_compat.view TO role` (privilege one of [`VIEW_PRIVILEGES`]).
pub fn grant_on_view(privilege: &str, view: &str, role: &str) -> String {
    assert!(VIEW_PRIVILEGES.contains(&privilege), "{privilege}");
    format!(
        "GRANT {privilege} ON {}.{} TO {}",
        quote_ident(SCHEMA),
        quote_ident(view),
        quote_ident(role)
    )
}

/// `REVOKE privilege ON ruleiq_compat.view FROM role`.
pub fn revoke_on_view(privilege: &str, view: &str, role: &str) -> String {
    assert!(VIEW_PRIVILEGES.contains(&privilege), "{privilege}");
    format!(
        "REVOKE {privilege} ON {}.{} FROM {}",
        quote_ident(SCHEMA),
        quote_ident(view),
        quote_ident(role)
    )
}

/// `search_path` (as `SHOW search_path` prints it) without the compatibility schema, or `None`
/// when it does not name it. ruleiq-db's own sessions use it: a DBA may well connect with the
/// application's URL, and through the views ruleiq-db would see each renamed column twice and
/// mistake the tables for views.
pub fn search_path_without(search_path: &str) -> Option<String> {
    let entries: Vec<&str> = search_path.split(',').map(str::trim).collect();
    let ours = |e: &&str| e.trim_matches('"') == SCHEMA;
    if !entries.iter().any(ours) {
        return None;
    }
    let rest: Vec<&str> = entries.into_iter().filter(|e| !ours(e)).collect();
    Some(if rest.is_empty() {
        // PostgreSQL's default.
        "\"$user\", public".to_string()
    } else {
        rest.join(", ")
    })
}

/// The statements of `create_statements` or `drop_statements` as one text.
pub fn script(statements: &[PlannedStatement]) -> String {
    statements.iter().map(|s| format!("{};\n", s.sql)).collect()
}

/// A DO block creating the view of one table (`public.<table>`, whatever the search_path). The column list is read from pg_attribute when it
/// runs, in the table's own order, so columns production has and our migrations do not are
/// included; then each renamed column again under its legacy name. The table's privileges are
/// copied to the view (table- and column-level, with grant option), and each grantee gets USAGE
/// on the schema, so the application's role can use the view exactly as it used the table.
///
/// security_invoker (PostgreSQL 15+): the view then checks the caller's privileges and the
/// table's row-level security policies as the table would. PostgreSQL 13 and 14 do not have it;
/// there the view reaches the table with its owner's (the migrator's) rights, and the copied
/// grants are what limits who may use it.
///
/// `spelling` says which names the table has: at version 8 the view adds each legacy name
/// beside the full one; before 008 (`Spelling::Legacy`, for `compat --for-role`) the same
/// block adds each full name beside the legacy one. The block reads "current" as the name the
/// table has and "legacy" as the one the view adds, so one rendering serves both; the text for
/// version 8 is 008's and does not change (docs/design.md §7).
fn create_view(table: &'static str, spelling: Spelling) -> String {
    let pairs: Vec<(&str, &str)> = RENAMES
        .iter()
        .filter(|r| r.table == table)
        .map(|r| match spelling {
            Spelling::Repaired => (r.current, r.legacy),
            Spelling::Legacy => (r.legacy, r.current),
        })
        .collect();
    let renames: Vec<String> = pairs
        .iter()
        .enumerate()
        .map(|(i, (has, adds))| {
            format!(
                "({}, {}, {})",
                i + 1,
                quote_literal(has),
                quote_literal(adds)
            )
        })
        .collect();
    let legacy_listed: Vec<String> = pairs
        .iter()
        .map(|(has, adds)| format!("{has} AS {adds}"))
        .collect();
    let comment = match spelling {
        Spelling::Repaired => COMMENT,
        Spelling::Legacy => COMMENT_LEGACY,
    };
    format!(
        r#"DO $compat$
DECLARE
  base regclass;
  currents text[];
  legacies text[];
  columns text;
  g record;
BEGIN
  -- ruleiq-db: CREATE VIEW {schema_ident}.{table_ident} AS SELECT every column of {table_ident}, {legacy_listed} (columns read when it runs)
  -- The table is ruleIQ's, named with its schema: never whatever a search_path finds first.
  SELECT c.oid INTO base FROM pg_class c
   WHERE c.oid = to_regclass({base}) AND c.relkind IN ('r', 'p');
  IF base IS NULL THEN
    RAISE EXCEPTION 'compatibility view: no table %', {base};
  END IF;
  SELECT coalesce(array_agg(m.current_name ORDER BY m.ord), '{{}}'), coalesce(array_agg(m.legacy_name ORDER BY m.ord), '{{}}')
    INTO currents, legacies
    FROM (VALUES {renames}) AS m(ord, current_name, legacy_name)
   WHERE EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = base AND a.attname = m.current_name AND a.attnum > 0 AND NOT a.attisdropped)
     AND NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = base AND a.attname = m.legacy_name AND a.attnum > 0 AND NOT a.attisdropped);
  SELECT string_agg(format('%I', a.attname), ', ' ORDER BY a.attnum) INTO columns
    FROM pg_attribute a WHERE a.attrelid = base AND a.attnum > 0 AND NOT a.attisdropped;
  SELECT columns || coalesce(string_agg(format(', %I AS %I', currents[i], legacies[i]), '' ORDER BY i), '') INTO columns
    FROM generate_subscripts(currents, 1) AS i;
  EXECUTE format('DROP VIEW IF EXISTS %I.%I', {schema}, {table});
  EXECUTE format('CREATE VIEW %I.%I AS SELECT %s FROM %s', {schema}, {table}, columns, base);
  IF current_setting('server_version_num')::int >= 150000 THEN
    EXECUTE format('ALTER VIEW %I.%I SET (security_invoker = true)', {schema}, {table});
  END IF;
  EXECUTE format('COMMENT ON VIEW %I.%I IS %L', {schema}, {table}, {comment});
  FOR g IN
    SELECT x.grantee, x.privilege_type, x.is_grantable, NULL::text AS column_name
      FROM pg_class c, aclexplode(c.relacl) x
     WHERE c.oid = base AND x.grantee <> c.relowner
    UNION ALL
    SELECT x.grantee, x.privilege_type, x.is_grantable, n.name
      FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid, aclexplode(a.attacl) x,
           LATERAL (SELECT a.attname::text
                    UNION ALL
                    SELECT legacies[i] FROM generate_subscripts(currents, 1) AS i WHERE currents[i] = a.attname::text) AS n(name)
     WHERE c.oid = base AND a.attnum > 0 AND NOT a.attisdropped AND x.grantee <> c.relowner
  LOOP
    EXECUTE format('GRANT %s%s ON %I.%I TO %s%s',
      g.privilege_type,
      CASE WHEN g.column_name IS NULL THEN '' ELSE format(' (%I)', g.column_name) END,
      {schema}, {table},
      CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(g.grantee)) END,
      CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO %s', {schema},
      CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(g.grantee)) END);
  END LOOP;
END
$compat$"#,
        table = quote_literal(table),
        base = quote_literal(&qualified(table)),
        schema = quote_literal(SCHEMA),
        schema_ident = quote_ident(SCHEMA),
        table_ident = quote_ident(table),
        legacy_listed = legacy_listed.join(", "),
        renames = renames.join(", "),
        comment = quote_literal(comment),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::sql::split_statements;
    /// 008's text is recorded with its checksum wherever it was applied: rendering the
    /// compatibility views for other versions or for recorded roles must not move it
    /// (docs/design.md §7).
    #[test]
    fn the_text_of_008_stays_as_applied() {
        let m = crate::catalog::migrations::get(8).unwrap();
        assert_eq!(m.checksum().to_string(), "18211001340743744734");
    }

    #[test]
    fn one_view_per_renamed_table_naming_every_legacy_column() {
        let create = create_statements();
        assert_eq!(create.len(), 2 + renamed_tables().len());
        let text = script(&create);
        for r in RENAMES {
            assert!(
                text.contains(&format!(
                    "{}, {}",
                    quote_literal(r.current),
                    quote_literal(r.legacy)
                )),
                "{r:?}"
            );
        }
        assert_eq!(split_statements(&text).len(), 2 + renamed_tables().len());
        assert!(!text.contains("SET DEFAULT"));
        let shown = crate::catalog::sql::summarise_statement(&create[2].sql);
        assert!(
            shown.starts_with("CREATE VIEW \"ruleiq_compat\".\"business_profiles\" AS SELECT every column of \"business_profiles\", handles_personal_data AS handles_persona,"),
            "{shown}"
        );
    }

    #[test]
    fn the_drop_removes_the_views_then_the_schema_never_cascading() {
        let drop = drop_statements();
        assert_eq!(drop.len(), renamed_tables().len() + 1);
        assert!(drop[0]
            .sql
            .starts_with("DROP VIEW IF EXISTS \"ruleiq_compat\"."));
        assert_eq!(
            drop.last().unwrap().sql,
            "DROP SCHEMA IF EXISTS \"ruleiq_compat\""
        );
        assert!(drop
            .iter()
            .all(|s| !s.sql.to_ascii_uppercase().contains("CASCADE")));
    }

    #[test]
    fn ruleiq_db_takes_the_schema_out_of_its_own_search_path() {
        assert_eq!(
            search_path_without("ruleiq_compat, public").as_deref(),
            Some("public")
        );
        assert_eq!(
            search_path_without("\"$user\", \"ruleiq_compat\",public").as_deref(),
            Some("\"$user\", public")
        );
        assert_eq!(search_path_without("\"$user\", public"), None);
    }

    #[test]
    fn the_connection_option_is_the_search_path_url_encoded() {
        assert_eq!(
            CONNECTION_OPTION,
            format!("options=-csearch_path%3D{SEARCH_PATH}")
        );
        assert!(SEARCH_PATH.starts_with(SCHEMA));
    }
}
