//! The audit log: one pgaudit-style record per statement (and per login, logout and
//! cancel request), formatted as pgaudit lines or JSON Lines, with passwords redacted, fed
//! through a bounded queue to a writer task that appends to a file or standard output.
//!
//! - [`record`]: what a session hands in: [`SessionContext`], [`Event`], [`Record`].
//! - [`config`]: the `[audit]` table ([`RawAudit`]) and its validated [`AuditSettings`].
//! - `format`: which records and relations get lines, and the two line formats.
//! - [`redact`]: passwords in CREATE / ALTER ROLE statements become `<REDACTED>`.
//! - `writer`: the [`Auditor`] handle, the queue, the writer task and the sinks.
//! - [`reload`]: what a configuration reload changes in the running audit log
//!   ([`AuditChange`]).
//!
//! A session calls [`Auditor::check_available`] before it runs a statement (with
//! `on_error = "deny"` a failing sink refuses statements), [`Auditor::logs`] to learn
//! whether a class is logged, and [`Auditor::record`] once the statement completed or was
//! denied. Audit never loses a record silently: every record is written or counted in
//! [`AuditStats`].

pub mod config;
mod format;
pub mod record;
pub mod redact;
pub mod reload;
mod writer;

use std::io;

pub use config::{AuditSettings, RawAudit, build};
pub use record::{Event, Outcome, Parameters, Record, SessionContext, StatementRecord};
pub use reload::AuditChange;
pub use writer::{AuditStats, Auditor, Reconfiguration};

/// Errors starting the audit log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot open the audit log {path} for appending: {source}")]
    Open {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("the audit log must be started inside the tokio runtime")]
    NoRuntime,
}

/// The audit log cannot be written and `audit.on_error = "deny"`: the statement is refused.
#[derive(Debug, Clone, thiserror::Error)]
#[error("pgate cannot write its audit log ({reason}); statements are refused until it can (audit.on_error = \"deny\")")]
pub struct AuditUnavailable {
    pub reason: String,
}

impl AuditUnavailable {
    fn new(reason: &str) -> Self {
        Self { reason: reason.to_owned() }
    }
}
