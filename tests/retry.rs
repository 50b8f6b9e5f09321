//! Between two attempts at a table lock, a retry waits for the transaction that was in its
//! way rather than sitting out the whole backoff (src/db/retry.rs).

mod common;
use common::TestDb;
use ruleiq_db::db::retry::wait_for_a_chance;
use std::time::{Duration, Instant};

#[test]
fn a_retry_goes_again_as_soon_as_the_transaction_holding_a_table_ends() {
    let db = TestDb::new();
    db.execute("CREATE TABLE held (id int)");
    // A report idle in transaction, holding its table lock for a while.
    let mut holder = db.client();
    holder
        .batch_execute("BEGIN; LOCK TABLE held IN ACCESS SHARE MODE")
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let mut waiter = ruleiq_db::db::connect(&db.target()).unwrap();
    let backoff = Duration::from_secs(20);
    let started = Instant::now();
    let releasing = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        holder.batch_execute("COMMIT").unwrap();
    });
    wait_for_a_chance(&mut waiter, backoff);
    let waited = started.elapsed();
    releasing.join().unwrap();
    assert!(
        waited >= Duration::from_millis(250),
        "went again after {waited:?}, while the holder still had its transaction open"
    );
    assert!(
        waited < backoff / 2,
        "waited {waited:?}: the whole backoff, not until the holder ended"
    );
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
