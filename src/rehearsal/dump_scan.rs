//! What a plain-SQL dump needs from the server it is loaded into, read before it is loaded:
//! the roles it names (a managed service's `neondb_owner`, `authenticated`, `rds_superuser`, …
//! in `OWNER TO`, `GRANT`, `ALTER DEFAULT PRIVILEGES`, `CREATE POLICY … TO`, `SET ROLE`) and the
//! extensions it creates, with the lines that use them.
//!
//! The dump is read line by line (a production dump may be many gigabytes) by a small SQL lexer
//! that keeps its state across lines: text inside string literals, quoted identifiers, dollar
//! quotes (function bodies), comments and `COPY … FROM stdin` data is never taken for SQL, so a
//! row or a function body that happens to say `OWNER TO x` names no role. Only the tokens of the
//! statements that can name a role are kept, and of those only the first few thousand, so memory
//! stays flat whatever the dump holds.

use anyhow::{Context as _, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::path::Path;

/// What a dump asks of the server, as found by [`scan`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DumpNeeds {
    /// Every role the dump names, as PostgreSQL spells it (unquoted names folded to lower case).
    pub roles: BTreeSet<String>,
    /// Roles the dump creates itself (`CREATE ROLE`, a pg_dumpall's globals): not to be made
    /// beforehand, or its own CREATE ROLE would fail.
    pub roles_created_by_dump: BTreeSet<String>,
    /// Every extension it creates, in the order it creates them.
    pub extensions: Vec<Extension>,
}

/// One `CREATE EXTENSION` of a dump, and where the dump uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    pub name: String,
    /// The line of its CREATE EXTENSION.
    pub line: u64,
    /// Up to [`MAX_USES`] places that use it: `table public.documents, line 40: embedding
    /// extensions.vector(3)`.
    pub uses: Vec<String>,
    /// How many places use it in all.
    pub use_count: u64,
}

impl DumpNeeds {
    /// The roles to create before loading: those named and not created by the dump itself.
    pub fn roles_to_provide(&self) -> Vec<String> {
        self.roles
            .difference(&self.roles_created_by_dump)
            .cloned()
            .collect()
    }
}

/// How many uses of an extension are listed (the count says how many there are).
pub const MAX_USES: usize = 10;

/// How many tokens of one statement are kept: role names sit in the first few.
const MAX_TOKENS: usize = 4096;

/// How many characters of a string literal are kept (only `SET ROLE 'name'` reads one).
const MAX_STRING: usize = 256;

/// Reads the dump at `path` line by line; `progress` hears the bytes read so far.
pub fn scan(path: &Path, progress: &dyn Fn(u64)) -> Result<DumpNeeds> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot read the dump {}", path.display()))?;
    scan_reader(std::io::BufReader::with_capacity(1 << 20, file), progress)
        .with_context(|| format!("cannot read the dump {}", path.display()))
}

/// [`scan`] over any reader.
pub fn scan_reader(mut reader: impl BufRead, progress: &dyn Fn(u64)) -> std::io::Result<DumpNeeds> {
    let mut lexer = Lexer::default();
    let mut line = Vec::new();
    let mut read = 0u64;
    let mut number = 0u64;
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        read += n as u64;
        number += 1;
        lexer.line(&String::from_utf8_lossy(&line), number);
        if number % 4096 == 0 {
            progress(read);
        }
    }
    progress(read);
    lexer.finish();
    Ok(lexer.needs)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// An unquoted word or number, folded to lower case.
    Word(String),
    /// A quoted identifier, as written.
    Quoted(String),
    /// A string literal (its first [`MAX_STRING`] characters).
    Str(String),
    Punct(char),
}

impl Tok {
    fn is(&self, keyword: &str) -> bool {
        matches!(self, Tok::Word(w) if w == keyword)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
enum State {
    #[default]
    Code,
    Single {
        escapes: bool,
    },
    Double,
    Dollar(String),
    Block(u32),
    /// `COPY … FROM stdin` data, up to its `\.` line.
    Copy,
}

#[derive(Default)]
struct Lexer {
    state: State,
    /// The statement's tokens so far (only for statements that can name a role).
    tokens: Vec<Tok>,
    /// Whether the statement's tokens are kept (decided by its first word).
    keep: bool,
    /// The statement's first words, to label a use of an extension.
    head: Vec<String>,
    /// The text of the string literal or quoted identifier being read.
    literal: String,
    needs: DumpNeeds,
    /// For each extension created so far, the words that betray a use of it.
    words: BTreeMap<String, Vec<String>>,
    /// The line being read: its number and text.
    line_number: u64,
    line_text: String,
    /// The words read on this line since the last statement ended.
    line_words: Vec<String>,
    /// Uses of an extension in the statement being read: (extension, line, text). They are
    /// kept once the statement turns out not to be about the extension itself.
    pending_uses: Vec<(String, u64, String)>,
}

/// The first words of the statements whose tokens are kept.
const KEPT: &[&str] = &["alter", "grant", "revoke", "create", "set", "copy"];

fn ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_' || !c.is_ascii()
}

fn ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$' || !c.is_ascii()
}

impl Lexer {
    fn line(&mut self, text: &str, number: u64) {
        if self.state == State::Copy {
            if text.trim_end_matches(['\n', '\r']) == "\\." {
                self.state = State::Code;
            }
            return;
        }
        // A psql meta-command (`\connect`, pg_dump's `\restrict`) between statements.
        if self.state == State::Code && self.head.is_empty() && text.starts_with('\\') {
            return;
        }
        let chars: Vec<char> = text.chars().collect();
        self.line_number = number;
        self.line_text = text.trim().chars().take(120).collect();
        self.line_words.clear();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            match self.state.clone() {
                State::Copy => return,
                State::Block(depth) => {
                    if c == '*' && chars.get(i + 1) == Some(&'/') {
                        self.state = if depth == 1 {
                            State::Code
                        } else {
                            State::Block(depth - 1)
                        };
                        i += 2;
                    } else if c == '/' && chars.get(i + 1) == Some(&'*') {
                        self.state = State::Block(depth + 1);
                        i += 2;
                    } else {
                        i += 1;
                    }
                }
                State::Single { escapes } => {
                    if escapes && c == '\\' {
                        i += 2;
                    } else if c == '\'' {
                        if chars.get(i + 1) == Some(&'\'') {
                            self.push_literal('\'');
                            i += 2;
                        } else {
                            let text = std::mem::take(&mut self.literal);
                            self.push(Tok::Str(text));
                            self.state = State::Code;
                            i += 1;
                        }
                    } else {
                        self.push_literal(c);
                        i += 1;
                    }
                }
                State::Double => {
                    if c == '"' {
                        if chars.get(i + 1) == Some(&'"') {
                            self.push_literal('"');
                            i += 2;
                        } else {
                            let text = std::mem::take(&mut self.literal);
                            self.line_words.push(text.clone());
                            self.push(Tok::Quoted(text));
                            self.state = State::Code;
                            i += 1;
                        }
                    } else {
                        self.push_literal(c);
                        i += 1;
                    }
                }
                State::Dollar(tag) => {
                    let closing: Vec<char> = format!("${tag}$").chars().collect();
                    match (i..chars.len()).find(|&j| chars[j..].starts_with(&closing)) {
                        Some(j) => {
                            self.state = State::Code;
                            self.push(Tok::Str(String::new()));
                            i = j + closing.len();
                        }
                        None => break,
                    }
                }
                State::Code => {
                    if c == '-' && chars.get(i + 1) == Some(&'-') {
                        break;
                    } else if c == '/' && chars.get(i + 1) == Some(&'*') {
                        self.state = State::Block(1);
                        i += 2;
                    } else if c == '\'' {
                        // E'…' takes backslash escapes; the E was read as a word just before.
                        let escapes = i > 0
                            && matches!(chars[i - 1], 'e' | 'E')
                            && (i < 2 || !ident_char(chars[i - 2]));
                        if escapes && self.tokens.last() == Some(&Tok::Word("e".into())) {
                            self.tokens.pop();
                        }
                        self.literal.clear();
                        self.state = State::Single { escapes };
                        i += 1;
                    } else if c == '"' {
                        self.literal.clear();
                        self.state = State::Double;
                        i += 1;
                    } else if c == '$' && (i == 0 || !ident_char(chars[i - 1])) {
                        match dollar_tag(&chars[i + 1..]) {
                            Some(tag) => {
                                i += tag.chars().count() + 2;
                                self.state = State::Dollar(tag);
                            }
                            None => i += 1,
                        }
                    } else if ident_start(c) || c.is_ascii_digit() {
                        let start = i;
                        while i < chars.len() && ident_char(chars[i]) {
                            i += 1;
                        }
                        let word: String =
                            chars[start..i].iter().collect::<String>().to_lowercase();
                        self.line_words.push(word.clone());
                        self.push(Tok::Word(word));
                    } else if c == ';' {
                        i += 1;
                        self.end_statement();
                    } else {
                        if matches!(c, ',' | '(' | ')' | '.') {
                            self.push(Tok::Punct(c));
                        }
                        i += 1;
                    }
                }
            }
        }
        self.note_line_uses();
    }

    fn push_literal(&mut self, c: char) {
        if self.literal.len() < MAX_STRING {
            self.literal.push(c);
        }
    }

    fn push(&mut self, tok: Tok) {
        if self.head.is_empty() {
            self.keep = matches!(&tok, Tok::Word(w) if KEPT.contains(&w.as_str()));
        }
        if self.head.len() < 12 {
            self.head.push(match &tok {
                Tok::Word(w) | Tok::Quoted(w) => w.clone(),
                Tok::Str(_) => "'…'".into(),
                Tok::Punct(p) => p.to_string(),
            });
        }
        if self.keep && self.tokens.len() < MAX_TOKENS {
            self.tokens.push(tok);
        }
    }

    fn end_statement(&mut self) {
        self.note_line_uses();
        self.note_statement_uses();
        let tokens = std::mem::take(&mut self.tokens);
        self.head.clear();
        if !self.keep {
            return;
        }
        self.keep = false;
        statement_roles(&tokens, &mut self.needs);
        if tokens.first().is_some_and(|t| t.is("copy"))
            && tokens.last().is_some_and(|t| t.is("stdin"))
        {
            self.state = State::Copy;
        }
    }

    fn finish(&mut self) {
        if !self.head.is_empty() {
            self.end_statement();
        }
    }

    /// Remembers this line's words since the last statement ended when they use an extension
    /// created earlier.
    fn note_line_uses(&mut self) {
        let words = std::mem::take(&mut self.line_words);
        for (name, betraying) in &self.words {
            if words.iter().any(|w| betraying.contains(w)) && self.pending_uses.len() < 10_000 {
                self.pending_uses
                    .push((name.clone(), self.line_number, self.line_text.clone()));
            }
        }
    }

    /// At the end of a statement: a CREATE EXTENSION is recorded; the uses noted in any other
    /// statement than one about an extension are kept, labelled with the statement.
    fn note_statement_uses(&mut self) {
        let uses = std::mem::take(&mut self.pending_uses);
        let about_extension = self.head.get(1).is_some_and(|w| w == "extension")
            || (self.head.first().is_some_and(|w| w == "comment")
                && self.head.get(2).is_some_and(|w| w == "extension"));
        if let Some(name) = self.pending_extension() {
            if !self.needs.extensions.iter().any(|e| e.name == name) {
                self.words.insert(name.clone(), extension_words(&name));
                self.needs.extensions.push(Extension {
                    name,
                    line: self.line_number,
                    uses: Vec::new(),
                    use_count: 0,
                });
            }
        }
        if about_extension {
            return;
        }
        let label = self.label();
        for (name, line, text) in uses {
            let Some(extension) = self.needs.extensions.iter_mut().find(|e| e.name == name) else {
                continue;
            };
            if extension
                .uses
                .last()
                .is_some_and(|u| u.contains(&format!("line {line}:")))
            {
                continue;
            }
            extension.use_count += 1;
            if extension.uses.len() < MAX_USES {
                extension.uses.push(match &label {
                    Some(label) => format!("{label}, line {line}: {text}"),
                    None => format!("line {line}: {text}"),
                });
            }
        }
    }

    /// The extension a CREATE EXTENSION statement being read names, once its name is read.
    fn pending_extension(&self) -> Option<String> {
        let h = &self.head;
        if h.first()? != "create" || h.get(1)? != "extension" {
            return None;
        }
        let name = if h.get(2)? == "if" {
            h.get(5)?
        } else {
            h.get(2)?
        };
        Some(name.clone())
    }

    /// What the statement being read is, for a use of an extension: `table public.documents`.
    fn label(&self) -> Option<String> {
        let h = &self.head;
        let (kind, mut at) = match (h.first()?.as_str(), h.get(1).map(String::as_str)) {
            ("create", Some("or")) => (h.get(3)?.clone(), 4),
            ("create", Some("unique")) => ("index".to_string(), 3),
            ("create" | "alter", Some(kind)) => (kind.to_string(), 2),
            _ => return Some(h.join(" ")),
        };
        while h.get(at).is_some_and(|w| {
            matches!(
                w.as_str(),
                "if" | "not" | "exists" | "only" | "concurrently" | "function" | "view" | "index"
            )
        }) {
            at += 1;
        }
        let mut name = h.get(at).cloned().unwrap_or_default();
        while h.get(at + 1).is_some_and(|w| w == ".") {
            name.push('.');
            name.push_str(h.get(at + 2).map_or("", String::as_str));
            at += 2;
        }
        Some(format!("{kind} {name}").trim().to_string())
    }
}

/// The tag of a dollar quote opening at `rest` (just after its first `$`): `$$` or `$tag$`.
fn dollar_tag(rest: &[char]) -> Option<String> {
    let end = rest.iter().position(|c| *c == '$')?;
    let tag: String = rest[..end].iter().collect();
    let valid = tag.chars().next().is_none_or(ident_start) && tag.chars().all(ident_char_no_dollar);
    valid.then_some(tag)
}

fn ident_char_no_dollar(c: char) -> bool {
    ident_char(c) && c != '$'
}

/// The words that show a use of an extension: its name, and the types and functions of the
/// well-known ones.
fn extension_words(name: &str) -> Vec<String> {
    let known: &[&str] = match name {
        "uuid-ossp" => &[
            "uuid_generate_v1",
            "uuid_generate_v1mc",
            "uuid_generate_v3",
            "uuid_generate_v4",
            "uuid_generate_v5",
            "uuid_nil",
        ],
        "pgcrypto" => &[
            "gen_random_bytes",
            "crypt",
            "gen_salt",
            "digest",
            "hmac",
            "pgp_sym_encrypt",
            "pgp_sym_decrypt",
            "armor",
        ],
        "postgis" => &["geometry", "geography", "box2d", "box3d", "st_makepoint"],
        "vector" => &[
            "vector",
            "halfvec",
            "sparsevec",
            "vector_cosine_ops",
            "vector_l2_ops",
            "hnsw",
            "ivfflat",
        ],
        "pg_trgm" => &[
            "gin_trgm_ops",
            "gist_trgm_ops",
            "similarity",
            "word_similarity",
        ],
        "fuzzystrmatch" => &["levenshtein", "soundex", "metaphone"],
        "earthdistance" => &["ll_to_earth", "earth_distance"],
        "pg_graphql" => &["graphql"],
        "pg_net" => &["net"],
        "supabase_vault" => &["vault"],
        "pgjwt" => &["sign", "verify"],
        _ => &[],
    };
    std::iter::once(name.to_string())
        .chain(known.iter().map(|w| w.to_string()))
        .collect()
}

/// Names that are not roles to create: PUBLIC, the current role's names, and the reserved
/// `pg_` prefix (PostgreSQL's predefined roles, which every server has).
fn not_a_role(tok: &Tok) -> bool {
    match tok {
        Tok::Word(w) => {
            matches!(
                w.as_str(),
                "public" | "current_user" | "session_user" | "current_role" | "none" | "default"
            ) || w.starts_with("pg_")
        }
        Tok::Quoted(q) | Tok::Str(q) => q == "public" || q.starts_with("pg_") || q.is_empty(),
        Tok::Punct(_) => true,
    }
}

fn role_name(tok: &Tok) -> Option<String> {
    if not_a_role(tok) {
        return None;
    }
    match tok {
        Tok::Word(w) | Tok::Quoted(w) | Tok::Str(w) => Some(w.clone()),
        Tok::Punct(_) => None,
    }
}

/// The tokens at parenthesis depth 0, with their index.
fn top_level(tokens: &[Tok]) -> Vec<(usize, &Tok)> {
    let mut depth = 0i32;
    let mut out = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        match t {
            Tok::Punct('(') => depth += 1,
            Tok::Punct(')') => depth -= 1,
            _ if depth == 0 => out.push((i, t)),
            _ => {}
        }
    }
    out
}

/// A list of role names from `start`: `a, "B", GROUP c` up to the first token after a name
/// that is not a comma.
fn name_list(tokens: &[Tok], start: usize, into: &mut BTreeSet<String>) {
    let mut i = start;
    while i < tokens.len() {
        if tokens[i].is("group") && i + 1 < tokens.len() && !matches!(tokens[i + 1], Tok::Punct(_))
        {
            i += 1;
        }
        let tok = &tokens[i];
        if matches!(tok, Tok::Punct(_)) {
            return;
        }
        if let Some(name) = role_name(tok) {
            into.insert(name);
        }
        if tokens.get(i + 1) == Some(&Tok::Punct(',')) {
            i += 2;
        } else {
            return;
        }
    }
}

/// The position of the first top-level `keyword` at or after `from`.
fn find(top: &[(usize, &Tok)], keyword: &str, from: usize) -> Option<usize> {
    top.iter()
        .find(|(i, t)| *i >= from && t.is(keyword))
        .map(|(i, _)| *i)
}

/// The roles one statement names (and creates).
fn statement_roles(tokens: &[Tok], needs: &mut DumpNeeds) {
    let roles = &mut needs.roles;
    let word = |i: usize| tokens.get(i);
    let Some(first) = word(0) else { return };
    let top = top_level(tokens);
    let granted_by = |roles: &mut BTreeSet<String>| {
        for (i, t) in &top {
            if t.is("granted") && word(i + 1).is_some_and(|t| t.is("by")) {
                name_list(tokens, i + 2, roles);
            }
        }
    };
    if first.is("set") {
        let mut i = 1;
        if word(i).is_some_and(|t| t.is("session") || t.is("local")) {
            i += 1;
        }
        if word(i).is_some_and(|t| t.is("role") || t.is("authorization")) {
            name_list(tokens, i + 1, roles);
        }
    } else if first.is("grant") || first.is("revoke") {
        grant_or_revoke(tokens, 0, &top, roles);
        granted_by(roles);
    } else if first.is("alter") {
        if word(1).is_some_and(|t| t.is("default")) && word(2).is_some_and(|t| t.is("privileges")) {
            if word(3).is_some_and(|t| t.is("for")) {
                name_list(tokens, 5, roles);
            }
            if let Some(at) = top
                .iter()
                .find(|(_, t)| t.is("grant") || t.is("revoke"))
                .map(|(i, _)| *i)
            {
                grant_or_revoke(tokens, at, &top, roles);
            }
            return;
        }
        if word(1).is_some_and(|t| t.is("role") || t.is("user") || t.is("group"))
            && !word(2).is_some_and(|t| t.is("all"))
        {
            name_list(tokens, 2, roles);
        }
        for (i, t) in &top {
            if t.is("owner") && word(i + 1).is_some_and(|t| t.is("to")) {
                name_list(tokens, i + 2, roles);
            }
        }
        if word(1).is_some_and(|t| t.is("policy")) {
            policy_roles(tokens, &top, roles);
        }
    } else if first.is("create") {
        match word(1) {
            Some(t) if t.is("role") || t.is("user") || t.is("group") => {
                if let Some(name) = word(2).and_then(role_name) {
                    needs.roles_created_by_dump.insert(name);
                }
            }
            Some(t) if t.is("policy") => policy_roles(tokens, &top, roles),
            Some(t) if t.is("schema") => {
                if let Some(at) = find(&top, "authorization", 2) {
                    name_list(tokens, at + 1, roles);
                }
            }
            _ => {}
        }
    }
}

/// `GRANT privileges ON objects TO roles` (or a role membership, `GRANT role TO role`), and
/// REVOKE's `… FROM roles`, starting at `at`.
fn grant_or_revoke(tokens: &[Tok], at: usize, top: &[(usize, &Tok)], roles: &mut BTreeSet<String>) {
    let grant = tokens[at].is("grant");
    let to = if grant { "to" } else { "from" };
    let Some(target) = find(top, to, at + 1) else {
        return;
    };
    let on = top
        .iter()
        .any(|(i, t)| *i > at && *i < target && t.is("on"));
    if !on {
        // A membership: the granted roles are roles as well.
        let mut i = at + 1;
        if !grant && word_is(tokens, i, "admin") {
            i += 3; // ADMIN OPTION FOR
        }
        name_list(tokens, i, roles);
    }
    name_list(tokens, target + 1, roles);
}

fn word_is(tokens: &[Tok], i: usize, keyword: &str) -> bool {
    tokens.get(i).is_some_and(|t| t.is(keyword))
}

/// `CREATE POLICY … TO roles` and `ALTER POLICY … TO roles` (not `RENAME TO`).
fn policy_roles(tokens: &[Tok], top: &[(usize, &Tok)], roles: &mut BTreeSet<String>) {
    for (i, t) in top {
        if t.is("to") && *i > 0 && !tokens[i - 1].is("rename") {
            name_list(tokens, i + 1, roles);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn needs(sql: &str) -> DumpNeeds {
        scan_reader(sql.as_bytes(), &|_| {}).unwrap()
    }

    fn roles(sql: &str) -> Vec<String> {
        needs(sql).roles_to_provide()
    }

    #[test]
    fn roles_are_found_in_every_statement_that_names_one() {
        let sql = r#"
SET SESSION AUTHORIZATION 'session_owner';
SET ROLE "Set Role";
ALTER TABLE public.users OWNER TO neondb_owner;
ALTER SCHEMA auth OWNER TO "supabase_admin";
GRANT SELECT, INSERT ON TABLE public.users TO authenticated, anon WITH GRANT OPTION;
GRANT SELECT (id, email) ON TABLE public.users TO "Reporting";
REVOKE ALL ON SCHEMA public FROM PUBLIC;
REVOKE ALL ON TABLE public.users FROM rdsadmin CASCADE;
ALTER DEFAULT PRIVILEGES FOR ROLE supabase_admin IN SCHEMA public GRANT ALL ON TABLES TO service_role;
ALTER DEFAULT PRIVILEGES FOR USER a1, a2 REVOKE ALL ON SEQUENCES FROM a3;
CREATE POLICY own_rows ON public.users AS PERMISSIVE FOR SELECT TO authenticated, "Policy Role" USING ((id = auth.uid()));
ALTER POLICY own_rows ON public.users TO policy_two;
ALTER POLICY own_rows ON public.users RENAME TO not_a_role;
GRANT rds_superuser TO migrator GRANTED BY rdsadmin;
GRANT USAGE ON SCHEMA public TO CURRENT_USER, SESSION_USER, CURRENT_ROLE, pg_read_all_data;
CREATE SCHEMA extensions AUTHORIZATION ext_owner;
ALTER FUNCTION public.f() OWNER TO fn_owner;
"#;
        assert_eq!(
            roles(sql),
            [
                "Policy Role",
                "Reporting",
                "Set Role",
                "a1",
                "a2",
                "a3",
                "anon",
                "authenticated",
                "ext_owner",
                "fn_owner",
                "migrator",
                "neondb_owner",
                "policy_two",
                "rds_superuser",
                "rdsadmin",
                "service_role",
                "session_owner",
                "supabase_admin"
            ]
        );
    }

    #[test]
    fn strings_comments_dollar_quotes_and_copy_data_name_no_role() {
        let sql = "-- ALTER TABLE x OWNER TO in_a_comment;
/* GRANT ALL ON t TO in_a_block /* nested */ GRANT ALL ON t TO still_in_it */
COMMENT ON TABLE public.t IS 'ALTER TABLE x OWNER TO in_a_string; it''s; fine';
CREATE FUNCTION public.f() RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN EXECUTE 'GRANT ALL ON t TO in_a_body'; ALTER TABLE x OWNER TO in_a_body2; END
$fn$;
INSERT INTO public.t VALUES (E'it\\'s ALTER TABLE x OWNER TO in_an_e_string');
COPY public.notes (id, body) FROM stdin;
1\tALTER TABLE x OWNER TO in_copy_data;
2\tGRANT ALL ON t TO in_copy_data2;
\\.
ALTER TABLE public.t OWNER TO real_owner;
";
        assert_eq!(roles(sql), ["real_owner"]);
    }

    #[test]
    fn roles_the_dump_creates_are_not_provided() {
        let sql = "CREATE ROLE app_role;\nALTER ROLE app_role WITH NOLOGIN;\nGRANT SELECT ON TABLE public.t TO app_role, other;\n";
        let n = needs(sql);
        assert!(n.roles.contains("app_role"));
        assert_eq!(n.roles_to_provide(), ["other"]);
    }

    #[test]
    fn a_statement_spread_over_lines_is_read_as_one() {
        let sql = "GRANT SELECT\n  ON TABLE public.t\n  TO\n  \"Multi\nLine\",\n  second;\n";
        assert_eq!(roles(sql), ["Multi\nLine", "second"]);
    }

    #[test]
    fn extensions_are_named_with_what_uses_them() {
        let sql = r#"
CREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA extensions;
COMMENT ON EXTENSION vector IS 'vector data type';
CREATE EXTENSION "uuid-ossp" WITH SCHEMA extensions;
CREATE TABLE public.documents (
    id uuid DEFAULT extensions.uuid_generate_v4() NOT NULL,
    body text,
    embedding extensions.vector(3)
);
CREATE INDEX documents_embedding ON public.documents USING hnsw (embedding extensions.vector_cosine_ops);
COPY public.documents (id, body, embedding) FROM stdin;
1	a vector in data	[1,2,3]
\.
"#;
        let n = needs(sql);
        let names: Vec<&str> = n.extensions.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["vector", "uuid-ossp"]);
        let vector = &n.extensions[0];
        assert_eq!(vector.line, 2);
        assert_eq!(vector.use_count, 2, "{vector:#?}");
        assert_eq!(
            vector.uses[0],
            "table public.documents, line 8: embedding extensions.vector(3)"
        );
        assert!(
            vector.uses[1].starts_with("index documents_embedding, line 10:"),
            "{vector:#?}"
        );
        let ossp = &n.extensions[1];
        assert_eq!(ossp.use_count, 1);
        assert!(ossp.uses[0].contains("uuid_generate_v4"), "{ossp:#?}");
    }

    #[test]
    fn the_reader_reports_progress_in_bytes() {
        let sql = "SELECT 1;\n".repeat(10_000);
        let seen = std::cell::Cell::new(0u64);
        scan_reader(sql.as_bytes(), &|n| seen.set(n)).unwrap();
        assert_eq!(seen.get(), sql.len() as u64);
    }
}
