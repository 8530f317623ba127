//! Pools of server connections, one per (backend, server database, server user):
//! `checkout` with a deadline, FIFO waiters, LIFO idle reuse, `size` / `min_idle` /
//! idle and lifetime limits. A checked-out server is a [`PooledServer`] guard whose Drop
//! returns it clean, resets it, or closes it (`guard.rs`).

mod checkout;
mod guard;
mod live;
mod origin;
mod registry;
mod reload;
mod rescue;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::{ArcSwap, Guard};
use bytes::Bytes;
use tokio::sync::Notify;

use checkout::{Slot, Waiter};
pub use guard::{PooledServer, drop_abandoned, is_abandoned};
pub use live::{Live, STATS_PERIOD, ServerCounts, ServerUse, ServerView, Totals, TotalsSnapshot};
pub use origin::{Origin, login_target, lookup_target};
pub use registry::Pools;
pub use reload::PoolChange;
pub use rescue::Abandoned;

use crate::config::PoolSettings;
use crate::metrics::{CloseReason, PoolMetrics};
use crate::params::Params;
use crate::server::{ServerConn, ServerError, Target};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    pub backend: String,
    pub database: String,
    pub user: String,
}

impl std::fmt::Display for PoolKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.backend, self.database, self.user)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error(
        "no server connection of pool {pool} became free within {waited:?} (query_wait_timeout); all {size} are busy"
    )]
    Timeout { pool: PoolKey, waited: Duration, size: usize },
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error("pool {0} is shutting down")]
    Closed(PoolKey),
}

/// Counts, for metrics, admin views and tests. Servers by state add up to `open` (up to
/// the moments between two counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    /// Servers open, being opened, or being reset.
    pub open: usize,
    /// Checked out by clients.
    pub active: usize,
    /// Idle and ready to hand out.
    pub idle: usize,
    /// Idle past `server_check_delay`: checked with a round trip before reuse.
    pub used: usize,
    /// Being reset (ROLLBACK / DISCARD ALL) or checked before reuse.
    pub tested: usize,
    /// Being opened and logged in.
    pub login: usize,
    /// Clients queued for a server of the full pool.
    pub waiting: usize,
    /// How long the first of them has waited.
    pub longest_wait: Duration,
}

pub struct Pool {
    key: PoolKey,
    /// Swapped by a configuration reload (`reload.rs`).
    settings: ArcSwap<PoolSettings>,
    target: ArcSwap<Target>,
    /// What created the pool, so a reload can work out its settings again.
    origin: Origin,
    /// The admin console's view and levers: pause gate, generation, listing, totals.
    live: Live,
    ids: Arc<AtomicU64>,
    inner: Mutex<Inner>,
    /// Woken when the first server of the pool has connected and `defaults` is known.
    defaults_known: Notify,
    statement_ids: Mutex<StatementIds>,
    metrics: Arc<PoolMetrics>,
    /// Servers being opened, and being reset or checked (for `PoolStats`).
    opening: AtomicUsize,
    testing: AtomicUsize,
}

/// Counts one server under `opening` or `testing` while it lives.
pub(crate) struct Busy<'a>(&'a AtomicUsize);

impl<'a> Busy<'a> {
    pub(crate) fn new(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Pool-wide ids of prepared statements, by definition (query text and parameter types):
/// clients that prepare the same statement share it on every server of the pool.
#[derive(Default)]
struct StatementIds {
    ids: HashMap<Bytes, u64>,
    /// Ids some server of the pool prepared without error.
    confirmed: HashSet<u64>,
    next: u64,
}

/// Distinct definitions remembered; past this the map starts over (ids keep growing, so a
/// forgotten definition simply gets a new id).
const MAX_STATEMENT_IDS: usize = 10_000;

#[derive(Default)]
struct Inner {
    /// Idle servers, most recently used last. Boxed once, when opened: a checkout hands a
    /// server on several times (idle list, grant, a waiter's channel, the guard), and each
    /// move of an unboxed connection copied its several hundred bytes.
    #[allow(clippy::vec_box)]
    idle: Vec<Box<ServerConn>>,
    /// Idle + checked out + being opened or reset.
    open: usize,
    waiters: VecDeque<Waiter>,
    /// ParameterStatus values of a fresh server, shown to clients at login.
    defaults: Option<Arc<Params>>,
    closed: bool,
}

impl Pool {
    pub fn new(
        key: PoolKey,
        settings: PoolSettings,
        target: Target,
        origin: Origin,
        ids: Arc<AtomicU64>,
        metrics: PoolMetrics,
    ) -> Arc<Self> {
        Arc::new(Self {
            metrics: Arc::new(metrics),
            opening: AtomicUsize::new(0),
            testing: AtomicUsize::new(0),
            key,
            settings: ArcSwap::from_pointee(settings),
            target: ArcSwap::from_pointee(target),
            origin,
            live: Live::default(),
            ids,
            inner: Mutex::default(),
            defaults_known: Notify::new(),
            statement_ids: Mutex::default(),
        })
    }

    pub fn key(&self) -> &PoolKey {
        &self.key
    }

    /// The settings in force (a reload may change them).
    pub fn settings(&self) -> Guard<Arc<PoolSettings>> {
        self.settings.load()
    }

    /// How servers are opened now (a reload may change it).
    pub fn target(&self) -> Guard<Arc<Target>> {
        self.target.load()
    }

    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// This pool's metric children.
    pub fn metrics(&self) -> &Arc<PoolMetrics> {
        &self.metrics
    }

    /// Counts a server under `tested` while the guard lives.
    pub(crate) fn testing(&self) -> Busy<'_> {
        Busy::new(&self.testing)
    }

    /// A server of this pool was closed.
    pub(crate) fn closed(&self, reason: CloseReason) {
        self.metrics.closed(reason, 1);
    }

    /// The pool-wide id of a statement definition (a Parse body after the name).
    pub fn statement_id(&self, definition: &[u8]) -> u64 {
        let mut ids = self.statement_ids.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&id) = ids.ids.get(definition) {
            return id;
        }
        if ids.ids.len() >= MAX_STATEMENT_IDS {
            ids.ids.clear();
            ids.confirmed.clear();
        }
        ids.next += 1;
        let id = ids.next;
        ids.ids.insert(Bytes::copy_from_slice(definition), id);
        id
    }

    /// A server prepared statement `id` without error.
    pub fn confirm_statement(&self, id: u64) {
        self.statement_ids.lock().unwrap_or_else(|e| e.into_inner()).confirmed.insert(id);
    }

    /// True once some server of the pool prepared `id` without error.
    pub fn statement_confirmed(&self, id: u64) -> bool {
        self.statement_ids.lock().unwrap_or_else(|e| e.into_inner()).confirmed.contains(&id)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves only counters behind; keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn stats(&self) -> PoolStats {
        let check_delay = self.settings().server_check_delay;
        let inner = self.lock();
        let used = inner.idle.iter().filter(|c| c.idle_for() > check_delay).count();
        // Waiters that gave up stay queued until a grant finds them gone.
        let waiting = inner.waiters.iter().filter(|w| !w.grant.is_closed());
        let (waiting, longest) = waiting.fold((0, None), |(n, first), w| (n + 1, first.or(Some(w.since))));
        let login = self.opening.load(Ordering::Relaxed);
        let tested = self.testing.load(Ordering::Relaxed);
        PoolStats {
            open: inner.open,
            active: inner.open.saturating_sub(inner.idle.len() + login + tested),
            idle: inner.idle.len() - used,
            used,
            tested,
            login,
            waiting,
            longest_wait: longest.map(|since| since.elapsed()).unwrap_or_default(),
        }
    }

    /// The parameters a fresh server reports, once any server has connected.
    pub fn defaults(&self) -> Option<Arc<Params>> {
        self.lock().defaults.clone()
    }

    /// The parameters a fresh server reports, for a client's login: known once any server
    /// has connected. Until then this opens one, but stops waiting for it as soon as
    /// another login's server has taught the pool (a full pool of busy servers must not
    /// hold up logins).
    pub async fn learn_defaults(self: &Arc<Self>) -> Result<Arc<Params>, PoolError> {
        loop {
            let known = self.defaults_known.notified();
            tokio::pin!(known);
            known.as_mut().enable();
            if let Some(defaults) = self.defaults() {
                return Ok(defaults);
            }
            tokio::select! {
                server = self.checkout() => return Ok(server?.defaults().clone()),
                _ = known => {}
            }
        }
    }

    /// past `server_lifetime`, and open servers up to `min_idle`.
    pub fn maintain(self: &Arc<Self>) {
        self.live.sample();
        let settings = self.settings();
        let expired = {
            let mut inner = self.lock();
            let mut expired = Vec::new();
            let mut keep = Vec::with_capacity(inner.idle.len());
            let total_idle = inner.idle.len();
            // Oldest-idle first: `idle` is used from the back.
            for conn in inner.idle.drain(..) {
                let surplus = total_idle - expired.len() > settings.min_idle;
                if conn.age() > settings.server_lifetime {
                    expired.push((conn, CloseReason::Lifetime));
                } else if surplus && conn.idle_for() > settings.server_idle_timeout {
                    expired.push((conn, CloseReason::IdleTimeout));
                } else {
                    keep.push(conn);
                }
            }
            inner.idle = keep;
            inner.open -= expired.len();
            expired
        };
        for (conn, reason) in expired {
            conn.close();
            self.closed(reason);
        }
        self.fill_min_idle();
    }

    fn fill_min_idle(self: &Arc<Self>) {
        if self.is_paused() {
            return;
        }
        let missing = {
            let mut inner = self.lock();
            if inner.closed {
                return;
            }
            let settings = self.settings();
            let want = settings.min_idle.saturating_sub(inner.idle.len());
            let n = want.min(settings.size.saturating_sub(inner.open));
            inner.open += n;
            n
        };
        for _ in 0..missing {
            let pool = self.clone();
            let slot = Slot::new(self.clone());
            tokio::spawn(async move {
                match pool.open_in(slot).await {
                    Ok(server) => drop(server),
                    Err(e) => {
                        tracing::warn!(pool = %pool.key, error = %e, "could not open a min_idle server")
                    }
                }
            });
        }
    }

    /// Stops handing out servers and closes the idle ones; checked-out servers close when
    /// their clients let go.
    pub fn close(&self) {
        self.live.gate.shut();
        let (idle, waiters) = {
            let mut inner = self.lock();
            inner.closed = true;
            inner.open -= inner.idle.len();
            (std::mem::take(&mut inner.idle), std::mem::take(&mut inner.waiters))
        };
        drop(waiters);
        self.metrics.closed(CloseReason::Shutdown, idle.len());
        idle.into_iter().for_each(|conn| conn.close());
    }
}
