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
