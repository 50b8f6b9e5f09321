//! Small SQL helpers: quoting, splitting a migration file into statements, and naming the lock
//! each statement takes (for `--dry-run` plans).

/// One statement of a plan (008's, a down migration's, …) and the lock it takes.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PlannedStatement {
    pub sql: String,
    pub lock: String,
}

/// Quotes an identifier the way PostgreSQL's `quote_ident` does, always.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The schema ruleIQ's tables live in. Every table, view, type and function ruleiq-db names
/// outside `pg_catalog` is written with its schema: a session's search_path holds only
/// `pg_catalog, pg_temp`, so that no object another role planted in a schema on the database's
/// search_path can stand in for ours (docs/design.md, "Hostile ground").
pub const APP_SCHEMA: &str = "public";

/// A ruleIQ table (or view, type) named with its schema, quoted: `public."evidence_items"`.
pub fn qualified(name: &str) -> String {
    format!("{}.{}", APP_SCHEMA, quote_ident(name))
}

/// Quotes a string literal.
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Splits SQL text into statements on `;`, honouring quotes, dollar quotes and comments.
/// Comment-only fragments are dropped; each statement is trimmed and loses its `;`.
pub fn split_statements(sql: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let mut current = String::new();
    let mut chars = sql.char_indices().peekable();
    let mut has_code = false;
    while let Some((i, c)) = chars.next() {
        match c {
            '-' if sql[i..].starts_with("--") => {
                // Line comment: skip to end of line.
                for (_, c) in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
                current.push('\n');
                continue;
            }
            '/' if sql[i..].starts_with("/*") => {
                let end = sql[i + 2..].find("*/").map_or(sql.len(), |e| i + 2 + e + 2);
                while chars.peek().is_some_and(|(j, _)| *j < end) {
                    chars.next();
                }
                current.push(' ');
                continue;
            }
            '\'' | '"' => {
                current.push(c);
                for (_, d) in chars.by_ref() {
                    current.push(d);
                    if d == c {
                        break;
                    }
                }
                has_code = true;
                continue;
            }
            '$' => {
                if let Some(tag_len) = dollar_tag_len(&sql[i..]) {
                    let tag = &sql[i..i + tag_len];
                    let body_start = i + tag_len;
                    let end = sql[body_start..]
                        .find(tag)
                        .map_or(sql.len(), |e| body_start + e + tag_len);
                    current.push_str(&sql[i..end]);
                    while chars.peek().is_some_and(|(j, _)| *j < end) {
                        chars.next();
                    }
                    has_code = true;
                    continue;
                }
            }
            ';' => {
                if has_code {
                    statements.push(current.trim().to_string());
                }
                current.clear();
                has_code = false;
                continue;
            }
            _ => {}
        }
        if !c.is_whitespace() {
            has_code = true;
        }
        current.push(c);
    }
    if has_code && !current.trim().is_empty() {
        statements.push(current.trim().to_string());
    }
    statements
}

/// Length of a dollar-quote tag (`$$`, `$tag$`) at the start of `text`, if there is one.
fn dollar_tag_len(text: &str) -> Option<usize> {
    let rest = &text[1..];
    let end = rest.find('$')?;
    let tag = &rest[..end];
    if tag.chars().all(|c| c.is_alphanumeric() || c == '_')
        && !tag.starts_with(|c: char| c.is_ascii_digit())
    {
        Some(end + 2)
    } else {
        None
    }
}

/// A statement as a plan shows it: a guarded `DO` block by the ALTER statements inside it.
pub fn summarise_statement(sql: &str) -> String {
    if !sql.starts_with("DO ") {
        return sql.to_string();
    }
    // A block that builds its statement at run time says what it does in a `-- ruleiq-db: `
    // line (the compatibility views).
    let said: Vec<&str> = sql
        .lines()
        .filter_map(|l| l.trim().strip_prefix("-- ruleiq-db: "))
        .collect();
    if !said.is_empty() {
        return said.join(" ");
    }
    let inner: Vec<&str> = sql
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("ALTER TABLE"))
        .collect();
    if inner.is_empty() {
        return sql.to_string();
    }
    format!(
        "{} (only if needed: a guarded DO block)",
        inner.join(" ").trim_end_matches(';')
    )
}

/// The lock a DDL statement takes, in words a DBA reads in a plan.
pub fn lock_taken(statement: &str) -> String {
    let words: Vec<String> = statement
        .split_whitespace()
        .take(12)
        .map(|w| {
            w.trim_matches(|c| c == '(' || c == ';')
                .to_ascii_uppercase()
        })
        .collect();
    let word = |i: usize| words.get(i).map(String::as_str).unwrap_or("");
    let upper = statement.to_ascii_uppercase();
    let table_after = |keyword: &str| -> String {
        let position = words.iter().position(|w| w == keyword);
        position
            .and_then(|p| words.get(p + 1))
            .map(|w| {
                // ruleIQ's tables are written with their schema; a plan names them as the
                // application does.
                let w = w.to_ascii_lowercase();
                let w = w.strip_prefix("public.").unwrap_or(&w);
                w.trim_matches('"').to_string()
            })
            .unwrap_or_default()
    };
    match (word(0), word(1)) {
        ("CREATE", "TABLE") => {
            let references = upper.contains("REFERENCES");
            if references {
                "ACCESS EXCLUSIVE on the new table; SHARE ROW EXCLUSIVE on each referenced table"
                    .into()
            } else {
                "ACCESS EXCLUSIVE on the new table only".into()
            }
        }
        ("CREATE", "INDEX") | ("CREATE", "UNIQUE") => {
            if upper.contains("CONCURRENTLY") {
                format!(
                    "SHARE UPDATE EXCLUSIVE on {} (writes go on)",
                    table_after("ON")
                )
            } else {
                format!(
                    "SHARE on {} (blocks writes while the index builds)",
                    table_after("ON")
                )
            }
        }
        ("CREATE", "EXTENSION") => "none on application tables".into(),
        ("DROP", "INDEX") => "ACCESS EXCLUSIVE on the indexed table".into(),
        ("DROP", "TABLE") => format!("ACCESS EXCLUSIVE on {}", table_after("TABLE")),
        ("DROP", "EXTENSION") => "none on application tables".into(),
        ("ALTER", "TABLE") => {
            let table = table_after("TABLE");
            if upper.contains("VALIDATE CONSTRAINT") {
                format!("SHARE UPDATE EXCLUSIVE on {table} (reads and writes go on)")
            } else if upper.contains("FOREIGN KEY") || upper.contains(" REFERENCES ") {
                format!("ACCESS EXCLUSIVE on {table}; SHARE ROW EXCLUSIVE on the referenced table")
            } else {
                format!("ACCESS EXCLUSIVE on {table}")
            }
        }
        ("DO", _) => "as the statements inside (see the plan note)".into(),
        _ => "see PostgreSQL documentation".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_semicolons_outside_quotes_and_comments() {
        let sql = "-- head; comment\nCREATE TABLE a (x text DEFAULT ';');\n/* ; */\nDO $x$ BEGIN PERFORM 1; END $x$;\nSELECT 2";
        let parts = split_statements(sql);
        assert_eq!(parts.len(), 3, "{parts:?}");
        assert!(parts[0].starts_with("CREATE TABLE a"));
        assert!(parts[1].starts_with("DO $x$ BEGIN PERFORM 1; END $x$"));
        assert_eq!(parts[2], "SELECT 2");
    }

    #[test]
    fn names_locks() {
        assert!(lock_taken("CREATE INDEX i ON evidence_items(user_id)")
            .starts_with("SHARE on evidence_items"));
        assert!(
            lock_taken("ALTER TABLE t VALIDATE CONSTRAINT c").starts_with("SHARE UPDATE EXCLUSIVE")
        );
        assert!(lock_taken("ALTER TABLE t ADD COLUMN c int").starts_with("ACCESS EXCLUSIVE on t"));
        assert!(
            lock_taken("CREATE INDEX i ON public.evidence_items USING btree (user_id)")
                .starts_with("SHARE on evidence_items")
        );
        assert_eq!(
            lock_taken("ALTER TABLE public.\"t\" VALIDATE CONSTRAINT c"),
            "SHARE UPDATE EXCLUSIVE on t (reads and writes go on)"
        );
    }

    #[test]
    fn guarded_blocks_are_summarised_by_what_they_do() {
        let block = "DO $x$\nBEGIN\n  IF true THEN\n    ALTER TABLE t RENAME COLUMN a TO b;\n  END IF;\nEND\n$x$";
        assert!(summarise_statement(block)
            .starts_with("ALTER TABLE t RENAME COLUMN a TO b (only if needed"));
        assert_eq!(summarise_statement("DROP TABLE t"), "DROP TABLE t");
    }

    #[test]
    fn quotes() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}
