//! Catalog questions several engines ask of a live database, written once.

use anyhow::Result;
use postgres::Client;

/// Whether a table exists in the current schema.
pub fn table_exists(client: &mut Client, table: &str) -> Result<bool> {
    Ok(client
        .query_one("SELECT to_regclass(quote_ident($1)) IS NOT NULL", &[&table])?
        .get(0))
}

/// The columns of a table in the current schema (empty when the table is absent).
pub fn columns_of(client: &mut Client, table: &str) -> Result<Vec<String>> {
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
