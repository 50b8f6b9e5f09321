//! The catalog questions of `db::introspect`, asked of a real database: a present table, an
//! absent one (an answer, not an error), a name that needs quoting, and a transaction that
//! sees what it has itself created but not committed.

use crate::common;
use common::TestDb;
use ruleiq_db::db::introspect::{self, ColumnFacts};

fn fact(name: &str, type_name: &str, generated: bool, is_enum: bool) -> ColumnFacts {
    ColumnFacts {
        name: name.into(),
        type_name: type_name.into(),
        generated,
        is_enum,
    }
}

#[test]
fn tables_columns_indexes_and_rows_are_read_as_the_catalog_has_them() {
    let db = TestDb::new();
    db.execute(
        r#"CREATE TYPE mood AS ENUM ('calm', 'cross');
           CREATE TABLE parent (id int PRIMARY KEY);
           CREATE TABLE "Odd Name" (
               id int PRIMARY KEY,
               label varchar(12),
               gone int,
               feeling mood,
               doubled int GENERATED ALWAYS AS (id * 2) STORED,
               parent_id int CONSTRAINT odd_parent REFERENCES parent (id));
           ALTER TABLE "Odd Name" DROP COLUMN gone;
           CREATE UNIQUE INDEX odd_label ON "Odd Name" (label);
           INSERT INTO parent VALUES (1), (2);
           INSERT INTO "Odd Name" (id, label, feeling, parent_id)
                VALUES (1, 'a', 'calm', 1), (2, 'b', 'cross', 2), (3, 'c', NULL, NULL);"#,
    );
    let mut client = db.client();
    let odd = "Odd Name";

    assert!(introspect::table_exists(&mut client, odd).unwrap());
    assert!(!introspect::table_exists(&mut client, "odd name").unwrap());
    assert!(introspect::column_exists(&mut client, odd, "label").unwrap());
    assert!(
        !introspect::column_exists(&mut client, odd, "gone").unwrap(),
        "a dropped column is gone"
    );
    assert_eq!(
        introspect::columns_of(&mut client, odd).unwrap(),
        ["id", "label", "feeling", "doubled", "parent_id"]
    );
    assert_eq!(
        introspect::column_facts(&mut client, odd).unwrap(),
        [
            fact("id", "integer", false, false),
            fact("label", "character varying(12)", false, false),
            fact("feeling", "mood", false, true),
            fact("doubled", "integer", true, false),
            fact("parent_id", "integer", false, false),
        ]
    );
    assert_eq!(
        introspect::indexes_of(&mut client, odd).unwrap(),
        ["Odd Name_pkey", "odd_label"]
    );
    assert_eq!(
        introspect::foreign_keys_of(&mut client, odd).unwrap(),
        ["odd_parent"]
    );
    assert!(introspect::foreign_keys_of(&mut client, "parent")
        .unwrap()
        .is_empty());
    assert_eq!(introspect::count_rows(&mut client, odd).unwrap(), 3);
    let page: i64 = client
        .query_one("SELECT current_setting('block_size')::int8", &[])
        .unwrap()
        .get(0);
    let sizes = introspect::table_sizes(&mut client, &[odd, "parent"]).unwrap();
    assert_eq!(
        sizes.bytes(odd),
        page,
        "three rows fill part of one page: {sizes:?}"
    );
    assert_eq!(sizes.bytes("parent"), page, "{sizes:?}");
    assert_eq!(sizes.pages("parent"), 1, "{sizes:?}");
    assert_eq!(sizes.block_size(), page);
    assert_eq!(
        introspect::count_rows_in(&mut client, "public", "parent").unwrap(),
        2
    );
}

#[test]
fn an_absent_table_is_an_answer_and_a_transaction_sees_its_own_tables() {
    let db = TestDb::new();
    let mut client = db.client();
    assert!(!introspect::table_exists(&mut client, "nowhere").unwrap());
    assert!(!introspect::column_exists(&mut client, "nowhere", "id").unwrap());
    assert!(introspect::columns_of(&mut client, "nowhere")
        .unwrap()
        .is_empty());
    assert!(introspect::column_facts(&mut client, "nowhere")
        .unwrap()
        .is_empty());
    assert!(introspect::column_facts_in(&mut client, "nowhere", "t")
        .unwrap()
        .is_empty());
    assert!(introspect::indexes_of(&mut client, "nowhere")
        .unwrap()
        .is_empty());
    assert_eq!(
        introspect::table_sizes(&mut client, &["nowhere"])
            .unwrap()
            .bytes("nowhere"),
        0,
        "an absent table weighs nothing"
    );
    assert_eq!(
        introspect::table_sizes(&mut client, &[])
            .unwrap()
            .block_size(),
        introspect::block_size(&mut client).unwrap(),
        "the page size, even with no table asked for"
    );

    let mut tx = client.transaction().unwrap();
    tx.batch_execute(
        "CREATE TYPE tone AS ENUM ('low', 'high');
         CREATE TABLE fresh (id int PRIMARY KEY, t tone);
         INSERT INTO fresh VALUES (1, 'low');
         CREATE SCHEMA side;
         CREATE TABLE side.kept (id int, t tone);
         INSERT INTO side.kept VALUES (1, 'high'), (2, 'low');",
    )
    .unwrap();
    assert!(introspect::table_exists(&mut tx, "fresh").unwrap());
    assert_eq!(
        introspect::columns_of(&mut tx, "fresh").unwrap(),
        ["id", "t"]
    );
    assert_eq!(introspect::count_rows(&mut tx, "fresh").unwrap(), 1);
    assert_eq!(
        introspect::column_facts_in(&mut tx, "side", "kept").unwrap(),
        [
            fact("id", "integer", false, false),
            fact("t", "tone", false, true)
        ]
    );
    assert_eq!(
        introspect::count_rows_in(&mut tx, "side", "kept").unwrap(),
        2
    );
    assert!(
        !introspect::table_exists(&mut tx, "kept").unwrap(),
        "a table of another schema is not the application's"
    );
    assert!(introspect::table_exists_in(&mut tx, "side", "kept").unwrap());
    assert!(!introspect::table_exists_in(&mut tx, "side", "fresh").unwrap());
    assert!(!introspect::table_exists_in(&mut tx, "nowhere", "kept").unwrap());
    tx.rollback().unwrap();
    assert!(!introspect::table_exists(&mut client, "fresh").unwrap());
}
