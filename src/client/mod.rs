//! One client connection from accept to close: the startup phase (`handshake`, `start_tls`),
//! login (`login`), then the session loop (`session`, with `forward`, `rewrite`, `reply`,
//! `after`, `settings`, `poll`, `idle`) under the pool mode of its pool. The proxy runs each
//! client inside `contain`, so a panic ends only that client.

mod after;
pub(crate) mod audit_log;
mod contain;
mod counted;
mod expect;
mod forward;
mod handshake;
mod idle;
mod inspect;
pub(crate) mod io;
pub(crate) mod login;
pub(crate) mod lookup;
mod poll;
mod reply;
mod rewrite;
mod session;
mod settings;
mod start_tls;
mod statements;
mod ticket;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::Instrument;

use crate::cancel;
use crate::error::Error;
use crate::protocol::StartupMessage;
use crate::proxy::{ClientSlot, Shared};
pub use contain::{Ended, contain};
use handshake::{Encryption, Opening};
use io::send_error;
use session::Session;
pub use start_tls::TlsFacts;

/// How long a forwarded CancelRequest may take.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether this connection fits under `max_client_connections`; an admitted one holds its
/// place until its session ends.
pub enum Admission {
    Admitted(ClientSlot),
    OverLimit(usize),
}

/// What every step of one connection needs to know.
struct Conn {
    peer: SocketAddr,
    /// pgate's end of the connection (SHOW CLIENTS).
    local: Option<SocketAddr>,
    shared: Arc<Shared>,
    admission: Admission,
    deadline: Instant,
}

/// A logged-in client's session, ready to run to its end.
pub(crate) type Running = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// Serves one accepted connection to its end: the startup phase (negotiation, login),
/// then the session. Each is boxed on its own, so the state of the startup phase (the
/// login, and what the async functions that ran it keep) is freed before the session
/// starts: an idle client holds only its session's state.
pub async fn serve(tcp: TcpStream, peer: SocketAddr, shared: Arc<Shared>, admission: Admission) {
    if let Some(session) = Box::pin(start(tcp, peer, shared, admission)).await {
        session.await;
    }
}

/// The startup phase of one connection: the session to run, if it came to one.
async fn start(mut tcp: TcpStream, peer: SocketAddr, shared: Arc<Shared>, admission: Admission) -> Option<Running> {
    let login_timeout = shared.config.load().listen.login_timeout;
    let local = tcp.local_addr().ok();
    let conn = Conn { peer, local, shared, admission, deadline: Instant::now() + login_timeout };
    let tls = conn.shared.client_tls();
    if let Some(tls) = &tls
        && start_tls::opens_with_tls(&tcp, conn.deadline).await
    {
        // The TLS paths are boxed: their state (rustls' connection) would otherwise size
        // the startup phase of every plaintext client too.
        return Box::pin(start_tls::direct(tcp, tls.clone(), conn)).await;
    }
    let mut pending = BytesMut::new();
    let encryption = if tls.is_some() { Encryption::Offered } else { Encryption::Unavailable };
    let opened = tokio::time::timeout_at(conn.deadline, handshake::open(&mut tcp, &mut pending, encryption)).await;
    match opened {
        Ok(Ok(Opening::Startup(startup))) => return after_startup(tcp, pending, startup, None, conn).await,
        Ok(Ok(Opening::StartTls)) => match tls {
            Some(tls) => return Box::pin(start_tls::upgrade(tcp, pending, tls, conn)).await,
            None => unreachable_tls(peer),
        },
        Ok(Ok(Opening::Cancel(key))) => forward_cancel(&conn.shared, key, peer).await,
        Ok(Ok(Opening::Nothing)) => {}
        Ok(Err(e)) => refuse(&mut tcp, peer, e).await,
        Err(_) => tracing::debug!(%peer, "closed: no startup packet within login_timeout"),
    }
    None
}

fn unreachable_tls(peer: SocketAddr) {
    tracing::error!(%peer, "TLS was offered without a TLS configuration");
}

/// After the StartupMessage, on a plain or a TLS stream: admission, login, and the
/// session to run (the admin console runs here, to its end).
async fn after_startup<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    mut stream: S,
    pending: BytesMut,
    startup: StartupMessage,
    tls: Option<TlsFacts>,
    conn: Conn,
) -> Option<Running> {
    let Conn { peer, local, shared, admission, deadline } = conn;
    let snapshot = shared.config.load_full();
    let (early, slot) = match admission {
        Admission::OverLimit(max) => (Some(Error::TooManyClients(max)), None),
        Admission::Admitted(slot) => (shared.is_shutting_down().then_some(Error::ShuttingDown), Some(slot)),
    };
    if let Some(e) = early {
        shared.metrics.login("none", Err(&e), &snapshot.workspaces);
        refuse(&mut stream, peer, e).await;
        return None;
    }
    if crate::admin::wants_console(&startup) {
        let origin = crate::admin::Origin { peer, local, tls, deadline };
        // Boxed, as the console is rare and its state would size every client's task.
        Box::pin(crate::admin::serve(stream, pending, startup, origin, shared)).await;
        return None;
    }
    let claimed = shared.auditor.is_some().then(|| audit_log::Claimed::of(&startup, peer, tls.as_ref()));
    let mut method = "none";
    // Boxed: the login's state is large and lives only until the session starts; the
    // task of an idle client should not carry it.
    let login =
        Box::pin(login::login(&mut stream, pending, peer, startup, &shared, &snapshot, tls.as_ref(), &mut method));
    let logged_in = tokio::time::timeout_at(deadline, login)
        .await
        .unwrap_or_else(|_| Err(Error::LoginTimeout(snapshot.listen.login_timeout)));
    let logged_in = match logged_in {
        Ok(logged_in) => logged_in,
        Err(e) => {
            shared.metrics.login(method, Err(&e), &snapshot.workspaces);
            audit_log::login_failed(&shared, claimed, &e).await;
            refuse(&mut stream, peer, e).await;
            return None;
        }
    };
    shared.metrics.login(logged_in.method, Ok(()), &snapshot.workspaces);
    drop(snapshot);
    audit_log::login_ok(&shared, &logged_in).await;
    let tls_version = tls.as_ref().map(|t| t.version).unwrap_or("none");
    let span =
        tracing::debug_span!("client", %peer, user = %logged_in.user, db = %logged_in.database, tls = tls_version);
    let origin = Origin { peer, local, tls: tls.map(|t| t.version) };
    Some(Box::pin(session(stream, logged_in, origin, shared, slot).instrument(span)))
}

/// Where a client connected from, for the admin console's registry.
struct Origin {
    peer: SocketAddr,
    local: Option<SocketAddr>,
    tls: Option<&'static str>,
}

/// Registers the client and builds its session; the future runs it to its end and then
/// gives back the client's place under max_client_connections (`slot`). The session is
/// built before the future, which then holds it once (an async fn would also keep the
/// arguments it was built from).
fn session<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    stream: S,
    mut logged_in: login::LoggedIn,
    origin: Origin,
    shared: Arc<Shared>,
    slot: Option<ClientSlot>,
) -> impl Future<Output = ()> + Send {
    let registration = shared.console.register(crate::admin::ClientInfo {
        peer: origin.peer,
        local: origin.local,
        user: logged_in.user.clone(),
        database: logged_in.database.clone(),
        pool: Some(logged_in.pool.clone()),
        tls: origin.tls,
        application_name: logged_in.params.get("application_name").unwrap_or_default().to_owned(),
        session: logged_in.cancel.key().pid,
    });
    let entry = registration.entry().clone();
    logged_in.registration = Some(registration);
    // The client's bytes count in its pool's totals (SHOW STATS).
    let stream = counted::Counted::new(stream, logged_in.pool.clone());
    let mut session = Session::new(stream, logged_in, shared);
    async move {
        tracing::debug!("logged in");
        // KILL_CLIENT ends the session wherever it is; the server it held is closed or
        // reset as for a client that vanished.
        // Biased: the session first, and no random draw per wake-up (this runs on every one).
        let ended = tokio::select! {
            biased;
            ended = session.run() => ended,
            () = entry.killed() => Err(Error::Killed),
        };
        // Boxed: only the end of a session with an audit log needs it.
        Box::pin(session.finish_audit()).await;
        match ended {
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
        drop(slot);
    }
}

async fn refuse<S: AsyncWrite + Unpin>(stream: &mut S, peer: SocketAddr, error: Error) {
    if !matches!(error, Error::ClientIo(_)) {
        tracing::info!(%peer, %error, "connection refused");
    }
    send_error(stream, &error).await;
}

/// A CancelRequest gets no answer, whatever happens (as with PostgreSQL).
async fn forward_cancel(shared: &Shared, key: crate::protocol::CancelKey, peer: SocketAddr) {
    let Some(in_flight) = shared.cancels.lookup(key) else {
        shared.metrics.cancel("unknown");
        audit_log::cancel(shared, peer, key, false).await;
        return tracing::debug!(pid = key.pid, "cancel request for no running query");
    };
    audit_log::cancel(shared, peer, key, true).await;
    match cancel::forward(&in_flight.target, CANCEL_TIMEOUT).await {
        Ok(()) => shared.metrics.cancel("forwarded"),
        Err(e) => {
            shared.metrics.cancel("failed");
            tracing::warn!(server = %in_flight.target.addr, error = %e, "could not forward a cancel request");
        }
    }
}
