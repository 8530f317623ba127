//! Statements sqlparser cannot parse (or that are too long to parse), classified by their
//! keywords: class, command and kind from the leading words, settings from SET / RESET,
//! COPY's reach outside. No relations or functions are guessed.

use super::MAX_PARSED_LEN;
use super::keywords::{copy_direction, head, word_at};
use super::names::{token_ident, token_name, token_string};
use super::scan::{Tok, Token, scan, tokens};
use crate::sql::statement::{AuditClass, Outside, SettingChange, Statement, Unparsed};

pub(super) fn classify(sql: &str, tokens: &[Token], why: Unparsed) -> Statement {
    let head = head(sql, tokens);
    let mut statement = Statement::new(head.class, head.command);
    statement.kind = head.kind;
    statement.settings = settings(sql, tokens);
    statement.outside = outside(sql, tokens).into_iter().collect();
    statement.unparsed = Some(why);
    statement
}

/// A statement longer than [`MAX_PARSED_LEN`]: classified from its first `MAX_PARSED_LEN`
/// bytes, then corrected by what the whole text holds, read as a stream so that no token
/// list as long as the text is kept (a query string may be a gigabyte).
pub(super) fn classify_long(sql: &str) -> Statement {
    let mut cut = MAX_PARSED_LEN.min(sql.len());
    while !sql.is_char_boundary(cut) {
        cut -= 1;
    }
    let prefix = sql.get(..cut).unwrap_or_default();
    let mut statement = classify(prefix, &scan(prefix), Unparsed::TooLong(sql.len()));
    let whole = Whole::read(sql);
    if whole.modifies && statement.class == AuditClass::Read {
        statement.class = AuditClass::Write;
    }
    if whole.top_level_into && statement.command == "SELECT" {
        statement.class = AuditClass::Ddl;
        statement.command = "SELECT INTO".into();
    }
    if whole.set_config && !statement.settings.iter().any(|s| matches!(s, SettingChange::Unknown)) {
        statement.settings.push(SettingChange::Unknown);
    }
    if whole.program && statement.command == "COPY" {
        statement.outside = vec![Outside::CopyProgram];
    }
    statement
}

/// Words anywhere in a long statement that change its classification.
#[derive(Default)]
struct Whole {
    modifies: bool,
    top_level_into: bool,
    set_config: bool,
    program: bool,
}

impl Whole {
    fn read(sql: &str) -> Self {
        let mut whole = Whole::default();
        let mut depth = 0usize;
        for token in tokens(sql) {
            match token.kind {
                Tok::Punct(b'(') => depth += 1,
                Tok::Punct(b')') => depth = depth.saturating_sub(1),
                Tok::Word => {
                    let is = |word: &str| token.text(sql).eq_ignore_ascii_case(word);
                    whole.modifies |= ["insert", "update", "delete", "merge"].into_iter().any(is);
                    whole.top_level_into |= depth == 0 && is("into");
                    whole.set_config |= is("set_config");
                    whole.program |= is("program");
                }
                _ => {}
            }
        }
        whole
    }
}

/// COPY to or from a program or a server file. Read loosely, as the parser could not read
/// it: the word PROGRAM anywhere is a program, and without a recognizable TO / FROM any
/// string outside parentheses may be a file name.
fn outside(sql: &str, tokens: &[Token]) -> Option<Outside> {
    if word_at(sql, tokens, 0)? != "copy" {
        return None;
    }
    if tokens.iter().any(|t| t.is_word(sql, "program")) {
        return Some(Outside::CopyProgram);
    }
    let file = match copy_direction(sql, tokens) {
        Some((i, _)) => tokens.get(i + 1).is_some_and(|t| t.kind == Tok::Str),
        None => top_level(tokens).any(|t| t.kind == Tok::Str),
    };
    file.then_some(Outside::CopyFile)
}

fn top_level(tokens: &[Token]) -> impl Iterator<Item = &Token> {
    let mut depth = 0usize;
    tokens.iter().filter(move |t| {
        match t.kind {
            Tok::Punct(b'(') => depth += 1,
            Tok::Punct(b')') => depth = depth.saturating_sub(1),
            _ => return depth == 0,
        }
        false
    })
}

fn settings(sql: &str, tokens: &[Token]) -> Vec<SettingChange> {
    let word = |i: usize| word_at(sql, tokens, i).unwrap_or_default();
    let mut changes = match word(0).as_str() {
        "set" => set_command(sql, tokens).into_iter().collect(),
        "reset" => vec![reset_command(sql, tokens)],
        "discard" if word(1) == "all" => vec![SettingChange::ResetAll],
        "begin" | "start" if has_read_write(sql, tokens) => vec![SettingChange::ReadWrite],
        _ => Vec::new(),
    };
    changes.extend(set_config_calls(sql, tokens));
    changes
}

fn has_read_write(sql: &str, tokens: &[Token]) -> bool {
    tokens.windows(2).any(|pair| pair[0].is_word(sql, "read") && pair[1].is_word(sql, "write"))
}

fn set_command(sql: &str, tokens: &[Token]) -> Option<SettingChange> {
    let word = |i: usize| word_at(sql, tokens, i).unwrap_or_default();
    if word(1) == "session" && word(2) == "authorization" || word(1) == "role" || word(2) == "role" {
        return Some(SettingChange::Identity);
    }
    if word(1) == "transaction" || word(2) == "characteristics" {
        return has_read_write(sql, tokens).then_some(SettingChange::ReadWrite);
    }
    let local = word(1) == "local";
    let at = if matches!(word(1).as_str(), "local" | "session") { 2 } else { 1 };
    let (name, values) = match (word(at).as_str(), word(at + 1).as_str()) {
        ("time", "zone") => ("timezone".to_owned(), at + 2),
        ("names", _) => ("client_encoding".to_owned(), at + 1),
        _ => {
            let (name, used) = token_name(sql, tokens.get(at..)?)?;
            let name = name.to_string().to_lowercase();
            let next = tokens.get(at + used)?;
            (name, at + used + usize::from(next.is_punct(b'=') || next.is_word(sql, "to")))
        }
    };
    let values = tokens.get(values..).unwrap_or_default();
    if values.first().is_some_and(|t| t.is_word(sql, "default") || t.is_word(sql, "local")) {
        return Some(SettingChange::Reset { name });
    }
    Some(SettingChange::Set { name, value: value_list(sql, values), local })
}

/// `a, 'b', "C"` as PostgreSQL would store it (without quoting list items).
fn value_list(sql: &str, tokens: &[Token]) -> Option<String> {
    let items = tokens
        .split(|t| t.is_punct(b','))
        .map(|item| match item {
            [t] if t.kind == Tok::Str => token_string(sql, t),
            [t] if matches!(t.kind, Tok::Word | Tok::Quoted) => token_ident(sql, t),
            [t] if t.kind == Tok::Number => Some(t.text(sql).to_owned()),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    Some(items.join(", "))
}

fn reset_command(sql: &str, tokens: &[Token]) -> SettingChange {
    let word = |i: usize| word_at(sql, tokens, i).unwrap_or_default();
    match (word(1).as_str(), word(2).as_str()) {
        ("all", _) => SettingChange::ResetAll,
        ("role", _) | ("session", "authorization") => SettingChange::Identity,
        ("time", "zone") => SettingChange::Reset { name: "timezone".into() },
        _ => match tokens.get(1..).and_then(|rest| token_name(sql, rest)) {
            Some((name, _)) => SettingChange::Reset { name: name.to_string().to_lowercase() },
            None => SettingChange::Unknown,
        },
    }
}

/// `set_config('name', ...)` anywhere: the name when it is a literal, else any setting.
fn set_config_calls(sql: &str, tokens: &[Token]) -> Vec<SettingChange> {
    tokens
        .windows(3)
        .filter(|w| w[0].is_word(sql, "set_config") && w[1].is_punct(b'('))
        .map(|w| match token_string(sql, &w[2]) {
            Some(name) => SettingChange::Set { name: name.to_lowercase(), value: None, local: false },
            None => SettingChange::Unknown,
        })
        .collect()
}
