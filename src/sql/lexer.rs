//! A minimal SQL lexer: the words (keywords and identifiers, a qualified name `a.b` as one
//! word), string literals and top-level semicolons of a query string, outside comments,
//! quoted identifiers and dollar quotes. It never builds a syntax tree and never allocates:
//! it runs on every query.

use super::skip::{self, is_ident_char, is_ident_start};

/// One token, borrowed from the query text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token<'a> {
    /// A keyword or identifier in its original case (compare with `eq_ignore_ascii_case`).
    Word(&'a str),
    /// The raw content of a single-quoted string (doubled quotes not undone).
    Str(&'a [u8]),
    Semicolon,
}

/// The tokens of `sql`, in order.
pub fn tokens(sql: &[u8]) -> Tokens<'_> {
    Tokens { sql, pos: 0 }
}

pub struct Tokens<'a> {
    sql: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for Tokens<'a> {
    type Item = Token<'a>;

    fn next(&mut self) -> Option<Token<'a>> {
        while let Some(b) = self.peek(0) {
            match b {
                b';' => {
                    self.pos += 1;
                    return Some(Token::Semicolon);
                }
                b'-' if self.peek(1) == Some(b'-') => self.pos = skip::line_comment(self.sql, self.pos),
                b'/' if self.peek(1) == Some(b'*') => self.pos = skip::block_comment(self.sql, self.pos),
                b'\'' => return Some(Token::Str(self.string(false))),
                b'"' => {
                    self.pos = skip::quoted(self.sql, self.pos, b'"', false);
                }
                b'e' | b'E' if self.peek(1) == Some(b'\'') => {
                    self.pos += 1;
                    return Some(Token::Str(self.string(true)));
                }
                b'$' => self.skip_dollar(),
                b if is_ident_start(b) => return Some(Token::Word(self.word())),
                _ => self.pos += 1,
            }
        }
        None
    }
}

impl<'a> Tokens<'a> {
    /// A dollar quote, or a `$` that opens none (`$1`) alone.
    fn skip_dollar(&mut self) {
        self.pos = skip::dollar_quote(self.sql, self.pos).unwrap_or(self.pos + 1);
    }

    fn peek(&self, ahead: usize) -> Option<u8> {
        self.sql.get(self.pos + ahead).copied()
    }

    /// An identifier or keyword; `a.b.c` is read as one qualified name.
    fn word(&mut self) -> &'a str {
        let start = self.pos;
        loop {
            while self.peek(0).is_some_and(is_ident_char) {
                self.pos += 1;
            }
            if self.peek(0) == Some(b'.') && self.peek(1).is_some_and(is_ident_start) {
                self.pos += 1;
            } else {
                break;
            }
        }
        // Only ASCII letters, digits, `_`, `$`, `.` and bytes >= 0x80 were taken; a
        // multi-byte character is whole unless the text is not UTF-8 at all.
        std::str::from_utf8(&self.sql[start..self.pos]).unwrap_or("")
    }

    fn string(&mut self, backslash_escapes: bool) -> &'a [u8] {
        let start = self.pos + 1;
        self.pos = skip::quoted(self.sql, self.pos, b'\'', backslash_escapes);
        let end = self.pos.saturating_sub(1).max(start).min(self.sql.len());
        &self.sql[start..end]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first word of each statement, lower-cased.
    fn firsts(sql: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut at_start = true;
        for t in tokens(sql.as_bytes()) {
            match t {
                Token::Semicolon => at_start = true,
                Token::Word(w) if at_start => {
                    out.push(w.to_ascii_lowercase());
                    at_start = false;
                }
                _ => at_start = false,
            }
        }
        out
    }

    #[test]
    fn splits_at_top_level_semicolons_only() {
        assert_eq!(firsts("BEGIN; SET x = 1 ;COMMIT"), ["begin", "set", "commit"]);
        assert_eq!(firsts("SELECT ';' ; select \"a;b\" ; SELECT E'\\';' ; Select 1"), ["select"; 4]);
        assert_eq!(firsts("DO $$ BEGIN PERFORM 1; END $$; LISTEN x"), ["do", "listen"]);
        assert_eq!(firsts("SELECT $tag$ ; $$ ; $tag$ ; RESET ALL"), ["select", "reset"]);
        assert_eq!(firsts("-- SET x\nSELECT 1 /* ; /* nested ; */ still */; ;  ; SHOW y"), ["select", "show"]);
    }

    #[test]
    fn words_strings_and_qualified_names() {
        let t: Vec<_> = tokens(b"SET myapp.Tenant = 'it''s'; SELECT pg_catalog.set_config('a.b', $1)").collect();
        assert_eq!(t[1], Token::Word("myapp.Tenant"));
        assert_eq!(t[2], Token::Str(b"it''s"));
        assert!(t.contains(&Token::Word("pg_catalog.set_config")));
        assert!(t.contains(&Token::Str(b"a.b")));
        assert!(!t.iter().any(|t| matches!(t, Token::Word(w) if w.starts_with('$') || w.is_empty())));
    }

    #[test]
    fn unterminated_input_does_not_panic() {
        for sql in ["SELECT 'abc", "SELECT $x$ abc", "/* never closed", "SELECT E'\\", "$", "\"x", "a.", "é"] {
            tokens(sql.as_bytes()).count();
        }
    }
}
