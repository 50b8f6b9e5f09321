//! Every statement ruleiq-db sends, sent without a named prepared statement.
//!
//! tokio-postgres's `query`/`execute` prepare a statement under a name (`s1`, `s2`, …), then
//! bind it in a second exchange. Through a transaction-mode pooler the two exchanges may reach
//! different server backends ("prepared statement "s1" does not exist"), and a statement left
//! behind on one backend collides with the next client's ("already exists"). Here each
//! statement goes as one unnamed Parse/Bind/Execute with its parameter types stated, so it
//! works on any connection path and leaves nothing on the server.
//!
//! On a connection that [`crate::db::pooler`] found pooled, in either mode, no session setting
//! may be made (it would land on the application's next transaction, or its next session
//! where the pooler does not reset one), so each statement outside a
//! transaction runs in one of its own that sets the safe `search_path` (see
//! [`crate::db::connect`]) with `SET LOCAL`; inside a transaction the `SET LOCAL` comes first.

use postgres::types::{ToSql, Type};
use postgres::{Client, Row, RowIter, Transaction};
use std::sync::atomic::{AtomicBool, Ordering};

/// What a connection through a pooler needs at the start of each transaction:
/// the search_path no other role can write to, and no inherited statement_timeout.
pub const POOLED_TRANSACTION_SETTINGS: &str =
    "SET LOCAL search_path = pg_catalog, pg_temp; SET LOCAL statement_timeout = 0";

/// Set once, when this run's connection path was found to be a pooler, in either mode (every
/// connection of one run goes the same way): a session pooler hands a server connection on
/// when ours closes, and may not reset it first.
static POOLED: AtomicBool = AtomicBool::new(false);

/// Marks this run's connections as pooled (see the module doc).
pub fn mark_pooled() {
    POOLED.store(true, Ordering::SeqCst);
}

/// Whether this run's connections go through a pooler: no session setting but a `Session`'s.
pub fn pooled() -> bool {
    POOLED.load(Ordering::SeqCst)
}

/// A value bound to a statement, with the PostgreSQL type it is sent as.
pub trait Param: ToSql + Sync {
    fn pg_type(&self) -> Type;
}

/// The PostgreSQL type a Rust type is bound as: the type its `ToSql` writes natively, so the
/// server reads the bytes as they were meant (`i32` is int4, `String` text, `Vec<String>` text[]).
pub trait SqlType {
    const TYPE: Type;
}

impl<T: SqlType + ToSql + Sync + ?Sized> Param for T {
    fn pg_type(&self) -> Type {
        T::TYPE
    }
}

macro_rules! sql_types {
    ($($rust:ty => $pg:ident),* $(,)?) => {
        $(impl SqlType for $rust { const TYPE: Type = Type::$pg; })*
    };
}

sql_types! {
    bool => BOOL,
    i16 => INT2,
    i32 => INT4,
    i64 => INT8,
    u32 => OID,
    f32 => FLOAT4,
    f64 => FLOAT8,
    str => TEXT,
    String => TEXT,
    [u8] => BYTEA,
    Vec<u8> => BYTEA,
    [String] => TEXT_ARRAY,
    Vec<String> => TEXT_ARRAY,
    [&str] => TEXT_ARRAY,
    Vec<&str> => TEXT_ARRAY,
    Vec<Option<&str>> => TEXT_ARRAY,
    Vec<i16> => INT2_ARRAY,
    Vec<i32> => INT4_ARRAY,
    [i64] => INT8_ARRAY,
    Vec<i64> => INT8_ARRAY,
    Vec<u32> => OID_ARRAY,
    Vec<f64> => FLOAT8_ARRAY,
    uuid::Uuid => UUID,
    [uuid::Uuid] => UUID_ARRAY,
    Vec<uuid::Uuid> => UUID_ARRAY,
    serde_json::Value => JSONB,
    chrono::DateTime<chrono::Utc> => TIMESTAMPTZ,
    chrono::NaiveDateTime => TIMESTAMP,
    chrono::NaiveDate => DATE,
}

impl<T: SqlType + ?Sized> SqlType for &T {
    const TYPE: Type = T::TYPE;
}

impl<T: SqlType> SqlType for Option<T> {
    const TYPE: Type = T::TYPE;
}

impl<T: SqlType + ?Sized> SqlType for Box<T> {
    const TYPE: Type = T::TYPE;
}

fn typed<'a>(params: &'a [&'a dyn Param]) -> Vec<(&'a (dyn ToSql + Sync), Type)> {
    params
        .iter()
        .map(|p| (*p as &(dyn ToSql + Sync), p.pg_type()))
        .collect()
}

/// Statements without a named prepared statement, on a connection or in a transaction. The
/// only way ruleiq-db's engines talk to a database (`tests/architecture.rs` holds it).
pub trait Query {
    /// Every row the statement returns.
    fn rows(&mut self, sql: &str, params: &[&dyn Param]) -> Result<Vec<Row>, postgres::Error>;

    /// Exactly one row (an error otherwise).
    fn row(&mut self, sql: &str, params: &[&dyn Param]) -> Result<Row, postgres::Error>;

    /// At most one row (an error when there are more).
    fn row_opt(&mut self, sql: &str, params: &[&dyn Param])
        -> Result<Option<Row>, postgres::Error>;

    /// Runs a statement, returning the rows it affected.
    fn exec(&mut self, sql: &str, params: &[&dyn Param]) -> Result<u64, postgres::Error>;

    /// Statements without parameters, in the simple protocol (`SET`, DDL, several at once).
    fn batch(&mut self, sql: &str) -> Result<(), postgres::Error>;
}

/// Runs `work` in a transaction of its own that carries the pooled settings, when this run is
/// pooled; directly otherwise.
fn on_client<T>(
    client: &mut Client,
    work: impl FnOnce(&mut Client) -> Result<T, postgres::Error>,
) -> Result<T, postgres::Error> {
    if !pooled() {
        return work(client);
    }
    begin_pooled(client)?;
    match work(client) {
        Ok(value) => {
            client.batch_execute("COMMIT")?;
            Ok(value)
        }
        Err(error) => {
            let _ = client.batch_execute("ROLLBACK");
            Err(error)
        }
    }
}

/// Opens a transaction on a pooled connection with its settings, remembering the backend it
/// landed on (so that Ctrl-C can cancel what runs there, `db::interrupt`).
fn begin_pooled(client: &mut Client) -> Result<(), postgres::Error> {
    let messages = client.simple_query(&format!(
        "BEGIN; {POOLED_TRANSACTION_SETTINGS}; {WHERE_WE_ARE}"
    ))?;
    remember_backend(messages);
    Ok(())
}

/// The backend and the transaction's start, for `db::interrupt`.
const WHERE_WE_ARE: &str = "SELECT pg_backend_pid(), now()::text";

fn remember_backend(messages: Vec<postgres::SimpleQueryMessage>) {
    for message in messages {
        if let postgres::SimpleQueryMessage::Row(row) = message {
            if let (Some(Ok(pid)), Some(started)) = (row.get(0).map(str::parse), row.get(1)) {
                super::interrupt::pooled_transaction(pid, started.to_string());
            }
        }
    }
}

fn in_transaction(tx: &mut Transaction<'_>) -> Result<(), postgres::Error> {
    if pooled() {
        let messages =
            tx.simple_query(&format!("{POOLED_TRANSACTION_SETTINGS}; {WHERE_WE_ARE}"))?;
        remember_backend(messages);
    }
    Ok(())
}

impl Query for Client {
    fn rows(&mut self, sql: &str, params: &[&dyn Param]) -> Result<Vec<Row>, postgres::Error> {
        let params = typed(params);
        on_client(self, |c| c.query_typed(sql, &params))
    }

    fn row(&mut self, sql: &str, params: &[&dyn Param]) -> Result<Row, postgres::Error> {
        let params = typed(params);
        on_client(self, |c| c.query_typed_one(sql, &params))
    }

    fn row_opt(
        &mut self,
        sql: &str,
        params: &[&dyn Param],
    ) -> Result<Option<Row>, postgres::Error> {
        let params = typed(params);
        on_client(self, |c| c.query_typed_opt(sql, &params))
    }

    fn exec(&mut self, sql: &str, params: &[&dyn Param]) -> Result<u64, postgres::Error> {
        let params = typed(params);
        on_client(self, |c| c.execute_typed(sql, &params))
    }

    fn batch(&mut self, sql: &str) -> Result<(), postgres::Error> {
        on_client(self, |c| c.batch_execute(sql))
    }
}

impl Query for Transaction<'_> {
    fn rows(&mut self, sql: &str, params: &[&dyn Param]) -> Result<Vec<Row>, postgres::Error> {
        in_transaction(self)?;
        self.query_typed(sql, &typed(params))
    }

    fn row(&mut self, sql: &str, params: &[&dyn Param]) -> Result<Row, postgres::Error> {
        in_transaction(self)?;
        self.query_typed_one(sql, &typed(params))
    }

    fn row_opt(
        &mut self,
        sql: &str,
        params: &[&dyn Param],
    ) -> Result<Option<Row>, postgres::Error> {
        in_transaction(self)?;
        self.query_typed_opt(sql, &typed(params))
    }

    fn exec(&mut self, sql: &str, params: &[&dyn Param]) -> Result<u64, postgres::Error> {
        in_transaction(self)?;
        self.execute_typed(sql, &typed(params))
    }

    fn batch(&mut self, sql: &str) -> Result<(), postgres::Error> {
        in_transaction(self)?;
        self.batch_execute(sql)
    }
}

/// A statement that must open its transaction (`SET TRANSACTION SNAPSHOT` comes before any
/// query), sent before the settings a pooled transaction gets with its next statement.
pub fn opening(tx: &mut Transaction<'_>, sql: &str) -> Result<(), postgres::Error> {
    tx.batch_execute(sql)
}

/// Rows streamed one at a time (a scan that may return millions), in a transaction: through
/// a pooler a stream outside one could not keep its backend.
pub fn stream<'a>(
    tx: &'a mut Transaction<'_>,
    sql: &str,
    params: &[&dyn Param],
) -> Result<RowIter<'a>, postgres::Error> {
    in_transaction(tx)?;
    tx.query_typed_raw(sql, typed(params))
}
