//! A minimal SQL lexer: splits a query string into statements at top-level semicolons and
//! yields each statement's words (identifiers and keywords outside quotes and comments).
//! It never builds a syntax tree: it must stay cheap enough to run on every query.

/// One statement of a query string: its words (keywords and identifiers, lower-cased, a
/// qualified name `a.b` as one word) and its string literals, in order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Words {
    words: Vec<String>,
    strings: Vec<String>,
}

impl Words {
    pub fn first(&self) -> Option<&str> {
        self.words.first().map(String::as_str)
    }

    pub fn nth(&self, n: usize) -> Option<&str> {
        self.words.get(n).map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.words.iter().map(String::as_str)
    }

    pub fn contains(&self, word: &str) -> bool {
        self.iter().any(|w| w == word)
    }

    /// True when `first` is directly followed by `second` somewhere in the statement.
    pub fn contains_pair(&self, first: &str, second: &str) -> bool {
        self.words.windows(2).any(|w| w[0] == first && w[1] == second)
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The contents of the statement's string literals.
    pub fn strings(&self) -> impl Iterator<Item = &str> {
        self.strings.iter().map(String::as_str)
    }
}

/// Splits `sql` into statements and returns the words of each non-empty one.
pub fn statements(sql: &[u8]) -> Vec<Words> {
    let mut lexer = Lexer { sql, pos: 0 };
    let mut out = Vec::new();
    let mut current = Words::default();
    while let Some(token) = lexer.next_token() {
        match token {
            Token::Word(w) => current.words.push(w),
            Token::Str(text) => current.strings.push(text),
            Token::Semicolon => {
                if !current.is_empty() {
                    out.push(std::mem::take(&mut current));
                }
            }
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

enum Token {
    Word(String),
    Str(String),
    Semicolon,
}

struct Lexer<'a> {
    sql: &'a [u8],
    pos: usize,
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_ident_char(b: u8) -> bool {
    is_ident_start(b) || b.is_ascii_digit() || b == b'$'
}

impl Lexer<'_> {
    fn peek(&self, ahead: usize) -> Option<u8> {
        self.sql.get(self.pos + ahead).copied()
    }

    fn next_token(&mut self) -> Option<Token> {
        while let Some(b) = self.peek(0) {
            match b {
                b';' => {
                    self.pos += 1;
                    return Some(Token::Semicolon);
                }
                b'-' if self.peek(1) == Some(b'-') => self.skip_line_comment(),
                b'/' if self.peek(1) == Some(b'*') => self.skip_block_comment(),
                b'\'' => return Some(Token::Str(self.string(false))),
                b'"' => self.skip_quoted(b'"', false),
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

    /// An identifier or keyword; `a.b.c` is read as one qualified name.
    fn word(&mut self) -> String {
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
        String::from_utf8_lossy(&self.sql[start..self.pos]).to_ascii_lowercase()
    }

    /// A single-quoted string literal's content (doubled quotes undone; in E'' strings a
    /// backslash keeps the next byte).
    fn string(&mut self, backslash_escapes: bool) -> String {
        let start = self.pos + 1;
        self.skip_quoted(b'\'', backslash_escapes);
        let end = self.pos.saturating_sub(1).max(start);
        String::from_utf8_lossy(&self.sql[start..end.min(self.sql.len())]).replace("''", "'")
    }

    fn skip_line_comment(&mut self) {
        while let Some(b) = self.peek(0) {
            self.pos += 1;
            if b == b'\n' {
                break;
            }
        }
    }

    /// Block comments nest in PostgreSQL.
    fn skip_block_comment(&mut self) {
        let mut depth = 0usize;
        while let Some(b) = self.peek(0) {
            if b == b'/' && self.peek(1) == Some(b'*') {
                depth += 1;
                self.pos += 2;
            } else if b == b'*' && self.peek(1) == Some(b'/') {
                depth -= 1;
                self.pos += 2;
                if depth == 0 {
                    return;
                }
            } else {
                self.pos += 1;
            }
        }
    }

    /// A quoted string or identifier; a doubled quote is an escaped one, and in E'' strings
    /// a backslash escapes the next byte.
    fn skip_quoted(&mut self, quote: u8, backslash_escapes: bool) {
        self.pos += 1;
        while let Some(b) = self.peek(0) {
            self.pos += 1;
            if backslash_escapes && b == b'\\' {
                self.pos += 1;
            } else if b == quote {
                if self.peek(0) == Some(quote) {
                    self.pos += 1;
                } else {
                    return;
                }
            }
        }
    }

    /// `$tag$ ... $tag$`; a `$` not opening a dollar quote (`$1`) is skipped alone.
    fn skip_dollar(&mut self) {
        let start = self.pos;
        let mut end = start + 1;
        while self.sql.get(end).is_some_and(|&b| is_ident_char(b) && b != b'$') {
            end += 1;
        }
        let opens = self.sql.get(end) == Some(&b'$') && self.sql.get(start + 1).is_none_or(|&b| !b.is_ascii_digit());
        if !opens {
            self.pos += 1;
            return;
        }
        let tag = &self.sql[start..=end];
        let body = end + 1;
        self.pos = match self.sql[body..].windows(tag.len()).position(|w| w == tag) {
            Some(i) => body + i + tag.len(),
            None => self.sql.len(),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn firsts(sql: &str) -> Vec<String> {
        statements(sql.as_bytes()).iter().map(|w| w.first().unwrap().to_owned()).collect()
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
    fn words_skip_strings_and_parameters() {
        let s = statements(b"SELECT pg_advisory_lock($1), 'temp' FROM t WHERE a = $2");
        assert!(s[0].contains("pg_advisory_lock"));
        assert!(!s[0].contains("temp"));
        let s = statements(b"CREATE TEMP TABLE x (a int)");
        assert!(s[0].contains_pair("create", "temp"));
        let s = statements(b"SET myapp.Tenant = 'it''s'; SELECT pg_catalog.set_config('a.b', 'c', false)");
        assert_eq!(s[0].nth(1), Some("myapp.tenant"));
        assert_eq!(s[0].strings().collect::<Vec<_>>(), ["it's"]);
        assert!(s[1].contains("pg_catalog.set_config"));
        assert_eq!(s[1].strings().collect::<Vec<_>>(), ["a.b", "c"]);
    }

    #[test]
    fn unterminated_input_does_not_panic() {
        for sql in ["SELECT 'abc", "SELECT $x$ abc", "/* never closed", "SELECT E'\\", "$", "\"x"] {
            statements(sql.as_bytes());
        }
    }
}
