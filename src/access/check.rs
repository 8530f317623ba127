//! Statement time: one classified statement against a workspace's rules, as a pure function
//! returning `Ok` or the [`Denial`] to tell the client (42501) and the audit log.

use std::fmt::Write as _;

use super::builtins::{Builtins, denied_function, is_catalog_schema, is_sensitive_catalog};
use super::pattern::Pattern;
use super::workspace::{UnparsedPolicy, Workspace};
use crate::sql::statement::{Access, AuditClass, Kind, ObjectName, Outside, SettingChange, Statement};

/// The rule a statement broke, as audit records and metrics name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    Unparsed,
    Class,
    RelationDeny,
    RelationAllow,
    SensitiveCatalog,
    FunctionDeny,
    FunctionAllow,
    PinnedSetting,
    ReadOnly,
    Identity,
    Outside,
    UnknownStatement,
}

impl Rule {
    pub fn name(self) -> &'static str {
        match self {
            Rule::Unparsed => "unparsed",
            Rule::Class => "allow",
            Rule::RelationDeny => "relations.deny",
            Rule::RelationAllow => "relations.allow",
            Rule::SensitiveCatalog => "sensitive_catalog",
            Rule::FunctionDeny => "functions.deny",
            Rule::FunctionAllow => "functions.allow",
            Rule::PinnedSetting => "session",
            Rule::ReadOnly => "read_only",
            Rule::Identity => "role_change",
            Rule::Outside => "outside",
            Rule::UnknownStatement => "unknown_statement",
        }
    }
}

/// A refused statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub workspace: String,
    pub rule: Rule,
    /// What was refused, e.g. `relation public.secrets` or `WRITE statements (DELETE)`.
    pub what: String,
    pub hint: String,
}

impl Denial {
    pub fn message(&self) -> String {
        format!(
            "permission denied by pgate: workspace \"{}\" may not {} (rule {})",
            self.workspace,
            self.what,
            self.rule.name()
        )
    }
}

/// What the check needs to know of the session.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// Every schema that may be on the session's search_path now, in order, `$user`
    /// already replaced: an unqualified name is checked against each (fail closed).
    pub search_path: &'a [String],
}

/// Checks one statement. Pinned settings are protected in every workspace; the other rules
/// apply where the workspace has statement rules.
pub fn check(ws: &Workspace, builtins: &Builtins, statement: &Statement, scope: Scope<'_>) -> Result<(), Denial> {
    let deny = |rule: Rule, what: String, hint: String| Err(Denial { workspace: ws.name.clone(), rule, what, hint });
    // RESET ALL is like DISCARD ALL to drivers (asyncpg's pool runs it on every release),
    // and pinned settings come back after it.
    let resets_all = !statement.settings.is_empty() && statement.settings.iter().all(|c| *c == SettingChange::ResetAll);
    let never_refused = matches!(statement.kind, Kind::Transaction | Kind::Harmless) || resets_all;
    let rules = ws.has_statement_rules();
    if rules
        && !never_refused
        && ws.unparsed == UnparsedPolicy::Deny
        && let Some(why) = &statement.unparsed
    {
        return deny(
            Rule::Unparsed,
            format!("run a statement pgate cannot check ({why})"),
            "rewrite it in plain SQL pgate understands, or ask the operator for unparsed = \"allow\"".into(),
        );
    }
    for change in &statement.settings {
        check_setting(ws, change)?;
    }
    if !rules {
        return Ok(());
    }
    if !never_refused && !ws.allows_class(statement.class) {
        return deny(
            Rule::Class,
            format!("run {} statements ({})", statement.class, statement.command),
            format!("the workspace allows: {}", ws.describe_classes()),
        );
    }
    if let Some(outside) = statement.outside.first() {
        let what = match outside {
            Outside::CopyProgram => "use COPY ... PROGRAM (it runs a program on the database server)",
            Outside::CopyFile => "use COPY with a server file (it reads or writes the database server's disk)",
        };
        return deny(Rule::Outside, what.into(), "use COPY ... FROM STDIN / TO STDOUT".into());
    }
    for relation in &statement.relations {
        for candidate in relation_candidates(&relation.name, scope) {
            check_relation(ws, &relation.name, candidate, relation.access, scope)?;
        }
    }
    for function in &statement.functions {
        check_function(ws, builtins, function, scope)?;
    }
    Ok(())
}

fn check_setting(ws: &Workspace, change: &SettingChange) -> Result<(), Denial> {
    let deny = |rule: Rule, what: String, hint: &str| {
        Err(Denial { workspace: ws.name.clone(), rule, what, hint: hint.to_owned() })
    };
    match change {
        SettingChange::Set { name, .. } | SettingChange::Reset { name } if ws.pinned(name).is_some() => deny(
            Rule::PinnedSetting,
            format!("change setting {name}, which it pins to {:?}", ws.pinned(name).unwrap_or_default()),
            "pinned settings hold for the whole session; ask the operator to change the workspace's session table",
        ),
        SettingChange::Set { name, value, .. }
            if ws.read_only && name == "transaction_read_only" && !value.as_deref().is_some_and(is_on) =>
        {
            deny(Rule::ReadOnly, "turn read-only off (it is a read-only workspace)".into(), "only reads are allowed")
        }
        SettingChange::ReadWrite if ws.read_only => deny(
            Rule::ReadOnly,
            "start a read-write transaction (it is a read-only workspace)".into(),
            "only reads are allowed",
        ),
        SettingChange::Set { name, value: None, .. } if name == "search_path" && ws.has_statement_rules() => deny(
            Rule::PinnedSetting,
            "set search_path to a value pgate cannot see before it runs".into(),
            "set it to a literal list of schemas",
        ),
        SettingChange::Unknown => deny(
            Rule::PinnedSetting,
            "call set_config with a setting name pgate cannot see".into(),
            "name the setting with a literal",
        ),
        SettingChange::Identity if ws.has_statement_rules() && !ws.allows_class(AuditClass::Role) => deny(
            Rule::Identity,
            "change its role (SET ROLE / SET SESSION AUTHORIZATION)".into(),
            "the workspace's rules hold for the role pgate logs in as",
        ),
        _ => Ok(()),
    }
}

fn is_on(value: &str) -> bool {
    let v = value.trim().trim_matches('\'').to_ascii_lowercase();
    ["on", "true", "yes", "1", "t", "y"].contains(&v.as_str())
}

/// A schema-qualified name a statement's name may stand for, borrowed (checks run on every
/// statement: no allocation unless it is refused).
#[derive(Debug, Clone, Copy)]
struct Candidate<'a> {
    schema: &'a str,
    name: &'a str,
}

impl std::fmt::Display for Candidate<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// The relations a name may stand for: itself when qualified, else pg_catalog's (PostgreSQL
/// searches it first, and all its relations are named `pg_*`) and every schema of the path
/// (the relation may exist in any of them).
fn relation_candidates<'a>(name: &'a ObjectName, scope: Scope<'a>) -> impl Iterator<Item = Candidate<'a>> {
    let catalog = (name.schema.is_none() && name.name.starts_with("pg_")).then_some("pg_catalog");
    let path = name.schema.is_none().then(|| path_schemas(scope)).into_iter().flatten();
    name.schema.as_deref().into_iter().chain(catalog).chain(path).map(|schema| Candidate { schema, name: &name.name })
}

/// The functions a name may stand for: itself when qualified; a built-in's name resolves to
/// pg_catalog, which PostgreSQL searches first (a look-alike elsewhere would need CREATE
/// FUNCTION, a DDL statement); any other name, through every schema of the path.
fn function_candidates<'a>(
    name: &'a ObjectName,
    scope: Scope<'a>,
    builtins: &Builtins,
) -> impl Iterator<Item = Candidate<'a>> {
    let builtin = name.schema.is_none() && builtins.is_builtin(&name.name);
    let catalog = builtin.then_some("pg_catalog");
    let path = (name.schema.is_none() && !builtin).then(|| path_schemas(scope)).into_iter().flatten();
    name.schema.as_deref().into_iter().chain(catalog).chain(path).map(|schema| Candidate { schema, name: &name.name })
}

fn path_schemas(scope: Scope<'_>) -> impl Iterator<Item = &str> {
    scope.search_path.iter().map(String::as_str).filter(|s| !matches!(*s, "pg_catalog" | "pg_temp"))
}

fn verb(access: Access) -> &'static str {
    match access {
        Access::Read => "read",
        Access::Write => "write",
        Access::Define => "define",
    }
}

fn check_relation(
    ws: &Workspace,
    written: &ObjectName,
    name: Candidate<'_>,
    access: Access,
    scope: Scope<'_>,
) -> Result<(), Denial> {
    let deny = |rule: Rule, detail: String, hint: String| {
        Err(Denial {
            workspace: ws.name.clone(),
            rule,
            what: format!("{} relation {name}{}{detail}", verb(access), resolution_note(written, name, scope)),
            hint,
        })
    };
    let matches = |p: &&Pattern| p.matches_parts(name.schema, name.name);
    if let Some(p) = ws.relations.deny.iter().find(matches) {
        return deny(
            Rule::RelationDeny,
            format!(": relations.deny has \"{p}\""),
            "this relation is closed to the workspace".into(),
        );
    }
    let allowed = ws.relations.allow.iter().any(|p| matches(&p));
    if is_catalog_schema(name.schema) {
        if is_sensitive_catalog(name.schema, name.name)
            && !ws.relations.allow.iter().any(|p| p.is_exact_name() && matches(&p))
        {
            return deny(
                Rule::SensitiveCatalog,
                ": it is a sensitive catalog".into(),
                format!("a relations.allow entry naming {name} exactly opens it"),
            );
        }
        if access == Access::Read || allowed {
            return Ok(());
        }
        return deny(Rule::RelationAllow, ": catalogs are read-only to workspaces".into(), String::new());
    }
    if ws.relations.allow.is_empty() || allowed {
        return Ok(());
    }
    deny(
        Rule::RelationAllow,
        format!(": relations.allow has only {}", list(&ws.relations.allow)),
        match &written.schema {
            None => {
                "qualify the name with an allowed schema, or pin a search_path that holds only allowed schemas".into()
            }
            Some(_) => "use a relation of an allowed schema".into(),
        },
    )
}

/// ` ("orders" may resolve to it on search_path alpha, public)` when the name was unqualified.
fn resolution_note(written: &ObjectName, resolved: Candidate<'_>, scope: Scope<'_>) -> String {
    if written.schema.is_some() {
        return String::new();
    }
    let mut note = format!(" (\"{}\" may resolve to it", written.name);
    if resolved.schema != "pg_catalog" {
        let _ = write!(note, " on search_path {}", scope.search_path.join(", "));
    }
    note.push(')');
    note
}

fn list(patterns: &[Pattern]) -> String {
    patterns.iter().map(|p| format!("\"{p}\"")).collect::<Vec<_>>().join(", ")
}

fn check_function(ws: &Workspace, builtins: &Builtins, function: &ObjectName, scope: Scope<'_>) -> Result<(), Denial> {
    let deny = |rule: Rule, name: Candidate<'_>, detail: String, hint: &str| {
        Err(Denial {
            workspace: ws.name.clone(),
            rule,
            what: format!("call function {name}{}{detail}", resolution_note(function, name, scope)),
            hint: hint.to_owned(),
        })
    };
    for name in function_candidates(function, scope, builtins) {
        let matches = |p: &&Pattern| p.matches_parts(name.schema, name.name);
        if let Some(why) = denied_function(name.name)
            && !ws.functions.allow.iter().any(|p| p.is_exact_name() && matches(&p))
        {
            return deny(
                Rule::FunctionDeny,
                name,
                format!(": it {why}"),
                "such functions are closed to workspaces by default",
            );
        }
        if let Some(p) = ws.functions.deny.iter().find(matches) {
            return deny(
                Rule::FunctionDeny,
                name,
                format!(": functions.deny has \"{p}\""),
                "this function is closed to the workspace",
            );
        }
        if name.schema == "pg_catalog"
            || ws.functions.allow.is_empty()
            || ws.functions.allow.iter().any(|p| matches(&p))
        {
            continue;
        }
        return deny(
            Rule::FunctionAllow,
            name,
            format!(": functions.allow has only {}", list(&ws.functions.allow)),
            "call functions of allowed schemas, or ask the operator to add functions.allow entries",
        );
    }
    Ok(())
}
