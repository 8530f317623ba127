//! A workspace as written in `[[workspaces]]` (`RawWorkspace`) and as validated
//! (`Workspace`): its members, databases, statement classes, relation and function rules,
//! pinned session settings and limits.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use super::pattern::Pattern;
use crate::sql::statement::AuditClass;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWorkspace {
    pub name: String,
    /// Members by login user name.
    #[serde(default)]
    pub users: Vec<String>,
    /// Members by verified client certificate (a CN or DNS-name SAN it carries).
    #[serde(default)]
    pub identities: Vec<String>,
    /// Client-facing database names the members may reach; `"*"` for all.
    #[serde(default)]
    pub databases: Vec<String>,
    /// Statement classes the members may run; `"ALL"` for every class.
    #[serde(default = "all_classes")]
    pub allow: Vec<String>,
    #[serde(default)]
    pub relations: RawRules,
    #[serde(default)]
    pub functions: RawFunctionRules,
    /// Settings pinned on every server session of the members.
    #[serde(default)]
    pub session: BTreeMap<String, toml::Value>,
    #[serde(default)]
    pub read_only: bool,
    pub max_client_connections: Option<usize>,
    #[serde(default)]
    pub unparsed: UnparsedPolicy,
}

fn all_classes() -> Vec<String> {
    vec!["ALL".into()]
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRules {
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub deny: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFunctionRules {
    /// Default: every schema the relation rules allow (`alpha.*` for `alpha.orders`).
    pub allow: Option<Vec<String>>,
    #[serde(default)]
    pub deny: Vec<String>,
}

/// What happens to a statement pgate could not parse, in a workspace with statement rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnparsedPolicy {
    #[default]
    Deny,
    Allow,
}

impl std::fmt::Display for UnparsedPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UnparsedPolicy::Deny => "deny",
            UnparsedPolicy::Allow => "allow",
        })
    }
}

/// Allow and deny patterns; an empty allow list allows every name not denied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    pub allow: Vec<Pattern>,
    pub deny: Vec<Pattern>,
}

impl Rules {
    fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    pub name: String,
    pub users: Vec<String>,
    pub identities: Vec<String>,
    /// `None`: every database.
    pub databases: Option<BTreeSet<String>>,
    /// `None`: every class.
    pub classes: Option<BTreeSet<AuditClass>>,
    pub relations: Rules,
    pub functions: Rules,
    /// Pinned settings, `default_transaction_read_only = on` included for read-only ones.
    pub session: Vec<(String, String)>,
    pub read_only: bool,
    pub max_client_connections: Option<usize>,
    pub unparsed: UnparsedPolicy,
}

impl Workspace {
    /// True when statements are checked at all: some class is not allowed, or relations
    /// or functions have rules, or the workspace is read-only. (Pinned settings are
    /// protected either way.)
    pub fn has_statement_rules(&self) -> bool {
        self.classes.is_some() || !self.relations.is_empty() || !self.functions.is_empty() || self.read_only
    }

    pub fn grants_database(&self, database: &str) -> bool {
        self.databases.as_ref().is_none_or(|dbs| dbs.contains(database))
    }

    pub fn allows_class(&self, class: AuditClass) -> bool {
        self.classes.as_ref().is_none_or(|c| c.contains(&class))
    }

    pub fn pinned(&self, name: &str) -> Option<&str> {
        self.session.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// For messages: the allowed classes.
    pub fn describe_classes(&self) -> String {
        match &self.classes {
            None => "ALL".into(),
            Some(c) => c.iter().map(|c| c.name()).collect::<Vec<_>>().join(", "),
        }
    }

    /// For messages and `pgate check`: the databases.
    pub fn describe_databases(&self) -> String {
        match &self.databases {
            None => "*".into(),
            Some(d) => d.iter().cloned().collect::<Vec<_>>().join(", "),
        }
    }
}

/// Validates one `[[workspaces]]` entry; the message names the key.
pub fn build(raw: &RawWorkspace) -> Result<Workspace, String> {
    let place = format!("workspace \"{}\"", raw.name);
    if raw.name.is_empty() {
        return Err("a [[workspaces]] entry has an empty name".into());
    }
    if raw.users.is_empty() && raw.identities.is_empty() {
        return Err(format!("{place}: give its members in users or identities"));
    }
    if raw.databases.is_empty() {
        return Err(format!("{place}: databases is empty; list the databases it may reach, or \"*\""));
    }
    let databases = (!raw.databases.iter().any(|d| d == "*")).then(|| raw.databases.iter().cloned().collect());
    let classes = build_classes(&raw.allow).map_err(|e| format!("{place}: allow: {e}"))?;
    let relations =
        build_rules(&raw.relations.allow, &raw.relations.deny).map_err(|e| format!("{place}: relations: {e}"))?;
    let function_allow = match &raw.functions.allow {
        Some(list) => list.iter().map(|p| Pattern::parse(p)).collect::<Result<Vec<_>, _>>(),
        None => Ok(default_function_allow(&relations)),
    }
    .map_err(|e| format!("{place}: functions.allow: {e}"))?;
    let function_deny = raw.functions.deny.iter().map(|p| Pattern::parse(p)).collect::<Result<Vec<_>, _>>();
    let functions =
        Rules { allow: function_allow, deny: function_deny.map_err(|e| format!("{place}: functions.deny: {e}"))? };
    let session =
        build_session(&raw.session, raw.read_only, &raw.name).map_err(|e| format!("{place}: session: {e}"))?;
    if raw.max_client_connections == Some(0) {
        return Err(format!("{place}: max_client_connections must be at least 1"));
    }
    let mut classes = classes;
    if raw.read_only {
        // Read-only members never write, define or grant, whatever else `allow` says.
        let all: BTreeSet<AuditClass> = classes.unwrap_or_else(|| AuditClass::ALL.into_iter().collect());
        classes = Some(
            all.into_iter().filter(|c| !matches!(c, AuditClass::Write | AuditClass::Ddl | AuditClass::Role)).collect(),
        );
    }
    let mut ws = Workspace {
        name: raw.name.clone(),
        users: raw.users.clone(),
        identities: raw.identities.clone(),
        databases,
        classes,
        relations,
        functions,
        session,
        read_only: raw.read_only,
        max_client_connections: raw.max_client_connections,
        unparsed: raw.unparsed,
    };
    if ws.has_statement_rules() {
        pin_lexical_settings(&mut ws.session).map_err(|e| format!("{place}: session: {e}"))?;
    }
    Ok(ws)
}

/// A workspace with statement rules pins the settings that decide how PostgreSQL reads a
/// query string, so pgate reads it the same way: with standard_conforming_strings off a
/// backslash can end a string for PostgreSQL where pgate's lexer reads on (a statement
/// could hide in what pgate takes for a literal), and a client encoding such as SJIS or
/// GBK can put a backslash byte inside a multibyte character.
fn pin_lexical_settings(session: &mut Vec<(String, String)>) -> Result<(), String> {
    for (name, value) in LEXICAL_PINS {
        match session.iter().find(|(n, _)| n == name) {
            Some((_, v)) if !v.eq_ignore_ascii_case(value) => {
                return Err(format!("{name} must be {value} in a workspace with statement rules"));
            }
            Some(_) => {}
            None => session.push((name.to_owned(), value.to_owned())),
        }
    }
    Ok(())
}

const LEXICAL_PINS: [(&str, &str); 2] = [("standard_conforming_strings", "on"), ("client_encoding", "UTF8")];

fn build_classes(names: &[String]) -> Result<Option<BTreeSet<AuditClass>>, String> {
    if names.iter().any(|n| n.eq_ignore_ascii_case("ALL")) {
        return Ok(None);
    }
    let known = || AuditClass::ALL.iter().map(|c| c.name()).collect::<Vec<_>>().join(", ");
    names
        .iter()
        .map(|n| AuditClass::from_name(n).ok_or_else(|| format!("unknown class {n:?} (classes: ALL, {})", known())))
        .collect::<Result<BTreeSet<_>, _>>()
        .map(Some)
}

fn build_rules(allow: &[String], deny: &[String]) -> Result<Rules, String> {
    let parse = |list: &[String]| list.iter().map(|p| Pattern::parse(p)).collect::<Result<Vec<_>, _>>();
    Ok(Rules { allow: parse(allow)?, deny: parse(deny)? })
}

/// Functions default to the schemas the relation rules open.
fn default_function_allow(relations: &Rules) -> Vec<Pattern> {
    let mut out: Vec<Pattern> = Vec::new();
    for p in relations.allow.iter().map(Pattern::whole_schema) {
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

fn build_session(
    raw: &BTreeMap<String, toml::Value>,
    read_only: bool,
    workspace: &str,
) -> Result<Vec<(String, String)>, String> {
    let mut session = Vec::new();
    for (name, value) in raw {
        if !crate::params::is_valid_name(name) {
            return Err(format!("{name:?} is not a setting name"));
        }
        let value = match value {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => if *b { "on" } else { "off" }.to_owned(),
            other => return Err(format!("{name}: {other} is not a string, number or boolean")),
        };
        session.push((name.to_ascii_lowercase(), value));
    }
    if read_only {
        match session.iter().find(|(n, _)| n == "default_transaction_read_only") {
            Some((_, v)) if v != "on" => {
                return Err("read_only = true pins default_transaction_read_only = on; do not set it otherwise".into());
            }
            Some(_) => {}
            None => session.push(("default_transaction_read_only".into(), "on".into())),
        }
    }
    // Every member's server session says which workspace it runs for, so row-level
    // security can use current_setting('pgate.workspace').
    match session.iter().find(|(n, _)| n == super::WORKSPACE_SETTING) {
        Some((_, v)) if v != workspace => {
            return Err(format!("{} must be the workspace's own name, {workspace:?}", super::WORKSPACE_SETTING));
        }
        Some(_) => {}
        None => session.push((super::WORKSPACE_SETTING.into(), workspace.to_owned())),
    }
    Ok(session)
}
