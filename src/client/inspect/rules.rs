//! The inspector's checks: workspace rules, the search_path they see, and refusals.

use std::sync::Arc;

use bytes::BytesMut;

use super::{Inspector, Prepared};
use crate::access::{Denial, Rule, Scope, Workspace, check};
use crate::audit::{Outcome, Parameters};
use crate::client::ticket::{Ticket, TicketKind};
use crate::protocol::codes::sqlstate;
use crate::protocol::messages::ErrorFields;
use crate::sql::statement::{Classified, Kind, SettingChange, Statement};

impl Inspector {
    /// The marker and denial ticket when `prepared` may not run now, else `None` (and the
    /// search_path learns what its statements set).
    pub(super) fn refusal_of(&mut self, prepared: &Arc<Prepared>, parameters: Parameters) -> Option<(String, Ticket)> {
        self.refresh();
        if let Some(unavailable) = self.audit_unavailable() {
            let fields = refusal_fields(sqlstate::IO_ERROR, unavailable, None);
            return Some(self.refuse(fields, prepared, None, parameters));
        }
        let (index, denial) = self.first_denial(&prepared.classified)?;
        let fields = refusal_fields(sqlstate::INSUFFICIENT_PRIVILEGE, denial.message(), Some(denial.hint.clone()));
        tracing::info!(user = self.context.user.as_deref().unwrap_or_default(), workspace = %denial.workspace, rule = denial.rule.name(), "statement refused: {}", denial.message());
        self.shared.metrics.statement_denied(&denial.workspace, denial.rule);
        Some(self.refuse(fields, prepared, Some((index, denial)), parameters))
    }

    /// Checks each statement in order, following the search_path as earlier statements of
    /// the same string set it. Returns the first denial.
    pub(super) fn first_denial(&self, classified: &Classified) -> Option<(usize, Denial)> {
        let Some(ws) = &self.workspace else {
            return self.workspace_name.as_ref().map(|name| (0, removed_workspace(name)));
        };
        let mut path = std::borrow::Cow::Borrowed(self.search_path.as_slice());
        for (i, statement) in classified.statements.iter().enumerate() {
            let verdict = match self.effective(statement) {
                Some(s) => {
                    let verdict = check(ws, &self.workspaces.builtins, s, Scope { search_path: &path });
                    if verdict.is_ok() && !s.settings.is_empty() {
                        simulate_settings(path.to_mut(), s, &self.server_user);
                    }
                    verdict
                }
                None => Err(unknown_prepared(ws, statement)),
            };
            if let Err(denial) = verdict {
                return Some((i, denial));
            }
        }
        None
    }

    /// What a statement runs: itself, or for EXECUTE the statement prepared under its name
    /// (`None`: not prepared through pgate, and the workspace has rules).
    pub(super) fn effective<'a>(&'a self, statement: &'a Statement) -> Option<&'a Statement> {
        let Kind::Execute { name } = &statement.kind else { return Some(statement) };
        match self.sql_prepared.get(name).and_then(|p| p.classified.statements.first()) {
            Some(prepared) => Some(prepared),
            None if self.workspace.as_ref().is_some_and(|w| w.has_statement_rules()) => None,
            None => Some(statement),
        }
    }

    /// The search_path may now also hold what the statement sets (never shrinks: fail closed).
    /// A pinned search_path comes back at the end of the transaction (pgate restores it after
    /// RESET ALL and DISCARD ALL), so only the rest of the same query string sees a change.
    pub(super) fn follow_settings(&mut self, statement: &Statement) {
        if statement.settings.is_empty() || self.workspace.as_ref().is_some_and(|w| w.pinned("search_path").is_some()) {
            return;
        }
        let before = self.search_path.len();
        simulate_settings(&mut self.search_path, statement, &self.server_user);
        if self.search_path.len() != before {
            self.search_path_version += 1;
        }
    }

    /// Takes up the reloaded workspace of the same name, if the configuration changed.
    pub(super) fn refresh(&mut self) {
        let current = self.shared.config.load().workspaces.clone();
        if Arc::ptr_eq(&current, &self.workspaces) {
            return;
        }
        self.workspace = self.workspace_name.as_ref().and_then(|name| current.get(name).cloned());
        self.workspaces = current;
    }

    pub(super) fn audit_unavailable(&self) -> Option<String> {
        let auditor = self.auditor.as_ref()?;
        auditor.check_available().err().map(|e| e.to_string())
    }

    fn refuse(
        &mut self,
        fields: ErrorFields,
        prepared: &Arc<Prepared>,
        denial: Option<(usize, Denial)>,
        parameters: Parameters,
    ) -> (String, Ticket) {
        self.next_marker += 1;
        let marker = format!("{}{}", self.marker_prefix, self.next_marker);
        let mut frame = BytesMut::new();
        fields.encode(&mut frame);
        self.refusals.insert(marker.clone(), frame.freeze());
        let rule = denial.as_ref().map_or_else(|| "audit_unavailable".to_owned(), |(_, d)| d.rule.name().to_owned());
        let index = denial.as_ref().map_or(0, |(i, _)| *i);
        let records = match prepared.classified.statements.get(index) {
            Some(statement) => {
                let mut record = self.record(&prepared.text, statement, &parameters);
                record.outcome = Outcome::Denied { rule };
                vec![Some(record)]
            }
            None => vec![],
        };
        (marker, Ticket::new(TicketKind::Refused, records))
    }
}

/// PostgreSQL's default search_path.
pub const DEFAULT_SEARCH_PATH: &str = "\"$user\", public";

/// What the statement does to the search_path (it may now also hold what is set: the set
/// never shrinks, failing closed).
fn simulate_settings(path: &mut Vec<String>, statement: &Statement, user: &str) {
    for change in &statement.settings {
        match change {
            SettingChange::Set { name, value: Some(value), .. } if name == "search_path" => {
                add_search_path(path, value, user)
            }
            SettingChange::Reset { name } if name == "search_path" => add_search_path(path, DEFAULT_SEARCH_PATH, user),
            SettingChange::ResetAll => add_search_path(path, DEFAULT_SEARCH_PATH, user),
            _ => {}
        }
    }
}

pub(super) fn add_search_path(path: &mut Vec<String>, value: &str, user: &str) {
    for schema in parse_search_path(value, user) {
        if !path.contains(&schema) {
            path.push(schema);
        }
    }
}

/// The schemas of a search_path value, folded as PostgreSQL folds them, `$user` replaced.
pub fn parse_search_path(value: &str, user: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| match s.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
            Some(quoted) => quoted.replace("\"\"", "\""),
            None => s.to_lowercase(),
        })
        .map(|s| if s == "$user" { user.to_owned() } else { s })
        .collect()
}

fn refusal_fields(code: &str, message: String, hint: Option<String>) -> ErrorFields {
    ErrorFields { severity: crate::error::ERROR.into(), code: code.into(), message, detail: None, hint }
}

fn removed_workspace(name: &str) -> Denial {
    Denial {
        workspace: name.to_owned(),
        rule: Rule::UnknownStatement,
        what: "run statements any more: a configuration reload removed it".into(),
        hint: "reconnect; the login will pick a workspace that exists".into(),
    }
}

fn unknown_prepared(ws: &Workspace, statement: &Statement) -> Denial {
    let name = match &statement.kind {
        Kind::Execute { name } => name.as_str(),
        _ => "?",
    };
    Denial {
        workspace: ws.name.clone(),
        rule: Rule::UnknownStatement,
        what: format!("EXECUTE {name}, which was not prepared through pgate in this session"),
        hint: "PREPARE it in this session first".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::marker_query;
    use super::*;

    #[test]
    fn search_paths_fold_and_expand_user() {
        assert_eq!(parse_search_path("\"$user\", public", "alice"), ["alice", "public"]);
        assert_eq!(parse_search_path("Alpha, \"Beta\"", "u"), ["alpha", "Beta"]);
        assert_eq!(parse_search_path("ag_catalog, \"$user\", public", "bob"), ["ag_catalog", "bob", "public"]);
        assert!(marker_query("pgate-refused-00ff-1").contains("'pgate-refused-00ff-1'"));
    }
}
