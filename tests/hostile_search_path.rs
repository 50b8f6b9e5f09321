//! Hostile ground (issue 26, items 1–3): a database whose search_path starts with a schema an
//! unprivileged role can write into (`ALTER DATABASE … SET search_path = shared, public`, the
//! role owns `shared`). ruleiq-db runs as a superuser or the database owner, so anything of
//! that role's that PostgreSQL picks instead of ruleIQ's own objects runs with those rights or
//! changes what ruleiq-db sees:
//!
//! - a function in `shared` that matches a call in ruleiq-db's SQL better than pg_catalog's
//!   (`shared.lower(character varying)` against `lower(t."status")`, status being varchar);
//! - an operator in `shared` (`=` for varchar) that matches better than `texteq`;
//! - a table in `shared` named like one of ruleIQ's (an empty `shared.business_profiles`
//!   shadowing the real one: valid rows reported as violations, and deleted by cleanup).
//!
//! Every test builds two identical databases, a twin and a planted one, and runs the same
//! command sequence on both; the planted one has the role, the writable schema first on its
//! search_path, and in it a function for every function name the SQL ruleiq-db sends calls
//! (derived from that SQL: migrations/, the insta snapshots of the generated SQL, the string
//! literals of src/), with signatures for every type ruleIQ's columns have, each raising
//! "planted shared.NAME ran"; `=`/`<>` for varchar; and an empty table for every ruleIQ table,
//! the history table and Alembic's. It then holds that
//! (a) no planted function or operator ran (every command exits as on the twin, no output says
//!     "planted");
//! (b) the findings (check-constraints: constraints, counts, samples; cleanup: rules, rows,
//!     examples; every report, volatile fields aside) and the data (each public table's rows,
//!     the audit's and archive's row counts, the shape) equal the twin's after every step;
//! (c) the role is not a superuser, got no membership and owns nothing new;
//! (d) the planted tables hold what they held (empty, alembic's one planted row) and nothing
//!     new was created in `shared`.

use crate::common;
use common::{latest, TestDb, EXAMPLE_POLICY};
use postgres::Client;
use ruleiq_db::catalog::{HISTORY_TABLE, TABLES};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The schema the other role writes into, first on the database's search_path.
const SHARED: &str = "shared";

/// The types ruleIQ's columns have: every planted name gets a one-argument signature for each.
const COLUMN_TYPES: &[&str] = &[
    "character varying",
    "text",
    "integer",
    "bigint",
    "numeric",
    "boolean",
    "uuid",
    "timestamp without time zone",
    "timestamp with time zone",
    "json",
    "jsonb",
    "double precision",
    "date",
];

/// What the string types combine into for two-argument names (btrim(x, '_'), a || b, …).
const STRING_TYPES: &[&str] = &["character varying", "text"];

// ---------------------------------------------------------------------------------------------
// The function names ruleiq-db's SQL calls, derived from that SQL.
// ---------------------------------------------------------------------------------------------

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_ident_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$'
}

/// Every `identifier(` in `text`, lower-cased (SQL folds unquoted names).
fn called_names(text: &str, out: &mut BTreeSet<String>) {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if is_ident_start(b[i]) && (i == 0 || !is_ident_char(b[i - 1])) {
            let start = i;
            while i < b.len() && is_ident_char(b[i]) {
                i += 1;
            }
            if b.get(i) == Some(&b'(') {
                out.insert(text[start..i].to_ascii_lowercase());
            }
        } else {
            i += 1;
        }
    }
}

/// The contents of a Rust file's string literals (plain and raw), comments left out: the SQL a
/// Rust file sends is in its literals.
fn string_literals(src: &str) -> Vec<&str> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 2;
            }
            b'r' if (i == 0 || !is_ident_char(b[i - 1]) || b[i - 1] == b'b')
                && matches!(b.get(i + 1), Some(b'"') | Some(b'#')) =>
            {
                let mut j = i + 1;
                while j < b.len() && b[j] == b'#' {
                    j += 1;
                }
                if b.get(j) != Some(&b'"') {
                    i += 1;
                    continue;
                }
                let hashes = j - i - 1;
                let closing = format!("\"{}", "#".repeat(hashes));
                let start = j + 1;
                let end = src[start..].find(&closing).map_or(b.len(), |k| start + k);
                out.push(&src[start..end]);
                i = end + closing.len();
            }
            b'"' => {
                let start = i + 1;
                i = start;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                out.push(&src[start..i.min(b.len())]);
                i += 1;
            }
            b'\'' => {
                // A char literal ('x', '\'', '\u{..}', 'é') or a lifetime ('a).
                if b.get(i + 1) == Some(&b'\\') {
                    i += 2;
                    while i < b.len() && b[i] != b'\'' {
                        i += 1;
                    }
                    i += 1;
                } else if let Some(c) = src[i + 1..].chars().next() {
                    let after = i + 1 + c.len_utf8();
                    i = if b.get(after) == Some(&b'\'') {
                        after + 1
                    } else {
                        i + 1
                    };
                } else {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    out
}

fn walk(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, files);
        } else {
            files.push(path);
        }
    }
}

/// Every `name(` in the SQL ruleiq-db sends: the migrations (SQL files whole, Rust ones'
/// literals), the insta snapshots of the SQL cleanup and rollback generate, and the string
/// literals of every Rust file under src/.
fn names_in_sql() -> BTreeSet<String> {
    let mut files = Vec::new();
    walk(Path::new("migrations"), &mut files);
    walk(Path::new("src"), &mut files);
    let mut names = BTreeSet::new();
    let mut scanned = 0;
    for path in files {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        let text = match ext {
            "sql" | "snap" | "rs" => std::fs::read_to_string(&path).unwrap(),
            _ => continue,
        };
        scanned += 1;
        if ext == "rs" {
            for literal in string_literals(&text) {
                called_names(literal, &mut names);
            }
        } else {
            called_names(&text, &mut names);
        }
    }
    assert!(scanned > 20, "only {scanned} files of SQL were found");
    names
}

/// Of the names the SQL calls, those PostgreSQL has a function (or aggregate) of: SQL keywords
/// that look like calls (`IN (`, `VALUES(`, `EXISTS(`), type names (`varchar(255)`,
/// `NUMERIC(10,2)`), tables and columns (`users(id)`) and the Rust format placeholders are not
/// functions and drop out; syntax such as coalesce, nullif, greatest is no function either.
fn function_names(client: &mut Client) -> Vec<String> {
    let candidates: Vec<String> = names_in_sql().into_iter().collect();
    let names: Vec<String> = client
        .query(
            "SELECT DISTINCT p.proname::text FROM pg_catalog.pg_proc AS p
             WHERE p.proname::text = ANY($1)
               AND p.proname NOT IN (SELECT t.typname FROM pg_catalog.pg_type AS t)
               AND p.proname::text NOT IN
                   (SELECT k.word FROM pg_catalog.pg_get_keywords() AS k WHERE k.catcode = 'R')
             ORDER BY 1",
            &[&candidates],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    // The derivation must find what the issue is about, else it derives nothing useful.
    for must in [
        "lower",
        "btrim",
        "regexp_replace",
        "jsonb_build_object",
        "count",
    ] {
        assert!(
            names.iter().any(|n| n == must),
            "{must} not among the names derived from the SQL: {names:?}"
        );
    }
    names
}

// ---------------------------------------------------------------------------------------------
// Planting.
// ---------------------------------------------------------------------------------------------

/// A planted function's signature: argument types, return type, whether it returns a set.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Debug)]
struct Signature {
    args: Vec<String>,
    returns: String,
    set: bool,
}

fn is_polymorphic_element(t: &str) -> bool {
    matches!(t, "anyelement" | "anycompatible" | "anynonarray")
}

fn is_polymorphic_array(t: &str) -> bool {
    matches!(t, "anyarray" | "anycompatiblearray")
}

/// Every text position as text or as character varying (varchar is the better match for a
/// varchar argument: that is the hole of `lower`).
fn varchar_variants(args: &[String]) -> Vec<Vec<String>> {
    let mut out = vec![Vec::new()];
    for a in args {
        let choices: Vec<&str> = if a == "text" {
            vec!["text", "character varying"]
        } else {
            vec![a.as_str()]
        };
        out = out
            .into_iter()
            .flat_map(|prefix: Vec<String>| {
                choices.iter().map(move |c| {
                    let mut next = prefix.clone();
                    next.push((*c).to_string());
                    next
                })
            })
            .collect();
    }
    out
}

/// The signatures planted for `name`: one argument of each column type; two string
/// arguments in every combination; and each of pg_catalog's own signatures of `name` with
/// text made varchar and polymorphic or "any" arguments made each column type, so that every
/// planted one is an exact match where pg_catalog's needs a coercion.
fn signatures(client: &mut Client, name: &str) -> BTreeSet<Signature> {
    let own: Vec<(Vec<String>, String, bool)> = client
        .query(
            "SELECT array(SELECT a::regtype::text FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY AS u(a, n) ORDER BY n),
                    p.prorettype::regtype::text, p.proretset
             FROM pg_catalog.pg_proc AS p
             WHERE p.proname = $1 AND p.pronamespace = 'pg_catalog'::regnamespace AND p.pronargs <= 4",
            &[&name],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    // A planted function returns what pg_catalog's of the same arity returns (so the
    // statement still type-checks and the function is called), else text.
    let returns_for = |arity: usize, element: &str| -> Option<(String, bool)> {
        let (_, ret, set) = own
            .iter()
            .find(|(a, _, _)| a.len() == arity)
            .or(own.first())?;
        let ret = if is_polymorphic_element(ret) {
            element.to_string()
        } else if is_polymorphic_array(ret) {
            format!("{element}[]")
        } else if ret.starts_with("any")
            || matches!(
                ret.as_str(),
                "internal"
                    | "trigger"
                    | "cstring"
                    | "event_trigger"
                    | "language_handler"
                    | "fdw_handler"
                    | "index_am_handler"
                    | "table_am_handler"
                    | "tsm_handler"
            )
        {
            return None;
        } else {
            ret.clone()
        };
        Some((ret, *set))
    };
    let mut out = BTreeSet::new();
    let mut add = |args: Vec<String>, returns: Option<(String, bool)>| {
        if let Some((returns, set)) = returns {
            out.insert(Signature { args, returns, set });
        }
    };
    for t in COLUMN_TYPES {
        add(
            vec![(*t).to_string()],
            returns_for(1, t).or(Some(("text".into(), false))),
        );
    }
    for a in STRING_TYPES {
        for b in STRING_TYPES {
            add(
                vec![(*a).to_string(), (*b).to_string()],
                returns_for(2, "text").or(Some(("text".into(), false))),
            );
        }
    }
    for (args, ret, set) in &own {
        if args.iter().any(|a| {
            matches!(
                a.as_str(),
                "internal"
                    | "cstring"
                    | "anyrange"
                    | "anymultirange"
                    | "anycompatiblerange"
                    | "anycompatiblemultirange"
                    | "anyenum"
            )
        }) {
            continue;
        }
        let polymorphic = args
            .iter()
            .any(|a| is_polymorphic_element(a) || is_polymorphic_array(a) || a == "\"any\"");
        let elements: Vec<&str> = if polymorphic {
            COLUMN_TYPES.to_vec()
        } else {
            vec!["text"]
        };
        for element in elements {
            let concrete: Vec<String> = args
                .iter()
                .map(|a| {
                    if is_polymorphic_element(a) || a == "\"any\"" {
                        element.to_string()
                    } else if is_polymorphic_array(a) {
                        format!("{element}[]")
                    } else {
                        a.clone()
                    }
                })
                .collect();
            let returns = if is_polymorphic_element(ret) {
                Some((element.to_string(), *set))
            } else if is_polymorphic_array(ret) {
                Some((format!("{element}[]"), *set))
            } else if ret.starts_with("any")
                || matches!(
                    ret.as_str(),
                    "internal" | "trigger" | "cstring" | "event_trigger"
                )
            {
                None
            } else {
                Some((ret.clone(), *set))
            };
            for variant in varchar_variants(&concrete) {
                add(variant, returns.clone());
            }
        }
    }
    out
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The role that owns the writable schema: one per test (roles are the cluster's, the tests
/// run side by side), dropped after its databases.
struct Mallory {
    name: String,
}

impl Mallory {
    fn new() -> Mallory {
        let name = format!(
            "mallory_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let mut admin = common::connect_url(&common::url_for("postgres"));
        admin
            .batch_execute(&format!("CREATE ROLE {name} NOLOGIN"))
            .unwrap();
        Mallory { name }
    }
}

impl Drop for Mallory {
    fn drop(&mut self) {
        if let Ok(mut admin) =
            postgres::Client::connect(&common::url_for("postgres"), postgres::NoTls)
        {
            let _ = admin.batch_execute(&format!("DROP ROLE IF EXISTS {}", self.name));
        }
    }
}

/// A connection of the test's own that no plant can reach.
fn pinned(db: &TestDb) -> Client {
    let mut client = db.client();
    client
        .batch_execute("SET search_path = pg_catalog, public")
        .unwrap();
    client
}

/// What a test plants besides the functions.
#[derive(Clone, Copy)]
struct Plants {
    /// A raising function for every function name the SQL calls.
    functions: bool,
    /// An empty table named like every ruleIQ table, the history table and Alembic's.
    tables: bool,
    /// `=` and `<>` over varchar (and varchar against text) in `shared`.
    operators: bool,
    /// `shared.lower(character varying)` is the issue's own: it does not raise but makes its
    /// owner a superuser and returns pg_catalog.lower's result, so only (c) can see it ran.
    stealthy_lower: bool,
}

impl Plants {
    /// Everything: functions, operators and tables.
    const ALL: Plants = Plants {
        functions: true,
        tables: true,
        operators: true,
        stealthy_lower: false,
    };

    /// What a test plants, unless RULEIQ_HOSTILE_PLANT names the kinds (a diagnostic run
    /// against a build with the hole, to see what each kind alone is caught by), e.g.
    /// `tables` or `stealthy_lower,tables`.
    fn or_from_env(self) -> Plants {
        match std::env::var("RULEIQ_HOSTILE_PLANT") {
            Ok(kinds) => {
                let has = |k: &str| kinds.split(',').any(|x| x.trim() == k);
                Plants {
                    functions: has("functions"),
                    tables: has("tables"),
                    operators: has("operators"),
                    stealthy_lower: has("stealthy_lower"),
                }
            }
            Err(_) => self,
        }
    }
}

/// Makes `db` hostile: the role owns schema `shared`, in it a raising function for every
/// function name the SQL calls, optionally operators, and an empty table named like every
/// ruleIQ table present; then the database's search_path starts with `shared`.
fn plant(db: &TestDb, mallory: &Mallory, plants: Plants) -> i64 {
    let role = &mallory.name;
    let mut client = pinned(db);
    client
        .batch_execute(&format!(
            "CREATE SCHEMA {SHARED} AUTHORIZATION {role};
             GRANT USAGE ON SCHEMA {SHARED} TO PUBLIC;"
        ))
        .unwrap();
    let names = if plants.functions {
        function_names(&mut client)
    } else {
        Vec::new()
    };
    // One round trip: each CREATE in a block of its own that skips what cannot be created
    // (a signature pg_catalog's types do not allow), counted afterwards.
    let mut script = String::from("DO $do$ BEGIN\n");
    for name in &names {
        for sig in signatures(&mut client, name) {
            let args = sig.args.join(", ");
            let label = format!("{name}({args})").replace('\'', "''");
            script.push_str(&format!(
                "BEGIN EXECUTE $create$CREATE FUNCTION {SHARED}.{}({args}) RETURNS {}{} LANGUAGE plpgsql AS $planted$
                 BEGIN RAISE EXCEPTION 'planted {SHARED}.% ran', '{label}'; END $planted$$create$;
                 EXCEPTION WHEN OTHERS THEN NULL; END;\n",
                quote_ident(name),
                if sig.set { "SETOF " } else { "" },
                sig.returns,
            ));
        }
    }
    script.push_str("END $do$");
    client
        .batch_execute(&format!("BEGIN; SET LOCAL ROLE {role}; {script}"))
        .unwrap();
    let mut planted: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_proc WHERE pronamespace = $1::text::regnamespace",
            &[&SHARED],
        )
        .unwrap()
        .get(0);
    if plants.stealthy_lower {
        planted += 1;
        client
            .batch_execute(&format!(
                "CREATE OR REPLACE FUNCTION {SHARED}.lower(character varying) RETURNS text
                 LANGUAGE plpgsql AS $planted$
                 BEGIN
                   BEGIN EXECUTE 'ALTER ROLE {role} SUPERUSER'; EXCEPTION WHEN OTHERS THEN NULL; END;
                   RETURN pg_catalog.lower($1::text);
                 END $planted$"
            ))
            .unwrap();
    }
    if plants.operators {
        let pairs = [
            ("character varying", "character varying"),
            ("character varying", "text"),
            ("text", "character varying"),
        ];
        for (i, (l, r)) in pairs.iter().enumerate() {
            for (op, fname) in [("=", "eq"), ("<>", "ne")] {
                client
                    .batch_execute(&format!(
                        "CREATE FUNCTION {SHARED}.planted_{fname}_{i}({l}, {r}) RETURNS boolean
                         LANGUAGE plpgsql AS $planted$
                         BEGIN RAISE EXCEPTION 'planted {SHARED}.{op}({l}, {r}) ran'; END $planted$;
                         CREATE OPERATOR {SHARED}.{op} (LEFTARG = {l}, RIGHTARG = {r},
                           FUNCTION = {SHARED}.planted_{fname}_{i});"
                    ))
                    .unwrap();
                planted += 1;
            }
        }
    }
    client.batch_execute("COMMIT").unwrap();
    assert!(
        planted > 200 || !plants.functions,
        "only {planted} functions planted"
    );
    // Tables: an empty one named like every ruleIQ table there is, the history table and
    // Alembic's, with the same columns; the history table's refinery shape when there is none.
    let mut tables: Vec<&str> = TABLES.to_vec();
    tables.push(HISTORY_TABLE);
    tables.push("alembic_version");
    for table in tables.into_iter().filter(|_| plants.tables) {
        let exists: bool = client
            .query_one(
                "SELECT to_regclass($1) IS NOT NULL",
                &[&format!("public.{table}")],
            )
            .unwrap()
            .get(0);
        let sql = if exists {
            format!("CREATE TABLE {SHARED}.{table} (LIKE public.{table})")
        } else if table == HISTORY_TABLE {
            format!("CREATE TABLE {SHARED}.{table} (version int4 PRIMARY KEY, name varchar(255), applied_on varchar(255), checksum varchar(255))")
        } else if table == "alembic_version" {
            format!("CREATE TABLE {SHARED}.{table} (version_num varchar(32) NOT NULL PRIMARY KEY)")
        } else {
            continue;
        };
        client
            .batch_execute(&format!(
                "{sql}; ALTER TABLE {SHARED}.{table} OWNER TO {role}; GRANT SELECT ON {SHARED}.{table} TO PUBLIC"
            ))
            .unwrap();
    }
    if plants.tables {
        // Alembic's says an older revision than production's '007'.
        client
            .batch_execute(&format!(
                "INSERT INTO {SHARED}.alembic_version VALUES ('001')"
            ))
            .unwrap();
    }
    client
        .batch_execute(&format!(
            "ALTER DATABASE {} SET search_path = {SHARED}, public",
            db.name
        ))
        .unwrap();
    planted
}

// ---------------------------------------------------------------------------------------------
// What is compared and held.
// ---------------------------------------------------------------------------------------------

/// Every public table's row count and a hash of its rows in key order; the row counts of
/// ruleiq-db's own schemas (audit, archive); the history; the shape (columns, constraints,
/// views) of public and ruleiq-db's schemas.
fn data(db: &TestDb) -> BTreeMap<String, String> {
    let mut client = pinned(db);
    let mut out = BTreeMap::new();
    let tables: Vec<(String, String, bool)> = client
        .query(
            "SELECT n.nspname::text, c.relname::text,
                    EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'id' AND NOT a.attisdropped)
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'p') AND (n.nspname = 'public' OR n.nspname LIKE 'ruleiq\\_%')
             ORDER BY 1, 2",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    for (schema, table, has_id) in tables {
        let q = format!("{}.{}", quote_ident(&schema), quote_ident(&table));
        // The history's applied_on is the time of the run: compare what was recorded.
        let sql = if table == HISTORY_TABLE {
            format!("SELECT string_agg(version || ' ' || name || ' ' || checksum, ', ' ORDER BY version) FROM {q}")
        } else if schema == "public" && has_id {
            format!("SELECT count(*)::text || ' ' || md5(coalesce(string_agg(t::text, ',' ORDER BY t.id), '')) FROM {q} AS t")
        } else if schema == "public" {
            format!("SELECT count(*)::text || ' ' || md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM {q} AS t")
        } else {
            format!("SELECT count(*)::text FROM {q}")
        };
        let value: Option<String> = client.query_one(&sql, &[]).unwrap().get(0);
        out.insert(format!("rows {schema}.{table}"), value.unwrap_or_default());
    }
    let shape: Vec<(String, String)> = client
        .query(
            "SELECT 'columns ' || table_schema || '.' || table_name,
                    string_agg(column_name || ' ' || data_type || ' ' || is_nullable, ', ' ORDER BY ordinal_position)
             FROM information_schema.columns
             WHERE table_schema = 'public' OR table_schema LIKE 'ruleiq\\_%'
             GROUP BY table_schema, table_name
             UNION ALL
             SELECT 'constraints ' || n.nspname, string_agg(c.conrelid::regclass::text || ' ' || c.conname || ' ' || c.contype::text || ' ' || c.convalidated::text, ', ' ORDER BY c.conrelid::regclass::text, c.conname)
             FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
             WHERE n.nspname = 'public' OR n.nspname LIKE 'ruleiq\\_%'
             GROUP BY n.nspname
             UNION ALL
             SELECT 'schemas', string_agg(nspname, ', ' ORDER BY nspname) FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'shared'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    out.extend(shape);
    out
}

/// The role's rights and what it owns in this database, and everything in `shared`: its
/// relations with their row counts and its functions.
fn mallory_and_shared(db: &TestDb, mallory: &Mallory) -> BTreeMap<String, String> {
    let mut client = pinned(db);
    let mut out = BTreeMap::new();
    let row = client
        .query_one(
            "SELECT r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolbypassrls, r.rolreplication,
                    (SELECT count(*) FROM pg_auth_members m WHERE m.member = r.oid),
                    (SELECT count(*) FROM pg_shdepend d WHERE d.refobjid = r.oid AND d.deptype = 'o'
                       AND d.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())),
                    (SELECT count(*) FROM pg_shdepend d WHERE d.refobjid = r.oid AND d.deptype = 'a')
             FROM pg_roles r WHERE r.rolname = $1",
            &[&mallory.name],
        )
        .unwrap();
    // Each right the role could have been given, as the role had it when planted (none).
    for (i, what) in [
        "superuser",
        "createrole",
        "createdb",
        "bypassrls",
        "replication",
    ]
    .iter()
    .enumerate()
    {
        out.insert(format!("role {what}"), row.get::<_, bool>(i).to_string());
    }
    out.insert("role memberships".into(), row.get::<_, i64>(5).to_string());
    out.insert("owned objects".into(), row.get::<_, i64>(6).to_string());
    out.insert(
        "granted privileges".into(),
        row.get::<_, i64>(7).to_string(),
    );
    let relations: Vec<(String, String)> = client
        .query(
            "SELECT c.relname::text, c.relkind::text FROM pg_class c
             WHERE c.relnamespace = $1::text::regnamespace ORDER BY 1",
            &[&SHARED],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for (name, kind) in relations {
        let rows = if kind == "r" {
            let n: i64 = client
                .query_one(
                    &format!("SELECT count(*) FROM {SHARED}.{}", quote_ident(&name)),
                    &[],
                )
                .unwrap()
                .get(0);
            format!("{n} rows")
        } else {
            String::new()
        };
        out.insert(format!("shared relation {name} ({kind})"), rows);
    }
    let functions: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_proc WHERE pronamespace = $1::text::regnamespace",
            &[&SHARED],
        )
        .unwrap()
        .get(0);
    out.insert("shared functions".into(), functions.to_string());
    out
}

/// Report fields that differ between two runs of the same command on two databases whatever
/// the database's search_path: run ids, times, durations, names of the database.
fn is_volatile(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "run_id",
        "duration",
        "elapsed",
        "_ms",
        "time",
        "_at",
        "started",
        "finished",
        "took",
        "database",
        "server",
        "url",
        "pid",
        "size",
        "bytes",
        "applied_on",
        "age",
        "lag",
        "health",
        "estimate",
        "rate",
        "basis",
    ]
    .iter()
    .any(|v| key.contains(v))
}

fn stable(value: &Value, dbname: &str, run_ids: &[String]) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !is_volatile(k))
                .map(|(k, v)| (k.clone(), stable(v, dbname, run_ids)))
                .collect(),
        ),
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| stable(v, dbname, run_ids)).collect())
        }
        Value::String(s) => {
            let mut s = s.replace(dbname, "DB");
            for id in run_ids {
                s = s.replace(id, "RUN_ID");
            }
            Value::String(s)
        }
        other => other.clone(),
    }
}

/// The twin and the planted database, built alike; the role is dropped after both.
struct Pair {
    twin: TestDb,
    planted: TestDb,
    mallory: Mallory,
    /// What the role and `shared` were right after planting.
    before: BTreeMap<String, String>,
    run_ids: Vec<String>,
    /// With RULEIQ_HOSTILE_ALL_FAILURES set (a diagnostic run against a build with the hole),
    /// every failed check is collected and the test fails at its end listing them all, instead
    /// of at the first.
    failures: Vec<String>,
}

impl Pair {
    /// `build` makes one database (it is called twice); the second is planted.
    fn new(build: impl Fn() -> TestDb, plants: Plants) -> Pair {
        let mallory = Mallory::new();
        let twin = build();
        // The planted database is a copy of the twin (the fixtures write now() into some rows,
        // so building twice would not give the same rows).
        let planted = copy_of(&twin);
        let (a, b) = (data(&twin), data(&planted));
        assert!(
            a == b,
            "the twins differ before planting:\n{}",
            map_difference(&a, &b)
        );
        let started = std::time::Instant::now();
        let count = plant(&planted, &mallory, plants.or_from_env());
        eprintln!(
            "planted {count} functions and operators in {:?}",
            started.elapsed()
        );
        let before = mallory_and_shared(&planted, &mallory);
        Pair {
            twin,
            planted,
            mallory,
            before,
            run_ids: Vec::new(),
            failures: Vec::new(),
        }
    }

    /// A failed check: the test fails now, or at [`Pair::finish`] in the diagnostic mode.
    fn fail(&mut self, message: String) {
        if std::env::var_os("RULEIQ_HOSTILE_ALL_FAILURES").is_some() {
            eprintln!("FAILED CHECK: {message}\n");
            self.failures.push(message);
        } else {
            panic!("{message}");
        }
    }

    /// Runs `args` on both; holds (a) and that both exit with `code`; returns both reports.
    fn step(&mut self, args: &[&str], code: i32) -> (Value, Value) {
        self.step_each(args, args, code)
    }

    /// [`Pair::step`] with arguments of each database's own (a run id).
    fn step_each(
        &mut self,
        twin_args: &[&str],
        planted_args: &[&str],
        code: i32,
    ) -> (Value, Value) {
        let what = twin_args.join(" ");
        let (twin_code, twin, twin_err) = self.twin.run_json(twin_args);
        let (planted_code, planted, planted_err) = self.planted.run_json(planted_args);
        let planted_text = format!("{planted}\n{planted_err}");
        if planted_text.contains("planted") {
            self.fail(format!(
                "(a) `{what}` on the hostile database ran a planted object (exit {planted_code}):\n{planted_text}"
            ));
        } else if planted_code != twin_code {
            self.fail(format!(
                "(a) `{what}` exits {planted_code} on the hostile database, {twin_code} on its twin:\nhostile: {planted:#}\n{planted_err}\ntwin: {twin:#}\n{twin_err}"
            ));
        }
        if twin_code != code {
            self.fail(format!(
                "`{what}` exits {twin_code}, not {code}, on the twin: {twin:#}\n{twin_err}"
            ));
        }
        for report in [&twin, &planted] {
            if let Some(id) = report["run_id"].as_str() {
                self.run_ids.push(id.to_string());
            }
        }
        (twin, planted)
    }

    /// [`Pair::step`], then (b): the reports equal the twin's (volatile fields aside), the data
    /// too; (c) and (d).
    fn same(&mut self, args: &[&str], code: i32) -> (Value, Value) {
        let (twin, planted) = self.step(args, code);
        let what = args.join(" ");
        self.compare(&what, &twin, &planted);
        self.hold(&what);
        (twin, planted)
    }

    /// (b) for two reports of `what`.
    fn compare(&mut self, what: &str, twin: &Value, planted: &Value) {
        let a = stable(twin, &self.twin.name, &self.run_ids);
        let b = stable(planted, &self.planted.name, &self.run_ids);
        if a != b {
            self.fail(format!(
                "(b) `{what}` reports differently on the hostile database:\n{}",
                difference(&a, &b, "")
            ));
        }
    }

    /// (b) data, (c), (d) after `what`.
    fn hold(&mut self, what: &str) {
        let twin = data(&self.twin);
        let planted = data(&self.planted);
        if twin != planted {
            self.fail(format!(
                "(b) after `{what}` the hostile database's data differs from its twin's:\n{}",
                map_difference(&twin, &planted)
            ));
        }
        let now = mallory_and_shared(&self.planted, &self.mallory);
        if now != self.before {
            self.fail(format!(
                "(c)/(d) after `{what}` the role {} or schema {SHARED} changed (no right may be given, nothing owned, the planted tables stay as planted, nothing new appears there):\n{}",
                self.mallory.name,
                labelled_difference(&self.before, &now, "as planted", "now")
            ));
            self.before = now;
        }
    }

    /// The end of a test: in the diagnostic mode, fails listing every failed check.
    fn finish(self) {
        assert!(
            self.failures.is_empty(),
            "{} failed checks:\n{}",
            self.failures.len(),
            self.failures.join("\n---\n")
        );
    }
}

/// A database made from `source` as its template: the same bytes, rows and all.
fn copy_of(source: &TestDb) -> TestDb {
    let copy = TestDb::new();
    let mut admin = common::connect_url(&common::url_for("postgres"));
    admin
        .batch_execute(&format!("DROP DATABASE {}", copy.name))
        .unwrap();
    // The source's last connections may still be going away.
    let mut attempts = 0;
    loop {
        match admin.batch_execute(&format!(
            "CREATE DATABASE {} TEMPLATE {}",
            copy.name, source.name
        )) {
            Ok(()) => break,
            Err(e) if attempts < 100 => {
                let _ = e;
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) => panic!("copying {}: {e}", source.name),
        }
    }
    copy
}

/// The keys where two maps differ.
fn map_difference(twin: &BTreeMap<String, String>, planted: &BTreeMap<String, String>) -> String {
    labelled_difference(twin, planted, "twin", "hostile")
}

fn labelled_difference(
    twin: &BTreeMap<String, String>,
    planted: &BTreeMap<String, String>,
    left: &str,
    right: &str,
) -> String {
    twin.keys()
        .chain(planted.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter(|k| twin.get(*k) != planted.get(*k))
        .map(|k| {
            format!(
                "  {k}: {left} {:?}, {right} {:?}\n",
                twin.get(k),
                planted.get(k)
            )
        })
        .collect()
}

/// The paths where two JSON values differ.
fn difference(a: &Value, b: &Value, path: &str) -> String {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => x
            .keys()
            .chain(y.keys())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(|k| {
                difference(
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    &format!("{path}.{k}"),
                )
            })
            .collect(),
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .map(|(i, (p, q))| difference(p, q, &format!("{path}[{i}]")))
            .collect(),
        _ if a == b => String::new(),
        _ => format!("  {path}: twin {a}, hostile {b}\n"),
    }
}

fn dirty_v7() -> TestDb {
    TestDb::dirty_legacy()
}

/// Production as Alembic left it (fixtures/production_v7.sql: tables, alembic_version '007',
/// no history), with rows that break 008's constraints, as tests/baseline.rs makes it.
fn adopted_style() -> TestDb {
    let db = TestDb::new();
    db.execute_file("fixtures/production_v7.sql");
    db.execute(
        "UPDATE evidence_items SET status = 'pending_review' WHERE status = 'collected';
         UPDATE business_profiles SET data_sensitivity = 'Moderate' WHERE data_sensitivity = 'Low';
         UPDATE business_profiles SET employee_count = 0 WHERE data_sensitivity = 'Critical';",
    );
    db
}

// ---------------------------------------------------------------------------------------------
// The tests.
// ---------------------------------------------------------------------------------------------

/// Issue 26's own scenario at version 7: the stealthy `lower(varchar)` (it escalates its owner
/// and answers correctly) and the shadowing tables, through check-constraints, every cleanup
/// and its undo. Only functions are planted (no operators), so the first planted thing the old
/// SQL reaches is the function the issue names.
#[test]
fn check_cleanup_and_undo_neither_run_planted_functions_nor_read_shadow_tables() {
    let mut pair = Pair::new(
        dirty_v7,
        Plants {
            operators: false,
            stealthy_lower: true,
            ..Plants::ALL
        },
    );
    let (twin, _) = pair.same(&["check-constraints", "--dry-run"], 3);
    assert_eq!(twin["total_violations"], 19, "{twin:#}");
    pair.same(
        &[
            "check-constraints",
            "--dry-run",
            "--constraint",
            "fk_generated_policy_business_profile",
        ],
        3,
    );
    pair.same(&["cleanup", "--dry-run"], 4);
    pair.same(&["cleanup", "--dry-run", "--policy", EXAMPLE_POLICY], 0);
    let (twin, planted) = pair.same(&["cleanup", "--yes", "--policy", EXAMPLE_POLICY], 0);
    assert_eq!(twin["total_rows"], 18, "{twin:#}");
    pair.same(&["check-constraints", "--dry-run"], 0);
    let twin_run = twin["run_id"].as_str().expect("a run id").to_string();
    let planted_run = planted["run_id"].as_str().unwrap_or("none").to_string();
    // Each database undoes its own run.
    let (twin, planted) = pair.step_each(
        &["cleanup", "--undo", &twin_run, "--yes"],
        &["cleanup", "--undo", &planted_run, "--yes"],
        0,
    );
    pair.compare("cleanup --undo RUN_ID --yes", &twin, &planted);
    pair.hold("cleanup --undo RUN_ID --yes");
    pair.same(&["check-constraints", "--dry-run"], 3);
    pair.same(&["check-constraints"], 3);
    pair.finish();
}

/// Rehearse's sequence after "build version 7" and "load fixture" (check, plan cleanup,
/// cleanup, migrate, status, rollback, migrate again, final check), with the dry runs,
/// status --health and every compat command between, planted operators too.
#[test]
fn migrate_status_compat_and_rollback_neither_run_planted_objects_nor_read_shadow_tables() {
    let mut pair = Pair::new(dirty_v7, Plants::ALL);
    pair.same(&["status"], 0);
    pair.same(&["check-constraints", "--dry-run"], 3);
    pair.same(&["cleanup", "--dry-run"], 4);
    pair.same(&["cleanup", "--yes", "--policy", EXAMPLE_POLICY], 0);
    pair.same(&["migrate", "--dry-run"], 0);
    let (twin, _) = pair.same(&["migrate"], 0);
    assert_eq!(twin["schema_version"], latest(), "{twin:#}");
    pair.same(&["status"], 0);
    pair.step(&["status", "--health"], 0);
    pair.hold("status --health");
    pair.same(&["compat"], 0);
    pair.same(&["compat", "--drop", "--dry-run"], 0);
    pair.same(&["compat", "--drop", "--yes", "--unverified"], 0);
    pair.same(&["compat", "--dry-run"], 0);
    pair.same(&["compat", "--yes"], 0);
    pair.same(&["rollback", "--to", "7", "--dry-run"], 0);
    pair.same(&["rollback", "--to", "7", "--yes"], 0);
    pair.same(&["status"], 0);
    pair.same(&["migrate"], 0);
    pair.same(&["check-constraints"], 0);
    pair.same(&["check-constraints", "--dry-run"], 0);
    pair.finish();
}

/// `baseline` on an adopted-style database (production's tables and alembic_version '007', no
/// history; the planted alembic_version says '001', an empty planted history table is there),
/// then the whole repair on it, as `rehearse --dump` runs it.
#[test]
fn baseline_adopts_the_real_tables_and_the_repair_goes_through_on_hostile_ground() {
    let mut pair = Pair::new(adopted_style, Plants::ALL);
    // Not adopted yet: status says so (exit 3), on both.
    pair.same(&["status"], 3);
    let (twin, _) = pair.same(&["baseline"], 0);
    assert_eq!(twin["detected_version"], 7, "{twin:#}");
    pair.same(&["status"], 0);
    pair.same(&["check-constraints", "--dry-run"], 3);
    pair.same(&["cleanup", "--dry-run", "--policy", EXAMPLE_POLICY], 0);
    pair.same(&["cleanup", "--yes", "--policy", EXAMPLE_POLICY], 0);
    pair.same(&["migrate", "--dry-run"], 0);
    pair.same(&["migrate"], 0);
    pair.same(&["rollback", "--to", "7", "--yes"], 0);
    pair.same(&["migrate"], 0);
    pair.same(&["check-constraints", "--dry-run"], 0);
    pair.finish();
}

/// An empty database on hostile ground: `migrate` builds every table in public (none in the
/// writable schema first on the search_path) and the history there too.
#[test]
fn migrate_from_empty_builds_nothing_in_the_writable_schema() {
    let mut pair = Pair::new(TestDb::new, Plants::ALL);
    pair.same(&["status"], 0);
    pair.same(&["migrate", "--dry-run"], 0);
    pair.same(&["migrate", "--target", "7"], 0);
    pair.same(&["migrate"], 0);
    pair.same(&["status"], 0);
    let (twin, _) = pair.same(&["rollback", "--to", "7", "--yes"], 0);
    assert_eq!(twin["schema_version"], 7, "{twin:#}");
    let tables = pair
        .planted
        .scalar_i64("SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = 'public'");
    assert!(tables >= TABLES.len() as i64, "{tables} tables in public");
    pair.finish();
}
