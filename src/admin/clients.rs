//! The registry of logged-in clients (SHOW CLIENTS, SHOW POOLS, KILL_CLIENT): one entry per
//! session, added when its login succeeds and removed when its [`Registration`] drops.
//! Sessions update their entry's state with relaxed atomics; the registry's lock is taken
//! only at login, at logout, and when an admin looks.

use std::collections::BTreeMap;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use atomic_waker::AtomicWaker;

use crate::pool::Pool;
use crate::server::{ServerConn, ServerFacts};

/// Where a client stands, as PgBouncer names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ClientState {
    /// Logged in, no request under way.
    Idle = 0,
    /// Its request waits for a server.
    Waiting = 1,
    /// A server works for it.
    Active = 2,
}

impl ClientState {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => ClientState::Waiting,
            2 => ClientState::Active,
            _ => ClientState::Idle,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ClientState::Idle => "idle",
            ClientState::Waiting => "waiting",
            ClientState::Active => "active",
        }
    }
}

/// What is known of a client when it logs in.
#[derive(Clone)]
pub struct ClientInfo {
    pub peer: SocketAddr,
    pub local: Option<SocketAddr>,
    pub user: String,
    /// The database name the client asked for.
    pub database: String,
    /// Its pool (`None`: the admin console).
    pub pool: Option<Arc<Pool>>,
    /// The TLS version (`None`: plaintext).
    pub tls: Option<&'static str>,
    pub application_name: String,
    /// pgate's session id (the audit log's `session=`): its cancel key's process id.
    pub session: i32,
}

pub struct ClientEntry {
    pub id: u64,
    pub info: ClientInfo,
    pub connected_at: SystemTime,
    state: AtomicU8,
    /// When the state last changed (microseconds since the epoch).
    since: AtomicU64,
    /// The server working for it now.
    server: Mutex<Option<Arc<ServerFacts>>>,
    /// KILL_CLIENT and shutdown, as `STOP_*` bits.
    stop: AtomicU8,
    /// The session's task, woken when a stop bit is set. Its session checks for a stop
    /// at every wait, so this must cost no lock (tokio's Notify takes one per poll).
    stop_waker: AtomicWaker,
}

/// KILL_CLIENT: the session ends at once.
const STOP_KILL: u8 = 1;
/// Shutdown: the session ends at its next wait for the client.
const STOP_SHUTDOWN: u8 = 2;

impl ClientEntry {
    pub fn state(&self) -> ClientState {
        ClientState::from_u8(self.state.load(Ordering::Relaxed))
    }

    /// When its state last changed: its last request, or its login.
    pub fn since(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_micros(self.since.load(Ordering::Relaxed))
    }

    /// How long it has waited for a server (zero unless waiting).
    pub fn waited(&self) -> Duration {
        match self.state() {
            ClientState::Waiting => SystemTime::now().duration_since(self.since()).unwrap_or_default(),
            _ => Duration::ZERO,
        }
    }

    /// The id of the server working for it.
    pub fn server_id(&self) -> Option<u64> {
        self.server.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|s| s.id)
    }

    /// Ends the client's session (KILL_CLIENT).
    pub fn kill(&self) {
        self.stop(STOP_KILL);
    }

    /// Resolves once an admin killed the client.
    pub async fn killed(&self) {
        self.stopped(STOP_KILL).await
    }

    /// pgate is shutting down: the session ends when it next waits for its client.
    fn shut_down(&self) {
        self.stop(STOP_SHUTDOWN);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.stop.load(Ordering::Acquire) & STOP_SHUTDOWN != 0
    }

    /// Resolves once pgate is shutting down.
    pub async fn shutting_down(&self) {
        self.stopped(STOP_SHUTDOWN).await
    }

    fn stop(&self, bit: u8) {
        self.stop.fetch_or(bit, Ordering::AcqRel);
        self.stop_waker.wake();
    }

    async fn stopped(&self, bit: u8) {
        poll_fn(|cx| {
            // Registered before the check: a stop set in between still wakes the task.
            self.stop_waker.register(cx.waker());
            if self.stop.load(Ordering::Acquire) & bit != 0 { Poll::Ready(()) } else { Poll::Pending }
        })
        .await
    }

    /// Returns the time of the change (microseconds since the epoch) and how long the
    /// previous state lasted.
    fn set_state(&self, state: ClientState) -> (u64, Duration) {
        let now = micros(SystemTime::now());
        let before = self.since.swap(now, Ordering::Relaxed);
        self.state.store(state as u8, Ordering::Relaxed);
        (now, Duration::from_micros(now.saturating_sub(before)))
    }
}

/// All logged-in clients, by id.
#[derive(Default)]
pub struct Registry {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    next_id: AtomicU64,
    map: Mutex<BTreeMap<u64, Arc<ClientEntry>>>,
    /// Set under `map`'s lock, so every client registered after it is told too.
    shutting_down: AtomicBool,
}

impl Registry {
    pub fn register(&self, info: ClientInfo) -> Registration {
        let now = SystemTime::now();
        let entry = Arc::new(ClientEntry {
            id: self.inner.next_id.fetch_add(1, Ordering::Relaxed) + 1,
            info,
            connected_at: now,
            state: AtomicU8::new(ClientState::Idle as u8),
            since: AtomicU64::new(micros(now)),
            server: Mutex::new(None),
            stop: AtomicU8::new(0),
            stop_waker: AtomicWaker::new(),
        });
        let mut map = self.inner.map.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(entry.id, entry.clone());
        if self.inner.shutting_down.load(Ordering::Relaxed) {
            entry.shut_down();
        }
        drop(map);
        Registration { registry: self.inner.clone(), entry }
    }

    /// pgate is shutting down: every session, and every one that registers from now on,
    /// ends at its next wait for its client.
    pub fn shut_down_all(&self) {
        let map = self.inner.map.lock().unwrap_or_else(|e| e.into_inner());
        self.inner.shutting_down.store(true, Ordering::Relaxed);
        map.values().for_each(|entry| entry.shut_down());
    }

    /// Every client, by id.
    pub fn all(&self) -> Vec<Arc<ClientEntry>> {
        self.inner.map.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }

    pub fn get(&self, id: u64) -> Option<Arc<ClientEntry>> {
        self.inner.map.lock().unwrap_or_else(|e| e.into_inner()).get(&id).cloned()
    }

    pub fn len(&self) -> usize {
        self.inner.map.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A session's place in the registry; dropping it removes the client.
pub struct Registration {
    registry: Arc<Inner>,
    entry: Arc<ClientEntry>,
}

impl Registration {
    pub fn entry(&self) -> &Arc<ClientEntry> {
        &self.entry
    }

    /// A request waits for a server.
    pub fn waiting(&self) {
        self.entry.set_state(ClientState::Waiting);
    }

    /// `server` now works for the client; the wait counts in its pool's totals.
    pub fn serving(&self, server: &ServerConn) {
        let (now, waited) = self.entry.set_state(ClientState::Active);
        if let Some(pool) = &self.entry.info.pool {
            pool.live().totals.assigned(waited);
        }
        server.facts().set_link(Some(self.entry.id), now);
        *self.entry.server.lock().unwrap_or_else(|e| e.into_inner()) = Some(server.facts().clone());
    }

    /// The client has no server and no request under way.
    pub fn idle(&self) {
        let (now, _) = self.entry.set_state(ClientState::Idle);
        self.unlink(now);
    }

    /// The console works on the admin's command (admins have no server).
    pub fn busy(&self) {
        self.entry.set_state(ClientState::Active);
    }

    fn unlink(&self, now: u64) {
        let server = self.entry.server.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(server) = server
            && server.link() == Some(self.entry.id)
        {
            server.set_link(None, now);
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.unlink(micros(SystemTime::now()));
        self.registry.map.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.entry.id);
    }
}

fn micros(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> ClientInfo {
        ClientInfo {
            peer: "127.0.0.1:5000".parse().unwrap(),
            local: None,
            user: "alice".into(),
            database: "akko".into(),
            pool: None,
            tls: None,
            application_name: String::new(),
            session: 7,
        }
    }

    #[tokio::test]
    async fn clients_leave_the_registry_when_their_session_ends() {
        let registry = Registry::default();
        let a = registry.register(info());
        let b = registry.register(info());
        assert_eq!(registry.len(), 2);
        assert_ne!(a.entry().id, b.entry().id);
        a.waiting();
        assert_eq!(a.entry().state(), ClientState::Waiting);
        let entry = registry.get(b.entry().id).unwrap();
        entry.kill();
        tokio::time::timeout(Duration::from_secs(1), b.entry().killed()).await.expect("kill is seen");
        assert!(!b.entry().is_shutting_down());
        drop(b);
        assert!(registry.get(entry.id).is_none());
        assert_eq!(registry.len(), 1);
    }

    #[tokio::test]
    async fn shutdown_reaches_clients_registered_before_and_after_it() {
        let registry = Registry::default();
        let before = registry.register(info());
        let waiting = tokio::spawn({
            let entry = before.entry().clone();
            async move { entry.shutting_down().await }
        });
        tokio::task::yield_now().await;
        registry.shut_down_all();
        tokio::time::timeout(Duration::from_secs(1), waiting).await.expect("shutdown wakes a waiting session").unwrap();
        let after = registry.register(info());
        assert!(after.entry().is_shutting_down());
        tokio::time::timeout(Duration::from_secs(1), after.entry().shutting_down()).await.expect("and a later one");
        let killed = tokio::time::timeout(Duration::from_millis(50), after.entry().killed()).await;
        assert!(killed.is_err(), "shutdown is not a kill");
    }
}
