//! Catalog questions several engines ask of a live database, written once.
//!
//! A table is named as the application's code names it, without a schema: PostgreSQL resolves it
//! through the search path (`to_regclass(quote_ident(name))`), so a missing table is an answer
//! (false, empty), never an error. Each function takes any `GenericClient`, so that a caller
//! inside a transaction sees its own uncommitted changes. The `_in` variants name a table of a
//! given schema (the archive's).

use crate::catalog::sql::quote_ident;
use anyhow::Result;
use postgres::GenericClient;

/// Whether `schema` has a table (or any relation) of this name: for ruleiq-db's own schemas
/// (the archive, the audit trail), which are not on the search path.
pub fn table_exists_in(client: &mut impl GenericClient, schema: &str, table: &str) -> Result<bool> {
    Ok(client
        .query_one(
            "SELECT to_regclass(format('%I.%I', $1::text, $2::text)) IS NOT NULL",
            &[&schema, &table],
        )?
        .get(0))
}

/// Whether a table has this (undropped, user) column; false when the table is absent.
pub fn column_exists(client: &mut impl GenericClient, table: &str, column: &str) -> Result<bool> {
    Ok(client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(quote_ident($1))
                 AND attname = $2 AND attnum > 0 AND NOT attisdropped)",
            &[&table, &column],
        )?
        .get(0))
}

/// Whether `table.column` is NOT NULL in this database.
pub fn column_is_not_null(
    client: &mut impl GenericClient,
    table: &str,
    column: &str,
) -> Result<bool> {
    Ok(client
        .query_opt(
            "SELECT attnotnull FROM pg_attribute
              WHERE attrelid = to_regclass(quote_ident($1)) AND attname = $2
                AND attnum > 0 AND NOT attisdropped",
            &[&table, &column],
        )?
        .is_some_and(|r| r.get(0)))
}

/// The declared length of a `varchar(n)`/`char(n)` column (None: unbounded or not text).
pub fn column_max_length(
    client: &mut impl GenericClient,
    table: &str,
    column: &str,
) -> Result<Option<usize>> {
    let row = client.query_opt(
        "SELECT CASE WHEN atttypid IN ('varchar'::regtype, 'bpchar'::regtype) AND atttypmod > 4
                     THEN atttypmod - 4 END
           FROM pg_attribute
          WHERE attrelid = to_regclass(quote_ident($1)) AND attname = $2 AND NOT attisdropped",
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
    /// `format_type` with the type modifier: `character varying(255)`, `conversationstatus`.
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

/// The columns of a table in the current schema, in order, with their types (empty when the
/// table is absent).
pub fn column_facts(client: &mut impl GenericClient, table: &str) -> Result<Vec<ColumnFacts>> {
    let sql = column_facts_sql("to_regclass(quote_ident($1))");
    Ok(column_facts_from(&client.query(&sql, &[&table])?))
}

/// [`column_facts`] of a table in `schema` (empty when the table is absent).
pub fn column_facts_in(
    client: &mut impl GenericClient,
    schema: &str,
    table: &str,
) -> Result<Vec<ColumnFacts>> {
    let sql = column_facts_sql("to_regclass(format('%I.%I', $1::text, $2::text))");
    Ok(column_facts_from(&client.query(&sql, &[&schema, &table])?))
}

/// The indexes of a table (those of its primary key and unique constraints included), by name.
pub fn indexes_of(client: &mut impl GenericClient, table: &str) -> Result<Vec<String>> {
    let rows = client.query(
        "SELECT c.relname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
          WHERE i.indrelid = to_regclass(quote_ident($1)) ORDER BY 1",
        &[&table],
    )?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The foreign keys a table declares (not those pointing at it), by name.
pub fn foreign_keys_of(client: &mut impl GenericClient, table: &str) -> Result<Vec<String>> {
    let rows = client.query(
        "SELECT conname::text FROM pg_constraint
          WHERE conrelid = to_regclass(quote_ident($1)) AND contype = 'f' ORDER BY 1",
        &[&table],
    )?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The exact number of rows of a table in the current schema (a full scan: for what is about
/// to be copied or reported, not for sizing; see `health::estimate`).
pub fn count_rows(client: &mut impl GenericClient, table: &str) -> Result<i64> {
    Ok(client
        .query_one(&format!("SELECT count(*) FROM {}", quote_ident(table)), &[])?
        .get(0))
}

/// [`count_rows`] of a table in `schema`.
pub fn count_rows_in(client: &mut impl GenericClient, schema: &str, table: &str) -> Result<i64> {
    Ok(client
        .query_one(
            &format!(
                "SELECT count(*) FROM {}.{}",
                quote_ident(schema),
                quote_ident(table)
            ),
            &[],
        )?
        .get(0))
}

/// The on-disk size in bytes of each table (heap only, from the catalog: no scan), in one round
/// trip; an absent table weighs 0.
pub fn table_sizes(
    client: &mut impl GenericClient,
    tables: &[&str],
) -> Result<std::collections::HashMap<String, i64>> {
    let rows = client.query(
        "SELECT t.name, coalesce(pg_relation_size(to_regclass(quote_ident(t.name))), 0)
           FROM unnest($1::text[]) AS t(name)",
        &[&tables],
    )?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Whether a table exists in the current schema.
pub fn table_exists(client: &mut impl GenericClient, table: &str) -> Result<bool> {
    Ok(client
        .query_one("SELECT to_regclass(quote_ident($1)) IS NOT NULL", &[&table])?
        .get(0))
}

/// The columns of a table in the current schema (empty when the table is absent).
pub fn columns_of(client: &mut impl GenericClient, table: &str) -> Result<Vec<String>> {
    let rows = client.query(
        "SELECT attname::text FROM pg_attribute
          WHERE attrelid = to_regclass(quote_ident($1)) AND attnum > 0 AND NOT attisdropped
          ORDER BY attnum",
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

/// Every column of a table in the current schema with its type, in column order (empty when
/// the table is absent).
pub fn column_types(
    client: &mut impl postgres::GenericClient,
    table: &str,
) -> Result<Vec<ColumnType>> {
    let rows = client.query(
        "SELECT attname::text, format_type(atttypid, atttypmod), format_type(atttypid, NULL)
           FROM pg_attribute
          WHERE attrelid = to_regclass(quote_ident($1)) AND attnum > 0 AND NOT attisdropped
          ORDER BY attnum",
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
