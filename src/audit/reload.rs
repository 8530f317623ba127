//! What a configuration reload does to the running audit log, in two steps: `prepare`
//! (can fail, changes nothing) and `apply` (cannot fail).
//!
//! - `[audit]` in both configurations: changed keys apply (see [`Auditor::prepare`]); a new
//!   sink is opened by `prepare`, so a path that cannot be written fails the whole reload;
//!   `queue_size` keeps its running value until pgate restarts, with a warning.
//! - `[audit]` added or removed: nothing changes until pgate restarts, with a warning; the
//!   rest of the reload applies.

use std::sync::Arc;

use super::writer::Reconfiguration;
use super::{AuditError, AuditSettings, Auditor};

/// What a reload will do to the audit log, checked; [`AuditChange::apply`] does it.
#[must_use = "nothing changes until the audit change is applied"]
pub struct AuditChange(Change);

enum Change {
    /// No audit log before or after.
    Nothing,
    Reconfigure {
        auditor: Arc<Auditor>,
        change: Reconfiguration,
    },
    /// `[audit]` was added or removed: applied at the next start.
    NeedsRestart(&'static str),
}

impl AuditChange {
    /// Compares the running audit log (`None`: off) with the next configuration's
    /// `[audit]`; fails, changing nothing, when a new sink cannot be opened.
    pub fn prepare(running: Option<&Arc<Auditor>>, next: Option<&AuditSettings>) -> Result<Self, AuditError> {
        Ok(Self(match (running, next) {
            (None, None) => Change::Nothing,
            (Some(auditor), Some(next)) => {
                Change::Reconfigure { auditor: auditor.clone(), change: auditor.prepare(next)? }
            }
            (None, Some(_)) => Change::NeedsRestart(
                "[audit] was added to the configuration: the audit log starts only when pgate restarts",
            ),
            (Some(_), None) => Change::NeedsRestart(
                "[audit] was removed from the configuration: the audit log goes on, with its settings, until pgate restarts",
            ),
        }))
    }

    /// Makes the change (and logs what changed, and what needs a restart).
    pub fn apply(self) {
        match self.0 {
            Change::Nothing => {}
            Change::NeedsRestart(warning) => tracing::warn!("{warning}"),
            Change::Reconfigure { auditor, change } => {
                for key in change.ignored() {
                    tracing::warn!(
                        "audit.{key} changed but is not applied until pgate restarts (the running value stays)"
                    );
                }
                if !change.changed().is_empty() {
                    tracing::info!(keys = %change.changed().join(", "), "audit log settings reloaded");
                }
                auditor.reconfigure(change);
            }
        }
    }
}
