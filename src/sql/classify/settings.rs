//! Session settings a parsed statement changes: SET / RESET in all their forms, DISCARD ALL,
//! BEGIN READ WRITE, and `set_config(..)` calls anywhere.

use sqlparser::ast::{
    ContextModifier, DiscardObject, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, Ident,
    ObjectName as SqlName, Reset, Set, Statement, TransactionAccessMode, TransactionIsolationLevel, TransactionMode,
    UnaryOperator, Value,
};

use super::names::fold;
use crate::sql::statement::SettingChange;

/// Settings changed by the statement itself (not by functions it calls).
pub(super) fn statement_settings(statement: &Statement) -> Vec<SettingChange> {
    match statement {
        Statement::Set(set) => set_settings(set),
        Statement::Reset(reset) => vec![match &reset.reset {
            Reset::ALL => SettingChange::ResetAll,
            Reset::SessionAuthorization => SettingChange::Identity,
            Reset::ConfigurationParameter(name) => reset_named(&setting_name(name)),
        }],
        Statement::Discard { object_type: DiscardObject::ALL } => vec![SettingChange::ResetAll],
        Statement::StartTransaction { modes, .. } if opens_read_write(modes) => vec![SettingChange::ReadWrite],
        _ => Vec::new(),
    }
}

fn set_settings(set: &Set) -> Vec<SettingChange> {
    match set {
        Set::SingleAssignment { scope, variable, values, .. } => {
            vec![assignment(&setting_name(variable), values, is_local(scope.as_ref()))]
        }
        Set::MultipleAssignments { assignments } => assignments
            .iter()
            .map(|a| assignment(&setting_name(&a.name), std::slice::from_ref(&a.value), is_local(a.scope.as_ref())))
            .collect(),
        Set::ParenthesizedAssignments { variables, .. } => {
            variables.iter().map(|v| SettingChange::Set { name: setting_name(v), value: None, local: false }).collect()
        }
        Set::SetRole { .. } | Set::SetSessionAuthorization(_) => vec![SettingChange::Identity],
        Set::SetTimeZone { local, value } => vec![time_zone(value, *local)],
        Set::SetNames { charset_name, .. } => {
            vec![SettingChange::Set {
                name: "client_encoding".into(),
                value: Some(charset_name.value.clone()),
                local: false,
            }]
        }
        Set::SetNamesDefault {} => vec![SettingChange::Reset { name: "client_encoding".into() }],
        Set::SetTransaction { modes, session: true, .. } => modes.iter().map(session_characteristic).collect(),
        Set::SetTransaction { modes, .. } if opens_read_write(modes) => vec![SettingChange::ReadWrite],
        Set::SetTransaction { .. } => Vec::new(),
        Set::SetSessionParam(_) => vec![SettingChange::Unknown],
    }
}

fn is_local(scope: Option<&ContextModifier>) -> bool {
    matches!(scope, Some(ContextModifier::Local))
}

/// Setting names are case-insensitive in PostgreSQL, custom ones (`myapp.tenant`) included.
fn setting_name(name: &SqlName) -> String {
    name.0.iter().filter_map(|part| part.as_ident()).map(|i| i.value.to_lowercase()).collect::<Vec<_>>().join(".")
}

fn reset_named(name: &str) -> SettingChange {
    match name {
        "role" | "session_authorization" => SettingChange::Identity,
        "all" => SettingChange::ResetAll,
        _ => SettingChange::Reset { name: name.to_owned() },
    }
}

fn assignment(name: &str, values: &[Expr], local: bool) -> SettingChange {
    if let [Expr::Identifier(ident)] = values
        && ident.quote_style.is_none()
        && ident.value.eq_ignore_ascii_case("default")
    {
        return reset_named(name);
    }
    match name {
        "role" | "session_authorization" => SettingChange::Identity,
        _ => SettingChange::Set { name: name.to_owned(), value: assigned_value(name, values), local },
    }
}

/// The value as PostgreSQL stores it: list items joined with ", ", identifiers folded, and
/// for list settings whose items are identifiers (search_path) items quoted where needed.
fn assigned_value(name: &str, values: &[Expr]) -> Option<String> {
    let quote = is_identifier_list(name);
    let items = values.iter().map(value_text).collect::<Option<Vec<_>>>()?;
    let items: Vec<String> = items.into_iter().map(|item| if quote { quote_identifier(&item) } else { item }).collect();
    Some(items.join(", "))
}

/// PostgreSQL's GUC_LIST_QUOTE settings.
fn is_identifier_list(name: &str) -> bool {
    matches!(
        name,
        "search_path"
            | "temp_tablespaces"
            | "session_preload_libraries"
            | "shared_preload_libraries"
            | "local_preload_libraries"
            | "unix_socket_directories"
    )
}

/// Quotes what would not read back as the same identifier. (PostgreSQL also quotes
/// keywords; a keyword as a schema name is rare enough not to carry the keyword list.)
fn quote_identifier(item: &str) -> String {
    let mut bytes = item.bytes();
    let plain = bytes.next().is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if plain { item.to_owned() } else { format!("\"{}\"", item.replace('"', "\"\"")) }
}

fn value_text(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Value(value) => literal_text(&value.value),
        Expr::Identifier(ident) => Some(fold(ident)),
        Expr::UnaryOp { op: UnaryOperator::Minus, expr } => Some(format!("-{}", value_text(expr)?)),
        _ => None,
    }
}

pub(super) fn literal_text(value: &Value) -> Option<String> {
    match value {
        Value::SingleQuotedString(s)
        | Value::EscapedStringLiteral(s)
        | Value::UnicodeStringLiteral(s)
        | Value::NationalStringLiteral(s)
        | Value::Number(s, _) => Some(s.clone()),
        Value::DollarQuotedString(s) => Some(s.value.clone()),
        Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

fn time_zone(value: &Expr, local: bool) -> SettingChange {
    let name = "timezone".to_owned();
    match value {
        Expr::Identifier(Ident { value, quote_style: None, .. })
            if value.eq_ignore_ascii_case("local") || value.eq_ignore_ascii_case("default") =>
        {
            SettingChange::Reset { name }
        }
        Expr::Value(v) => SettingChange::Set { name, value: literal_text(&v.value), local },
        _ => SettingChange::Set { name, value: None, local },
    }
}

fn opens_read_write(modes: &[TransactionMode]) -> bool {
    modes.contains(&TransactionMode::AccessMode(TransactionAccessMode::ReadWrite))
}

/// `SET SESSION CHARACTERISTICS AS TRANSACTION ...`: the session's defaults.
fn session_characteristic(mode: &TransactionMode) -> SettingChange {
    let set =
        |name: &str, value: &str| SettingChange::Set { name: name.into(), value: Some(value.into()), local: false };
    match mode {
        TransactionMode::AccessMode(TransactionAccessMode::ReadWrite) => SettingChange::ReadWrite,
        TransactionMode::AccessMode(TransactionAccessMode::ReadOnly) => set("default_transaction_read_only", "on"),
        TransactionMode::IsolationLevel(level) => set("default_transaction_isolation", isolation_name(level)),
    }
}

fn isolation_name(level: &TransactionIsolationLevel) -> &'static str {
    match level {
        TransactionIsolationLevel::ReadUncommitted => "read uncommitted",
        TransactionIsolationLevel::ReadCommitted => "read committed",
        TransactionIsolationLevel::RepeatableRead => "repeatable read",
        TransactionIsolationLevel::Serializable | TransactionIsolationLevel::Snapshot => "serializable",
    }
}

/// `set_config(name, value, is_local)`, whatever schema it is called through: a name that
/// is not a literal may be any setting. An `is_local` that is not a literal counts as
/// session-wide, the change that lasts longer.
pub(super) fn set_config(function: &Function) -> Option<SettingChange> {
    match &function.args {
        FunctionArguments::List(list) => set_config_call(&function.name, &list.args),
        _ => set_config_call(&function.name, &[]),
    }
}

/// `set_config` called with `args`, in an expression or in FROM.
pub(super) fn set_config_call(name: &SqlName, args: &[FunctionArg]) -> Option<SettingChange> {
    let last = name.0.last()?.as_ident()?;
    if fold(last) != "set_config" {
        return None;
    }
    let arg = |position: usize, param: &str| argument(args, position, param).map(strip_casts);
    let Some(name) = arg(0, "setting_name").and_then(literal) else { return Some(SettingChange::Unknown) };
    let value = arg(1, "new_value").and_then(literal);
    let local = arg(2, "is_local").and_then(literal).is_some_and(|v| is_true(&v));
    Some(SettingChange::Set { name: name.to_lowercase(), value, local })
}

/// The argument at `position`, or the one named `param` (`set_config(setting_name => ..)`).
fn argument<'a>(args: &'a [FunctionArg], position: usize, param: &str) -> Option<&'a Expr> {
    let named = args.iter().find_map(|arg| match arg {
        FunctionArg::Named { name, arg: FunctionArgExpr::Expr(expr), .. } if fold(name) == param => Some(expr),
        FunctionArg::ExprNamed { name: Expr::Identifier(name), arg: FunctionArgExpr::Expr(expr), .. }
            if fold(name) == param =>
        {
            Some(expr)
        }
        _ => None,
    });
    named.or_else(|| match args.get(position)? {
        FunctionArg::Unnamed(FunctionArgExpr::Expr(expr)) => Some(expr),
        _ => None,
    })
}

fn strip_casts(mut expr: &Expr) -> &Expr {
    while let Expr::Cast { expr: inner, .. } | Expr::Nested(inner) = expr {
        expr = inner;
    }
    expr
}

fn literal(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Value(value) => literal_text(&value.value),
        _ => None,
    }
}

/// PostgreSQL's boolean input: true, yes, on, 1 and their prefixes.
fn is_true(text: &str) -> bool {
    let text = text.trim().to_ascii_lowercase();
    matches!(text.as_str(), "t" | "tr" | "tru" | "true" | "y" | "ye" | "yes" | "on" | "1")
}
