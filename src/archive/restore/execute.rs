//! Putting archived rows and values back, in the caller's transaction (the migration's own,
//! in `apply`), then dropping the archive or marking it as restored.

use super::super::names::qualified;
use super::plan::{archives, newest, Created, Entry};
use crate::catalog::sql::{self, quote_ident, quote_literal};
use crate::catalog::PRIMARY_KEY;
use crate::db::{introspect, Query};
use anyhow::{Context, Result};
use postgres::GenericClient;
use serde::Serialize;

/// One archive put back.
#[derive(Debug, Clone, Serialize)]
pub struct Restored {
    /// `table` or `table.column`.
    pub object: String,
    /// Schema-qualified name of the archive the rows or values came from.
    pub archive: String,
    /// Rows inserted (a table) or updated (a column).
    pub rows: i64,
    /// False when the archive was kept, marked as restored in its comment: it held columns the
    /// new table lacks, or something of the user's depends on it.
    pub archive_dropped: bool,
}

/// What a migration will create that a rollback archived: each of `created` (see [`absent`])
/// with its newest archive. Read before the migration's own statements run, so that nothing
/// is read while the locks they take are held.
pub struct Archived(Vec<(Created, Entry)>);

/// Finds the newest archive of each of `created`; no query when there is nothing to look for.
pub fn archived(tx: &mut (impl Query + GenericClient), created: &[Created]) -> Result<Archived> {
    if created.is_empty() {
        return Ok(Archived(Vec::new()));
    }
    let entries = archives(tx)?;
    Ok(Archived(
        created
            .iter()
            .filter_map(|c| newest(&entries, c).map(|e| (c.clone(), e.clone())))
            .collect(),
    ))
}

/// Puts back, in the caller's transaction and in the given order, each archive of `archived`
/// (what the migration `label` has just created).
///
/// A column's values are written by one UPDATE while the migration's `ADD COLUMN` still holds
/// its ACCESS EXCLUSIVE lock, so the application waits for it; that is the price of the values
/// and the column appearing together.
pub fn restore(
    tx: &mut (impl Query + GenericClient),
    archived: &Archived,
    label: &str,
) -> Result<Vec<Restored>> {
    let mut restored = Vec::new();
    for (c, entry) in &archived.0 {
        let archive = qualified(&entry.name);
        let (rows, left_behind) = match c {
            Created::Table { table } => restore_table(tx, table, entry)?,
            Created::Column { table, column } => {
                (restore_column(tx, table, column, entry)?, Vec::new())
            }
        };
        let dropped = left_behind.is_empty() && drop_archive(tx, &archive)?;
        if !dropped {
            mark_restored(tx, entry, &c.object(), label, &left_behind)?;
        }
        restored.push(Restored {
            object: c.object(),
            archive,
            rows,
            archive_dropped: dropped,
        });
    }
    Ok(restored)
}

/// INSERT … SELECT of the columns both have, by name. Returns the rows inserted and the
/// archive's columns the table lacks (kept in the archive).
fn restore_table(
    tx: &mut (impl Query + GenericClient),
    table: &str,
    entry: &Entry,
) -> Result<(i64, Vec<String>)> {
    // An archived enum column holds text (the archive detaches it from the live type): it is
    // cast back to the re-created column's enum. Other columns go back as they are, so that a
    // value that no longer fits is an error, never silently cut.
    let live = introspect::column_facts(tx, table)?;
    let common: Vec<&introspect::ColumnFacts> = live
        .iter()
        .filter(|c| !c.generated && entry.columns.contains(&c.name))
        .collect();
    let left_behind: Vec<String> = entry
        .columns
        .iter()
        .filter(|c| !live.iter().any(|l| &l.name == *c))
        .cloned()
        .collect();
    if common.is_empty() {
        return Ok((0, entry.columns.clone()));
    }
    let list = common
        .iter()
        .map(|c| quote_ident(&c.name))
        .collect::<Vec<_>>()
        .join(", ");
    let values = common
        .iter()
        .map(|c| {
            if c.is_enum {
                format!("{}::{}", quote_ident(&c.name), c.type_name)
            } else {
                quote_ident(&c.name)
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    let archive = qualified(&entry.name);
    // OVERRIDING SYSTEM VALUE: an identity column gets its archived value back, not a new one.
    let rows = tx
        .exec(
            &format!(
                "INSERT INTO {} ({list}) OVERRIDING SYSTEM VALUE SELECT {values} FROM {archive}",
                sql::qualified(table)
            ),
            &[],
        )
        .with_context(|| format!("putting the rows of {archive} back into table {table}"))?;
    for column in common.iter().map(|c| &c.name) {
        // A serial or identity column's sequence starts again at 1 in the new table: move it
        // past the restored keys so that the next insert does not collide.
        let sequence: Option<String> = tx
            .row(
                "SELECT pg_get_serial_sequence($1, $2)",
                &[&sql::qualified(table), column],
            )?
            .get(0);
        if let Some(sequence) = sequence {
            tx.rows(
                &format!(
                    "SELECT setval({}::regclass, max({c})::bigint) FROM {t} HAVING max({c}) IS NOT NULL",
                    quote_literal(&sequence),
                    c = quote_ident(column),
                    t = sql::qualified(table)
                ),
                &[],
            )?;
        }
    }
    Ok((rows as i64, left_behind))
}

/// UPDATE t SET c = archive.c by primary key. Rows deleted since the rollback have nothing to
/// receive their value; rows inserted since keep what the migration gave them.
fn restore_column(
    tx: &mut (impl Query + GenericClient),
    table: &str,
    column: &str,
    entry: &Entry,
) -> Result<i64> {
    let archive = qualified(&entry.name);
    let rows = tx
        .exec(
            &format!(
                "UPDATE {t} AS t SET {c} = a.{c} FROM {archive} AS a WHERE t.{k} = a.{k}",
                t = sql::qualified(table),
                c = quote_ident(column),
                k = quote_ident(PRIMARY_KEY),
            ),
            &[],
        )
        .with_context(|| format!("putting the values of {archive} back into {table}.{column}"))?;
    Ok(rows as i64)
}

/// Drops an archive whose every value is back. Something of the user's that depends on it (a
/// view made on the archive) keeps it: the drop is undone, not the migration.
fn drop_archive(tx: &mut (impl Query + GenericClient), archive: &str) -> Result<bool> {
    let mut savepoint = tx.transaction()?;
    match savepoint.batch(&format!("DROP TABLE {archive}")) {
        Ok(()) => {
            savepoint.commit()?;
            Ok(true)
        }
        Err(_) => {
            savepoint.rollback()?;
            Ok(false)
        }
    }
}

/// Rewrites a kept archive's comment so it no longer reads as a rollback's: it is not a
/// candidate for any later restore.
fn mark_restored(
    tx: &mut (impl Query + GenericClient),
    entry: &Entry,
    object: &str,
    label: &str,
    left_behind: &[String],
) -> Result<()> {
    let at = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let kept = if left_behind.is_empty() {
        String::new()
    } else {
        format!(
            "; columns the new table lacks, kept here only: {}",
            left_behind.join(", ")
        )
    };
    tx.batch(&format!(
        "COMMENT ON TABLE {} IS {}",
        qualified(&entry.name),
        quote_literal(&format!(
            "restored into {object} by ruleiq-db migrate {label} at {at}{kept}; was: {}",
            entry.comment
        ))
    ))?;
    Ok(())
}
