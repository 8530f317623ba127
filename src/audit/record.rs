//! What the session hands to the audit log: its context, and one event (a statement, a
//! login, a logout, a cancel request) with the time it happened.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::sql::statement::AuditClass;

/// Who is connected, and how; shared by every record of one client connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionContext {
    pub client: SocketAddr,
    /// `None` for a cancel request, which names no user.
    pub user: Option<String>,
    /// The database name the client asked for (`None` for a cancel request).
    pub database: Option<String>,
    pub workspace: Option<String>,
    /// The configured backend the database routes to (`None` before the route is known).
    pub backend: Option<String>,
    /// pgate's id for the client connection, so that its records can be grouped (`None`
    /// for a login that failed before it got one).
    pub session_id: Option<String>,
    /// The TLS protocol version (`TLSv1.3`), `None` on a plaintext connection.
    pub tls: Option<String>,
    /// The client certificate's identity, when the client presented one.
    pub identity: Option<String>,
    /// The pgaudit line's context, formatted once for all the session's records.
    pub formatted: FormattedOnce,
}

/// A value formatted on first use and kept; equal whatever it holds (it is derived).
#[derive(Default, Clone)]
pub struct FormattedOnce(std::sync::OnceLock<String>);

impl FormattedOnce {
    pub fn get_or_init(&self, f: impl FnOnce() -> String) -> &str {
        self.0.get_or_init(f)
    }
}

impl PartialEq for FormattedOnce {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for FormattedOnce {}

impl std::fmt::Debug for FormattedOnce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FormattedOnce")
    }
}

/// How a statement ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// The server answered with an ErrorResponse.
    Error {
        sqlstate: String,
    },
    /// pgate refused it; `rule` says which workspace rule.
    Denied {
        rule: String,
    },
}

/// A statement's bind parameters as the session saw them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parameters {
    /// The session did not capture them.
    NotLogged,
    /// The statement had none.
    None,
    /// In order, as text (binary values as `\x` hex); `None` is SQL NULL.
    Values(Vec<Option<String>>),
}

/// One statement (or one substatement) of a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementRecord {
    /// Numbers the session's statements from 1, like pgaudit's statement id.
    pub statement_id: u64,
    /// Numbers the statements of one query string from 1.
    pub substatement_id: u32,
    pub class: AuditClass,
    /// The command tag: `SELECT`, `CREATE TABLE`, ...
    pub command: String,
    /// (object type, `schema.name`): one line each when `log_relation` is on, and the
    /// object of a DDL or ROLE statement.
    pub objects: Vec<(String, String)>,
    /// The statement text as the client sent it, passwords not yet redacted. Several
    /// substatements of one query string may share it; pgaudit logs each statement's own
    /// text, so the session passes that when it has it.
    pub text: Arc<str>,
    pub parameters: Parameters,
    pub outcome: Outcome,
    /// The row count of the CommandComplete tag, if it had one.
    pub rows: Option<u64>,
    /// From the request to the server's completion.
    pub duration: Option<Duration>,
    /// Every relation it touched is in `pg_catalog` or `information_schema`.
    pub catalog_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Statement(StatementRecord),
    /// A login attempt; `method` is the authentication method (`scram-sha-256`, `md5`,
    /// `cert`, `trust`) and `reason` why it failed.
    Login {
        ok: bool,
        method: String,
        reason: Option<String>,
    },
    Logout,
    /// A CancelRequest naming this session; `forwarded` when it reached a server.
    Cancel {
        forwarded: bool,
    },
}

/// One audit record; it becomes one line, or one line per relation.
#[derive(Debug, Clone)]
pub struct Record {
    pub time: SystemTime,
    pub context: Arc<SessionContext>,
    pub event: Event,
}

impl Record {
    /// A record of `event` happening now.
    pub fn now(context: Arc<SessionContext>, event: Event) -> Self {
        Self { time: SystemTime::now(), context, event }
    }
}
