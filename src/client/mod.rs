//! One client connection from accept to close: the startup phase (`handshake`), login
//! (`login`), then the session loop (`session`) under the pool mode of its pool.

mod after;
mod expect;
mod forward;
mod handshake;
mod io;
mod login;
mod reply;
mod session;
mod statements;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tracing::Instrument;

use crate::cancel;
use crate::error::Error;
use crate::proxy::Shared;
use handshake::Opening;
use io::send_error;
use session::Session;

/// How long a forwarded CancelRequest may take.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether this connection fits under `max_client_connections`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    OverLimit(usize),
}

/// Serves one accepted connection to its end.
pub async fn serve<S>(mut stream: S, peer: SocketAddr, shared: Arc<Shared>, admission: Admission)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let snapshot = shared.config.load_full();
    let deadline = Instant::now() + snapshot.listen.login_timeout;
    let mut pending = bytes::BytesMut::new();
    let opening =
        match tokio::time::timeout_at(deadline, handshake::open(&mut stream, &mut pending)).await {
            Ok(Ok(opening)) => opening,
            Ok(Err(e)) => return refuse(&mut stream, peer, e).await,
            Err(_) => {
                return tracing::debug!(%peer, "closed: no startup packet within login_timeout");
            }
        };
    let startup = match opening {
        Opening::Nothing => return,
        Opening::Cancel(key) => return forward_cancel(&shared, key).await,
        Opening::Startup(startup) => startup,
    };
    if let Admission::OverLimit(max) = admission {
        return refuse(&mut stream, peer, Error::TooManyClients(max)).await;
    }
    if shared.is_shutting_down() {
        return refuse(&mut stream, peer, Error::ShuttingDown).await;
    }
    // Boxed: the login's state is large and lives only until the session starts; the
    // task of an idle client should not carry it.
    let login = Box::pin(login::login(
        &mut stream,
        pending,
        peer,
        startup,
        &shared,
        &snapshot,
    ));
    let logged_in = match tokio::time::timeout_at(deadline, login).await {
        Ok(Ok(logged_in)) => logged_in,
        Ok(Err(e)) => return refuse(&mut stream, peer, e).await,
        Err(_) => {
            return refuse(
                &mut stream,
                peer,
                Error::LoginTimeout(snapshot.listen.login_timeout),
            )
            .await;
        }
    };
    drop(snapshot);
    let span =
        tracing::debug_span!("client", %peer, user = %logged_in.user, db = %logged_in.database);
    run_session(stream, logged_in, shared)
        .instrument(span)
        .await;
}

async fn run_session<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    logged_in: login::LoggedIn,
    shared: Arc<Shared>,
) {
    tracing::debug!("logged in");
    let mut session = Session::new(stream, logged_in, shared);
    match session.run().await {
        Ok(()) => tracing::debug!("session ended"),
        Err(e) => {
            if matches!(e, Error::ClientIo(_) | Error::ShuttingDown) {
                tracing::debug!(error = %e, "session ended");
            } else {
                tracing::warn!(error = %e, "session ended");
            }
            send_error(session.client(), &e).await;
        }
    }
}

async fn refuse<S: AsyncWrite + Unpin>(stream: &mut S, peer: SocketAddr, error: Error) {
    if !matches!(error, Error::ClientIo(_)) {
        tracing::info!(%peer, %error, "connection refused");
    }
    send_error(stream, &error).await;
}

/// A CancelRequest gets no answer, whatever happens (as with PostgreSQL).
async fn forward_cancel(shared: &Shared, key: crate::protocol::CancelKey) {
    let Some(target) = shared.cancels.lookup(key) else {
        return tracing::debug!(pid = key.pid, "cancel request for no running query");
    };
    if let Err(e) = cancel::forward(&target, CANCEL_TIMEOUT).await {
        tracing::warn!(server = %target.addr, error = %e, "could not forward a cancel request");
    }
}
