//! Where PostgreSQL's lexical elements end: comments, quoted strings and identifiers, dollar
//! quotes. The byte-level rules the lexer, the classifier's scanner and the audit log's
//! redactor share, so all three agree on what is code and what is not.

/// An identifier or keyword may start with this byte (bytes >= 0x80: any non-ASCII letter).
pub fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

pub fn is_ident_char(b: u8) -> bool {
    is_ident_start(b) || b.is_ascii_digit() || b == b'$'
}

/// Past a `--` comment that starts at `pos`: after its end of line, or at the text's end.
pub fn line_comment(sql: &[u8], pos: usize) -> usize {
    match sql.get(pos..).and_then(|rest| rest.iter().position(|&b| b == b'\n' || b == b'\r')) {
        Some(i) => pos + i + 1,
        None => sql.len(),
    }
}

/// Past a block comment that opens at `pos` (`/*`); they nest in PostgreSQL. Unterminated:
/// the text's end.
pub fn block_comment(sql: &[u8], mut pos: usize) -> usize {
    let mut depth = 0usize;
    while let Some(&b) = sql.get(pos) {
        let next = sql.get(pos + 1).copied();
        if b == b'/' && next == Some(b'*') {
            depth += 1;
            pos += 2;
        } else if b == b'*' && next == Some(b'/') {
            depth = depth.saturating_sub(1);
            pos += 2;
            if depth == 0 {
                return pos;
            }
        } else {
            pos += 1;
        }
    }
    sql.len()
}

/// Past a quoted string or identifier whose opening `quote` is at `pos`: a doubled quote is
/// an escaped one, and with `backslash_escapes` (E'' strings) a backslash escapes the next
/// byte. Unterminated: the text's end.
pub fn quoted(sql: &[u8], mut pos: usize, quote: u8, backslash_escapes: bool) -> usize {
    pos += 1;
    while let Some(&b) = sql.get(pos) {
        pos += 1;
        if backslash_escapes && b == b'\\' {
            pos += 1;
        } else if b == quote {
            if sql.get(pos) != Some(&quote) {
                return pos.min(sql.len());
            }
            pos += 1;
        }
    }
    sql.len()
}

/// Past a dollar-quoted string (`$tag$ ... $tag$`) that opens at `pos`; `None` when the `$`
/// there opens none (`$1`, a lone `$`). Unterminated: the text's end.
pub fn dollar_quote(sql: &[u8], pos: usize) -> Option<usize> {
    let mut end = pos + 1;
    while sql.get(end).is_some_and(|&b| is_ident_char(b) && b != b'$') {
        end += 1;
    }
    let opens = sql.get(end) == Some(&b'$') && sql.get(pos + 1).is_none_or(|b| !b.is_ascii_digit());
    if !opens {
        return None;
    }
    let tag = &sql[pos..=end];
    let body = end + 1;
    Some(match sql.get(body..).and_then(|rest| rest.windows(tag.len()).position(|w| w == tag)) {
        Some(i) => body + i + tag.len(),
        None => sql.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_of_lexical_elements() {
        assert_eq!(line_comment(b"-- x\nSELECT", 0), 5);
        assert_eq!(line_comment(b"-- x\rSELECT", 0), 5);
        assert_eq!(line_comment(b"-- x", 0), 4);
        assert_eq!(block_comment(b"/* a /* b */ c */d", 0), 17);
        assert_eq!(block_comment(b"/* open", 0), 7);
        assert_eq!(quoted(b"'it''s' x", 0, b'\'', false), 7);
        assert_eq!(quoted(b"E'a\\'b' x", 1, b'\'', true), 7);
        assert_eq!(quoted(b"'a\\' x", 0, b'\'', false), 4);
        assert_eq!(quoted(b"'open", 0, b'\'', false), 5);
        assert_eq!(dollar_quote(b"$$a;b$$ c", 0), Some(7));
        assert_eq!(dollar_quote(b"$t$ $$ $t$x", 0), Some(10));
        assert_eq!(dollar_quote(b"$1", 0), None);
        assert_eq!(dollar_quote(b"$ x", 0), None);
        assert_eq!(dollar_quote(b"$$open", 0), Some(6));
    }
}
