//! The text handed to sqlparser: comments blanked (so no difference in how two lexers end a
//! comment can hide a word from one of them), and PostgreSQL syntax that sqlparser 0.63
//! rejects rewritten token by token (never inside strings or dollar quotes) into text it
//! parses with the same relations and functions:
//! - a column definition list after a set-returning function, `cypher(..) AS (n agtype)`
//!   (Apache AGE, `dblink`, `json_to_recordset`), is blanked: it only names output columns;
//! - `VARIADIC` before a function argument is blanked: the call is the same call;
//! - `ONLY` before a table name (`FROM ONLY t`, `UPDATE ONLY t`) is blanked: it leaves out
//!   inheritance children, and sqlparser would read it as the table name;
//! - `TABLE name` where a query starts becomes `SELECT * FROM name`, which it means;
//! - `CREATE USER` / `CREATE GROUP` become `CREATE ROLE` (sqlparser reads CREATE USER in
//!   another dialect's syntax and rejects `WITH PASSWORD`); the command tag is CREATE ROLE
//!   either way;
//! - `INCLUDING x` / `EXCLUDING x` in a CREATE statement (the options of `LIKE source`) are
//!   blanked: they say what of the source's definition is copied, not what is read.

use std::borrow::Cow;

use super::scan::{Tok, Token, closing_parens};

/// A replacement of the bytes `start..end`; `None` blanks them with spaces.
struct Edit {
    start: usize,
    end: usize,
    with: Option<&'static str>,
}

/// `sql` with the rewrites applied (borrowed when there are none).
pub(super) fn rewrite<'a>(sql: &'a str, tokens: &[Token]) -> Cow<'a, str> {
    let edits = edits(sql, tokens);
    if edits.is_empty() {
        return Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len() + 8 * edits.len());
    let mut at = 0;
    for edit in edits {
        if edit.start < at {
            continue; // inside an edit already made (a comment inside a blanked column list)
        }
        out.push_str(sql.get(at..edit.start).unwrap_or(""));
        match edit.with {
            Some(text) => out.push_str(text),
            None => out.extend(std::iter::repeat_n(' ', edit.end - edit.start)),
        }
        at = edit.end;
    }
    out.push_str(sql.get(at..).unwrap_or(""));
    Cow::Owned(out)
}

/// Edits in order of their start.
fn edits(sql: &str, tokens: &[Token]) -> Vec<Edit> {
    let mut edits = comments(sql, tokens);
    if let [create, user, next, ..] = tokens
        && create.is_word(sql, "create")
        && (user.is_word(sql, "user") || user.is_word(sql, "group"))
        && !next.is_word(sql, "mapping")
    {
        edits.push(Edit { start: user.start, end: user.end, with: Some("ROLE") });
    }
    let closing = closing_parens(tokens);
    let creates = tokens.first().is_some_and(|t| t.is_word(sql, "create"));
    let mut i = 0;
    while let Some(token) = tokens.get(i) {
        if creates
            && (token.is_word(sql, "including") || token.is_word(sql, "excluding"))
            && let Some(option) = tokens.get(i + 1).filter(|t| t.kind == Tok::Word)
        {
            edits.push(Edit { start: token.start, end: option.end, with: None });
            i += 1;
        } else if token.is_word(sql, "variadic") || token.is_word(sql, "only") && !ends_fetch_clause(sql, tokens, i) {
            edits.push(Edit { start: token.start, end: token.end, with: None });
        } else if token.is_word(sql, "table") && starts_query(sql, tokens, i) {
            edits.push(Edit { start: token.start, end: token.end, with: Some("SELECT * FROM") });
        } else if let Some(close) = column_definition_list(sql, tokens, &closing, i) {
            let (Some(as_), Some(end)) = (tokens.get(i + 1), tokens.get(close)) else { break };
            edits.push(Edit { start: as_.start, end: end.end, with: None });
            i = close;
        }
        i += 1;
    }
    edits.sort_by_key(|edit| edit.start);
    edits
}

/// The scanner skips only whitespace and comments: any other byte between two tokens is a
/// comment's.
fn comments(sql: &str, tokens: &[Token]) -> Vec<Edit> {
    let ends = std::iter::once(0).chain(tokens.iter().map(|t| t.end));
    let starts = tokens.iter().map(|t| t.start).chain(std::iter::once(sql.len()));
    ends.zip(starts)
        .filter(|&(end, start)| sql.get(end..start).is_some_and(|gap| gap.bytes().any(|b| !b.is_ascii_whitespace())))
        .map(|(end, start)| Edit { start: end, end: start, with: None })
        .collect()
}

/// `FETCH FIRST n ROWS ONLY`: that ONLY stays.
fn ends_fetch_clause(sql: &str, tokens: &[Token], i: usize) -> bool {
    i.checked_sub(1).and_then(|b| tokens.get(b)).is_some_and(|t| t.is_word(sql, "rows") || t.is_word(sql, "row"))
}

/// Whether the word TABLE at `i` opens a query (`TABLE` is reserved, so elsewhere it is
/// part of DDL: CREATE TABLE, LOCK TABLE, ON TABLE, RETURNS TABLE ...).
fn starts_query(sql: &str, tokens: &[Token], i: usize) -> bool {
    let Some(before) = i.checked_sub(1).and_then(|b| tokens.get(b)) else { return true };
    match before.kind {
        Tok::Punct(b'(' | b')') => true,
        Tok::Word => matches!(
            before.text(sql).to_ascii_lowercase().as_str(),
            "union"
                | "intersect"
                | "except"
                | "all"
                | "distinct"
                | "as"
                | "explain"
                | "analyze"
                | "analyse"
                | "verbose"
        ),
        _ => false,
    }
}

/// At `i`, `) AS ( name type [, ...] )`: the index of the list's closing parenthesis.
fn column_definition_list(sql: &str, tokens: &[Token], closing: &[Option<usize>], i: usize) -> Option<usize> {
    let opens =
        tokens.get(i)?.is_punct(b')') && tokens.get(i + 1)?.is_word(sql, "as") && tokens.get(i + 2)?.is_punct(b'(');
    if !opens {
        return None;
    }
    let close = (*closing.get(i + 2)?)?;
    let inside = tokens.get(i + 3..close)?;
    inside.split(|t| t.is_punct(b',')).all(|column| is_column_definition(sql, column)).then_some(close)
}

/// `name type`, the type being words, dots, array brackets and numeric modifiers
/// (`numeric(10, 2)`: the commas inside split it, so a modifier part may be bare numbers).
/// Nothing that could hold a query or a call passes.
fn is_column_definition(sql: &str, column: &[Token]) -> bool {
    let is_name = |t: &Token| t.kind == Tok::Quoted || (t.kind == Tok::Word && !is_query_word(sql, t));
    let type_token =
        |t: &Token| is_name(t) || matches!(t.kind, Tok::Number | Tok::Punct(b'.' | b'[' | b']' | b'(' | b')'));
    let mut depth = 0i32;
    let balanced_numbers_only = column.iter().all(|t| {
        match t.kind {
            Tok::Punct(b'(') => depth += 1,
            Tok::Punct(b')') => depth -= 1,
            Tok::Number => {}
            _ if depth != 0 => return false,
            _ => {}
        }
        depth >= 0
    });
    match column {
        [name, type_ @ ..] if is_name(name) && !type_.is_empty() => {
            balanced_numbers_only && type_.iter().all(type_token)
        }
        // The tail of a split `numeric(10, 2)`: `2)`.
        [number, rest @ ..] if number.kind == Tok::Number => rest.iter().all(|t| t.is_punct(b')') || type_token(t)),
        _ => false,
    }
}

fn is_query_word(sql: &str, token: &Token) -> bool {
    matches!(
        token.text(sql).to_ascii_lowercase().as_str(),
        "select" | "values" | "table" | "insert" | "update" | "delete" | "merge" | "from" | "where"
    )
}
