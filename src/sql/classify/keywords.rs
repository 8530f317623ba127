//! A statement's class, command tag and kind from its leading keywords. Used for statements
//! sqlparser cannot parse, and for parsed ones whose tree adds nothing to the tag (most DDL).

use super::names::{token_ident, token_name};
use super::scan::{Tok, Token, matching_paren};
use crate::sql::statement::{AuditClass, Kind};

/// Class, command tag and kind of one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Head {
    pub class: AuditClass,
    pub command: String,
    pub kind: Kind,
}

impl Head {
    fn new(class: AuditClass, command: &str) -> Self {
        Self { class, command: command.to_owned(), kind: Kind::Other }
    }

    fn kind(mut self, kind: Kind) -> Self {
        self.kind = kind;
        self
    }
}

/// The lower-cased word at `i`, if that token is a word.
pub(super) fn word_at(sql: &str, tokens: &[Token], i: usize) -> Option<String> {
    tokens.get(i).filter(|t| t.kind == Tok::Word).map(|t| t.text(sql).to_ascii_lowercase())
}

/// Lower-cased words outside parentheses, with their token index.
fn top_level_words<'a>(sql: &'a str, tokens: &'a [Token]) -> impl Iterator<Item = (usize, String)> + 'a {
    let mut depth = 0usize;
    tokens.iter().enumerate().filter_map(move |(i, token)| {
        match token.kind {
            Tok::Punct(b'(') => depth += 1,
            Tok::Punct(b')') => depth = depth.saturating_sub(1),
            Tok::Word if depth == 0 => return Some((i, token.text(sql).to_ascii_lowercase())),
            _ => {}
        }
        None
    })
}

/// The head of the statement made of `tokens`.
pub(super) fn head(sql: &str, tokens: &[Token]) -> Head {
    head_within(sql, tokens, 0)
}

/// EXPLAIN and PREPARE hold one statement, which holds no other EXPLAIN or PREPARE; nesting
/// deeper is not PostgreSQL, and is not followed (a long text of EXPLAIN EXPLAIN ... must
/// not recurse once per word).
const MAX_NESTING: usize = 2;

fn head_within(sql: &str, tokens: &[Token], nesting: usize) -> Head {
    use AuditClass::*;
    let Some(first) = word_at(sql, tokens, 0) else {
        // `(SELECT ...)` and the like.
        return query_head(sql, tokens);
    };
    let second = word_at(sql, tokens, 1).unwrap_or_default();
    let transaction = |command: &str| Head::new(Misc, command).kind(Kind::Transaction);
    let harmless = |command: &str| Head::new(Misc, command).kind(Kind::Harmless);
    match first.as_str() {
        "select" | "values" | "table" | "with" => query_head(sql, tokens),
        "insert" | "update" | "delete" | "merge" => Head::new(Write, &first.to_ascii_uppercase()),
        "truncate" => Head::new(Write, "TRUNCATE TABLE"),
        "copy" => Head::new(copy_class(sql, tokens), "COPY"),
        "call" => Head::new(Function, "CALL"),
        "do" => Head::new(Function, "DO"),
        "grant" | "revoke" => grant_head(sql, tokens, &first),
        "create" | "alter" | "drop" => definition_head(sql, tokens),
        "comment" => Head::new(Ddl, "COMMENT"),
        "security" => Head::new(Ddl, "SECURITY LABEL"),
        "import" => Head::new(Ddl, "IMPORT FOREIGN SCHEMA"),
        "reassign" => Head::new(Ddl, "REASSIGN OWNED"),
        // PostgreSQL logs CLUSTER and REFRESH at the ddl level, and pgaudit follows it: DDL,
        // while VACUUM, ANALYZE, REINDEX and CHECKPOINT are MISC.
        "refresh" => Head::new(Ddl, "REFRESH MATERIALIZED VIEW"),
        "cluster" => Head::new(Ddl, "CLUSTER"),
        "reindex" | "vacuum" | "checkpoint" | "load" | "listen" | "unlisten" | "notify" | "fetch" | "move" => {
            Head::new(Misc, &first.to_ascii_uppercase())
        }
        "analyze" | "analyse" => Head::new(Misc, "ANALYZE"),
        "lock" => Head::new(Misc, "LOCK TABLE"),
        "begin" => transaction("BEGIN"),
        "start" => transaction("START TRANSACTION"),
        "commit" | "end" if second == "prepared" => transaction("COMMIT PREPARED"),
        "commit" | "end" => transaction("COMMIT"),
        "rollback" | "abort" if second == "prepared" => transaction("ROLLBACK PREPARED"),
        "rollback" | "abort" => transaction("ROLLBACK"),
        "savepoint" => transaction("SAVEPOINT"),
        "release" => transaction("RELEASE"),
        "prepare" if second == "transaction" => transaction("PREPARE TRANSACTION"),
        "prepare" | "explain" if nesting >= MAX_NESTING => Head::new(Ddl, &first.to_ascii_uppercase()),
        "prepare" => prepare_head(sql, tokens, nesting),
        "execute" => Head::new(Misc, "EXECUTE").kind(Kind::Execute { name: name_at(sql, tokens, 1) }),
        "explain" => explain_head(sql, tokens, nesting),
        "show" => harmless("SHOW"),
        "deallocate" if tokens.iter().skip(1).any(|t| t.is_word(sql, "all")) => harmless("DEALLOCATE ALL"),
        "deallocate" => harmless("DEALLOCATE"),
        "discard" if second == "temporary" => harmless("DISCARD TEMP"),
        "discard" => harmless(format!("DISCARD {}", second.to_ascii_uppercase()).trim_end()),
        "close" if second == "all" => harmless("CLOSE CURSOR ALL"),
        "close" => harmless("CLOSE CURSOR"),
        "declare" => Head::new(Read, "DECLARE CURSOR"),
        "set" if second == "constraints" => Head::new(Misc, "SET CONSTRAINTS"),
        "set" => Head::new(MiscSet, "SET"),
        "reset" => Head::new(MiscSet, "RESET"),
        // Not a statement PostgreSQL knows either: the strictest class ordinary workspaces lack.
        _ => Head::new(Ddl, &first.to_ascii_uppercase()),
    }
}

fn name_at(sql: &str, tokens: &[Token], i: usize) -> String {
    tokens.get(i).and_then(|t| token_ident(sql, t)).unwrap_or_default()
}

/// SELECT, VALUES, TABLE, WITH: a query unless a data-modifying statement is in it (a
/// writable CTE; `FOR UPDATE` counts too, which errs on the safe side) or it is SELECT INTO.
fn query_head(sql: &str, tokens: &[Token]) -> Head {
    let words: Vec<String> = top_level_words(sql, tokens).map(|(_, w)| w).collect();
    let main = words
        .iter()
        .find(|w| matches!(w.as_str(), "select" | "values" | "table" | "insert" | "update" | "delete" | "merge"));
    let command = match main.map(String::as_str) {
        Some(dml @ ("insert" | "update" | "delete" | "merge")) => dml.to_ascii_uppercase(),
        _ => "SELECT".to_owned(),
    };
    if command == "SELECT" && words.iter().any(|w| w == "into") {
        return Head::new(AuditClass::Ddl, "SELECT INTO");
    }
    let modifies = tokens.iter().any(|t| {
        t.kind == Tok::Word
            && matches!(t.text(sql).to_ascii_lowercase().as_str(), "insert" | "update" | "delete" | "merge")
    });
    Head::new(if modifies { AuditClass::Write } else { AuditClass::Read }, &command)
}

/// `COPY ... FROM` writes; `COPY ... TO` reads. Without either it is not valid, and counts
/// as writing.
fn copy_class(sql: &str, tokens: &[Token]) -> AuditClass {
    match copy_direction(sql, tokens) {
        Some((_, direction)) if direction == "to" => AuditClass::Read,
        _ => AuditClass::Write,
    }
}

/// The TO or FROM word of a COPY and its index: after the parenthesized query, or after the
/// table name and its column list.
pub(super) fn copy_direction(sql: &str, tokens: &[Token]) -> Option<(usize, String)> {
    let mut i = match tokens.get(1) {
        Some(t) if t.is_punct(b'(') => matching_paren(tokens, 1)? + 1,
        _ => 1 + token_name(sql, tokens.get(1..)?)?.1,
    };
    if tokens.get(i).is_some_and(|t| t.is_punct(b'(')) {
        i = matching_paren(tokens, i)? + 1;
    }
    let word = word_at(sql, tokens, i)?;
    matches!(word.as_str(), "to" | "from").then_some((i, word))
}

/// GRANT / REVOKE on objects, or of roles (no ON).
fn grant_head(sql: &str, tokens: &[Token], verb: &str) -> Head {
    let on_objects = top_level_words(sql, tokens).any(|(_, w)| w == "on");
    let command = match (verb, on_objects) {
        ("grant", true) => "GRANT",
        ("grant", false) => "GRANT ROLE",
        (_, true) => "REVOKE",
        (_, false) => "REVOKE ROLE",
    };
    Head::new(AuditClass::Role, command)
}

fn prepare_head(sql: &str, tokens: &[Token], nesting: usize) -> Head {
    let kind = Kind::Prepare { name: name_at(sql, tokens, 1) };
    let inner = top_level_words(sql, tokens)
        .find(|(_, w)| w == "as")
        .map(|(i, _)| head_within(sql, tokens.get(i + 1..).unwrap_or_default(), nesting + 1));
    let class = inner.map_or(AuditClass::Misc, |inner| inner.class);
    Head::new(class, "PREPARE").kind(kind)
}

/// EXPLAIN [ANALYZE] [VERBOSE] | EXPLAIN (options): the class of what it explains.
fn explain_head(sql: &str, tokens: &[Token], nesting: usize) -> Head {
    let mut i = 1;
    if tokens.get(1).is_some_and(|t| t.is_punct(b'(')) {
        i = matching_paren(tokens, 1).map_or(tokens.len(), |close| close + 1);
    }
    while word_at(sql, tokens, i).is_some_and(|w| matches!(w.as_str(), "analyze" | "analyse" | "verbose")) {
        i += 1;
    }
    let inner = head_within(sql, tokens.get(i..).unwrap_or_default(), nesting + 1);
    Head::new(inner.class, "EXPLAIN")
}

/// Object types of CREATE / ALTER / DROP, longest first where one starts another.
const OBJECT_TYPES: &[&str] = &[
    "materialized view",
    "foreign data wrapper",
    "foreign table",
    "event trigger",
    "text search configuration",
    "text search dictionary",
    "text search parser",
    "text search template",
    "user mapping",
    "default privileges",
    "operator class",
    "operator family",
    "access method",
    "large object",
    "table",
    "view",
    "index",
    "sequence",
    "schema",
    "database",
    "function",
    "procedure",
    "routine",
    "aggregate",
    "type",
    "domain",
    "extension",
    "trigger",
    "rule",
    "policy",
    "role",
    "user",
    "group",
    "server",
    "publication",
    "subscription",
    "statistics",
    "collation",
    "conversion",
    "cast",
    "language",
    "operator",
    "tablespace",
    "transform",
    "owned",
    "system",
];

/// `ALTER SYSTEM` lands here as DDL, as in pgaudit (PostgreSQL logs it at the ddl level):
/// it rewrites the server's configuration.
/// Words between the verb and the object type that PostgreSQL leaves out of the tag.
const MODIFIERS: &[&str] = &[
    "or",
    "replace",
    "temp",
    "temporary",
    "unlogged",
    "global",
    "local",
    "unique",
    "trusted",
    "procedural",
    "recursive",
    "constraint",
];

fn definition_head(sql: &str, tokens: &[Token]) -> Head {
    let verb = word_at(sql, tokens, 0).unwrap_or_default();
    let mut i = 1;
    while word_at(sql, tokens, i).is_some_and(|w| MODIFIERS.contains(&w.as_str())) {
        i += 1;
    }
    let object = OBJECT_TYPES.iter().find(|object| {
        object.split(' ').enumerate().all(|(k, part)| word_at(sql, tokens, i + k).is_some_and(|w| w == part))
    });
    let Some(&object) = object else {
        let next = word_at(sql, tokens, i).unwrap_or_default();
        return Head::new(AuditClass::Ddl, format!("{verb} {next}").trim_end().to_ascii_uppercase().as_str());
    };
    let role_statement = matches!(object, "role" | "user" | "group");
    let command = match object {
        _ if role_statement => format!("{verb} role"),
        "table" if verb == "create" && top_level_words(sql, tokens).any(|(_, w)| w == "as") => "create table as".into(),
        _ => format!("{verb} {object}"),
    };
    // pgaudit counts user mappings (they may hold passwords) and default privileges as ROLE.
    let class = match (verb.as_str(), object) {
        (_, _) if role_statement => AuditClass::Role,
        ("create" | "alter", "user mapping") | (_, "default privileges") => AuditClass::Role,
        _ => AuditClass::Ddl,
    };
    Head::new(class, &command.to_ascii_uppercase())
}
