//! What a pool keeps for the admin console: the pause gate (PAUSE / RESUME), the
//! generation of its servers (RECONNECT), a listing of its servers (SHOW SERVERS,
//! SHOW POOLS), the servers being opened, and its totals (SHOW STATS). The hot path only
//! touches atomics here; the listing's lock is taken when a server opens and when an
//! admin looks.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::Pool;
use crate::metrics::CloseReason;
use crate::server::{Finished, ServerConn, ServerFacts};

#[derive(Debug, Default)]
pub struct Live {
    pub gate: Gate,
    /// Servers opened before the current generation close when they come free.
    generation: AtomicU64,
    /// Every server the pool opened; dead entries are pruned as new ones arrive.
    servers: Mutex<Vec<Weak<ServerFacts>>>,
    /// Places taken to open a server that has not logged in yet.
    logins: AtomicUsize,
    pub totals: Totals,
    periods: Mutex<Periods>,
}

/// PgBouncer's `stats_period`: SHOW STATS averages over the last complete period.
pub const STATS_PERIOD: Duration = Duration::from_secs(60);

/// The totals at the start of the current stats period, and what the last one added.
#[derive(Debug)]
struct Periods {
    started: Instant,
    at_start: TotalsSnapshot,
    last: Option<(TotalsSnapshot, Duration)>,
}

impl Default for Periods {
    fn default() -> Self {
        Self { started: Instant::now(), at_start: TotalsSnapshot::default(), last: None }
    }
}

/// Holds new checkouts while the pool is paused.
#[derive(Debug, Default)]
pub struct Gate {
    closed: AtomicBool,
    /// The pool is closing: nobody waits here any more.
    shut: AtomicBool,
    opened: Notify,
}

impl Gate {
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    pub(super) fn open(&self) {
        self.closed.store(false, Ordering::Release);
        self.opened.notify_waiters();
    }

    pub(super) fn shut(&self) {
        self.shut.store(true, Ordering::Release);
        self.opened.notify_waiters();
    }

    /// Waits while the gate is closed; true if it had to wait.
    pub(super) async fn pass(&self) -> bool {
        if !self.is_closed() {
            return false;
        }
        loop {
            let opened = self.opened.notified();
            tokio::pin!(opened);
            opened.as_mut().enable();
            if !self.is_closed() || self.shut.load(Ordering::Acquire) {
                return true;
            }
            opened.await;
        }
    }
}

/// Counters since the pool was created; relaxed atomics, read together only by an admin.
#[derive(Debug, Default)]
pub struct Totals {
    assignments: AtomicU64,
    transactions: AtomicU64,
    queries: AtomicU64,
    received: AtomicU64,
    sent: AtomicU64,
    transaction_us: AtomicU64,
    query_us: AtomicU64,
    wait_us: AtomicU64,
    client_parses: AtomicU64,
    server_parses: AtomicU64,
    binds: AtomicU64,
}

/// A reading of [`Totals`] (times in microseconds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TotalsSnapshot {
    pub assignments: u64,
    pub transactions: u64,
    pub queries: u64,
    pub received: u64,
    pub sent: u64,
    pub transaction_us: u64,
    pub query_us: u64,
    pub wait_us: u64,
    pub client_parses: u64,
    pub server_parses: u64,
    pub binds: u64,
}

impl Totals {
    /// A server was handed to a client who waited `wait` for it.
    pub fn assigned(&self, wait: Duration) {
        self.assignments.fetch_add(1, Ordering::Relaxed);
        self.wait_us.fetch_add(wait.as_micros() as u64, Ordering::Relaxed);
    }

    /// A ReadyForQuery ended a request (and maybe a transaction).
    pub fn finished(&self, f: Finished) {
        self.queries.fetch_add(1, Ordering::Relaxed);
        self.query_us.fetch_add(f.query.as_micros() as u64, Ordering::Relaxed);
        if let Some(t) = f.transaction {
            self.transactions.fetch_add(1, Ordering::Relaxed);
            self.transaction_us.fetch_add(t.as_micros() as u64, Ordering::Relaxed);
        }
        if f.parses > 0 {
            self.server_parses.fetch_add(f.parses, Ordering::Relaxed);
        }
        if f.binds > 0 {
            self.binds.fetch_add(f.binds, Ordering::Relaxed);
        }
    }

    /// Bytes read from a client of the pool.
    pub fn received(&self, n: usize) {
        self.received.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Bytes written to a client of the pool.
    pub fn sent(&self, n: usize) {
        self.sent.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// A client sent a Parse (transaction and statement pooling track them).
    pub fn client_parse(&self) {
        self.client_parses.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> TotalsSnapshot {
        let read = |a: &AtomicU64| a.load(Ordering::Relaxed);
        TotalsSnapshot {
            assignments: read(&self.assignments),
            transactions: read(&self.transactions),
            queries: read(&self.queries),
            received: read(&self.received),
            sent: read(&self.sent),
            transaction_us: read(&self.transaction_us),
            query_us: read(&self.query_us),
            wait_us: read(&self.wait_us),
            client_parses: read(&self.client_parses),
            server_parses: read(&self.server_parses),
            binds: read(&self.binds),
        }
    }
}

impl TotalsSnapshot {
    /// Field by field sum (several pools of one database).
    pub fn add(&mut self, o: &TotalsSnapshot) {
        self.assignments += o.assignments;
        self.transactions += o.transactions;
        self.queries += o.queries;
        self.received += o.received;
        self.sent += o.sent;
        self.transaction_us += o.transaction_us;
        self.query_us += o.query_us;
        self.wait_us += o.wait_us;
        self.client_parses += o.client_parses;
        self.server_parses += o.server_parses;
        self.binds += o.binds;
    }

    /// Field by field difference from an earlier reading (a pool created in between
    /// counts from zero).
    pub fn since(&self, earlier: &TotalsSnapshot) -> TotalsSnapshot {
        TotalsSnapshot {
            assignments: self.assignments.saturating_sub(earlier.assignments),
            transactions: self.transactions.saturating_sub(earlier.transactions),
            queries: self.queries.saturating_sub(earlier.queries),
            received: self.received.saturating_sub(earlier.received),
            sent: self.sent.saturating_sub(earlier.sent),
            transaction_us: self.transaction_us.saturating_sub(earlier.transaction_us),
            query_us: self.query_us.saturating_sub(earlier.query_us),
            wait_us: self.wait_us.saturating_sub(earlier.wait_us),
            client_parses: self.client_parses.saturating_sub(earlier.client_parses),
            server_parses: self.server_parses.saturating_sub(earlier.server_parses),
            binds: self.binds.saturating_sub(earlier.binds),
        }
    }
}

/// Where one server of the pool stands, in PgBouncer's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerUse {
    /// Serving a client.
    Active,
    /// Idle and ready.
    Idle,
    /// Idle longer than `server_check_delay`: checked with a round trip before reuse.
    Used,
    /// Being reset, checked, or handed over.
    Tested,
}

impl ServerUse {
    pub fn name(self) -> &'static str {
        match self {
            ServerUse::Active => "active",
            ServerUse::Idle => "idle",
            ServerUse::Used => "used",
            ServerUse::Tested => "tested",
        }
    }
}

/// One server of the pool, as SHOW SERVERS lists it.
#[derive(Debug, Clone)]
pub struct ServerView {
    pub facts: Arc<ServerFacts>,
    pub state: ServerUse,
    /// It will be closed when it comes free (RECONNECT).
    pub close_needed: bool,
}

/// The pool's servers by state, as SHOW POOLS counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerCounts {
    pub active: usize,
    pub idle: usize,
    pub used: usize,
    pub tested: usize,
    pub login: usize,
}

impl ServerCounts {
    /// Servers a PAUSE waits for: every one that is not idle in the pool.
    pub fn busy(&self) -> usize {
        self.active + self.tested + self.login
    }
}

impl Live {
    /// Janitor work: closes the stats period when it is over.
    pub(super) fn sample(&self) {
        let mut periods = self.periods.lock().unwrap_or_else(|e| e.into_inner());
        let elapsed = periods.started.elapsed();
        if elapsed >= STATS_PERIOD {
            let now = self.totals.snapshot();
            periods.last = Some((now.since(&periods.at_start), elapsed));
            periods.at_start = now;
            periods.started = Instant::now();
        }
    }

    /// What the last complete stats period added, and how long it lasted.
    pub fn last_period(&self) -> Option<(TotalsSnapshot, Duration)> {
        self.periods.lock().unwrap_or_else(|e| e.into_inner()).last
    }

    pub(super) fn login_started(&self) {
        self.logins.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn login_ended(&self) {
        self.logins.fetch_sub(1, Ordering::Relaxed);
    }

    /// A server the pool just opened joins the listing, in the current generation.
    pub(super) fn track(&self, conn: &ServerConn) {
        conn.facts().set_generation(self.generation.load(Ordering::Acquire));
        let mut servers = self.servers.lock().unwrap_or_else(|e| e.into_inner());
        servers.retain(|w| w.strong_count() > 0);
        servers.push(Arc::downgrade(conn.facts()));
    }
}

impl Pool {
    /// The pool's admin state.
    pub fn live(&self) -> &Live {
        &self.live
    }

    /// New checkouts wait until [`Pool::resume`] (see `checkout`).
    pub fn pause(&self) {
        self.live.gate.close();
    }

    pub fn resume(&self) {
        self.live.gate.open();
    }

    pub fn is_paused(&self) -> bool {
        self.live.gate.is_closed()
    }

    /// True for a server opened before the last RECONNECT.
    pub fn is_stale(&self, conn: &ServerConn) -> bool {
        conn.facts().generation() < self.live.generation.load(Ordering::Acquire)
    }

    /// Servers open now are replaced: idle ones are closed at once, the others when their
    /// clients let go of them. Returns how many were closed now.
    pub fn reconnect(&self) -> usize {
        let stale = {
            let mut inner = self.lock();
            self.live.generation.fetch_add(1, Ordering::AcqRel);
            let idle = std::mem::take(&mut inner.idle);
            inner.open -= idle.len();
            idle
        };
        let closed = stale.len();
        self.metrics.closed(CloseReason::Replaced, closed);
        stale.into_iter().for_each(|conn| conn.close());
        closed
    }

    /// Every live server of the pool and where it stands.
    pub fn servers(&self) -> Vec<ServerView> {
        let listed: Vec<Arc<ServerFacts>> = {
            let servers = self.live.servers.lock().unwrap_or_else(|e| e.into_inner());
            servers.iter().filter_map(Weak::upgrade).collect()
        };
        let idle: Vec<(u64, Duration)> = self.lock().idle.iter().map(|c| (c.id(), c.idle_for())).collect();
        let generation = self.live.generation.load(Ordering::Acquire);
        listed
            .into_iter()
            .map(|facts| {
                let state = match idle.iter().find(|(id, _)| *id == facts.id) {
                    Some((_, idle_for)) if *idle_for > self.settings.load().server_check_delay => ServerUse::Used,
                    Some(_) => ServerUse::Idle,
                    None if facts.link().is_some() => ServerUse::Active,
                    None => ServerUse::Tested,
                };
                let close_needed = facts.generation() < generation;
                ServerView { facts, state, close_needed }
            })
            .collect()
    }

    /// The pool's servers by state, and those still logging in.
    pub fn server_counts(&self) -> ServerCounts {
        let mut counts = ServerCounts { login: self.live.logins.load(Ordering::Relaxed), ..Default::default() };
        for server in self.servers() {
            match server.state {
                ServerUse::Active => counts.active += 1,
                ServerUse::Idle => counts.idle += 1,
                ServerUse::Used => counts.used += 1,
                ServerUse::Tested => counts.tested += 1,
            }
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_gate_holds_until_opened() {
        let gate = Arc::new(Gate::default());
        assert!(!gate.pass().await, "an open gate does not wait");
        gate.close();
        let waiting = tokio::spawn({
            let gate = gate.clone();
            async move { gate.pass().await }
        });
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(!waiting.is_finished(), "a closed gate holds");
        gate.open();
        assert!(tokio::time::timeout(Duration::from_secs(5), waiting).await.unwrap().unwrap());
    }

    #[test]
    fn totals_count_transactions_only_when_they_end() {
        let totals = Totals::default();
        totals.finished(Finished { query: Duration::from_micros(5), ..Default::default() });
        totals.finished(Finished {
            query: Duration::from_micros(7),
            transaction: Some(Duration::from_micros(20)),
            parses: 2,
            binds: 3,
        });
        let s = totals.snapshot();
        assert_eq!((s.queries, s.query_us, s.transactions, s.transaction_us), (2, 12, 1, 20));
        assert_eq!((s.server_parses, s.binds), (2, 3));
        assert_eq!(s.since(&s), TotalsSnapshot::default());
    }
}
