//! What the admin console shows of one server connection (`SHOW SERVERS`), shared between
//! the connection and its pool's listing so the console can read it without the lock of
//! whoever holds the connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug)]
pub struct ServerFacts {
    /// The connection's id (as in logs).
    pub id: u64,
    /// pgate's end of the TCP connection.
    pub local: Option<SocketAddr>,
    /// `host:port` it was opened to, where its cancel requests go (a reload may point the
    /// pool elsewhere while this server lives on).
    pub backend_addr: Arc<str>,
    /// The TLS version towards the server (`None`: plaintext).
    pub tls: Option<&'static str>,
    pub connected_at: SystemTime,
    /// The backend's process id, once its BackendKeyData arrived.
    pid: AtomicI32,
    /// The pool generation the server was opened in; a RECONNECT starts a new one.
    generation: AtomicU64,
    /// The id of the client it serves now (0: none).
    link: AtomicU64,
    /// When it was last handed to a client or given back (microseconds since the epoch).
    request_time: AtomicU64,
}

impl ServerFacts {
    pub fn new(id: u64, local: Option<SocketAddr>, backend_addr: Arc<str>, tls: Option<&'static str>) -> Self {
        let now = SystemTime::now();
        Self {
            id,
            local,
            backend_addr,
            tls,
            connected_at: now,
            pid: AtomicI32::new(0),
            generation: AtomicU64::new(0),
            link: AtomicU64::new(0),
            request_time: AtomicU64::new(micros(now)),
        }
    }

    pub fn pid(&self) -> i32 {
        self.pid.load(Ordering::Relaxed)
    }

    pub fn set_pid(&self, pid: i32) {
        self.pid.store(pid, Ordering::Relaxed);
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    pub fn set_generation(&self, generation: u64) {
        self.generation.store(generation, Ordering::Relaxed);
    }

    /// The client this server serves now, if any.
    pub fn link(&self) -> Option<u64> {
        Some(self.link.load(Ordering::Relaxed)).filter(|&id| id != 0)
    }

    /// The server serves client `client` (`None`: nobody) since `at` (microseconds since
    /// the epoch: the caller has read the clock already).
    pub fn set_link(&self, client: Option<u64>, at: u64) {
        self.link.store(client.unwrap_or(0), Ordering::Relaxed);
        self.request_time.store(at, Ordering::Relaxed);
    }

    pub fn request_time(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_micros(self.request_time.load(Ordering::Relaxed))
    }
}

fn micros(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}
