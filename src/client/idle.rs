//! How long a client may keep pgate waiting for its next request: `client_idle_timeout`
//! outside a transaction, `idle_transaction_timeout` inside one (where it holds a server
//! that nobody else can use). Zero turns either off, and then no timer is armed.

use std::future::Future;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use super::session::Session;
use crate::config::PoolSettings;
use crate::error::Error;
use crate::pool::PooledServer;
use crate::server::ServerState;

/// A limit on one wait for the client, and the error it ends the session with.
#[derive(Debug, Clone, Copy)]
pub(super) struct IdleLimit {
    after: Duration,
    in_transaction: bool,
}

impl IdleLimit {
    /// `client_idle_timeout`, if set.
    pub(super) fn outside_transaction(settings: &PoolSettings) -> Option<Self> {
        let after = settings.client_idle_timeout;
        (!after.is_zero()).then_some(Self { after, in_transaction: false })
    }

    /// `idle_transaction_timeout`, if set.
    fn inside_transaction(settings: &PoolSettings) -> Option<Self> {
        let after = settings.idle_transaction_timeout;
        (!after.is_zero()).then_some(Self { after, in_transaction: true })
    }

    fn error(self) -> Error {
        if self.in_transaction { Error::IdleInTransaction(self.after) } else { Error::ClientIdle(self.after) }
    }

    /// Runs `wait`, or fails with this limit's error when it takes too long.
    pub(super) async fn run<T>(self, wait: impl Future<Output = T>) -> Result<T, Error> {
        tokio::time::timeout(self.after, wait).await.map_err(|_| self.error())
    }

    /// Runs `wait` under `limit`, if there is one. The timer is boxed: an idle client's
    /// task would otherwise carry its space, set or not.
    pub(super) async fn apply<T>(limit: Option<Self>, wait: impl Future<Output = T>) -> Result<T, Error> {
        match limit {
            Some(limit) => Box::pin(limit.run(wait)).await,
            None => Ok(wait.await),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// The limit on the wait that is about to start, when it is a wait for the client's next
    /// request with a server held and nothing in flight.
    pub(super) fn idle_limit(&self, server: &PooledServer) -> Option<IdleLimit> {
        let quiet = self.nothing_in_flight() && server.buf.is_empty();
        match server.state() {
            _ if !quiet => None,
            ServerState::Idle => IdleLimit::outside_transaction(&self.settings),
            ServerState::IdleInTransaction { .. } => IdleLimit::inside_transaction(&self.settings),
            ServerState::Busy { .. } | ServerState::Broken => None,
        }
    }
}
