//! The writer task: takes records off the queue in batches, formats each batch into one
//! buffer, writes it with one write on the blocking pool and fsyncs per policy. While the
//! sink fails it retries (reopening the path) every `RETRY`: with `on_error = "deny"` the
//! failed batch is held and the queue waits behind it, so order is kept and nothing is
//! lost; with `"continue"` failed batches are counted as lost.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep_until};

use super::sink::{Pending, Sink};
use super::{Control, RateLimit, Shared};
use crate::audit::config::{AuditSettings, FsyncPolicy, OnError};
use crate::audit::format::write_record;
use crate::audit::record::Record;

/// Records formatted and written together.
const MAX_BATCH: usize = 1024;
/// After the first record of a batch, how long the writer lets more gather: one write and
/// one trip to the blocking pool for a burst of records, not one per record (under load
/// that is most of the writer's cost), and sessions that queue records meanwhile wake
/// nobody. Records are ordered and counted the same way; they reach the file this much later.
const LINGER: Duration = Duration::from_millis(2);
/// How often a failing sink is tried again.
const RETRY: Duration = Duration::from_millis(500);
/// How long the writer keeps draining when the `Auditor` is dropped without closing.
const DRAIN_ON_DROP: Duration = Duration::from_secs(5);

/// Closing: draining until the queue is empty or the deadline passes.
struct Closing {
    deadline: Instant,
    /// Told when the writer has ended.
    done: Option<oneshot::Sender<()>>,
}

pub(super) struct Writer {
    settings: AuditSettings,
    /// `None` only while a blocking call has it.
    sink: Option<Sink>,
    shared: Arc<Shared>,
    /// With `on_error = "deny"`: the batch that failed, written before anything else.
    held: Option<Pending>,
    /// While the sink fails: when to try again.
    retry_at: Option<Instant>,
    reopen_requested: bool,
    /// Written since the last fsync.
    dirty: bool,
    outage_lost: u64,
    lost_warning: RateLimit,
}

impl Writer {
    pub fn new(settings: AuditSettings, sink: Sink, shared: Arc<Shared>) -> Self {
        Self {
            settings,
            sink: Some(sink),
            shared,
            held: None,
            retry_at: None,
            reopen_requested: false,
            dirty: false,
            outage_lost: 0,
            lost_warning: RateLimit::new(),
        }
    }

    pub async fn run(mut self, mut queue: mpsc::Receiver<Record>, mut control: mpsc::UnboundedReceiver<Control>) {
        let mut fsync_tick = fsync_timer(self.settings.fsync);
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let mut closing: Option<Closing> = None;
        let far = || Instant::now() + Duration::from_secs(86_400 * 365);
        loop {
            let retry_at = self.retry_at.unwrap_or_else(far);
            let deadline = closing.as_ref().map_or_else(far, |c| c.deadline);
            // Control first: a reopen (or a reload's new settings) is done before the next
            // batch is taken, so records queued after `reopen()` returned go to the new file.
            tokio::select! {
                biased;
                message = control.recv(), if closing.is_none() => {
                    let fsync = self.settings.fsync;
                    closing = self.control(message).await;
                    if self.settings.fsync != fsync {
                        fsync_tick = fsync_timer(self.settings.fsync);
                    }
                    if closing.is_some() {
                        // Senders now fail; what is already queued is still received.
                        queue.close();
                    }
                }
                () = sleep_until(deadline), if closing.is_some() => {
                    self.give_up(&mut queue);
                    break;
                }
                () = sleep_until(retry_at), if self.retry_at.is_some() => self.retry().await,
                received = queue.recv_many(&mut batch, MAX_BATCH), if self.held.is_none() => {
                    if received == 0 {
                        break;
                    }
                    if closing.is_none() && batch.len() < MAX_BATCH {
                        tokio::time::sleep(LINGER).await;
                        while batch.len() < MAX_BATCH && let Ok(record) = queue.try_recv() {
                            batch.push(record);
                        }
                    }
                    self.write_batch(&mut batch).await;
                }
                _ = fsync_tick.tick() => self.sync_if_dirty().await,
            }
        }
        self.finish().await;
        if let Some(done) = closing.and_then(|c| c.done) {
            let _ = done.send(());
        }
    }

    /// Reopens, or starts closing (also when the `Auditor` is gone: `message` is `None`).
    async fn control(&mut self, message: Option<Control>) -> Option<Closing> {
        match message {
            Some(Control::Reopen) => {
                self.reopen().await;
                None
            }
            Some(Control::Reconfigure { settings, sink }) => {
                self.reconfigure(settings, sink).await;
                None
            }
            Some(Control::Close { deadline, done }) => Some(Closing { deadline, done: Some(done) }),
            None => Some(Closing { deadline: Instant::now() + DRAIN_ON_DROP, done: None }),
        }
    }

    /// Takes a reload's settings; with a new sink, what the old one got is fsynced (per
    /// the old policy) and it is closed. A held batch goes to the new sink, from the start
    /// of the line the failure tore (the old file keeps that fragment); a failing sink is
    /// tried again at once, as the new one.
    async fn reconfigure(&mut self, settings: AuditSettings, sink: Option<Sink>) {
        let (old_name, sync_old) = (self.sink_name(), self.dirty && self.settings.fsync != FsyncPolicy::Never);
        let sink = match sink {
            Some(sink) => sink,
            // Prepared while another reload moved the sink: the next write opens this one.
            None if settings.sink != self.settings.sink => Sink::unopened(&settings.sink),
            None => {
                self.settings = settings;
                return;
            }
        };
        self.settings = settings;
        self.dirty = false;
        self.reopen_requested = false;
        if let Some(held) = &mut self.held {
            held.restart_torn_line();
        }
        let synced = self
            .blocking(move |current| {
                let mut old = std::mem::replace(current, sink);
                if sync_old { old.sync() } else { Ok(()) }
            })
            .await;
        if let Some(Err(e)) = synced {
            self.shared.sink_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(sink = %old_name, error = %e, "fsync of the previous audit log failed");
        }
        tracing::info!(previous = %old_name, sink = %self.sink_name(), "audit log settings changed: writing to a new sink");
        if self.retry_at.is_some() {
            self.retry_at = Some(Instant::now());
        }
    }

    fn failing(&self) -> bool {
        self.shared.failing.load(Ordering::Acquire)
    }

    async fn write_batch(&mut self, batch: &mut Vec<Record>) {
        let records = batch.len() as u64;
        self.shared.in_writer.fetch_add(records, Ordering::Relaxed);
        let mut bytes = Vec::with_capacity(batch.len() * 256);
        for record in batch.drain(..) {
            write_record(&self.settings, &record, &mut bytes);
        }
        let pending = Pending { bytes, records, written: 0 };
        let throttled = self.retry_at.is_some_and(|at| Instant::now() < at);
        if self.settings.on_error == OnError::Continue && self.failing() && throttled {
            self.lose(pending.records);
            return;
        }
        self.attempt(pending).await;
    }

    /// Writes `pending` (reopening first if asked or after a failure), and fsyncs with
    /// `fsync = "always"`.
    async fn attempt(&mut self, mut pending: Pending) {
        let records = pending.records;
        let reopen = std::mem::take(&mut self.reopen_requested);
        let sync = self.settings.fsync == FsyncPolicy::Always;
        let outcome = self
            .blocking(move |sink| {
                let written = sink.write(&mut pending, reopen);
                let synced = if written.is_ok() && sync { sink.sync() } else { Ok(()) };
                (written, synced, pending)
            })
            .await;
        match outcome {
            Some((Ok(()), synced, _)) => {
                self.shared.written.fetch_add(records, Ordering::Relaxed);
                self.shared.in_writer.fetch_sub(records, Ordering::Relaxed);
                self.dirty = !sync;
                self.recovered();
                if let Err(e) = synced {
                    self.sync_failed(&e);
                }
            }
            Some((Err(e), _, pending)) => {
                self.failed(&e);
                match self.settings.on_error {
                    OnError::Deny => self.held = Some(pending),
                    OnError::Continue => self.lose(records),
                }
            }
            None => self.lose(records),
        }
    }

    /// The held batch again, or (nothing held) a reopen to see whether the sink is back.
    async fn retry(&mut self) {
        self.retry_at = None;
        match self.held.take() {
            Some(pending) => self.attempt(pending).await,
            None => self.reopen().await,
        }
    }

    async fn reopen(&mut self) {
        if self.held.is_some() {
            // The held batch's retry reopens the path; do it now.
            self.reopen_requested = true;
            self.retry_at = Some(Instant::now());
            return;
        }
        self.reopen_requested = false;
        match self.blocking(Sink::reopen).await {
            Some(Ok(())) => {
                tracing::info!(sink = %self.sink_name(), "audit log reopened");
                self.recovered();
            }
            Some(Err(e)) => self.failed(&e),
            None => {}
        }
    }

    /// Runs `f` on the blocking pool with the sink; `None` if it panicked (the sink is then
    /// replaced by an unopened one, which the next write opens).
    async fn blocking<T, F>(&mut self, f: F) -> Option<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Sink) -> T + Send + 'static,
    {
        let mut sink = self.sink.take().unwrap_or_else(|| Sink::unopened(&self.settings.sink));
        match tokio::task::spawn_blocking(move || {
            let out = f(&mut sink);
            (sink, out)
        })
        .await
        {
            Ok((sink, out)) => {
                self.sink = Some(sink);
                Some(out)
            }
            Err(e) => {
                tracing::error!(error = %e, "the audit log writer's blocking call failed");
                self.sink = Some(Sink::unopened(&self.settings.sink));
                self.failed(&std::io::Error::other("the audit writer failed"));
                None
            }
        }
    }

    fn failed(&mut self, error: &std::io::Error) {
        self.shared.sink_errors.fetch_add(1, Ordering::Relaxed);
        self.retry_at = Some(Instant::now() + RETRY);
        if self.failing() {
            return;
        }
        let consequence = match self.settings.on_error {
            OnError::Deny => "statements are refused and records kept until it can (audit.on_error = \"deny\")",
            OnError::Continue => "records are lost until it can (audit.on_error = \"continue\")",
        };
        tracing::warn!(sink = %self.sink_name(), error = %error, "the audit log cannot be written; {consequence}");
        self.shared.set_failing(Some(format!("writing it fails: {error}")));
    }

    fn recovered(&mut self) {
        self.retry_at = None;
        if !self.failing() {
            return;
        }
        self.shared.set_failing(None);
        let lost = std::mem::take(&mut self.outage_lost);
        tracing::info!(sink = %self.sink_name(), lost, "the audit log can be written again");
    }

    fn lose(&mut self, records: u64) {
        self.shared.in_writer.fetch_sub(records, Ordering::Relaxed);
        let total = self.shared.lost.fetch_add(records, Ordering::Relaxed) + records;
        self.outage_lost += records;
        if self.lost_warning.hit().is_some() {
            tracing::warn!(sink = %self.sink_name(), lost = total, "audit records lost: the audit log cannot be written");
        }
    }

    fn sync_failed(&mut self, error: &std::io::Error) {
        self.shared.sink_errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(sink = %self.sink_name(), error = %error, "fsync of the audit log failed");
    }

    async fn sync_if_dirty(&mut self) {
        if !self.dirty || !matches!(self.settings.fsync, FsyncPolicy::Interval(_)) {
            return;
        }
        self.dirty = false;
        if let Some(Err(e)) = self.blocking(Sink::sync).await {
            self.sync_failed(&e);
        }
    }

    /// Closing ran out of time: what is still held or queued is counted as lost.
    fn give_up(&mut self, queue: &mut mpsc::Receiver<Record>) {
        let held = self.held.take().map_or(0, |pending| pending.records);
        let mut queued = 0;
        while queue.try_recv().is_ok() {
            queued += 1;
        }
        self.shared.in_writer.fetch_sub(held, Ordering::Relaxed);
        self.shared.lost.fetch_add(held + queued, Ordering::Relaxed);
        tracing::error!(sink = %self.sink_name(), lost = held + queued, "audit log closed before these records could be written");
    }

    async fn finish(&mut self) {
        if self.settings.fsync != FsyncPolicy::Never && self.dirty {
            self.dirty = false;
            if let Some(Err(e)) = self.blocking(Sink::sync).await {
                self.sync_failed(&e);
            }
        }
        let s = &self.shared;
        tracing::info!(
            sink = %self.sink_name(),
            written = s.written.load(Ordering::Relaxed),
            dropped = s.dropped.load(Ordering::Relaxed),
            refused = s.refused.load(Ordering::Relaxed),
            lost = s.lost.load(Ordering::Relaxed),
            "audit log closed"
        );
    }

    fn sink_name(&self) -> String {
        super::sink_name(&self.settings)
    }
}

/// Ticks every `fsync_interval` (hourly, doing nothing, under the other policies).
fn fsync_timer(policy: FsyncPolicy) -> tokio::time::Interval {
    let period = match policy {
        FsyncPolicy::Interval(period) => period,
        FsyncPolicy::Always | FsyncPolicy::Never => Duration::from_secs(3600),
    };
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}
