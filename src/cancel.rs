//! Query cancellation: each client gets its own random BackendKeyData; a CancelRequest
//! carrying it is forwarded to the server running that client's query, if any. A server
//! with a cancel on its way is not handed to another client until PostgreSQL has acted on
//! it, or the late signal would cancel that client's query instead.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::protocol::{CancelKey, messages};

/// Where to send a cancel for a client's running query: the server's address and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelTarget {
    pub addr: Arc<str>,
    pub key: CancelKey,
}

struct Entry {
    secret: i32,
    target: Mutex<Option<CancelTarget>>,
    /// Cancels forwarded to the target and not yet acted on by PostgreSQL.
    in_flight: AtomicUsize,
    settled: Notify,
}

/// A cancel on its way to a server; dropping it says PostgreSQL has acted on it (or that
/// pgate gave up).
pub struct InFlight {
    entry: Arc<Entry>,
    pub target: CancelTarget,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.entry.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.entry.settled.notify_waiters();
        }
    }
}

/// The keys of all logged-in clients, by process id.
#[derive(Default)]
pub struct CancelRegistry {
    map: Mutex<HashMap<i32, Arc<Entry>>>,
}

/// A client's registration; dropping it unregisters the key.
pub struct CancelHandle {
    registry: Arc<CancelRegistry>,
    key: CancelKey,
    entry: Arc<Entry>,
}

impl CancelRegistry {
    /// Hands out a fresh random key, unique among live clients.
    pub fn register(self: &Arc<Self>) -> CancelHandle {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let pid = rand::random::<i32>() & i32::MAX;
            if pid == 0 || map.contains_key(&pid) {
                continue;
            }
            let entry = Arc::new(Entry {
                secret: rand::random(),
                target: Mutex::new(None),
                in_flight: AtomicUsize::new(0),
                settled: Notify::new(),
            });
            map.insert(pid, entry.clone());
            let key = CancelKey { pid, secret: entry.secret };
            return CancelHandle { registry: self.clone(), key, entry };
        }
    }

    /// The server to cancel for `key`, held by its client until the cancel is done with;
    /// `None` for unknown keys, wrong secrets and idle clients.
    pub fn lookup(&self, key: CancelKey) -> Option<InFlight> {
        let entry = self.map.lock().unwrap_or_else(|e| e.into_inner()).get(&key.pid).cloned()?;
        // Compare without an early exit, so timing does not reveal secret bits.
        if (entry.secret ^ key.secret) != 0 {
            return None;
        }
        // Counted under the target's lock: a client that clears its target and then
        // settles sees every cancel that found it.
        let target = entry.target.lock().unwrap_or_else(|e| e.into_inner());
        let target = target.clone()?;
        entry.in_flight.fetch_add(1, Ordering::AcqRel);
        Some(InFlight { entry: entry.clone(), target })
    }
}

impl CancelHandle {
    pub fn key(&self) -> CancelKey {
        self.key
    }

    /// Records the server now running this client's queries (None: no server).
    pub fn set(&self, target: Option<CancelTarget>) {
        *self.entry.target.lock().unwrap_or_else(|e| e.into_inner()) = target;
    }

    /// Waits until no cancel that found this client's server is still on its way, so the
    /// server can go to another client. Call after `set(None)`.
    pub async fn settle(&self) {
        // After `set(None)` only decrements can follow: a cancel that found the server was
        // counted under the lock `set` took. So zero now means settled, and the common
        // case registers no waiter (which would take the Notify's lock twice).
        if self.entry.in_flight.load(Ordering::Acquire) == 0 {
            return;
        }
        loop {
            let settled = self.entry.settled.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();
            if self.entry.in_flight.load(Ordering::Acquire) == 0 {
                return;
            }
            settled.await;
        }
    }
}

impl Drop for CancelHandle {
    fn drop(&mut self) {
        self.registry.map.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.key.pid);
    }
}

/// Sends a CancelRequest to a server, as libpq does: a fresh connection, one packet, then
/// wait for PostgreSQL to close it, which it does once it has signalled the backend.
pub async fn forward(target: &CancelTarget, timeout: Duration) -> std::io::Result<()> {
    let send = async {
        let mut stream = TcpStream::connect(&*target.addr).await?;
        let mut packet = BytesMut::new();
        messages::cancel_request(&mut packet, target.key);
        stream.write_all(&packet).await?;
        let mut rest = [0u8; 64];
        while stream.read(&mut rest).await? > 0 {}
        Ok(())
    };
    tokio::time::timeout(timeout, send)
        .await
        .unwrap_or_else(|_| Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "cancel timed out")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_resolve_only_with_the_right_secret_and_a_running_query() {
        let registry = Arc::new(CancelRegistry::default());
        let handle = registry.register();
        let key = handle.key();
        assert!(registry.lookup(key).is_none(), "idle client: nothing to cancel");
        let target = CancelTarget { addr: "127.0.0.1:1".into(), key: CancelKey { pid: 5, secret: 6 } };
        handle.set(Some(target.clone()));
        assert_eq!(registry.lookup(key).map(|f| f.target.clone()), Some(target));
        assert!(registry.lookup(CancelKey { pid: key.pid, secret: key.secret ^ 1 }).is_none());
        drop(handle);
        assert!(registry.lookup(key).is_none(), "gone after the client leaves");
    }

    #[tokio::test]
    async fn a_server_settles_only_when_its_cancels_are_done() {
        let registry = Arc::new(CancelRegistry::default());
        let handle = registry.register();
        handle.set(Some(CancelTarget { addr: "127.0.0.1:1".into(), key: CancelKey { pid: 5, secret: 6 } }));
        let in_flight = registry.lookup(handle.key()).expect("a running query");
        handle.set(None);
        let settle = handle.settle();
        tokio::pin!(settle);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), settle.as_mut()).await.is_err(),
            "must wait for the cancel"
        );
        drop(in_flight);
        tokio::time::timeout(Duration::from_secs(5), settle).await.expect("settles once the cancel is done");
    }
}
