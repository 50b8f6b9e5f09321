//! A migration after 008 that adds a catalog constraint, the way docs/architecture.md's recipes
//! "Add a migration" and "Add a constraint" describe it. This build embeds no such migration,
//! so the test builds the catalog itself (the embedded one plus a migration 9 and the
//! constraint it adds) and hands it to the migrate and rollback engines, which read every
//! migration and constraint from that value.

use crate::common::{self, TestDb};
use ruleiq_db::archive::revert::{self, Step};
use ruleiq_db::archive::Stamp;
use ruleiq_db::catalog::constraints::{Constraint, Rule, CATALOG};
use ruleiq_db::catalog::repair::PlannedStatement;
use ruleiq_db::catalog::Catalog;
use ruleiq_db::db::Session;
use ruleiq_db::history;
use ruleiq_db::journal::Journal;
use ruleiq_db::migrate::preflight;
use ruleiq_db::migrate::steps::{self, Run};
use ruleiq_db::progress::Log;

/// The constraint migration 9 adds: an active user has a creation time.
const ACTIVE_USER_CREATED: Constraint = Constraint {
    name: "chk_active_user_created",
    table: "users",
    rule: Rule::RequiredWhen {
        column: "is_active",
        equals: "true",
        required: &["created_at"],
    },
    migration: 9,
};

/// The embedded catalog with a migration 9 that adds [`ACTIVE_USER_CREATED`] NOT VALID, as
/// the recipe says (migrate validates it after the migration commits).
fn with_a_ninth_migration() -> Catalog {
    let mut catalog = Catalog::embedded();
    let up = ACTIVE_USER_CREATED.add_not_valid_sql();
    catalog.migrations.push(
        refinery::Migration::unapplied("V9__active_users_have_a_creation_time", &up).unwrap(),
    );
    let constraints: Vec<Constraint> = CATALOG
        .iter()
        .copied()
        .chain([ACTIVE_USER_CREATED])
        .collect();
    catalog.constraints = Box::leak(constraints.into_boxed_slice());
    catalog
}

/// Migration 9's down, as `choose_steps` would find it in migrations/down.
fn ninth_down() -> Step {
    Step {
        version: 9,
        name: "active_users_have_a_creation_time".into(),
        down: vec![PlannedStatement {
            sql: ACTIVE_USER_CREATED.drop_sql(),
            lock: "ACCESS EXCLUSIVE on users (brief)".into(),
        }],
    }
}

fn session(db: &TestDb) -> Session {
    let safety = common::test_safety();
    Session::begin(db.target(), db.client(), safety, Log::new(true, true)).unwrap()
}

/// How the database holds the constraint: None when absent, else whether it is validated.
fn validated(db: &TestDb) -> Option<bool> {
    db.client()
        .query_opt(
            "SELECT convalidated FROM pg_constraint WHERE conname = 'chk_active_user_created'",
            &[],
        )
        .unwrap()
        .map(|row| row.get(0))
}

#[test]
fn a_ninth_migration_adding_a_constraint_is_preflighted_applied_validated_and_rolled_back() {
    let db = TestDb::new();
    db.migrate_to(8);
    db.execute(
        "INSERT INTO public.users (id, email, hashed_password, is_active, created_at) VALUES
           ('00000000-0000-0000-0000-0000000000a1', 'kept@example.com', 'x', true, now()),
           ('00000000-0000-0000-0000-0000000000a2', 'stray@example.com', 'x', true, NULL),
           ('00000000-0000-0000-0000-0000000000a3', 'gone@example.com', 'x', false, NULL)",
    );
    let catalog = with_a_ninth_migration();
    assert_eq!(catalog.latest(), 9);
    let pending = catalog.pending(8, catalog.latest());
    let adding = catalog.added_by_any(&pending);
    assert_eq!(
        adding.iter().map(|c| c.name).collect::<Vec<_>>(),
        ["chk_active_user_created"],
        "only the new migration's constraint is checked: 008's stand valid already"
    );

    // The preflight names the row that would stop migration 9, and nothing changes.
    let mut session = session(&db);
    let target = session.target().clone();
    let log = session.log().clone();
    let verdict = preflight::run(&target, session.client(), &log, 8, &adding).unwrap();
    assert!(!verdict.preflight.ok);
    assert_eq!(verdict.preflight.total_violations, 1);
    let blocked: Vec<(&str, Vec<String>)> = verdict
        .blocked_by
        .iter()
        .map(|f| (f.name, f.sample.clone()))
        .collect();
    assert_eq!(
        blocked,
        [(
            "chk_active_user_created",
            vec!["00000000-0000-0000-0000-0000000000a2".to_string()]
        )]
    );
    assert_eq!(validated(&db), None);

    // Repaired, the preflight passes; migration 9 applies and its constraint is validated.
    db.execute("UPDATE public.users SET created_at = now() WHERE created_at IS NULL AND is_active");
    let verdict = preflight::run(&target, session.client(), &log, 8, &adding).unwrap();
    assert!(verdict.preflight.ok, "{:?}", verdict.blocked_by);
    let journal = Journal::default();
    let done = steps::apply_pending(
        &mut Run {
            session: &mut session,
            journal: &journal,
            no_compat: false,
            catalog: &catalog,
        },
        &pending,
    )
    .unwrap();
    assert_eq!(
        done.applied.iter().map(|r| r.version).collect::<Vec<_>>(),
        [9]
    );
    assert_eq!(validated(&db), Some(false), "added NOT VALID");
    let validation = steps::validate(&mut session, &catalog).unwrap();
    assert_eq!(validation.validated, ["chk_active_user_created"]);
    assert!(validation.blocked_by.is_none());
    assert_eq!(validated(&db), Some(true));
    let applied = history::read(session.client()).unwrap();
    assert_eq!(history::current_version(&applied), 9);

    // A row the application writes now is refused by the constraint.
    let refused = db.client().batch_execute(
        "INSERT INTO public.users (id, email, hashed_password, is_active, created_at)
         VALUES ('00000000-0000-0000-0000-0000000000a4', 'late@example.com', 'x', true, NULL)",
    );
    assert!(refused.is_err(), "the validated constraint holds");

    // Rolled back to 8: the constraint goes with the history row, and this build's own
    // migrate finds the database at 8 with nothing to do.
    let reverted = revert::revert(
        &mut session,
        &applied,
        &[ninth_down()],
        &Stamp::now(),
        &journal,
    )
    .unwrap();
    assert_eq!(reverted.to_version, 8);
    session.close().unwrap();
    assert_eq!(validated(&db), None);
    let (code, report, stderr) = db.run_json(&["migrate"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["from_version"], 8);
    assert_eq!(report["to_version"], 8);
}

#[test]
fn before_008_the_preflight_leaves_a_later_migrations_constraint_alone() {
    let catalog = with_a_ninth_migration();
    let up_to_8 = catalog.pending(7, 8);
    let adding: Vec<&str> = catalog
        .added_by_any(&up_to_8)
        .iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(adding.len(), CATALOG.len());
    assert!(!adding.contains(&ACTIVE_USER_CREATED.name));
    let both = catalog.pending(7, 9);
    assert_eq!(catalog.added_by_any(&both).len(), CATALOG.len() + 1);
}
