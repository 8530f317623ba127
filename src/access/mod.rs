//! Workspaces: who may reach which database (`authorize`, at login, returning a [`Permit`])
//! and what each statement may do (`check`, at statement time), both pure functions of the
//! configuration, the client's identity and the classified statement.

mod builtins;
mod check;
mod pattern;
mod workspace;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

pub use builtins::{Builtins, SENSITIVE_CATALOGS, is_catalog_schema};
pub use check::{Denial, Rule, Scope, check};
pub use pattern::Pattern;
pub use workspace::{RawWorkspace, Rules, UnparsedPolicy, Workspace, build};

use crate::tls::PeerIdentity;

/// The startup setting a client names its workspace with (`options=-c pgate.workspace=x`).
pub const WORKSPACE_SETTING: &str = "pgate.workspace";

/// The validated workspaces of a configuration, in file order.
#[derive(Debug, Default)]
pub struct Workspaces {
    pub list: Vec<Arc<Workspace>>,
    pub builtins: Builtins,
}

/// Who is logging in, and where to.
#[derive(Debug, Clone, Copy)]
pub struct Identity<'a> {
    pub user: &'a str,
    pub certificate: Option<&'a PeerIdentity>,
    /// The client-facing database name.
    pub database: &'a str,
    /// The workspace the client asked for, if any.
    pub requested: Option<&'a str>,
}

/// The workspace a login was granted.
#[derive(Debug, Clone)]
pub struct Permit {
    pub workspace: Arc<Workspace>,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum LoginDenial {
    #[error("user \"{user}\" is in no workspace, and pgate admits only workspace members")]
    NoWorkspace { user: String },
    #[error("no workspace grants user \"{user}\" database \"{database}\" (its workspaces: {workspaces})")]
    NoGrant { user: String, database: String, workspaces: String },
    #[error("user \"{user}\" is not a member of workspace \"{workspace}\"")]
    NotMember { user: String, workspace: String },
    #[error("workspace \"{workspace}\" does not grant database \"{database}\" (it grants: {databases})")]
    DatabaseNotGranted { workspace: String, database: String, databases: String },
    #[error("workspace \"{workspace}\" has its {limit} clients already (max_client_connections)")]
    TooManyClients { workspace: String, limit: usize },
}

impl Workspace {
    pub fn has_member(&self, user: &str, certificate: Option<&PeerIdentity>) -> bool {
        self.users.iter().any(|u| u == user) || certificate.is_some_and(|c| self.identities.iter().any(|i| c.is(i)))
    }
}

impl Workspaces {
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Workspace>> {
        self.list.iter().find(|w| w.name == name)
    }

    /// The workspace that admits `who`: the one it asked for, or else the first (in file
    /// order) that counts it as a member and grants its database. `None` when no
    /// workspaces are configured (everyone is admitted, nothing is checked).
    pub fn authorize(&self, who: Identity<'_>) -> Result<Option<Permit>, LoginDenial> {
        if self.list.is_empty() {
            return Ok(None);
        }
        let member_of: Vec<&Arc<Workspace>> =
            self.list.iter().filter(|w| w.has_member(who.user, who.certificate)).collect();
        if let Some(name) = who.requested {
            let ws = member_of
                .iter()
                .find(|w| w.name == name)
                .ok_or_else(|| LoginDenial::NotMember { user: who.user.to_owned(), workspace: name.to_owned() })?;
            if !ws.grants_database(who.database) {
                return Err(LoginDenial::DatabaseNotGranted {
                    workspace: name.to_owned(),
                    database: who.database.to_owned(),
                    databases: ws.describe_databases(),
                });
            }
            return Ok(Some(Permit { workspace: Arc::clone(ws) }));
        }
        if member_of.is_empty() {
            return Err(LoginDenial::NoWorkspace { user: who.user.to_owned() });
        }
        match member_of.iter().find(|w| w.grants_database(who.database)) {
            Some(ws) => Ok(Some(Permit { workspace: Arc::clone(ws) })),
            None => Err(LoginDenial::NoGrant {
                user: who.user.to_owned(),
                database: who.database.to_owned(),
                workspaces: member_of
                    .iter()
                    .map(|w| format!("{} ({})", w.name, w.describe_databases()))
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }
}

/// Clients per workspace, for `max_client_connections`; shared by the proxy, kept across
/// reloads by workspace name.
#[derive(Debug, Default)]
pub struct WorkspaceClients {
    counts: Mutex<HashMap<String, Arc<AtomicUsize>>>,
}

/// One client's place in its workspace's count, given back on drop.
#[derive(Debug)]
pub struct WorkspaceSlot(Arc<AtomicUsize>);

impl Drop for WorkspaceSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl WorkspaceClients {
    pub fn admit(&self, ws: &Workspace) -> Result<WorkspaceSlot, LoginDenial> {
        let counter = {
            let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
            counts.entry(ws.name.clone()).or_default().clone()
        };
        let before = counter.fetch_add(1, Ordering::AcqRel);
        let slot = WorkspaceSlot(counter);
        match ws.max_client_connections {
            Some(limit) if before >= limit => Err(LoginDenial::TooManyClients { workspace: ws.name.clone(), limit }),
            _ => Ok(slot),
        }
    }

    /// Clients connected in `workspace` now.
    pub fn count(&self, workspace: &str) -> usize {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.get(workspace).map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests;
