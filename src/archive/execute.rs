//! Archiving for real, inside the rollback step's transaction: a dropped table is moved into
//! the archive schema, a dropped column is copied there first. Every function here writes; the
//! caller holds the transaction (one per step, from `db::Session::transaction`), so a step
//! either archives and reverts everything or nothing.

use super::names::{archive_name, qualified, Stamp, COMMENT_PREFIX, SCHEMA};
use super::plan::{classify, free_suffix, require_column, require_table, Action, Archived};
use crate::catalog::sql::{self, quote_ident, quote_literal};
use crate::catalog::PRIMARY_KEY;
use crate::db::{introspect, Query};
use anyhow::{bail, Context, Result};
use postgres::GenericClient;

/// Runs one down statement inside the caller's transaction, archiving first what it would drop.
/// `what` names the step in the archive's comment (e.g. `V3 core_tables`).
pub fn run_statement(
    tx: &mut (impl Query + GenericClient),
    statement: &str,
    version: i32,
    what: &str,
    stamp: &Stamp,
) -> Result<Option<Archived>> {
    let action = classify(statement)?;
    let archived = match &action {
        Action::Run => {
            tx.batch(statement)?;
            return Ok(None);
        }
        Action::MoveTable { table } => move_table(tx, table, version, what, stamp)?,
        Action::CopyColumn { table, column } => {
            let archived = copy_column(tx, table, column, version, what, stamp)?;
            tx.batch(statement)?;
            archived
        }
    };
    Ok(Some(archived))
}

fn ensure_schema(tx: &mut (impl Query + GenericClient)) -> Result<()> {
    tx.batch(&format!(
        "CREATE SCHEMA IF NOT EXISTS {}",
        quote_ident(SCHEMA)
    ))
    .with_context(|| format!("creating schema {SCHEMA}"))
}

/// Moves a table into the archive instead of dropping it: rename it and its indexes in place
/// (the new names are free in both schemas), then move it. Its foreign keys are dropped: an
/// archive is a snapshot, and a live reference would let `ON DELETE CASCADE` from the
/// application's tables delete archived rows, or block the application's deletes.
fn move_table(
    tx: &mut (impl Query + GenericClient),
    table: &str,
    version: i32,
    what: &str,
    stamp: &Stamp,
) -> Result<Archived> {
    require_table(tx, table, version)?;
    refuse_inbound_references(tx, table, version)?;
    ensure_schema(tx)?;
    let indexes = introspect::indexes_of(tx, table)?;
    let mut bases = vec![table.to_string()];
    bases.extend(indexes.iter().cloned());
    let suffix = free_suffix(tx, &bases, version, stamp)?;
    let archive = archive_name(table, &suffix);

    for name in introspect::foreign_keys_of(tx, table)? {
        tx.batch(&format!(
            "ALTER TABLE {} DROP CONSTRAINT {}",
            sql::qualified(table),
            quote_ident(&name)
        ))?;
    }
    for index in &indexes {
        // Renaming a constraint's index renames the constraint too.
        tx.batch(&format!(
            "ALTER INDEX {} RENAME TO {}",
            sql::qualified(index),
            quote_ident(&archive_name(index, &suffix))
        ))?;
    }
    tx.batch(&format!(
        "ALTER TABLE {} RENAME TO {}; ALTER TABLE {} SET SCHEMA {}",
        sql::qualified(table),
        quote_ident(&archive),
        sql::qualified(&archive),
        quote_ident(SCHEMA),
    ))
    .with_context(|| format!("archiving table {table} as {}", qualified(&archive)))?;
    detach_enum_columns(tx, &archive)?;
    // Counted after the move: the rename's ACCESS EXCLUSIVE lock means no row can arrive later.
    let rows = introspect::count_rows_in(tx, SCHEMA, &archive)?;
    tx.batch(&format!(
        "COMMENT ON TABLE {} IS {}",
        qualified(&archive),
        quote_literal(&format!(
            "{COMMENT_PREFIX}{what} at {}: table {table}, {rows} rows",
            stamp.0
        )),
    ))?;
    Ok(Archived {
        object: table.to_string(),
        archive: qualified(&archive),
        rows,
        version,
    })
}

/// Turns the archived table's enum columns into text. An enum type belongs to the live schema
/// and its down migration drops it (003's `conversationstatus`, 004's `integrationstatus`); an
/// archive that still used it would stop that DROP TYPE. Text keeps every label exactly, and a
/// restore casts it back to whatever type the re-created column has.
fn detach_enum_columns(tx: &mut (impl Query + GenericClient), archive: &str) -> Result<()> {
    let columns = introspect::column_facts_in(tx, SCHEMA, archive)?;
    for column in columns.iter().filter(|c| c.is_enum).map(|c| &c.name) {
        tx.batch(&format!(
            "ALTER TABLE {} ALTER COLUMN {col} TYPE text USING {col}::text",
            qualified(archive),
            col = quote_ident(column)
        ))
        .with_context(|| format!("archiving enum column {archive}.{column} as text"))?;
    }
    Ok(())
}

/// DROP TABLE without CASCADE fails when another table references this one; moving it would
/// not, and would leave the other table pointing into the archive. Refuse the same way.
fn refuse_inbound_references(
    tx: &mut (impl Query + GenericClient),
    table: &str,
    version: i32,
) -> Result<()> {
    let rows = tx.rows(
        "SELECT conrelid::regclass::text, conname::text FROM pg_constraint
          WHERE confrelid = to_regclass($1) AND conrelid <> confrelid AND contype = 'f'
          ORDER BY 1, 2",
        &[&sql::qualified(table)],
    )?;
    if rows.is_empty() {
        return Ok(());
    }
    let referrers: Vec<String> = rows
        .iter()
        .map(|r| format!("{} ({})", r.get::<_, String>(0), r.get::<_, String>(1)))
        .collect();
    bail!(
        "V{version}'s down would move table {table} to the archive, but {} still reference it: moved, they would point into the archive, and ruleiq-db never changes foreign keys it did not create. Nothing was changed by this step; `ruleiq-db rollback --to {version}` stops above it",
        referrers.join(", ")
    )
}

/// Copies the primary key and the column into the archive, before the column is dropped.
fn copy_column(
    tx: &mut (impl Query + GenericClient),
    table: &str,
    column: &str,
    version: i32,
    what: &str,
    stamp: &Stamp,
) -> Result<Archived> {
    require_column(tx, table, column, version)?;
    ensure_schema(tx)?;
    let base = format!("{table}__{column}");
    let suffix = free_suffix(tx, std::slice::from_ref(&base), version, stamp)?;
    let archive = qualified(&archive_name(&base, &suffix));
    // SHARE blocks writes (not reads) from before the copy's snapshot until the column is
    // dropped, so no value written in between can be lost.
    tx.batch(&format!(
        "LOCK TABLE {} IN SHARE MODE",
        sql::qualified(table)
    ))?;
    let rows = tx
        .exec(
            &format!(
                "CREATE TABLE {archive} AS SELECT {}, {} FROM {}",
                quote_ident(PRIMARY_KEY),
                quote_ident(column),
                sql::qualified(table)
            ),
            &[],
        )
        .with_context(|| format!("copying {table}.{column} to {archive}"))?;
    tx.batch(&format!(
        "COMMENT ON TABLE {archive} IS {}",
        quote_literal(&format!(
            "{COMMENT_PREFIX}{what} at {}: column {table}.{column} by {PRIMARY_KEY}, {rows} rows",
            stamp.0
        ))
    ))?;
    Ok(Archived {
        object: format!("{table}.{column}"),
        archive,
        rows: rows as i64,
        version,
    })
}
