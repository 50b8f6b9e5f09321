//! Reading shapes from PostgreSQL's catalog: the live schema, and the schema each version
//! would have, found by running the embedded migrations in a scratch schema that is rolled back.

use super::{Object, Shape, VersionShapes};
use crate::catalog::sql::{quote_ident, APP_SCHEMA};
use crate::catalog::{migrations, HISTORY_TABLE};
use crate::db::Query;
use anyhow::{Context, Result};
use postgres::Client;
use std::collections::{BTreeMap, BTreeSet};

/// The shape of every version 1..latest, computed once.
///
/// One transaction: a uniquely named scratch schema is created, the migrations' SQL runs there
/// one after the other (each name they give ruleIQ's schema, `public.`, is given the scratch
/// schema's instead, so they never touch the real tables), the catalog is read after each, and
/// everything is rolled back. An extension a migration creates is required from that version
/// on; one the database already has cannot be missing from it, so it needs no comparison.
///
/// Needs the privilege to create a schema (as `migrate` does); it takes no lock on the real
/// tables.
pub fn expected(client: &mut Client) -> Result<VersionShapes> {
    let scratch = format!("ruleiq_shape_probe_{}", uuid::Uuid::new_v4().simple());
    let mut tx = client.transaction()?;
    tx.batch(&format!("CREATE SCHEMA {}", quote_ident(&scratch)))
        .context("creating the scratch schema in which the expected shapes are computed")?;
    let before = extensions(&mut tx)?;
    let mut shapes = BTreeMap::new();
    for m in migrations::all() {
        let what = format!("V{} {}", m.version(), m.name());
        let sql = m
            .sql()
            .with_context(|| format!("{what} has no SQL to derive its shape from"))?;
        tx.batch(&in_schema(sql, &scratch))
            .with_context(|| format!("running {what} in a scratch schema to learn its shape"))?;
        let mut shape = read(&mut tx, &scratch)?;
        for name in extensions(&mut tx)?.difference(&before) {
            shape
                .objects
                .insert(Object::Extension(name.clone()), String::new());
        }
        shapes.insert(m.version(), shape);
    }
    tx.rollback()?;
    Ok(VersionShapes::new(shapes))
}

/// A migration's SQL with every name it qualifies with ruleIQ's schema (`public.t`,
/// `'public."t"'::regclass`, `format('ALTER TABLE public.%I …')`) qualified with `schema`
/// instead. Only `public.` that does not continue an identifier is replaced.
fn in_schema(sql: &str, schema: &str) -> String {
    let prefix = format!("{APP_SCHEMA}.");
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(at) = rest.find(&prefix) {
        let continues_a_name = rest[..at]
            .chars()
            .next_back()
            .or_else(|| out.chars().next_back())
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '"' || c == '$');
        out.push_str(&rest[..at]);
        if continues_a_name {
            out.push_str(&prefix);
        } else {
            out.push_str(&quote_ident(schema));
            out.push('.');
        }
        rest = &rest[at + prefix.len()..];
    }
    out.push_str(rest);
    out
}

/// The shape of the live schema (ruleIQ's, `public`), without ruleiq-db's own history table.
pub fn live(client: &mut impl Query) -> Result<Shape> {
    let mut shape = read(client, APP_SCHEMA)?;
    for name in extensions(client)? {
        shape.objects.insert(Object::Extension(name), String::new());
    }
    shape.objects.retain(|object, _| {
        *object != Object::Table(HISTORY_TABLE.to_string())
            && object.parent_table() != Some(HISTORY_TABLE)
    });
    Ok(shape)
}

/// Tables, columns (type, nullability, default), enum types, indexes and constraints of one
/// schema.
///
/// Definitions are normalised so that two schemas compare equal: an index definition loses its
/// own name and its table's schema (`pg_get_indexdef` always qualifies the table); a
/// constraint definition loses `NOT VALID`, because 008 adds its constraints NOT VALID and
/// `migrate` validates them afterwards (whether they are validated is `status`'s constraint
/// section's business, not the shape's). The schema's own objects are not on ruleiq-db's
/// search_path, so PostgreSQL prints them qualified (`public.conversationstatus`, `REFERENCES
/// public.users(id)`): types, defaults and definitions lose the schema's `name.` prefix.
fn read(client: &mut impl Query, schema: &str) -> Result<Shape> {
    let mut objects = BTreeMap::new();
    let tables = client.rows(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')",
        &[&schema],
    )?;
    for row in tables {
        objects.insert(Object::Table(row.get(0)), String::new());
    }
    let columns = client.rows(
        "SELECT c.relname::text, a.attname::text,
                replace(format_type(a.atttypid, a.atttypmod), quote_ident($1) || '.', ''),
                a.attnotnull, replace(pg_get_expr(d.adbin, d.adrelid), quote_ident($1) || '.', '')
           FROM pg_attribute a
           JOIN pg_class c ON c.oid = a.attrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace
           LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
          WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped",
        &[&schema],
    )?;
    for row in columns {
        let (table, column): (String, String) = (row.get(0), row.get(1));
        let not_null: bool = row.get(3);
        let default: Option<String> = row.get(4);
        objects.insert(
            Object::Nullability {
                table: table.clone(),
                column: column.clone(),
            },
            if not_null { "NOT NULL" } else { "NULL" }.to_string(),
        );
        if let Some(default) = default {
            objects.insert(
                Object::Default {
                    table: table.clone(),
                    column: column.clone(),
                },
                default,
            );
        }
        objects.insert(
            Object::Column {
                table,
                name: column,
            },
            row.get(2),
        );
    }
    let enums = client.rows(
        "SELECT t.typname::text, string_agg(quote_literal(e.enumlabel::text), ', ' ORDER BY e.enumsortorder)
           FROM pg_type t
           JOIN pg_namespace n ON n.oid = t.typnamespace
           JOIN pg_enum e ON e.enumtypid = t.oid
          WHERE n.nspname = $1
          GROUP BY t.typname",
        &[&schema],
    )?;
    for row in enums {
        objects.insert(Object::Type(row.get(0)), row.get(1));
    }
    let indexes = client.rows(
        "SELECT t.relname::text, i.relname::text,
                replace(replace(replace(replace(pg_get_indexdef(x.indexrelid),
                    ' INDEX ' || quote_ident(i.relname::text) || ' ON ', ' INDEX ON '),
                    ' ON ONLY ' || quote_ident(n.nspname::text) || '.', ' ON ONLY '),
                    ' ON ' || quote_ident(n.nspname::text) || '.', ' ON '),
                    quote_ident(n.nspname::text) || '.', '')
           FROM pg_index x
           JOIN pg_class i ON i.oid = x.indexrelid
           JOIN pg_class t ON t.oid = x.indrelid
           JOIN pg_namespace n ON n.oid = t.relnamespace
          WHERE n.nspname = $1 AND t.relkind IN ('r', 'p')",
        &[&schema],
    )?;
    for row in indexes {
        objects.insert(
            Object::Index {
                table: row.get(0),
                name: row.get(1),
            },
            row.get(2),
        );
    }
    let constraints = client.rows(
        "SELECT t.relname::text, k.conname::text,
                replace(pg_get_constraintdef(k.oid), quote_ident($1) || '.', '')
           FROM pg_constraint k
           JOIN pg_class t ON t.oid = k.conrelid
           JOIN pg_namespace n ON n.oid = t.relnamespace
          WHERE n.nspname = $1 AND t.relkind IN ('r', 'p') AND k.contype IN ('p', 'u', 'f', 'c', 'x')",
        &[&schema],
    )?;
    for row in constraints {
        let definition: String = row.get(2);
        let definition = definition
            .strip_suffix(" NOT VALID")
            .unwrap_or(&definition)
            .to_string();
        objects.insert(
            Object::Constraint {
                table: row.get(0),
                name: row.get(1),
            },
            definition,
        );
    }
    Ok(Shape { objects })
}

/// The extensions installed in the database (they are per database, not per schema).
fn extensions(client: &mut impl Query) -> Result<BTreeSet<String>> {
    Ok(client
        .rows("SELECT extname::text FROM pg_extension", &[])?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_run_in_the_scratch_schema_wherever_they_name_ruleiqs() {
        let sql = "CREATE TABLE public.t (x public.e REFERENCES public.u(id));\nSELECT 'public.\"t\"'::regclass, format('ALTER TABLE public.%I', 't'), ruleiq_public.x, \"my public\".y";
        assert_eq!(
            in_schema(sql, "scratch"),
            "CREATE TABLE \"scratch\".t (x \"scratch\".e REFERENCES \"scratch\".u(id));\nSELECT '\"scratch\".\"t\"'::regclass, format('ALTER TABLE \"scratch\".%I', 't'), ruleiq_public.x, \"my public\".y"
        );
    }
}
