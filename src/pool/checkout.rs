//! The checkout hand-off: waiters, grants of a server or a `Slot`, and their return.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{Busy, Pool, PoolError, PooledServer};
use crate::metrics::CloseReason;
use crate::server::{self, ServerConn};

/// What a waiter is handed: a server, or the right to open one.
pub(super) enum Grant {
    Server(PooledServer),
    Connect(Slot),
}

/// A client queued for a server.
pub(super) struct Waiter {
    pub(super) grant: oneshot::Sender<Grant>,
    pub(super) since: Instant,
}

impl Pool {
    /// Waits up to `query_wait_timeout` for a server of this pool.
    /// While the pool is paused (admin PAUSE) new checkouts wait without a deadline; the
    /// wait for a server starts when it resumes.
    pub async fn checkout(self: &Arc<Self>) -> Result<PooledServer, PoolError> {
        let mut deadline = Instant::now() + self.settings.load().query_wait_timeout;
        loop {
            if self.live.gate.pass().await {
                deadline = Instant::now() + self.settings.load().query_wait_timeout;
            }
            let grant = match self.grant_or_wait()? {
                Ok(grant) => grant,
                Err(rx) => self.wait(rx, deadline).await?,
            };
            if self.live.gate.is_closed() {
                // Paused while queued: the grant goes to the next in line (or back to the
                // pool), and this client waits at the gate with the new ones.
                drop(grant);
                continue;
            }
            match grant {
                Grant::Server(mut server) => match server.ready_for_reuse(&self.settings.load_full()).await {
                    Ok(()) => return Ok(server),
                    Err(reason) => server.discard(reason),
                },
                Grant::Connect(slot) => return self.open_in(slot).await,
            }
        }
    }

    /// An idle server at once, if there is one: no wait, no new connection.
    pub(super) fn idle_now(self: &Arc<Self>) -> Option<PooledServer> {
        let mut inner = self.lock();
        let conn = inner.idle.pop()?;
        Some(PooledServer::new(conn, self.clone()))
    }

    fn grant_or_wait(self: &Arc<Self>) -> Result<Result<Grant, oneshot::Receiver<Grant>>, PoolError> {
        let mut inner = self.lock();
        if inner.closed {
            return Err(PoolError::Closed(self.key.clone()));
        }
        while let Some(conn) = inner.idle.pop() {
            if self.is_stale(&conn) {
                // Went idle just as a RECONNECT emptied the idle list.
                inner.open -= 1;
                conn.close();
                continue;
            }
            return Ok(Ok(Grant::Server(PooledServer::new(conn, self.clone()))));
        }
        if inner.open < self.settings.load().size {
            inner.open += 1;
            return Ok(Ok(Grant::Connect(Slot::new(self.clone()))));
        }
        let (tx, rx) = oneshot::channel();
        inner.waiters.push_back(Waiter { grant: tx, since: Instant::now() });
        Ok(Err(rx))
    }

    async fn wait(&self, mut rx: oneshot::Receiver<Grant>, deadline: Instant) -> Result<Grant, PoolError> {
        match tokio::time::timeout_at(deadline, &mut rx).await {
            Ok(Ok(grant)) => Ok(grant),
            Ok(Err(_)) => Err(PoolError::Closed(self.key.clone())),
            Err(_) => {
                // A grant may have been sent just as the deadline passed: take it rather
                // than drop it.
                rx.close();
                rx.try_recv().map_err(|_| PoolError::Timeout {
                    pool: self.key.clone(),
                    waited: self.settings.load().query_wait_timeout,
                    size: self.settings.load().size,
                })
            }
        }
    }

    pub(super) async fn open_in(self: &Arc<Self>, slot: Slot) -> Result<PooledServer, PoolError> {
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        let opening = Busy::new(&self.opening);
        // Boxed, like other rare long steps: a client's task stays small while it idles.
        let conn = match Box::pin(server::connect(&self.target.load_full(), id)).await {
            Ok(conn) => conn,
            Err(e) => {
                self.metrics.connect_error(&e);
                return Err(e.into());
            }
        };
        drop(opening);
        self.metrics.servers_opened.inc();
        let first = {
            let mut inner = self.lock();
            let first = inner.defaults.is_none();
            if first {
                inner.defaults = Some(conn.defaults().clone());
            }
            first
        };
        if first {
            self.defaults_known.notify_waiters();
        }
        Ok(slot.fill(conn))
    }

    /// Hands a grant to the first waiter still waiting; with none, an idle server goes to
    /// the idle list and a free slot is given back. Grants left over are disarmed before
    /// they drop, so no guard's Drop runs while the lock is held.
    pub(super) fn give(self: &Arc<Self>, mut grant: Grant) {
        let mut inner = self.lock();
        while let Some(waiter) = inner.waiters.pop_front() {
            match waiter.grant.send(grant) {
                Ok(()) => return,
                Err(returned) => grant = returned,
            }
        }
        match grant {
            Grant::Server(mut server) => {
                if let Some(conn) = server.take() {
                    if inner.closed {
                        inner.open -= 1;
                        drop(inner);
                        conn.close();
                        self.closed(CloseReason::Shutdown);
                        return;
                    }
                    inner.idle.push(conn);
                }
            }
            Grant::Connect(mut slot) => {
                slot.disarm();
                inner.open -= 1;
            }
        }
    }

    /// A server of this pool is gone (closed, broken, failed to open): its place goes to
    /// the first waiter, or is freed.
    pub(super) fn free_slot(self: &Arc<Self>) {
        self.give(Grant::Connect(Slot::new(self.clone())));
    }
}

/// The right to open one server in a pool (counted in `open`); dropped unused, it frees
/// the place for a waiter.
pub(super) struct Slot {
    pool: Option<Arc<Pool>>,
}

impl Slot {
    pub(super) fn new(pool: Arc<Pool>) -> Self {
        pool.live.login_started();
        Self { pool: Some(pool) }
    }

    fn disarm(&mut self) {
        if let Some(pool) = self.pool.take() {
            pool.live.login_ended();
        }
    }

    fn fill(mut self, conn: ServerConn) -> PooledServer {
        let pool = self.pool.take().expect("a slot is filled once");
        pool.live.login_ended();
        pool.live.track(&conn);
        PooledServer::new(Box::new(conn), pool)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            pool.live.login_ended();
            pool.free_slot();
        }
    }
}
