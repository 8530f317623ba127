//! Names as PostgreSQL resolves them: unquoted identifiers lower-cased, quoted ones kept,
//! both cut to 63 bytes; from sqlparser's tree and from tokens.

use std::sync::LazyLock;

use sqlparser::ast::{Expr, Ident, ObjectName as SqlName};

use super::scan::{Tok, Token};
use crate::sql::statement::ObjectName;

/// PostgreSQL truncates identifiers to NAMEDATALEN - 1 bytes; a longer name in a query
/// means its first 63 bytes, and a rule on the full name must not miss it.
const MAX_IDENTIFIER_BYTES: usize = 63;

fn truncated(mut name: String) -> String {
    if name.len() > MAX_IDENTIFIER_BYTES {
        let mut end = MAX_IDENTIFIER_BYTES;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
    }
    name
}

/// PostgreSQL folds only ASCII letters (in UTF-8 databases).
pub(super) fn fold(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => truncated(ident.value.clone()),
        None => truncated(ident.value.to_ascii_lowercase()),
    }
}

/// PostgreSQL's reserved keywords, sorted (reserved, and reserved but allowed as function or type
/// names): none of them can name a relation unquoted.
const RESERVED: &str = "all analyse analyze and any array as asc asymmetric authorization binary both case cast check \
     collate collation column concurrently constraint create cross current_catalog current_date \
     current_role current_schema current_time current_timestamp current_user default deferrable desc \
     distinct do else end except false fetch for foreign freeze from full grant group having ilike in \
     initially inner intersect into is isnull join lateral leading left like limit localtime \
     localtimestamp natural not notnull null offset on only or order outer overlaps placing primary \
     references returning right select session_user similar some symmetric system_user table tablesample \
     then to trailing true union unique user using variadic verbose when where window with";

/// A relation name sqlparser built from a word PostgreSQL reads as a keyword (`FROM ONLY t`
/// would otherwise be the table `only`): the tree is not what PostgreSQL would run.
pub(super) fn is_keyword_as_relation(name: &SqlName) -> bool {
    static SORTED: LazyLock<Vec<&str>> = LazyLock::new(|| RESERVED.split_whitespace().collect());
    let is_reserved = |word: &str| {
        SORTED.binary_search_by(|probe| probe.bytes().cmp(word.bytes().map(|b| b.to_ascii_lowercase()))).is_ok()
    };
    name.0
        .iter()
        .filter_map(|part| part.as_ident())
        .any(|ident| ident.quote_style.is_none() && is_reserved(&ident.value))
}

/// `[catalog.]schema.name` or `name`; `None` for name parts that are not identifiers.
pub(super) fn object_name(name: &SqlName) -> Option<ObjectName> {
    let parts = name.0.iter().map(|part| part.as_ident()).collect::<Option<Vec<_>>>()?;
    match parts.as_slice() {
        [] => None,
        [name] => Some(ObjectName { schema: None, name: fold(name) }),
        [.., schema, name] => Some(ObjectName { schema: Some(fold(schema)), name: fold(name) }),
    }
}

/// A name written as an expression (`SELECT .. INTO schema.t`).
pub(super) fn expr_name(expr: &Expr) -> Option<ObjectName> {
    match expr {
        Expr::Identifier(name) => Some(ObjectName { schema: None, name: fold(name) }),
        Expr::CompoundIdentifier(parts) => match parts.as_slice() {
            [.., schema, name] => Some(ObjectName { schema: Some(fold(schema)), name: fold(name) }),
            _ => None,
        },
        _ => None,
    }
}

/// An identifier token: a word folded, a quoted identifier unquoted.
pub(super) fn token_ident(sql: &str, token: &Token) -> Option<String> {
    let text = token.text(sql);
    match token.kind {
        Tok::Word => Some(truncated(text.to_ascii_lowercase())),
        Tok::Quoted if text.starts_with('"') => {
            let inner = text.strip_prefix('"')?.strip_suffix('"')?;
            Some(truncated(inner.replace("\"\"", "\"")))
        }
        _ => None,
    }
}

/// A possibly qualified name at the start of `tokens`, and how many tokens it took.
pub(super) fn token_name(sql: &str, tokens: &[Token]) -> Option<(ObjectName, usize)> {
    let mut parts = vec![token_ident(sql, tokens.first()?)?];
    let mut used = 1;
    while tokens.get(used).is_some_and(|t| t.is_punct(b'.')) {
        parts.push(token_ident(sql, tokens.get(used + 1)?)?);
        used += 2;
    }
    let name = parts.pop()?;
    Some((ObjectName { schema: parts.pop(), name }, used))
}

/// The text of a string literal token (`'..'`, `E'..'` without escapes, `$$..$$`).
pub(super) fn token_string(sql: &str, token: &Token) -> Option<String> {
    if token.kind != Tok::Str {
        return None;
    }
    let text = token.text(sql);
    if let Some(inner) = text.strip_prefix('\'') {
        return Some(inner.strip_suffix('\'')?.replace("''", "'"));
    }
    if let Some(after_dollar) = text.strip_prefix('$') {
        let tag_end = after_dollar.find('$')? + 2;
        let body = text.get(tag_end..text.len().checked_sub(tag_end)?)?;
        return Some(body.to_owned());
    }
    None
}
