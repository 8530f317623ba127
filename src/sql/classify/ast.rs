//! One parsed statement classified: its head from the syntax tree where the tree decides
//! (queries, DML, COPY, SET, transactions, PREPARE / EXECUTE / EXPLAIN, GRANT, roles), from
//! the keywords otherwise (most DDL); relations, functions and settings from the walk.

use sqlparser::ast::{CloseCursor, CopyTarget, DiscardObject, ObjectType, SetExpr, Statement as SqlStatement};

use super::keywords::{self, Head};
use super::names::fold;
use super::scan::Token;
use super::settings::statement_settings;
use super::walk::walk;
use crate::sql::statement::{AuditClass, Kind, Outside, Statement, Unparsed};

/// `sql` and `tokens` are the statement's original text, for the keyword classification.
pub(super) fn classify(statement: &SqlStatement, sql: &str, tokens: &[Token]) -> Statement {
    let found = walk(statement);
    let mut head = tree_head(statement).unwrap_or_else(|| keywords::head(sql, tokens));
    if found.select_into && head.class == AuditClass::Read {
        head.class = AuditClass::Ddl;
        if head.command == "SELECT" {
            head.command = "SELECT INTO".into();
        }
    }
    // A writable CTE, or COPY (DELETE .. RETURNING) TO: the statement writes.
    if found.writes && head.class == AuditClass::Read {
        head.class = AuditClass::Write;
    }
    let mut out = Statement::new(head.class, head.command);
    out.kind = head.kind;
    out.relations = found.relations;
    out.functions = found.functions;
    out.settings = statement_settings(statement);
    out.settings.extend(found.settings);
    out.outside = outside(statement).into_iter().collect();
    out.unparsed = found.problem.map(Unparsed::Syntax);
    out
}

fn head(class: AuditClass, command: &str) -> Option<Head> {
    Some(Head { class, command: command.to_owned(), kind: Kind::Other })
}

fn with_kind(class: AuditClass, command: &str, kind: Kind) -> Option<Head> {
    Some(Head { class, command: command.to_owned(), kind })
}

/// The head where the tree knows better than the leading keywords; `None` for the rest.
fn tree_head(statement: &SqlStatement) -> Option<Head> {
    use AuditClass::*;
    match statement {
        SqlStatement::Query(query) => query_head(&query.body),
        SqlStatement::Insert(_) => head(Write, "INSERT"),
        SqlStatement::Update(_) => head(Write, "UPDATE"),
        SqlStatement::Delete(_) => head(Write, "DELETE"),
        SqlStatement::Merge(_) => head(Write, "MERGE"),
        SqlStatement::Truncate(_) => head(Write, "TRUNCATE TABLE"),
        SqlStatement::Copy { to, .. } => head(if *to { Read } else { Write }, "COPY"),
        SqlStatement::Call(_) => head(Function, "CALL"),
        SqlStatement::Declare { .. } => head(Read, "DECLARE CURSOR"),
        SqlStatement::Set(_) => head(MiscSet, "SET"),
        SqlStatement::Reset(_) => head(MiscSet, "RESET"),
        SqlStatement::Prepare { name, statement, .. } => {
            let inner = tree_head(statement)?;
            with_kind(inner.class, "PREPARE", Kind::Prepare { name: fold(name) })
        }
        SqlStatement::Execute { name: Some(name), .. } => {
            let name = name.0.last().and_then(|part| part.as_ident()).map(fold).unwrap_or_default();
            with_kind(Misc, "EXECUTE", Kind::Execute { name })
        }
        // Fail closed: plain EXPLAIN does not run its statement, but is judged as if it did.
        SqlStatement::Explain { statement, .. } => head(tree_head(statement)?.class, "EXPLAIN"),
        SqlStatement::CreateTable(create) if create.query.is_some() => head(Ddl, "CREATE TABLE AS"),
        SqlStatement::CreateView(view) if view.materialized => head(Ddl, "CREATE MATERIALIZED VIEW"),
        SqlStatement::Grant(_) => head(Role, "GRANT"),
        SqlStatement::Revoke(_) => head(Role, "REVOKE"),
        SqlStatement::CreateRole(_) | SqlStatement::CreateUser(_) => head(Role, "CREATE ROLE"),
        SqlStatement::AlterRole { .. } | SqlStatement::AlterUser(_) => head(Role, "ALTER ROLE"),
        SqlStatement::Drop { object_type: ObjectType::Role | ObjectType::User, .. } => head(Role, "DROP ROLE"),
        _ => misc_head(statement),
    }
}

/// MISC statements, transaction control and the ones never refused by class.
fn misc_head(statement: &SqlStatement) -> Option<Head> {
    use AuditClass::Misc;
    let transaction = |command: &str| with_kind(Misc, command, Kind::Transaction);
    let harmless = |command: &str| with_kind(Misc, command, Kind::Harmless);
    match statement {
        SqlStatement::StartTransaction { begin: true, .. } => transaction("BEGIN"),
        SqlStatement::StartTransaction { .. } => transaction("START TRANSACTION"),
        SqlStatement::Commit { .. } => transaction("COMMIT"),
        SqlStatement::Rollback { .. } => transaction("ROLLBACK"),
        SqlStatement::Savepoint { .. } => transaction("SAVEPOINT"),
        SqlStatement::ReleaseSavepoint { .. } => transaction("RELEASE"),
        SqlStatement::ShowVariable { .. } | SqlStatement::ShowVariables { .. } => harmless("SHOW"),
        SqlStatement::Deallocate { name, .. }
            if name.quote_style.is_none() && name.value.eq_ignore_ascii_case("all") =>
        {
            harmless("DEALLOCATE ALL")
        }
        SqlStatement::Deallocate { .. } => harmless("DEALLOCATE"),
        SqlStatement::Discard { object_type } => harmless(match object_type {
            DiscardObject::ALL => "DISCARD ALL",
            DiscardObject::PLANS => "DISCARD PLANS",
            DiscardObject::SEQUENCES => "DISCARD SEQUENCES",
            DiscardObject::TEMP => "DISCARD TEMP",
        }),
        SqlStatement::Close { cursor: CloseCursor::All } => harmless("CLOSE CURSOR ALL"),
        SqlStatement::Close { .. } => harmless("CLOSE CURSOR"),
        SqlStatement::Fetch { .. } => head(Misc, "FETCH"),
        SqlStatement::LISTEN { .. } => head(Misc, "LISTEN"),
        SqlStatement::UNLISTEN { .. } => head(Misc, "UNLISTEN"),
        SqlStatement::NOTIFY { .. } => head(Misc, "NOTIFY"),
        SqlStatement::Load { .. } => head(Misc, "LOAD"),
        SqlStatement::Lock(_) => head(Misc, "LOCK TABLE"),
        SqlStatement::Vacuum(_) => head(Misc, "VACUUM"),
        SqlStatement::Analyze(_) => head(Misc, "ANALYZE"),
        _ => None,
    }
}

/// `WITH .. INSERT / UPDATE / DELETE / MERGE` is that statement; other queries are SELECT.
fn query_head(body: &SetExpr) -> Option<Head> {
    match body {
        SetExpr::Insert(_) => head(AuditClass::Write, "INSERT"),
        SetExpr::Update(_) => head(AuditClass::Write, "UPDATE"),
        SetExpr::Delete(_) => head(AuditClass::Write, "DELETE"),
        SetExpr::Merge(_) => head(AuditClass::Write, "MERGE"),
        _ => head(AuditClass::Read, "SELECT"),
    }
}

fn outside(statement: &SqlStatement) -> Option<Outside> {
    match statement {
        SqlStatement::Copy { target: CopyTarget::Program { .. }, .. } => Some(Outside::CopyProgram),
        SqlStatement::Copy { target: CopyTarget::File { .. }, .. } => Some(Outside::CopyFile),
        _ => None,
    }
}
