//! Password redaction: in `CREATE` / `ALTER` `ROLE`, `USER`, `GROUP` and `USER MAPPING`
//! statements, the string literal after `PASSWORD` becomes `<REDACTED>`, however it is
//! quoted. It scans tokens (comments, quoted identifiers, dollar quotes understood), never
//! matches raw text, and keeps every other byte of the statement.
//!
//! Not covered: passwords inside strings that other statements run (`DO` blocks, `EXECUTE
//! 'ALTER ROLE ...'`) and connection strings passed to functions.

use std::borrow::Cow;
use std::ops::Range;

use crate::sql::skip::{self, is_ident_char, is_ident_start};

pub const REDACTED: &str = "<REDACTED>";

/// `sql` with every password literal replaced; borrowed when nothing was replaced.
pub fn redact(sql: &str) -> Cow<'_, str> {
    let bytes = sql.as_bytes();
    if !bytes.windows(PASSWORD.len()).any(|w| w.eq_ignore_ascii_case(PASSWORD)) {
        return Cow::Borrowed(sql);
    }
    let spans = password_literals(bytes);
    if spans.is_empty() {
        return Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len());
    let mut at = 0;
    for span in spans {
        // Spans start and end at ASCII bytes (quotes, `$`, prefix letters), so they are
        // character boundaries.
        out.push_str(&sql[at..span.start]);
        out.push_str(REDACTED);
        at = span.end;
    }
    out.push_str(&sql[at..]);
    Cow::Owned(out)
}

const PASSWORD: &[u8] = b"password";

/// How far the first words of the current statement make it one that takes a password.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Head {
    Start,
    /// `CREATE` or `ALTER` seen.
    Verb,
    /// `CREATE|ALTER ROLE|USER|GROUP` (`USER MAPPING` included).
    Sensitive,
    Other,
}

/// The byte ranges of the literals that follow a `PASSWORD` word in statements that take
/// passwords; adjacent literals (SQL's string continuation) are one range.
fn password_literals(sql: &[u8]) -> Vec<Range<usize>> {
    let mut spans: Vec<Range<usize>> = Vec::new();
    let mut head = Head::Start;
    let mut after_password = false;
    let mut in_literal_run = false;
    for token in (Scanner { sql, pos: 0 }) {
        let mut literal_run = false;
        match token {
            Token::Semicolon => head = Head::Start,
            Token::Word(range) => {
                let word = &sql[range];
                head = next_head(head, word);
                after_password = head == Head::Sensitive && word.eq_ignore_ascii_case(PASSWORD);
                in_literal_run = false;
                continue;
            }
            Token::QuotedIdent(range) => {
                head = if head == Head::Sensitive { head } else { Head::Other };
                after_password = head == Head::Sensitive && sql[range].eq_ignore_ascii_case(PASSWORD);
                in_literal_run = false;
                continue;
            }
            Token::Literal(range) => {
                if in_literal_run && let Some(last) = spans.last_mut() {
                    last.end = range.end;
                    literal_run = true;
                } else if after_password {
                    spans.push(range);
                    literal_run = true;
                }
                if head != Head::Sensitive {
                    head = Head::Other;
                }
            }
            Token::Other if head != Head::Sensitive => head = Head::Other,
            Token::Other => {}
        }
        after_password = false;
        in_literal_run = literal_run;
    }
    spans
}

fn next_head(head: Head, word: &[u8]) -> Head {
    let is = |keyword: &[u8]| word.eq_ignore_ascii_case(keyword);
    match head {
        Head::Start if is(b"create") || is(b"alter") => Head::Verb,
        Head::Verb if is(b"role") || is(b"user") || is(b"group") => Head::Sensitive,
        Head::Sensitive => Head::Sensitive,
        _ => Head::Other,
    }
}

/// A token with its byte range in the text.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(Range<usize>),
    /// The inside of a `"quoted identifier"`.
    QuotedIdent(Range<usize>),
    /// A whole string constant: prefix, quotes and all.
    Literal(Range<usize>),
    Semicolon,
    Other,
}

/// Tokens outside comments. Unlike `sql::lexer` it reports where each token is, and it
/// knows every string form: `'..'`, `E'..'`, `N'..'`, `B'..'`, `X'..'`, `U&'..'`,
/// `$tag$..$tag$`.
struct Scanner<'a> {
    sql: &'a [u8],
    pos: usize,
}

impl Iterator for Scanner<'_> {
    type Item = Token;

    fn next(&mut self) -> Option<Token> {
        loop {
            let start = self.pos;
            let b = self.peek(0)?;
            match b {
                b'-' if self.peek(1) == Some(b'-') => self.pos = skip::line_comment(self.sql, self.pos),
                b'/' if self.peek(1) == Some(b'*') => self.pos = skip::block_comment(self.sql, self.pos),
                b if b.is_ascii_whitespace() => self.pos += 1,
                b';' => {
                    self.pos += 1;
                    return Some(Token::Semicolon);
                }
                b'\'' => {
                    self.pos = skip::quoted(self.sql, self.pos, b'\'', false);
                    return Some(Token::Literal(start..self.pos));
                }
                b'"' => {
                    self.pos = skip::quoted(self.sql, self.pos, b'"', false);
                    let end = self.pos.saturating_sub(1).max(start + 1);
                    return Some(Token::QuotedIdent(start + 1..end));
                }
                b'$' => return Some(self.dollar()),
                b if is_ident_start(b) => return Some(self.word_or_prefixed_literal()),
                _ => {
                    self.pos += 1;
                    return Some(Token::Other);
                }
            }
        }
    }
}

impl Scanner<'_> {
    fn peek(&self, ahead: usize) -> Option<u8> {
        self.sql.get(self.pos + ahead).copied()
    }

    fn word_or_prefixed_literal(&mut self) -> Token {
        let start = self.pos;
        while self.peek(0).is_some_and(is_ident_char) {
            self.pos += 1;
        }
        let word = &self.sql[start..self.pos];
        let prefix = matches!(word, [b'e' | b'E' | b'n' | b'N' | b'b' | b'B' | b'x' | b'X']);
        if prefix && self.peek(0) == Some(b'\'') {
            self.pos = skip::quoted(self.sql, self.pos, b'\'', word.eq_ignore_ascii_case(b"e"));
            return Token::Literal(start..self.pos);
        }
        if word.eq_ignore_ascii_case(b"u") && self.peek(0) == Some(b'&') && self.peek(1) == Some(b'\'') {
            self.pos += 1;
            self.pos = skip::quoted(self.sql, self.pos, b'\'', false);
            return Token::Literal(start..self.pos);
        }
        Token::Word(start..self.pos)
    }

    /// `$tag$ .. $tag$` as one literal; a `$` that opens nothing (`$1`) is a token alone.
    fn dollar(&mut self) -> Token {
        let start = self.pos;
        match skip::dollar_quote(self.sql, start) {
            Some(end) => {
                self.pos = end;
                Token::Literal(start..self.pos)
            }
            None => {
                self.pos += 1;
                Token::Other
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        let cases = [
            ("CREATE ROLE alice PASSWORD 'secret'", "CREATE ROLE alice PASSWORD <REDACTED>"),
            (
                "create user bob with encrypted password 'x''y' login",
                "create user bob with encrypted password <REDACTED> login",
            ),
            ("ALTER ROLE carol PASSWORD E'it\\'s; DROP'", "ALTER ROLE carol PASSWORD <REDACTED>"),
            (
                "ALTER USER d PassWord $$a'b;$$ VALID UNTIL 'infinity'",
                "ALTER USER d PassWord <REDACTED> VALID UNTIL 'infinity'",
            ),
            ("alter role e password $pw$ $$ ' $pw$;", "alter role e password <REDACTED>;"),
            ("ALTER ROLE f PASSWORD U&'d\\0061t'", "ALTER ROLE f PASSWORD <REDACTED>"),
            ("ALTER ROLE g PASSWORD 'ab'\n  'cd' LOGIN", "ALTER ROLE g PASSWORD <REDACTED> LOGIN"),
            ("ALTER USER u encrypted /* c */PASSWORD 'p'", "ALTER USER u encrypted /* c */PASSWORD <REDACTED>"),
            ("CREATE GROUP g PASSWORD 'x'", "CREATE GROUP g PASSWORD <REDACTED>"),
            ("ALTER ROLE password PASSWORD 'x'", "ALTER ROLE password PASSWORD <REDACTED>"),
            ("ALTER ROLE \"password\" PASSWORD 'x'", "ALTER ROLE \"password\" PASSWORD <REDACTED>"),
            ("ALTER ROLE ü PASSWORD 'pässwörd' LOGIN", "ALTER ROLE ü PASSWORD <REDACTED> LOGIN"),
            ("ALTER ROLE u PASSWORD 'never closed", "ALTER ROLE u PASSWORD <REDACTED>"),
            ("-- change it\nALTER ROLE u PASSWORD 'x'", "-- change it\nALTER ROLE u PASSWORD <REDACTED>"),
            (
                "CREATE ROLE a PASSWORD 'p1'; SELECT 'password'; ALTER ROLE b WITH LOGIN PASSWORD 'p2' CONNECTION LIMIT 3",
                "CREATE ROLE a PASSWORD <REDACTED>; SELECT 'password'; ALTER ROLE b WITH LOGIN PASSWORD <REDACTED> CONNECTION LIMIT 3",
            ),
            ("BEGIN; alter user x password 'y'; COMMIT", "BEGIN; alter user x password <REDACTED>; COMMIT"),
            (
                "CREATE USER MAPPING FOR u SERVER s OPTIONS (user 'u', password 'p')",
                "CREATE USER MAPPING FOR u SERVER s OPTIONS (user 'u', password <REDACTED>)",
            ),
            (
                "ALTER USER MAPPING FOR u SERVER s OPTIONS (SET \"password\" 'p', ADD sslkey 'k')",
                "ALTER USER MAPPING FOR u SERVER s OPTIONS (SET \"password\" <REDACTED>, ADD sslkey 'k')",
            ),
        ];
        for (sql, want) in cases {
            assert_eq!(redact(sql), want, "{sql}");
        }
    }

    #[test]
    fn everything_else_is_kept() {
        let unchanged = [
            "ALTER ROLE x PASSWORD NULL",
            "ALTER ROLE u SET password_encryption = 'md5'",
            "SELECT password FROM users WHERE password = 'x'",
            "UPDATE users SET password = 'x'",
            "SELECT 'CREATE ROLE a PASSWORD ''b'''",
            "ALTER ROLE u /* PASSWORD 'x' */ LOGIN",
            "DO $$ BEGIN RAISE NOTICE 'password'; END $$",
            "ALTER TABLE t ADD COLUMN password text DEFAULT 'x'",
            "COMMENT ON ROLE u IS 'password'",
            "SELECT 1; ALTER ROLE u RENAME TO password",
            "",
        ];
        for sql in unchanged {
            assert!(matches!(redact(sql), Cow::Borrowed(s) if s == sql), "{sql}");
        }
    }

    #[test]
    fn odd_input_does_not_panic() {
        for sql in [
            "ALTER ROLE u PASSWORD E'\\",
            "ALTER ROLE u PASSWORD $",
            "ALTER ROLE u PASSWORD $a$",
            "/* password",
            "\"password",
        ] {
            let _ = redact(sql);
        }
        assert_eq!(redact("ALTER ROLE u PASSWORD E'\\"), "ALTER ROLE u PASSWORD <REDACTED>");
        assert_eq!(redact("ALTER ROLE u PASSWORD $a$ x"), "ALTER ROLE u PASSWORD <REDACTED>");
    }
}
