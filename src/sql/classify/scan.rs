//! The classifier's tokenizer: words, quoted identifiers, literals and punctuation with their
//! byte spans, comments skipped, by PostgreSQL's lexical rules (standard_conforming_strings on).
//!
//! `crate::sql::lexer` keeps no positions and drops punctuation, which splitting a query
//! string, rewriting the syntax sqlparser lacks and reading statements by keyword all need.

use std::ops::Range;

use crate::sql::skip::{self, is_ident_char, is_ident_start};

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tok {
    /// A keyword or unquoted identifier.
    Word,
    /// `"identifier"` or `U&"identifier"`.
    Quoted,
    /// A string literal of any kind: `'..'`, `E'..'`, `$tag$..$tag$`, `B'..'`, ...
    Str,
    Number,
    /// `$1`.
    Param,
    /// Any other single byte (operators come as one token per byte).
    Punct(u8),
    Semicolon,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Token {
    pub kind: Tok,
    pub start: usize,
    pub end: usize,
}

impl Token {
    pub fn text<'a>(&self, sql: &'a str) -> &'a str {
        sql.get(self.start..self.end).unwrap_or("")
    }

    pub fn is_word(&self, sql: &str, keyword: &str) -> bool {
        self.kind == Tok::Word && self.text(sql).eq_ignore_ascii_case(keyword)
    }

    pub fn is_punct(&self, byte: u8) -> bool {
        self.kind == Tok::Punct(byte)
    }
}

/// The tokens of `sql`, in order.
pub(super) fn scan(sql: &str) -> Vec<Token> {
    tokens(sql).collect()
}

/// The tokens of `sql` as they are read, for passes that keep none of them.
pub(super) fn tokens(sql: &str) -> Tokens<'_> {
    Tokens { sql: sql.as_bytes(), pos: 0, pending: None }
}

pub(super) struct Tokens<'a> {
    sql: &'a [u8],
    pos: usize,
    pending: Option<Token>,
}

impl Iterator for Tokens<'_> {
    type Item = Token;

    fn next(&mut self) -> Option<Token> {
        while self.pending.is_none() {
            self.step()?;
        }
        self.pending.take()
    }
}

impl Tokens<'_> {
    fn peek(&self, ahead: usize) -> Option<u8> {
        self.sql.get(self.pos + ahead).copied()
    }

    fn push(&mut self, kind: Tok, start: usize) {
        self.pending = Some(Token { kind, start, end: self.pos.min(self.sql.len()) });
    }

    /// Reads past one token, comment or whitespace byte; `None` at the end.
    fn step(&mut self) -> Option<()> {
        let b = self.peek(0)?;
        {
            let start = self.pos;
            match b {
                b'-' if self.peek(1) == Some(b'-') => self.pos = skip::line_comment(self.sql, self.pos),
                b'/' if self.peek(1) == Some(b'*') => self.pos = skip::block_comment(self.sql, self.pos),
                b if b.is_ascii_whitespace() => self.pos += 1,
                b';' => {
                    self.pos += 1;
                    self.push(Tok::Semicolon, start);
                }
                b'\'' => {
                    self.pos = skip::quoted(self.sql, self.pos, b'\'', false);
                    self.push(Tok::Str, start);
                }
                b'"' => {
                    self.pos = skip::quoted(self.sql, self.pos, b'"', false);
                    self.push(Tok::Quoted, start);
                }
                b'$' => self.dollar(),
                b'.' if self.peek(1).is_some_and(|b| b.is_ascii_digit()) => self.number(),
                b if b.is_ascii_digit() => self.number(),
                b if is_ident_start(b) => self.word_or_prefixed_literal(),
                _ => {
                    self.pos += 1;
                    self.push(Tok::Punct(b), start);
                }
            }
        }
        Some(())
    }

    /// A word, or a literal written with a letter prefix: `E'..'`, `B'..'`, `X'..'`, `N'..'`,
    /// `U&'..'`, `U&".."`.
    fn word_or_prefixed_literal(&mut self) {
        let start = self.pos;
        let first = self.peek(0).map(|b| b.to_ascii_lowercase());
        match (first, self.peek(1), self.peek(2)) {
            (Some(b'e'), Some(b'\''), _) => {
                self.pos += 1;
                self.pos = skip::quoted(self.sql, self.pos, b'\'', true);
                return self.push(Tok::Str, start);
            }
            (Some(b'b' | b'x' | b'n'), Some(b'\''), _) => {
                self.pos += 1;
                self.pos = skip::quoted(self.sql, self.pos, b'\'', false);
                return self.push(Tok::Str, start);
            }
            (Some(b'u'), Some(b'&'), Some(quote @ (b'\'' | b'"'))) => {
                self.pos += 2;
                self.pos = skip::quoted(self.sql, self.pos, quote, false);
                let kind = if quote == b'"' { Tok::Quoted } else { Tok::Str };
                return self.push(kind, start);
            }
            _ => {}
        }
        while self.peek(0).is_some_and(is_ident_char) {
            self.pos += 1;
        }
        self.push(Tok::Word, start);
    }

    /// Digits, then whatever letters, digits, dots and underscores follow (`1.5e10`, `0x1F`,
    /// `1_000`): the parser judges the number, this only has to find its end.
    fn number(&mut self) {
        let start = self.pos;
        while self.peek(0).is_some_and(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_') {
            self.pos += 1;
        }
        self.push(Tok::Number, start);
    }

    /// `$1`, a dollar-quoted string, or a lone `$`.
    fn dollar(&mut self) {
        let start = self.pos;
        if self.peek(1).is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
            while self.peek(0).is_some_and(|b| b.is_ascii_digit()) {
                self.pos += 1;
            }
            return self.push(Tok::Param, start);
        }
        match skip::dollar_quote(self.sql, start) {
            Some(end) => {
                self.pos = end;
                self.push(Tok::Str, start);
            }
            None => {
                self.pos += 1;
                self.push(Tok::Punct(b'$'), start);
            }
        }
    }
}

/// The byte ranges of the statements of a query string, each from its first token to its
/// last (read as a stream: a huge query string costs no token list). PostgreSQL ends a statement at a semicolon outside parentheses (inside them only
/// CREATE RULE's action list has any) and outside a routine's `BEGIN ATOMIC ... END` body.
/// Statements with no tokens (`;;`, a lone comment) are skipped, as PostgreSQL skips them.
pub(super) fn split(sql: &str) -> Vec<Range<usize>> {
    let mut statements = Vec::new();
    let mut current: Option<Range<usize>> = None;
    // A statement's first tokens (to recognize a routine definition), and the last one.
    let mut leading: Vec<Token> = Vec::with_capacity(4);
    let mut previous: Option<Token> = None;
    let mut parens = 0usize;
    let mut atomic_depth = 0usize;
    for token in tokens(sql) {
        match token.kind {
            Tok::Semicolon if parens == 0 && atomic_depth == 0 => {
                statements.extend(current.take());
                leading.clear();
                previous = None;
                continue;
            }
            Tok::Punct(b'(') => parens += 1,
            Tok::Punct(b')') => parens = parens.saturating_sub(1),
            Tok::Word if atomic_depth > 0 => {
                if token.is_word(sql, "begin") || token.is_word(sql, "case") {
                    atomic_depth += 1;
                } else if token.is_word(sql, "end") {
                    atomic_depth -= 1;
                }
            }
            Tok::Word if token.is_word(sql, "atomic") => {
                let after_begin = previous.is_some_and(|p| p.is_word(sql, "begin"));
                if after_begin && defines_routine(sql, &leading) {
                    atomic_depth = 1;
                }
            }
            _ => {}
        }
        current.get_or_insert(token.start..token.end).end = token.end;
        if leading.len() < 4 {
            leading.push(token);
        }
        previous = Some(token);
    }
    statements.extend(current);
    statements
}

/// `CREATE [OR REPLACE] FUNCTION | PROCEDURE`.
fn defines_routine(sql: &str, leading: &[Token]) -> bool {
    match leading {
        [create, or, replace, routine, ..] if or.is_word(sql, "or") && replace.is_word(sql, "replace") => {
            create.is_word(sql, "create") && (routine.is_word(sql, "function") || routine.is_word(sql, "procedure"))
        }
        [create, routine, ..] => {
            create.is_word(sql, "create") && (routine.is_word(sql, "function") || routine.is_word(sql, "procedure"))
        }
        _ => false,
    }
}

/// For every token, the index of the parenthesis closing it if it opens one: one pass for
/// callers that look for many.
pub(super) fn closing_parens(tokens: &[Token]) -> Vec<Option<usize>> {
    let mut closing = vec![None; tokens.len()];
    let mut open = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        match token.kind {
            Tok::Punct(b'(') => open.push(i),
            Tok::Punct(b')') => {
                if let Some(opener) = open.pop() {
                    closing[opener] = Some(i);
                }
            }
            _ => {}
        }
    }
    closing
}

/// Index of the token closing the parenthesis opened at `open`, if it is closed.
pub(super) fn matching_paren(tokens: &[Token], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, token) in tokens.iter().enumerate().skip(open) {
        match token.kind {
            Tok::Punct(b'(') => depth += 1,
            Tok::Punct(b')') => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}
