//! The `Auditor`: the handle sessions use to queue records, and the state it shares with
//! the writer task (`task.rs`) that drains the bounded queue into the sink (`sink.rs`).
//!
//! Every record handed to `record` that the settings log ends up counted exactly once:
//! `written`, `dropped` (queue full with `on_full = "drop"`, or handed in after
//! `flush_and_close`), `refused` (queue full while the sink fails with `on_error = "deny"`:
//! the caller gets `Err` instead of a session hanging on a broken disk), or `lost`
//! (`on_error = "continue"` while the sink fails, or still unwritten when
//! `flush_and_close` ran out of time). Until then it is `queued`.
//!
//! A configuration reload changes the settings in two steps: `prepare` checks the new
//! settings and opens a new sink (it can fail, and then nothing changed), `reconfigure`
//! applies them (it cannot fail). Sessions read the settings through an `ArcSwap`, so the
//! statement-side keys hold from their next statement on; the writer gets its copy, and the
//! new sink, through its control channel and switches before it takes its next batch off
//! the queue: records it takes after the switch, also those queued before the reload, are
//! written under the new settings (sink, format, fsync), the batches before it under the
//! old ones. A batch the old sink failed to write (held with `on_error = "deny"`) goes to
//! the new sink as it was formatted, from the start of the line the failure tore. No record
//! is lost or written twice by a switch. `queue_size` is not changed by a reload: the queue keeps its size.

mod sink;
mod task;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, Guard};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{Notify, mpsc, oneshot};

use super::config::{AuditSettings, OnError, OnFull};
use super::format::is_logged;
use super::record::Record;
use super::{AuditError, AuditUnavailable};
use crate::sql::statement::AuditClass;
use sink::Sink;

/// Counters since start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AuditStats {
    /// Records whose lines reached the sink.
    pub written: u64,
    /// Not queued: the queue was full with `on_full = "drop"`, or the log was closed.
    pub dropped: u64,
    /// Not queued: the queue was full while the sink failed with `on_error = "deny"`;
    /// `record` returned `Err`.
    pub refused: u64,
    /// Queued but not written: the sink failed with `on_error = "continue"`, or closing
    /// ran out of time.
    pub lost: u64,
    /// Failed writes, reopens and fsyncs.
    pub sink_errors: u64,
    /// Records queued or being written now.
    pub queued: u64,
    pub capacity: u64,
    /// The sink is failing now.
    pub failing: bool,
}

/// One per proxy, shared as `Arc<Auditor>`.
pub struct Auditor {
    /// The settings in force; a reload swaps them whole.
    settings: ArcSwap<AuditSettings>,
    queue: mpsc::Sender<Record>,
    control: mpsc::UnboundedSender<Control>,
    shared: Arc<Shared>,
    /// Held while a reconfiguration is stored and sent, so that the writer gets them in
    /// the order the sessions see them.
    reconfiguring: Mutex<()>,
}

/// New settings that [`Auditor::prepare`] checked, for [`Auditor::reconfigure`]: a sink
/// that differs from the running one is open already.
pub struct Reconfiguration {
    settings: AuditSettings,
    sink: Option<Sink>,
    changed: Vec<&'static str>,
    ignored: Vec<&'static str>,
}

impl Reconfiguration {
    /// The `[audit]` keys whose new values `reconfigure` applies.
    pub fn changed(&self) -> &[&'static str] {
        &self.changed
    }

    /// The keys whose new values are not applied: they need a restart (`queue_size`).
    pub fn ignored(&self) -> &[&'static str] {
        &self.ignored
    }
}

enum Control {
    Reopen,
    /// New settings, and the new sink when it changed.
    Reconfigure {
        settings: AuditSettings,
        sink: Option<Sink>,
    },
    Close {
        deadline: tokio::time::Instant,
        done: oneshot::Sender<()>,
    },
}

/// What the writer task and the handle both see.
struct Shared {
    written: AtomicU64,
    dropped: AtomicU64,
    refused: AtomicU64,
    lost: AtomicU64,
    sink_errors: AtomicU64,
    /// Records the writer has taken off the queue and not yet counted as written or lost.
    in_writer: AtomicU64,
    failing: AtomicBool,
    /// Why the sink fails, for `AuditUnavailable` (no path: clients see it).
    failure: Mutex<String>,
    closed: AtomicBool,
    /// Wakes sessions waiting for room when the sink starts failing.
    became_failing: Notify,
    drop_warning: RateLimit,
}

impl Shared {
    fn set_failing(&self, reason: Option<String>) {
        let failing = reason.is_some();
        if let Some(reason) = reason {
            *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = reason;
        }
        self.failing.store(failing, Ordering::Release);
        if failing {
            self.became_failing.notify_waiters();
        }
    }
}

impl Auditor {
    /// Opens the sink (a file must be openable for appending now: a bad path is a startup
    /// error) and spawns the writer task on the current tokio runtime.
    pub fn start(settings: AuditSettings) -> Result<Arc<Auditor>, AuditError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| AuditError::NoRuntime)?;
        let sink =
            Sink::open(&settings.sink).map_err(|source| AuditError::Open { path: sink_name(&settings), source })?;
        let (queue, receiver) = mpsc::channel(settings.queue_size);
        let (control, control_receiver) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            written: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            sink_errors: AtomicU64::new(0),
            in_writer: AtomicU64::new(0),
            failing: AtomicBool::new(false),
            failure: Mutex::new(String::new()),
            closed: AtomicBool::new(false),
            became_failing: Notify::new(),
            drop_warning: RateLimit::new(),
        });
        let writer = task::Writer::new(settings.clone(), sink, shared.clone());
        runtime.spawn(writer.run(receiver, control_receiver));
        let settings = ArcSwap::from_pointee(settings);
        Ok(Arc::new(Auditor { settings, queue, control, shared, reconfiguring: Mutex::new(()) }))
    }

    /// The settings in force now (a reload may replace them): one atomic load, no
    /// allocation. Read what is needed and let the guard go; do not hold it across `.await`.
    pub fn settings(&self) -> Guard<Arc<AuditSettings>> {
        self.settings.load()
    }

    /// True if statements of this class are logged (`log`); denials are logged regardless.
    pub fn logs(&self, class: AuditClass) -> bool {
        self.settings.load().log.contains(class)
    }

    /// Checks new settings for a reload without changing anything: the keys that differ,
    /// and those that cannot change while pgate runs (`queue_size`: the running size is
    /// kept). A sink that differs from the running one is opened (a file is created if
    /// missing) now, so that a path that cannot be written fails the reload.
    pub fn prepare(&self, next: &AuditSettings) -> Result<Reconfiguration, AuditError> {
        let current = self.settings.load();
        let mut settings = next.clone();
        let mut ignored = Vec::new();
        if settings.queue_size != current.queue_size {
            ignored.push("queue_size");
            settings.queue_size = current.queue_size;
        }
        let changed = changed_keys(&current, &settings);
        let sink = match settings.sink != current.sink {
            true => Some(
                Sink::open(&settings.sink).map_err(|source| AuditError::Open { path: sink_name(&settings), source })?,
            ),
            false => None,
        };
        Ok(Reconfiguration { settings, sink, changed, ignored })
    }

    /// Applies prepared settings: the statement-side keys hold for every session's next
    /// statement; the writer switches sink, format and fsync before its next batch (see the
    /// module's documentation for which records go where).
    pub fn reconfigure(&self, change: Reconfiguration) {
        if change.changed.is_empty() {
            return;
        }
        let _order = self.reconfiguring.lock().unwrap_or_else(|e| e.into_inner());
        self.settings.store(Arc::new(change.settings.clone()));
        // Fails only when the writer has ended (after flush_and_close): nothing to switch.
        let _ = self.control.send(Control::Reconfigure { settings: change.settings, sink: change.sink });
    }

    /// Queues a record (one the settings leave out is ignored). With `on_full = "block"` it
    /// waits for room; with `"drop"` it never waits, and a record that does not fit is
    /// counted and warned about. With `on_error = "deny"` it returns `Err` while the sink
    /// fails or after `flush_and_close`; the record is still queued when there is room and
    /// written once the sink recovers (it does not wait for room then: see `refused`).
    pub async fn record(&self, record: Record) -> Result<(), AuditUnavailable> {
        // One load; the guard is not kept across the waits below.
        let (logged, on_full, on_error) = {
            let settings = self.settings.load();
            (is_logged(&settings, &record), settings.on_full, settings.on_error)
        };
        if !logged {
            return Ok(());
        }
        if self.shared.closed.load(Ordering::Acquire) {
            return self.dropped_after_close(on_error);
        }
        let record = match self.queue.try_send(record) {
            Ok(()) => return self.available(on_error),
            Err(TrySendError::Closed(_)) => return self.dropped_after_close(on_error),
            Err(TrySendError::Full(record)) => record,
        };
        match on_full {
            OnFull::Drop => {
                self.count_dropped();
                self.available(on_error)
            }
            // Boxed: a full queue is rare, and its wait would otherwise size the relay
            // loop of every session, audited or not (it awaits this future).
            OnFull::Block => Box::pin(self.wait_for_room(record, on_error)).await,
        }
    }

    async fn wait_for_room(&self, record: Record, on_error: OnError) -> Result<(), AuditUnavailable> {
        loop {
            let became_failing = self.shared.became_failing.notified();
            tokio::pin!(became_failing);
            became_failing.as_mut().enable();
            if on_error == OnError::Deny && self.shared.failing.load(Ordering::Acquire) {
                self.shared.refused.fetch_add(1, Ordering::Relaxed);
                return Err(self.failing_sink());
            }
            tokio::select! {
                permit = self.queue.reserve() => {
                    return match permit {
                        Ok(permit) => {
                            permit.send(record);
                            self.available(on_error)
                        }
                        Err(_) => self.dropped_after_close(on_error),
                    };
                }
                () = &mut became_failing => {}
            }
        }
    }

    fn dropped_after_close(&self, on_error: OnError) -> Result<(), AuditUnavailable> {
        self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        match on_error {
            OnError::Deny => Err(AuditUnavailable::new("it has been closed: pgate is shutting down")),
            OnError::Continue => Ok(()),
        }
    }

    fn count_dropped(&self) {
        let total = self.shared.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(since_last) = self.shared.drop_warning.hit() {
            tracing::warn!(
                dropped = since_last,
                total,
                capacity = self.queue.max_capacity(),
                "audit queue full: records dropped (audit.on_full = \"drop\")"
            );
        }
    }

    /// With `on_error = "deny"`: `Err` while the sink fails (and after `flush_and_close`),
    /// so that statements are refused before they run. A few atomic loads.
    pub fn check_available(&self) -> Result<(), AuditUnavailable> {
        self.available(self.settings.load().on_error)
    }

    fn available(&self, on_error: OnError) -> Result<(), AuditUnavailable> {
        if on_error == OnError::Continue {
            return Ok(());
        }
        if self.shared.failing.load(Ordering::Acquire) {
            return Err(self.failing_sink());
        }
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(AuditUnavailable::new("it has been closed: pgate is shutting down"));
        }
        Ok(())
    }

    fn failing_sink(&self) -> AuditUnavailable {
        AuditUnavailable::new(&self.shared.failure.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Reopens the file (after logrotate moved it): later batches go to a new file at the
    /// configured path; nothing queued is lost.
    pub fn reopen(&self) {
        // Fails only when the writer has ended (after flush_and_close): nothing to reopen.
        let _ = self.control.send(Control::Reopen);
    }

    /// Stops accepting records, writes everything queued, fsyncs and ends the writer, in
    /// at most `timeout`; what could not be written by then is counted as lost.
    pub async fn flush_and_close(&self, timeout: Duration) {
        self.shared.closed.store(true, Ordering::Release);
        let (done, finished) = oneshot::channel();
        let deadline = tokio::time::Instant::now() + timeout;
        if self.control.send(Control::Close { deadline, done }).is_err() {
            return;
        }
        // The writer keeps its own deadline; this one only bounds the wait.
        let _ = tokio::time::timeout(timeout + Duration::from_millis(100), finished).await;
    }

    pub fn stats(&self) -> AuditStats {
        let s = &self.shared;
        let capacity = self.queue.max_capacity() as u64;
        let in_queue = capacity.saturating_sub(self.queue.capacity() as u64);
        AuditStats {
            written: s.written.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            refused: s.refused.load(Ordering::Relaxed),
            lost: s.lost.load(Ordering::Relaxed),
            sink_errors: s.sink_errors.load(Ordering::Relaxed),
            queued: in_queue + s.in_writer.load(Ordering::Relaxed),
            capacity,
            failing: s.failing.load(Ordering::Relaxed),
        }
    }
}

/// The keys whose values differ between `a` and `b`, in the order of the `[audit]` table.
fn changed_keys(a: &AuditSettings, b: &AuditSettings) -> Vec<&'static str> {
    // Destructured so that a new key cannot be forgotten here.
    let AuditSettings {
        sink,
        format,
        log,
        log_catalog,
        log_relation,
        log_parameter,
        log_parameter_max_size,
        log_rows,
        log_statement_once,
        on_full,
        queue_size,
        fsync,
        on_error,
    } = a;
    [
        ("sink", *sink != b.sink),
        ("format", *format != b.format),
        ("log", *log != b.log),
        ("log_catalog", *log_catalog != b.log_catalog),
        ("log_relation", *log_relation != b.log_relation),
        ("log_parameter", *log_parameter != b.log_parameter),
        ("log_parameter_max_size", *log_parameter_max_size != b.log_parameter_max_size),
        ("log_rows", *log_rows != b.log_rows),
        ("log_statement_once", *log_statement_once != b.log_statement_once),
        ("on_full", *on_full != b.on_full),
        ("queue_size", *queue_size != b.queue_size),
        ("fsync", *fsync != b.fsync),
        ("on_error", *on_error != b.on_error),
    ]
    .into_iter()
    .filter_map(|(key, differs)| differs.then_some(key))
    .collect()
}

fn sink_name(settings: &AuditSettings) -> String {
    match &settings.sink {
        super::config::SinkTarget::File(path) => path.display().to_string(),
        super::config::SinkTarget::Stdout => "stdout".into(),
    }
}

/// Lets a warning through at most once per interval, with how many events it covers.
struct RateLimit {
    start: Instant,
    /// Milliseconds after `start` of the last warning; `u64::MAX`: none yet.
    last: AtomicU64,
    pending: AtomicU64,
}

impl RateLimit {
    const INTERVAL: Duration = Duration::from_secs(10);

    fn new() -> Self {
        Self { start: Instant::now(), last: AtomicU64::new(u64::MAX), pending: AtomicU64::new(0) }
    }

    /// Counts one event; `Some(events since the last warning)` when a warning is due.
    fn hit(&self) -> Option<u64> {
        self.pending.fetch_add(1, Ordering::Relaxed);
        let now = self.start.elapsed().as_millis() as u64;
        let last = self.last.load(Ordering::Relaxed);
        let due = last == u64::MAX || now.saturating_sub(last) >= Self::INTERVAL.as_millis() as u64;
        if due && self.last.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            return Some(self.pending.swap(0, Ordering::Relaxed));
        }
        None
    }
}
