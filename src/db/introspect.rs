//! Catalog questions several engines ask of a live database, written once.
//!
//! A table is named as the application's code names it, and looked up in ruleIQ's schema
//! ([`crate::catalog::sql::APP_SCHEMA`], never through the search path, which holds only `pg_catalog, pg_temp`:
//! `to_regclass(format('%I.%I', 'public', name))`), so a missing table is an answer (false,
//! empty), never an error, and a table of that name in another schema is never it. Each
//! function takes any [`Query`] (a connection or a transaction), so that a caller inside a
//! transaction sees its own uncommitted changes. The `_in` variants name a table of a given
//! schema (the archive's).

use crate::catalog::sql::{qualified, quote_ident, APP_SCHEMA};
use crate::db::Query;
use anyhow::Result;

/// The regclass of the ruleIQ table named by parameter `$1`, as an SQL expression (NULL when
/// absent): in ruleIQ's schema ([`crate::catalog::sql::APP_SCHEMA`]), whatever the search path.
macro_rules! app_table {
    () => {
        "to_regclass(format('%I.%I', 'public'::text, $1::text))"
    };
}

/// Whether `schema` has a table (or any relation) of this name: for ruleiq-db's own schemas
/// (the archive, the audit trail), which are not on the search path.
pub fn table_exists_in(client: &mut impl Query, schema: &str, table: &str) -> Result<bool> {
    Ok(client
        .row(
            "SELECT to_regclass(format('%I.%I', $1::text, $2::text)) IS NOT NULL",
            &[&schema, &table],
        )?
        .get(0))
}

/// Whether a table has this (undropped, user) column; false when the table is absent.
pub fn column_exists(client: &mut impl Query, table: &str, column: &str) -> Result<bool> {
    Ok(client
        .row(
            concat!(
                "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = ",
                app_table!(),
                "
                 AND attname = $2 AND attnum > 0 AND NOT attisdropped)"
            ),
            &[&table, &column],
        )?
        .get(0))
}

/// Whether `table.column` is NOT NULL in this database.
pub fn column_is_not_null(client: &mut impl Query, table: &str, column: &str) -> Result<bool> {
    Ok(client
        .row_opt(
            concat!(
                "SELECT attnotnull FROM pg_attribute
              WHERE attrelid = ",
                app_table!(),
                " AND attname = $2
                AND attnum > 0 AND NOT attisdropped"
            ),
            &[&table, &column],
        )?
        .is_some_and(|r| r.get(0)))
}

/// The declared length of a `varchar(n)`/`char(n)` column (None: unbounded or not text).
pub fn column_max_length(
    client: &mut impl Query,
    table: &str,
    column: &str,
) -> Result<Option<usize>> {
    let row = client.row_opt(
        concat!(
            "SELECT CASE WHEN atttypid IN ('varchar'::regtype, 'bpchar'::regtype) AND atttypmod > 4
                     THEN atttypmod - 4 END
           FROM pg_attribute
          WHERE attrelid = ",
            app_table!(),
            " AND attname = $2 AND NOT attisdropped"
        ),
        &[&table, &column],
    )?;
    Ok(row
        .and_then(|r| r.get::<_, Option<i32>>(0))
        .map(|n| n as usize))
}

/// A column as the catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnFacts {
    pub name: String,
    /// `format_type` with the type modifier: `character varying(255)`, `public.conversationstatus` (a
    /// type outside pg_catalog comes with its schema).
    pub type_name: String,
    /// A generated column (`GENERATED ALWAYS AS … STORED`): it cannot be written.
    pub generated: bool,
    /// Its type is an enum.
    pub is_enum: bool,
}

/// The query behind [`column_facts`], for the table `relation` (an SQL expression of type
/// regclass, built from bound parameters) names.
fn column_facts_sql(relation: &str) -> String {
    format!(
        "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod),
                a.attgenerated <> '', t.typtype = 'e'
           FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
          WHERE a.attrelid = {relation} AND a.attnum > 0 AND NOT a.attisdropped
          ORDER BY a.attnum"
    )
}

fn column_facts_from(rows: &[postgres::Row]) -> Vec<ColumnFacts> {
    rows.iter()
        .map(|r| ColumnFacts {
            name: r.get(0),
            type_name: r.get(1),
            generated: r.get(2),
            is_enum: r.get(3),
        })
        .collect()
}

/// The columns of a table in ruleIQ's schema, in order, with their types (empty when the
/// table is absent).
pub fn column_facts(client: &mut impl Query, table: &str) -> Result<Vec<ColumnFacts>> {
    let sql = column_facts_sql(app_table!());
    Ok(column_facts_from(&client.rows(&sql, &[&table])?))
}

/// [`column_facts`] of a table in `schema` (empty when the table is absent).
pub fn column_facts_in(
    client: &mut impl Query,
    schema: &str,
    table: &str,
) -> Result<Vec<ColumnFacts>> {
    let sql = column_facts_sql("to_regclass(format('%I.%I', $1::text, $2::text))");
    Ok(column_facts_from(&client.rows(&sql, &[&schema, &table])?))
}

/// The indexes of a table (those of its primary key and unique constraints included), by name.
pub fn indexes_of(client: &mut impl Query, table: &str) -> Result<Vec<String>> {
    let rows = client.rows(
        concat!(
            "SELECT c.relname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
          WHERE i.indrelid = ",
            app_table!(),
            " ORDER BY 1"
        ),
        &[&table],
    )?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The foreign keys a table declares (not those pointing at it), by name.
pub fn foreign_keys_of(client: &mut impl Query, table: &str) -> Result<Vec<String>> {
    let rows = client.rows(
        concat!(
            "SELECT conname::text FROM pg_constraint
          WHERE conrelid = ",
            app_table!(),
            " AND contype = 'f' ORDER BY 1"
        ),
        &[&table],
    )?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The exact number of rows of a table in ruleIQ's schema (a full scan: for what is about
/// to be copied or reported, not for sizing; see `health::estimate`).
pub fn count_rows(client: &mut impl Query, table: &str) -> Result<i64> {
    Ok(client
        .row(&format!("SELECT count(*) FROM {}", qualified(table)), &[])?
        .get(0))
}

/// [`count_rows`] of a table in `schema`.
pub fn count_rows_in(client: &mut impl Query, schema: &str, table: &str) -> Result<i64> {
    Ok(client
        .row(
            &format!(
                "SELECT count(*) FROM {}.{}",
                quote_ident(schema),
                quote_ident(table)
            ),
            &[],
        )?
        .get(0))
}

/// Tables' on-disk sizes (heap only, from the catalog: no scan) and the server's page size, read
/// together in one round trip: what the check orders its scans by, the progress bars count
/// and the samples size themselves on.
#[derive(Debug, Clone, Default)]
pub struct TableSizes {
    bytes: std::collections::HashMap<String, i64>,
    block_size: i64,
}

impl TableSizes {
    /// A table's bytes; an absent table weighs 0.
    pub fn bytes(&self, table: &str) -> i64 {
        self.bytes.get(table).copied().unwrap_or(0).max(0)
    }

    /// A table's pages; an absent table has none.
    pub fn pages(&self, table: &str) -> i64 {
        self.bytes(table) / self.block_size.max(1)
    }

    /// The server's page size (`block_size`), in bytes.
    pub fn block_size(&self) -> i64 {
        self.block_size
    }
}

/// The server's page size (`block_size`), in bytes.
pub fn block_size(client: &mut (impl Query + ?Sized)) -> Result<i64> {
    Ok(client
        .row("SELECT current_setting('block_size')::int8", &[])?
        .get(0))
}

/// The sizes of `tables` in ruleIQ's schema.
pub fn table_sizes(client: &mut (impl Query + ?Sized), tables: &[&str]) -> Result<TableSizes> {
    let rows = client.rows(
        "SELECT t.name,
                coalesce(pg_relation_size(to_regclass(format('%I.%I', $2::text, t.name))), 0),
                current_setting('block_size')::int8
           FROM unnest($1::text[]) AS t(name)",
        &[&tables, &APP_SCHEMA],
    )?;
    let block_size = match rows.first() {
        Some(row) => row.get(2),
        None => block_size(client)?,
    };
    Ok(TableSizes {
        bytes: rows.iter().map(|r| (r.get(0), r.get(1))).collect(),
        block_size,
    })
}

/// Whether a table exists in ruleIQ's schema.
pub fn table_exists(client: &mut impl Query, table: &str) -> Result<bool> {
    Ok(client
        .row(concat!("SELECT ", app_table!(), " IS NOT NULL"), &[&table])?
        .get(0))
}

/// The columns of a table in ruleIQ's schema (empty when the table is absent).
pub fn columns_of(client: &mut impl Query, table: &str) -> Result<Vec<String>> {
    let rows = client.rows(
        concat!(
            "SELECT attname::text FROM pg_attribute
          WHERE attrelid = ",
            app_table!(),
            " AND attnum > 0 AND NOT attisdropped
          ORDER BY attnum"
        ),
        &[&table],
    )?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// A column of a table and its SQL type, as `format_type` spells it with the type modifier
/// (`character varying(5)`) and without it (`character varying`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnType {
    pub name: String,
    pub sql_type: String,
    /// What a bound value is cast to: an explicit cast to `varchar(5)` would cut a longer
    /// value short without a word, where the assignment to the column refuses it.
    pub base_type: String,
}

/// Every column of a table in ruleIQ's schema with its type, in column order (empty when
/// the table is absent).
pub fn column_types(client: &mut impl Query, table: &str) -> Result<Vec<ColumnType>> {
    let rows = client.rows(
        concat!(
            "SELECT attname::text, format_type(atttypid, atttypmod), format_type(atttypid, NULL)
           FROM pg_attribute
          WHERE attrelid = ",
            app_table!(),
            " AND attnum > 0 AND NOT attisdropped
          ORDER BY attnum"
        ),
        &[&table],
    )?;
    Ok(rows
        .iter()
        .map(|r| ColumnType {
            name: r.get(0),
            sql_type: r.get(1),
            base_type: r.get(2),
        })
        .collect())
}

/// The schema extension `name` is installed in (its objects are named with it: the session's
/// search_path holds only pg_catalog), or None when it is not installed in this database.
pub fn extension_schema(client: &mut (impl Query + ?Sized), name: &str) -> Result<Option<String>> {
    Ok(client
        .row_opt(
            "SELECT n.nspname::text FROM pg_catalog.pg_extension e
               JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
              WHERE e.extname = $1",
            &[&name],
        )?
        .map(|r| r.get(0)))
}
