//! Making the throwaway server ready for a managed service's dump before it is loaded: each role
//! the dump names and the server lacks is created `NOLOGIN` (so ownership, grants and row-level
//! security load as they are), and an extension the server does not have stops the rehearsal
//! with what in the dump uses it. After `migrate`, the grants the compatibility views copied
//! from their tables are checked role by role.

use super::dump_scan::{DumpNeeds, Extension};
use crate::catalog::compat::SCHEMA as COMPAT_SCHEMA;
use crate::catalog::renames::renamed_tables;
use crate::catalog::sql::{quote_ident, quote_literal};
use crate::db::config::Target;
use crate::db::Query;
use anyhow::{bail, Context as _, Result};
use postgres::Client;
use serde::Serialize;

/// Checks the dump's extensions against the server (an error naming each one it lacks, with
/// its uses), then creates the roles the dump names that the server lacks; returns them.
pub fn prepare(target: &Target, needs: &DumpNeeds) -> Result<Vec<String>> {
    let mut client = crate::db::connect(target)?;
    refuse_missing_extensions(&mut client, &needs.extensions)?;
    create_missing_roles(&mut client, &needs.roles_to_provide())
}

/// An error naming each extension the dump creates that the server does not have.
pub fn refuse_missing_extensions(client: &mut Client, extensions: &[Extension]) -> Result<()> {
    let names: Vec<String> = extensions.iter().map(|e| e.name.clone()).collect();
    let available: Vec<String> = client
        .rows(
            "SELECT name::text FROM pg_catalog.pg_available_extensions WHERE name = ANY($1)",
            &[&names],
        )
        .context("reading the server's available extensions")?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let missing: Vec<&Extension> = extensions
        .iter()
        .filter(|e| !available.contains(&e.name))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let version: String = client
        .row(
            "SELECT pg_catalog.current_setting('server_version_num')",
            &[],
        )?
        .get(0);
    let major = version.get(..2).unwrap_or("15");
    let described: Vec<String> = missing.iter().map(|e| describe(e)).collect();
    bail!(
        "the dump creates {} the local PostgreSQL {major} does not have, so it cannot be loaded: {}. Nothing was loaded. Install {} for PostgreSQL {major} (on Debian/Ubuntu e.g. `apt-get install postgresql-{major}-{}`; `SELECT name FROM pg_available_extensions` lists what it has), or rehearse a dump without {}",
        if missing.len() == 1 { "an extension" } else { "extensions" },
        described.join("; "),
        if missing.len() == 1 { "it" } else { "them" },
        missing[0].name.replace('_', "-"),
        if missing.len() == 1 { "it" } else { "them" },
    )
}

/// One missing extension: where the dump creates it and what uses it.
fn describe(e: &Extension) -> String {
    let mut text = format!("extension {} (CREATE EXTENSION at line {})", e.name, e.line);
    if e.use_count == 0 {
        text.push_str(", nothing else in the dump names it");
    } else {
        text.push_str(&format!(
            ", used {} {}: {}",
            e.use_count,
            if e.use_count == 1 { "time" } else { "times" },
            e.uses.join(" | ")
        ));
        if e.use_count as usize > e.uses.len() {
            text.push_str(" | …");
        }
    }
    text
}

/// Creates each of `roles` the server lacks as a NOLOGIN role; returns those it created.
pub fn create_missing_roles(client: &mut Client, roles: &[String]) -> Result<Vec<String>> {
    let present: Vec<String> = client
        .rows(
            "SELECT rolname::text FROM pg_catalog.pg_roles WHERE rolname = ANY($1)",
            &[&roles.to_vec()],
        )
        .context("reading the server's roles")?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut created = Vec::new();
    for role in roles.iter().filter(|r| !present.contains(r)) {
        client
            .batch(&format!(
                "CREATE ROLE {} NOLOGIN; COMMENT ON ROLE {} IS {}",
                quote_ident(role),
                quote_ident(role),
                quote_literal(
                    "ruleiq-db rehearse: a role the dump names, created so it loads as it is"
                )
            ))
            .with_context(|| format!("creating the role {role} the dump names"))?;
        created.push(role.clone());
    }
    Ok(created)
}

/// Whether a role that may read one of the renamed tables may read its compatibility view.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CompatGrant {
    pub role: String,
    /// e.g. `public.business_profiles`.
    pub table: String,
    /// e.g. `ruleiq_compat.business_profiles`.
    pub view: String,
    /// Whether the role can SELECT through the view (USAGE on the schema and SELECT on it).
    pub view_select: bool,
}

/// For each role granted SELECT on a table 008 renames columns of (not a superuser, not the
/// table's owner, whose rights are its own and not a grant), whether it can SELECT the table's
/// compatibility view too (the views copy their table's grants).
pub fn compat_grants(client: &mut Client) -> Result<Vec<CompatGrant>> {
    let tables: Vec<String> = renamed_tables().iter().map(|t| t.to_string()).collect();
    let rows = client
        .rows(
            "SELECT r.rolname::text, c.relname::text,
                    pg_catalog.has_schema_privilege(r.oid, n2.oid, 'USAGE')
                      AND pg_catalog.has_table_privilege(r.oid, v.oid, 'SELECT')
               FROM pg_catalog.pg_class c
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
               CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) a
               JOIN pg_catalog.pg_roles r ON r.oid = a.grantee AND NOT r.rolsuper AND r.oid <> c.relowner
               JOIN pg_catalog.pg_namespace n2 ON n2.nspname = $2
               JOIN pg_catalog.pg_class v ON v.relnamespace = n2.oid AND v.relname = c.relname
              WHERE c.relname = ANY($1) AND a.privilege_type = 'SELECT'
              GROUP BY 1, 2, 3
              ORDER BY 2, 1",
            &[&tables, &COMPAT_SCHEMA],
        )
        .context("reading the grants of the renamed tables and their compatibility views")?;
    Ok(rows
        .iter()
        .map(|r| {
            let table: String = r.get(1);
            CompatGrant {
                role: r.get(0),
                view: format!("{COMPAT_SCHEMA}.{table}"),
                table: format!("public.{table}"),
                view_select: r.get(2),
            }
        })
        .collect())
}
