//! The RAII guard of a checked-out server: its Drop decides between back to the pool,
//! reset first (ROLLBACK / DISCARD ALL), or close.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use super::{Grant, Pool};
use crate::config::PoolSettings;
use crate::metrics::CloseReason;
use crate::server::{ServerConn, ServerEvent, ServerState};

pub struct PooledServer {
    conn: Option<ServerConn>,
    pool: Arc<Pool>,
    reset: bool,
}

impl PooledServer {
    pub(super) fn new(conn: ServerConn, pool: Arc<Pool>) -> Self {
        Self { conn: Some(conn), pool, reset: false }
    }

    pub(super) fn take(&mut self) -> Option<ServerConn> {
        self.conn.take()
    }

    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// Run DISCARD ALL before the server serves anyone else (session pooling).
    pub fn reset_on_release(&mut self) {
        self.reset = true;
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
        if conn.age() > s.server_lifetime {
            return Err(CloseReason::Lifetime);
        }
        if !conn.looks_alive() {
            return Err(CloseReason::CheckFailed);
        }
        if conn.idle_for() > s.server_check_delay {
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
        if let Some(conn) = self.conn.take() {
            release(&self.pool, conn, self.reset);
        }
    }
}

fn release(pool: &Arc<Pool>, mut conn: ServerConn, reset: bool) {
    // A server opened before a RECONNECT is replaced as it comes free.
    let expired = if pool.is_stale(&conn) {
        Some(CloseReason::Replaced)
    } else {
        (conn.age() > pool.settings().server_lifetime).then_some(CloseReason::Lifetime)
    };
    match (conn.state(), expired) {
        (ServerState::Idle, None) if !reset => {
            conn.touch();
            pool.give(Grant::Server(PooledServer::new(conn, pool.clone())));
        }
        (ServerState::Idle | ServerState::IdleInTransaction { .. }, None) => spawn_reset(pool, conn),
        (_, Some(reason)) => close(pool, conn, reason),
        (_, None) => close(pool, conn, CloseReason::Broken),
    }
}

fn close(pool: &Arc<Pool>, conn: ServerConn, reason: CloseReason) {
    conn.close();
    pool.closed(reason);
    pool.free_slot();
}

/// Cleans a server a client left dirty (mid-transaction, or session pooling), off the
/// client's task; a server that cannot be cleaned in `reset_timeout` is closed.
fn spawn_reset(pool: &Arc<Pool>, mut conn: ServerConn) {
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
            Ok(Ok(())) => release(&pool, conn, false),
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
async fn reset(conn: &mut ServerConn) -> Result<(), crate::server::ServerError> {
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
