//! The few words of SQL that archiving and restoring read: enough to tell what a statement
//! drops or creates, never a parser. A quoted identifier keeps its case, a bare word is folded.

/// Reads tokens from the front.
pub(super) struct Cursor<'a> {
    pub(super) tokens: &'a [Token],
    pub(super) at: usize,
}

impl Cursor<'_> {
    pub(super) fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    pub(super) fn keyword(&self, ahead: usize) -> String {
        self.tokens
            .get(self.at + ahead)
            .map(Token::keyword)
            .unwrap_or_default()
    }

    /// Consumes these keywords when they come next.
    pub(super) fn eat(&mut self, keywords: &[&str]) -> bool {
        let all = keywords
            .iter()
            .enumerate()
            .all(|(k, w)| self.keyword(k) == *w);
        if all {
            self.at += keywords.len();
        }
        all
    }

    pub(super) fn name(&mut self) -> Option<String> {
        let name = self.peek().and_then(Token::name)?;
        self.at += 1;
        Some(name)
    }

    /// A name of the application's own: bare, or qualified with its schema
    /// ([`crate::catalog::sql::APP_SCHEMA`]); None for a name in any other schema.
    pub(super) fn app_name(&mut self) -> Option<String> {
        let name = self.name()?;
        if self.peek() != Some(&Token::Punct('.')) {
            return Some(name);
        }
        self.at += 1;
        let inner = self.name();
        (name == crate::catalog::sql::APP_SCHEMA)
            .then_some(inner)
            .flatten()
    }

    /// An end: nothing left, or nothing but `CASCADE` or `RESTRICT`.
    pub(super) fn at_end(&self) -> bool {
        match &self.tokens[self.at..] {
            [] => true,
            [t] => matches!(t.keyword().as_str(), "CASCADE" | "RESTRICT"),
            _ => false,
        }
    }

    /// A name followed by nothing but `CASCADE` or `RESTRICT`.
    pub(super) fn plain_name_then_end(&mut self) -> Option<String> {
        let name = self.name()?;
        match &self.tokens[self.at..] {
            [] => Some(name),
            [t] if matches!(t.keyword().as_str(), "CASCADE" | "RESTRICT") => Some(name),
            _ => None,
        }
    }
}

/// The actions of an ALTER TABLE: the tokens between top-level commas.
pub(super) fn split_actions(tokens: &[Token]) -> Vec<&[Token]> {
    let mut actions = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, token) in tokens.iter().enumerate() {
        match token {
            Token::Punct('(') => depth += 1,
            Token::Punct(')') => depth -= 1,
            Token::Punct(',') if depth == 0 => {
                actions.push(&tokens[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    actions.push(&tokens[start..]);
    actions
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Token {
    /// A bare word, as PostgreSQL folds it (lower case).
    Word(String),
    /// A double-quoted identifier, exactly as written.
    Quoted(String),
    Punct(char),
}

impl Token {
    pub(super) fn keyword(&self) -> String {
        match self {
            Token::Word(w) => w.to_ascii_uppercase(),
            _ => String::new(),
        }
    }

    pub(super) fn name(&self) -> Option<String> {
        match self {
            Token::Word(w) => Some(w.to_ascii_lowercase()),
            Token::Quoted(q) => Some(q.clone()),
            Token::Punct(_) => None,
        }
    }
}

pub(super) fn tokenize(sql: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_whitespace() {
            continue;
        }
        if c == '"' {
            let mut name = String::new();
            while let Some(d) = chars.next() {
                if d == '"' {
                    if chars.peek() == Some(&'"') {
                        chars.next();
                        name.push('"');
                        continue;
                    }
                    break;
                }
                name.push(d);
            }
            tokens.push(Token::Quoted(name));
        } else if c.is_alphanumeric() || c == '_' {
            let mut word = c.to_string();
            while let Some(&d) = chars.peek() {
                if d.is_alphanumeric() || d == '_' || d == '$' {
                    word.push(d);
                    chars.next();
                } else {
                    break;
                }
            }
            tokens.push(Token::Word(word));
        } else {
            tokens.push(Token::Punct(c));
        }
    }
    tokens
}
