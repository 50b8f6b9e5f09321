//! A digest of every table, to see that a standby holds exactly its primary's data.

use crate::db::Query;
use anyhow::{Context, Result};
use postgres::Client;

/// Every table of the database (the catalogs aside) with its row count and a digest of its
/// rows: two databases with equal fingerprints hold the same data. For comparing a standby with
/// its primary once it has replayed everything.
pub fn fingerprint(
    client: &mut Client,
) -> Result<std::collections::BTreeMap<String, (i64, String)>> {
    let tables = client.rows(
        "SELECT format('%I.%I', n.nspname, c.relname)
           FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
          WHERE c.relkind = 'r' AND n.nspname <> 'information_schema'
            AND left(n.nspname, 3) <> 'pg_'
          ORDER BY 1",
        &[],
    )?;
    let mut out = std::collections::BTreeMap::new();
    for row in tables {
        let table: String = row.get(0);
        // `table` comes quoted from format('%I.%I').
        let digest = client
            .row(
                &format!(
                    "SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), ''))
                       FROM {table} AS t"
                ),
                &[],
            )
            .with_context(|| format!("reading {table}"))?;
        out.insert(table, (digest.get(0), digest.get(1)));
    }
    Ok(out)
}
