//! Query cancellation: each client gets its own random BackendKeyData; a CancelRequest
//! carrying it is forwarded to the server running that client's query, if any.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

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
            let entry = Arc::new(Entry { secret: rand::random(), target: Mutex::new(None) });
            map.insert(pid, entry.clone());
            let key = CancelKey { pid, secret: entry.secret };
            return CancelHandle { registry: self.clone(), key, entry };
        }
    }

    /// The server to cancel for `key`; `None` for unknown keys, wrong secrets and idle clients.
    pub fn lookup(&self, key: CancelKey) -> Option<CancelTarget> {
        let entry = self.map.lock().unwrap_or_else(|e| e.into_inner()).get(&key.pid).cloned()?;
        // Compare without an early exit, so timing does not reveal secret bits.
        if (entry.secret ^ key.secret) != 0 {
            return None;
        }
        entry.target.lock().unwrap_or_else(|e| e.into_inner()).clone()
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
}

impl Drop for CancelHandle {
    fn drop(&mut self) {
        self.registry.map.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.key.pid);
    }
}

/// Sends a CancelRequest to a server, as libpq would: a fresh connection, one packet.
pub async fn forward(target: &CancelTarget, timeout: Duration) -> std::io::Result<()> {
    let send = async {
        let mut stream = TcpStream::connect(&*target.addr).await?;
        let mut packet = BytesMut::new();
        messages::cancel_request(&mut packet, target.key);
        stream.write_all(&packet).await?;
        stream.shutdown().await
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
        assert_eq!(registry.lookup(key), None, "idle client: nothing to cancel");
        let target = CancelTarget { addr: "127.0.0.1:1".into(), key: CancelKey { pid: 5, secret: 6 } };
        handle.set(Some(target.clone()));
        assert_eq!(registry.lookup(key), Some(target));
        assert_eq!(registry.lookup(CancelKey { pid: key.pid, secret: key.secret ^ 1 }), None);
        drop(handle);
        assert_eq!(registry.lookup(key), None, "gone after the client leaves");
    }
}
