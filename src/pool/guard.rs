//! The RAII guard of a checked-out server: its Drop decides between back to the pool,
//! reset first (ROLLBACK / DISCARD ALL), rescue first (its client left mid-request), or
//! close.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Instant;

use super::Pool;
use super::checkout::Grant;
use super::rescue::{Abandoned, spawn_rescue};
use crate::config::PoolSettings;
use crate::metrics::CloseReason;
use crate::server::{ServerConn, ServerEvent, ServerState};

tokio::task_local! {
    /// Present while the state of a client task that panicked is dropped.
    static ABANDONED: ();
}

/// Drops `state` (what a panicked client task held) so that every server inside it is
/// closed rather than returned: the panic may have come between writing to a server and
/// recording it in the server's state, so that state cannot be trusted.
pub fn drop_abandoned<T>(state: T) {
    ABANDONED.sync_scope((), || drop(state));
}

/// True while unwinding a panic, or dropping what a panicked task held.
pub fn is_abandoned() -> bool {
    std::thread::panicking() || ABANDONED.try_with(|_| ()).is_ok()
}

pub struct PooledServer {
    conn: Option<Box<ServerConn>>,
    pool: Arc<Pool>,
    reset: bool,
    left: Abandoned,
}

impl PooledServer {
    pub(super) fn new(conn: Box<ServerConn>, pool: Arc<Pool>) -> Self {
        Self { conn: Some(conn), pool, reset: false, left: Abandoned::default() }
    }

    pub(super) fn take(&mut self) -> Option<Box<ServerConn>> {
        self.conn.take()
    }

    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// Run DISCARD ALL before the server serves anyone else (session pooling).
    pub fn reset_on_release(&mut self) {
        self.reset = true;
    }

    /// Where the client's streams stood when it let go: a server still working on its
    /// requests is rescued from there (see `rescue`).
    pub fn left_at(&mut self, left: Abandoned) {
        self.left = left;
    }

    /// Close the server instead of returning it.
    pub(super) fn discard(&mut self, reason: CloseReason) {
        if let Some(conn) = self.conn.take() {
            close(&self.pool, conn, reason);
        }
    }

    /// Checks an idle server before it is handed out: lifetime, a cheap liveness check,
    /// and a round trip when it has been idle longer than `server_check_delay`.
    pub(super) async fn ready_for_reuse(&mut self, s: &PoolSettings) -> Result<(), CloseReason> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(CloseReason::Broken);
        };
        let now = Instant::now();
        if conn.age_at(now) > s.server_lifetime {
            return Err(CloseReason::Lifetime);
        }
        if !conn.looks_alive() {
            return Err(CloseReason::CheckFailed);
        }
        if conn.idle_at(now) > s.server_check_delay {
            let _testing = self.pool.testing();
            let probe = tokio::time::timeout(s.reset_timeout, Box::pin(conn.run_internal(""))).await;
            if !matches!(probe, Ok(Ok(_))) {
                conn.on(ServerEvent::Failed);
                return Err(CloseReason::CheckFailed);
            }
        }
        Ok(())
    }
}

impl Deref for PooledServer {
    type Target = ServerConn;
    fn deref(&self) -> &ServerConn {
        self.conn.as_ref().expect("a PooledServer holds its server until dropped")
    }
}

impl DerefMut for PooledServer {
    fn deref_mut(&mut self) -> &mut ServerConn {
        self.conn.as_mut().expect("a PooledServer holds its server until dropped")
    }
}

impl Drop for PooledServer {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        if is_abandoned() {
            // Where its streams stood is unknown: cancel, close, and end the backend.
            tracing::warn!(pool = %self.pool.key(), "closing the server of a client task that panicked");
            return spawn_rescue(&self.pool, conn, Abandoned::default());
        }
        release(&self.pool, conn, self.reset, self.left);
    }
}

pub(super) fn release(pool: &Arc<Pool>, mut conn: Box<ServerConn>, reset: bool, left: Abandoned) {
    let now = Instant::now();
    // A server opened before a RECONNECT is replaced as it comes free.
    let expired = if pool.is_stale(&conn) {
        Some(CloseReason::Replaced)
    } else {
        (conn.age_at(now) > pool.settings().server_lifetime).then_some(CloseReason::Lifetime)
    };
    match (conn.state(), expired) {
        (ServerState::Idle, None) if !reset => {
            conn.touch_at(now);
            pool.give(Grant::Server(PooledServer::new(conn, pool.clone())));
        }
        (ServerState::Idle | ServerState::IdleInTransaction { .. }, None) => spawn_reset(pool, conn),
        // Its backend may still be running the request: never leave that to chance, even
        // for a server about to be closed for its age.
        (ServerState::Busy { .. }, _) => spawn_rescue(pool, conn, left),
        (_, Some(reason)) => close(pool, conn, reason),
        (_, None) => close(pool, conn, CloseReason::Broken),
    }
}

fn close(pool: &Arc<Pool>, conn: Box<ServerConn>, reason: CloseReason) {
    conn.close();
    pool.closed(reason);
    pool.free_slot();
}

/// Cleans a server a client left dirty (mid-transaction, or session pooling), off the
/// client's task; a server that cannot be cleaned in `reset_timeout` is closed.
fn spawn_reset(pool: &Arc<Pool>, mut conn: Box<ServerConn>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return close(pool, conn, CloseReason::Broken);
    };
    let pool = pool.clone();
    runtime.spawn(async move {
        let timeout = pool.settings().reset_timeout;
        let testing = pool.testing();
        let result = tokio::time::timeout(timeout, reset(&mut conn)).await;
        drop(testing);
        match result {
            Ok(Ok(())) => release(&pool, conn, false, Abandoned::default()),
            Ok(Err(e)) => {
                tracing::warn!(pool = %pool.key(), error = %e, "server reset failed; closing it");
                close(&pool, conn, CloseReason::ResetFailed);
            }
            Err(_) => {
                tracing::warn!(pool = %pool.key(), ?timeout, "server reset timed out; closing it");
                close(&pool, conn, CloseReason::ResetFailed);
            }
        }
    });
}

/// ROLLBACK an open transaction, then DISCARD ALL: temp tables, prepared statements,
/// LISTEN, session settings and session-level advisory locks all go.
pub(super) async fn reset(conn: &mut ServerConn) -> Result<(), crate::server::ServerError> {
    if matches!(conn.state(), ServerState::IdleInTransaction { .. }) {
        conn.run_internal("ROLLBACK").await?;
    }
    conn.run_internal("DISCARD ALL").await?;
    // The next client's statements must be prepared again, not bound to names DISCARD
    // ALL deallocated.
    conn.statements.clear();
    conn.set_params((**conn.defaults()).clone(), None);
    Ok(())
}
