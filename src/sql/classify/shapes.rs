//! Statements sqlparser rejects but whose whole meaning lies in a fixed shape of keywords and
//! names, matched token by token: DO, CHECKPOINT, two-phase commit, BEGIN and SET TRANSACTION
//! with modes not separated by commas (psycopg writes them so), CREATE EXTENSION without
//! WITH, ALTER TABLE .. CLUSTER ON, GRANT / REVOKE of role membership and ALTER ROLE .. SET. Anything else in
//! them, and they go to the keyword fallback.

use super::names::{token_ident, token_name};
use super::scan::{Tok, Token};
use crate::sql::statement::{Access, AuditClass, Kind, ObjectName, Outside, RelationUse, SettingChange, Statement};

/// The statement, if `tokens` are exactly one of the shapes.
pub(super) fn recognize(sql: &str, tokens: &[Token]) -> Option<Statement> {
    let shapes: [fn(&mut Cursor) -> Option<Statement>; 12] = [
        do_block,
        checkpoint,
        move_cursor,
        copy_table,
        maintenance,
        two_phase,
        transaction_start,
        transaction_characteristics,
        create_extension,
        alter_table_cluster,
        role_membership,
        alter_role_setting,
    ];
    shapes.iter().find_map(|shape| {
        let mut cursor = Cursor { sql, tokens, at: 0 };
        shape(&mut cursor).filter(|_| cursor.at == tokens.len())
    })
}

struct Cursor<'a> {
    sql: &'a str,
    tokens: &'a [Token],
    at: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    /// Takes the keywords if all of them come next.
    fn words(&mut self, keywords: &[&str]) -> bool {
        let all = keywords
            .iter()
            .enumerate()
            .all(|(k, w)| self.tokens.get(self.at + k).is_some_and(|t| t.is_word(self.sql, w)));
        if all {
            self.at += keywords.len();
        }
        all
    }

    fn one_of(&mut self, keywords: &[&str]) -> bool {
        keywords.iter().any(|w| self.words(&[w]))
    }

    fn ident(&mut self) -> Option<String> {
        let ident = token_ident(self.sql, self.peek()?)?;
        self.at += 1;
        Some(ident)
    }

    fn name(&mut self) -> Option<ObjectName> {
        let (name, used) = token_name(self.sql, self.tokens.get(self.at..)?)?;
        self.at += used;
        Some(name)
    }

    fn kind(&mut self, kind: Tok) -> bool {
        let found = self.peek().is_some_and(|t| t.kind == kind);
        self.at += usize::from(found);
        found
    }

    /// `name [, name ...]`.
    fn ident_list(&mut self) -> Option<()> {
        self.ident()?;
        while self.kind(Tok::Punct(b',')) {
            self.ident()?;
        }
        Some(())
    }
}

/// DO's body is SQL text run by a procedural language, opaque here: the class (FUNCTION) is
/// all an access rule can judge it by, so it is classified, not marked unparsed.
fn do_block(c: &mut Cursor) -> Option<Statement> {
    c.words(&["do"]).then_some(())?;
    if c.words(&["language"]) {
        c.ident()?;
    }
    c.kind(Tok::Str).then_some(())?;
    if c.words(&["language"]) {
        c.ident()?;
    }
    Some(Statement::new(AuditClass::Function, "DO"))
}

/// `MOVE [direction] [FROM | IN] cursor`: repositions a cursor (asyncpg and psycopg use it),
/// reads nothing it returns.
fn move_cursor(c: &mut Cursor) -> Option<Statement> {
    c.words(&["move"]).then_some(())?;
    while c.at + 1 < c.tokens.len() {
        let token = c.peek()?;
        let direction = matches!(token.kind, Tok::Word | Tok::Number | Tok::Punct(b'-' | b'+'));
        if !direction {
            return None;
        }
        c.at += 1;
    }
    c.ident()?;
    let mut statement = Statement::new(AuditClass::Misc, "MOVE");
    statement.kind = Kind::Harmless;
    Some(statement)
}

/// `COPY table [(columns)] FROM | TO STDIN | STDOUT | 'file' | PROGRAM '...' [[WITH] options]`,
/// whose options sqlparser does not all know (`WITH (FREEZE ON)`, pgbench's): the table, the
/// direction and where the data goes decide the classification; options cannot hold a query.
fn copy_table(c: &mut Cursor) -> Option<Statement> {
    c.words(&["copy"]).then_some(())?;
    c.words(&["binary"]);
    let table = c.name()?;
    if c.kind(Tok::Punct(b'(')) {
        c.ident_list()?;
        c.kind(Tok::Punct(b')')).then_some(())?;
    }
    let from = c.words(&["from"]);
    if !from {
        c.words(&["to"]).then_some(())?;
    }
    let outside = if c.words(&["program"]) {
        Some(Outside::CopyProgram)
    } else if c.kind(Tok::Str) {
        Some(Outside::CopyFile)
    } else {
        c.one_of(&["stdin", "stdout"]).then_some(())?;
        None
    };
    if outside == Some(Outside::CopyProgram) {
        c.kind(Tok::Str).then_some(())?;
    }
    // Options: words, strings, numbers, commas and one level of parentheses.
    while let Some(token) = c.peek() {
        let option = matches!(token.kind, Tok::Word | Tok::Str | Tok::Number | Tok::Quoted)
            || token.is_punct(b'(')
            || token.is_punct(b')')
            || token.is_punct(b',');
        if !option {
            return None;
        }
        c.at += 1;
    }
    let (class, access) = if from { (AuditClass::Write, Access::Write) } else { (AuditClass::Read, Access::Read) };
    let mut statement = Statement::new(class, "COPY");
    statement.relations.push(RelationUse { name: table, access });
    statement.outside.extend(outside);
    Some(statement)
}

/// `VACUUM [(options)] [FULL | FREEZE | VERBOSE | ANALYZE ...] [table [(columns)], ...]` and
/// `ANALYZE [(options)] [VERBOSE] [table [(columns)], ...]` (pgbench -i runs `vacuum analyze
/// t`): MISC as pgaudit has them, the tables as written to.
fn maintenance(c: &mut Cursor) -> Option<Statement> {
    let command = if c.words(&["vacuum"]) {
        "VACUUM"
    } else {
        c.one_of(&["analyze", "analyse"]).then_some(())?;
        "ANALYZE"
    };
    if c.kind(Tok::Punct(b'(')) {
        // Options: words, numbers and commas (`(VERBOSE, PARALLEL 2, INDEX_CLEANUP off)`).
        while !c.kind(Tok::Punct(b')')) {
            let token = c.peek()?;
            let option = matches!(token.kind, Tok::Word | Tok::Number | Tok::Str) || token.is_punct(b',');
            option.then_some(())?;
            c.at += 1;
        }
    }
    while c.one_of(&["full", "freeze", "verbose", "analyze", "analyse"]) {}
    let mut statement = Statement::new(AuditClass::Misc, command);
    while c.at < c.tokens.len() {
        let table = c.name()?;
        if c.kind(Tok::Punct(b'(')) {
            c.ident_list()?;
            c.kind(Tok::Punct(b')')).then_some(())?;
        }
        statement.relations.push(RelationUse { name: table, access: Access::Write });
        if c.at < c.tokens.len() {
            c.kind(Tok::Punct(b',')).then_some(())?;
        }
    }
    Some(statement)
}

fn checkpoint(c: &mut Cursor) -> Option<Statement> {
    c.words(&["checkpoint"]).then(|| Statement::new(AuditClass::Misc, "CHECKPOINT"))
}

fn two_phase(c: &mut Cursor) -> Option<Statement> {
    let command = [["prepare", "transaction"], ["commit", "prepared"], ["rollback", "prepared"]]
        .into_iter()
        .find(|words| c.words(words))?;
    c.kind(Tok::Str).then_some(())?;
    let mut statement = Statement::new(AuditClass::Misc, command.join(" ").to_ascii_uppercase());
    statement.kind = Kind::Transaction;
    Some(statement)
}

/// `BEGIN [WORK | TRANSACTION] [modes]`, `START TRANSACTION [modes]`.
fn transaction_start(c: &mut Cursor) -> Option<Statement> {
    let command = if c.words(&["begin"]) {
        c.one_of(&["work", "transaction"]);
        "BEGIN"
    } else {
        c.words(&["start", "transaction"]).then_some(())?;
        "START TRANSACTION"
    };
    let modes = transaction_modes(c)?;
    let mut statement = Statement::new(AuditClass::Misc, command);
    statement.kind = Kind::Transaction;
    statement.settings = modes.into_iter().filter(|m| *m == SettingChange::ReadWrite).collect();
    Some(statement)
}

/// `SET TRANSACTION modes`, `SET SESSION CHARACTERISTICS AS TRANSACTION modes`: the latter
/// changes the session's defaults.
fn transaction_characteristics(c: &mut Cursor) -> Option<Statement> {
    c.words(&["set"]).then_some(())?;
    let session = c.words(&["session", "characteristics", "as"]);
    c.words(&["transaction"]).then_some(())?;
    let modes = transaction_modes(c)?;
    let mut statement = Statement::new(AuditClass::MiscSet, "SET");
    statement.settings = modes.into_iter().filter(|m| session || *m == SettingChange::ReadWrite).collect();
    Some(statement)
}

/// Transaction modes, with or without commas between them, as changes to the session's
/// defaults (READ WRITE as [`SettingChange::ReadWrite`]).
fn transaction_modes(c: &mut Cursor) -> Option<Vec<SettingChange>> {
    let default = |name: &str, value: &str| SettingChange::Set {
        name: format!("default_transaction_{name}"),
        value: Some(value.to_owned()),
        local: false,
    };
    let mut modes = Vec::new();
    while c.at < c.tokens.len() {
        if c.words(&["isolation", "level"]) {
            let levels: [&[&str]; 4] =
                [&["serializable"], &["repeatable", "read"], &["read", "committed"], &["read", "uncommitted"]];
            let level = levels.into_iter().find(|words| c.words(words))?;
            modes.push(default("isolation", &level.join(" ")));
        } else if c.words(&["read", "write"]) {
            modes.push(SettingChange::ReadWrite);
        } else if c.words(&["read", "only"]) {
            modes.push(default("read_only", "on"));
        } else if c.words(&["deferrable"]) {
            modes.push(default("deferrable", "on"));
        } else if c.words(&["not", "deferrable"]) {
            modes.push(default("deferrable", "off"));
        } else {
            return None;
        }
        c.kind(Tok::Punct(b','));
    }
    Some(modes)
}

/// `CREATE EXTENSION [IF NOT EXISTS] name [WITH] [SCHEMA s] [VERSION v] [CASCADE]`.
fn create_extension(c: &mut Cursor) -> Option<Statement> {
    c.words(&["create", "extension"]).then_some(())?;
    c.words(&["if", "not", "exists"]);
    c.ident()?;
    c.words(&["with"]);
    if c.words(&["schema"]) {
        c.ident()?;
    }
    if c.words(&["version"]) && !c.kind(Tok::Str) {
        c.ident()?;
    }
    c.words(&["cascade"]);
    Some(Statement::new(AuditClass::Ddl, "CREATE EXTENSION"))
}

/// `ALTER TABLE [IF EXISTS] [ONLY] name [*] {CLUSTER ON index | SET WITHOUT CLUSTER}`.
fn alter_table_cluster(c: &mut Cursor) -> Option<Statement> {
    c.words(&["alter", "table"]).then_some(())?;
    c.words(&["if", "exists"]);
    c.words(&["only"]);
    let table = c.name()?;
    c.kind(Tok::Punct(b'*'));
    if c.words(&["cluster", "on"]) {
        c.ident()?;
    } else {
        c.words(&["set", "without", "cluster"]).then_some(())?;
    }
    let mut statement = Statement::new(AuditClass::Ddl, "ALTER TABLE");
    statement.relations.push(RelationUse { name: table, access: Access::Define });
    Some(statement)
}

/// `GRANT role [, ...] TO role [, ...] [WITH ...] [GRANTED BY role]` and
/// `REVOKE [ADMIN | INHERIT | SET OPTION FOR] role [, ...] FROM role [, ...] [...]`.
fn role_membership(c: &mut Cursor) -> Option<Statement> {
    let grant = c.words(&["grant"]);
    if !grant {
        c.words(&["revoke"]).then_some(())?;
        let _ = ["admin", "inherit", "set"].iter().any(|option| c.words(&[option, "option", "for"]));
    }
    c.ident_list()?;
    c.words(&[if grant { "to" } else { "from" }]).then_some(())?;
    c.ident_list()?;
    if grant && c.words(&["with"]) {
        loop {
            c.one_of(&["admin", "inherit", "set"]).then_some(())?;
            c.one_of(&["option", "true", "false"]).then_some(())?;
            if !c.kind(Tok::Punct(b',')) {
                break;
            }
        }
    }
    if c.words(&["granted", "by"]) {
        c.ident()?;
    }
    if !grant {
        c.one_of(&["cascade", "restrict"]);
    }
    Some(Statement::new(AuditClass::Role, if grant { "GRANT ROLE" } else { "REVOKE ROLE" }))
}

/// `ALTER ROLE | USER name [IN DATABASE db] SET name {TO | =} value [, ...]`, `... SET name
/// FROM CURRENT`, `... RESET {name | ALL}`: defaults for the role's future sessions, not a
/// change to this one.
fn alter_role_setting(c: &mut Cursor) -> Option<Statement> {
    c.words(&["alter"]).then_some(())?;
    c.one_of(&["role", "user"]).then_some(())?;
    c.ident()?;
    if c.words(&["in", "database"]) {
        c.ident()?;
    }
    if c.words(&["reset"]) {
        c.name()?;
    } else {
        c.words(&["set"]).then_some(())?;
        c.name()?;
        if !c.words(&["from", "current"]) {
            (c.words(&["to"]) || c.kind(Tok::Punct(b'='))).then_some(())?;
            loop {
                (c.kind(Tok::Str) || c.kind(Tok::Number) || c.ident().is_some()).then_some(())?;
                if !c.kind(Tok::Punct(b',')) {
                    break;
                }
            }
        }
    }
    Some(Statement::new(AuditClass::Role, "ALTER ROLE"))
}
