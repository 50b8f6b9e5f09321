//! Between two attempts at a table lock, a retry waits for the transaction that was in its
//! way rather than sitting out the whole backoff; an attempt at named tables waits only for
//! the transactions holding them (src/db/retry.rs).

use crate::common;
use common::TestDb;
use postgres::Client;
use ruleiq_db::db::retry::{wait_for_a_chance, wait_until_free};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A report idle in transaction: a session holding `table`'s lock, open long enough to count
/// as a long transaction.
fn hold(db: &TestDb, table: &str) -> Client {
    let mut holder = db.client();
    holder
        .batch_execute(&format!("BEGIN; LOCK TABLE {table} IN ACCESS SHARE MODE"))
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    holder
}

/// Commits `holder`'s transaction 300 ms from now.
fn release_soon(mut holder: Client) -> JoinHandle<()> {
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        holder.batch_execute("COMMIT").unwrap();
    })
}

/// Runs `wait` while `holder` commits 300 ms after it starts; panics when `wait` went
/// ahead before the release or sat out (half of) `cap`.
fn waited_for_the_release(holder: Client, cap: Duration, wait: impl FnOnce()) {
    let started = Instant::now();
    let releasing = release_soon(holder);
    wait();
    let waited = started.elapsed();
    releasing.join().unwrap();
    assert!(
        waited >= Duration::from_millis(250),
        "went ahead after {waited:?}, while the holder still had its transaction open"
    );
    assert!(
        waited < cap / 2,
        "waited {waited:?}: the whole backoff, not until the holder ended"
    );
}

#[test]
fn a_retry_goes_again_as_soon_as_the_transaction_holding_a_table_ends() {
    let db = TestDb::new();
    db.execute("CREATE TABLE held (id int)");
    let holder = hold(&db, "held");
    let mut waiter = ruleiq_db::db::connect(&db.target()).unwrap();
    let backoff = Duration::from_secs(20);
    waited_for_the_release(holder, backoff, || wait_for_a_chance(&mut waiter, backoff));
}

#[test]
fn with_nothing_in_the_way_a_retry_waits_its_backoff() {
    let db = TestDb::new();
    let mut waiter = ruleiq_db::db::connect(&db.target()).unwrap();
    let backoff = Duration::from_millis(300);
    let started = Instant::now();
    wait_for_a_chance(&mut waiter, backoff);
    assert!(started.elapsed() >= backoff, "{:?}", started.elapsed());
}

#[test]
fn an_attempt_at_named_tables_waits_only_for_transactions_holding_them() {
    let db = TestDb::new();
    db.execute("CREATE TABLE wanted (id int); CREATE TABLE elsewhere (id int)");
    // Open before, and after, the wait: it must not count.
    let mut unrelated = hold(&db, "elsewhere");
    let holder = hold(&db, "wanted");
    let mut waiter = ruleiq_db::db::connect(&db.target()).unwrap();
    let tables = vec!["wanted".to_string()];
    let cap = Duration::from_secs(20);
    waited_for_the_release(holder, cap, || wait_until_free(&mut waiter, &tables, cap));
    unrelated.batch_execute("COMMIT").unwrap();
}
