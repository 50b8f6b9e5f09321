//! 008 takes its table locks up front, referencing tables before referenced ones, so that an
//! application transaction inserting evidence (whose foreign-key check then needs
//! business_profiles) never deadlocks with it.

use crate::common;

use common::{TestDb, EVIDENCE_COLUMNS, FIXTURE_OWNER};
use std::time::{Duration, Instant};

const USER: &str = "10000000-0000-0000-0000-000000000001";
const PROFILE: &str = "20000000-0000-0000-0000-000000000001";
const FRAMEWORK: &str = "90000000-0000-0000-0000-000000000001";

/// An evidence row of the profile above (production's NOT NULL columns filled).
fn evidence(name: &str) -> String {
    format!(
        "INSERT INTO evidence_items {EVIDENCE_COLUMNS}
         VALUES (gen_random_uuid(), {FIXTURE_OWNER}, '{name}', 'note', 'T.1', 'a row', 'collected', now(), now())"
    )
}

#[test]
fn the_repair_waits_for_an_evidence_writer_without_holding_what_its_foreign_key_check_needs() {
    let db = TestDb::new();
    db.migrate_to(7);
    db.execute(&format!(
        "INSERT INTO users (id, email, hashed_password) VALUES ('{USER}', 'ada@example.com', 'x');
         INSERT INTO business_profiles (id, user_id, company_name, industry, employee_count, data_sensitivity,
             handles_persona, processes_payme, stores_health_d, provides_financ, operates_critic, has_internation)
         VALUES ('{PROFILE}', '{USER}', 'Clean Ltd', 'retail', 5, 'Low', true, false, false, false, false, false);
         INSERT INTO compliance_frameworks (id, name, display_name, description, category)
         VALUES ('{FRAMEWORK}', 'ISO27001', 'ISO/IEC 27001', 'ISMS', 'security')"
    ));

    // The application: a transaction that has written to evidence_items and is not done yet.
    let mut app = db.client();
    let mut tx = app.transaction().unwrap();
    tx.batch_execute(&evidence("first")).unwrap();

    std::thread::scope(|scope| {
        let migrate =
            scope.spawn(|| db.run(&["--ignore-blockers", "--lock-timeout", "60s", "migrate"]));

        // Wait until the repair queues for evidence_items behind the application.
        let mut observer = db.client();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let waiting: i64 = observer
                .query_one(
                    "SELECT count(*) FROM pg_locks
                      WHERE NOT granted AND relation = 'evidence_items'::regclass",
                    &[],
                )
                .unwrap()
                .get(0);
            if waiting > 0 {
                break;
            }
            assert!(
                !migrate.is_finished(),
                "migrate finished without waiting for the open transaction: {:?}",
                migrate.join().unwrap()
            );
            assert!(
                Instant::now() < deadline,
                "migrate never queued for evidence_items"
            );
            std::thread::sleep(Duration::from_millis(50));
        }

        // The application goes on: this insert's foreign-key check locks the profile row. Had
        // the repair already locked business_profiles, this would wait on it while the repair
        // waits on us, and PostgreSQL would fail one of the two as a deadlock.
        tx.batch_execute(&evidence("second"))
            .expect("the application's insert must not deadlock with the repair");
        tx.commit().unwrap();

        let (code, _, stderr) = migrate.join().unwrap();
        assert_eq!(code, 0, "migrate failed: {stderr}");
    });
    assert_eq!(db.scalar_i64("SELECT count(*) FROM evidence_items"), 2);
    assert_eq!(
        db.scalar_i64(
            "SELECT count(*) FROM pg_constraint WHERE convalidated AND conname LIKE 'chk_%'"
        ),
        4
    );
}
