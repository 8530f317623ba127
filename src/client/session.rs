//! The session loop of a logged-in client: wait for a request, check a server out,
//! relay bytes both ways until the server is idle (transaction pooling) or the client
//! leaves (session pooling), and let the pool guard decide what happens to the server.

use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio_util::io::poll_read_buf;

use super::io::flush;
use super::login::LoggedIn;
use crate::cancel::CancelTarget;
use crate::config::PoolMode;
use crate::error::Error;
use crate::params;
use crate::pool::{PoolError, PooledServer};
use crate::protocol::codes::{backend, frontend, tx_status};
use crate::protocol::{FrameScanner, Interest, ProtocolError, Scan, frame, messages};
use crate::server::{ServerError, ServerEvent, ServerState};

/// Client bytes read but not yet sent to the server are capped; past this the client is
/// not read until the server catches up.
const MAX_PENDING_CLIENT_BYTES: usize = 256 * 1024;
/// Reads while relaying ask for this much room, so large requests and COPY data move in
/// big chunks.
const CLIENT_READ_CHUNK: usize = 8 * 1024;
/// An idle client keeps at most this much buffer: thousands of idle clients are common.
const IDLE_BUFFER: usize = 1024;

/// How a stretch of relaying ended.
enum RelayEnd {
    /// The server finished the client's transaction and can serve someone else.
    Released,
    /// The client closed its socket or sent Terminate.
    ClientGone,
}

/// What the client wants while it has no server.
enum Next {
    Request,
    Terminate,
}

pub struct Session<S> {
    client: S,
    /// Client bytes not yet sent to a server; the first `scanned` are framed and counted.
    cbuf: BytesMut,
    scanned: usize,
    cscan: FrameScanner,
    sscan: FrameScanner,
    /// Messages pgate itself owes the client (local ReadyForQuery, errors).
    out: BytesMut,
    login: LoggedIn,
    mode: PoolMode,
    /// After a refused extended-protocol request: drop messages up to its Sync.
    skip_until_sync: bool,
    shutdown: watch::Receiver<bool>,
}

fn every_frame(_: u8) -> Interest {
    Interest::Header
}

fn server_interest(code: u8) -> Interest {
    match code {
        backend::READY_FOR_QUERY | backend::PARAMETER_STATUS => Interest::Whole,
        _ => Interest::None,
    }
}

fn is_frontend_message(code: u8) -> bool {
    use frontend::*;
    matches!(
        code,
        QUERY
            | PARSE
            | BIND
            | EXECUTE
            | DESCRIBE
            | CLOSE
            | SYNC
            | FLUSH
            | FUNCTION_CALL
            | COPY_DATA
            | COPY_DONE
            | COPY_FAIL
            | TERMINATE
    )
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub fn new(client: S, mut login: LoggedIn, shutdown: watch::Receiver<bool>) -> Self {
        let mode = login.pool.settings().mode;
        Self {
            client,
            cbuf: std::mem::take(&mut login.pending),
            scanned: 0,
            cscan: FrameScanner::new(frame::MAX_FRAME_LEN),
            sscan: FrameScanner::new(frame::MAX_FRAME_LEN),
            out: BytesMut::new(),
            login,
            mode,
            skip_until_sync: false,
            shutdown,
        }
    }

    /// The client socket, for a last message after the session ends.
    pub fn client(&mut self) -> &mut S {
        &mut self.client
    }

    pub async fn run(&mut self) -> Result<(), Error> {
        loop {
            if let Next::Terminate = self.wait_for_request().await? {
                return Ok(());
            }
            let mut server = match self.login.pool.checkout().await {
                Ok(server) => server,
                Err(e) => {
                    self.refuse_request(Error::Checkout(e)).await?;
                    continue;
                }
            };
            if self.mode == PoolMode::Session {
                server.reset_on_release();
            }
            self.login.cancel.set(Some(CancelTarget {
                addr: server.pool().cancel_addr().clone(),
                key: server.key(),
            }));
            let end = self.serve_with(&mut server).await;
            self.login.cancel.set(None);
            match end? {
                RelayEnd::Released => continue,
                RelayEnd::ClientGone => return Ok(()),
            }
        }
    }

    fn shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Reads more client bytes; `false` on EOF.
    async fn read_client(&mut self) -> Result<bool, Error> {
        self.cbuf.reserve(IDLE_BUFFER);
        Ok(self.client.read_buf(&mut self.cbuf).await? > 0)
    }

    /// Handles what needs no server (Sync, Flush, stray copy messages, Terminate) until a
    /// message arrives that does.
    async fn wait_for_request(&mut self) -> Result<Next, Error> {
        loop {
            let Some((code, total)) = frame::peek_header(&self.cbuf, frame::MAX_FRAME_LEN)? else {
                flush(&mut self.client, &mut self.out).await?;
                if self.shutting_down() {
                    return Err(Error::ShuttingDown);
                }
                if self.cbuf.is_empty() && self.cbuf.capacity() > IDLE_BUFFER {
                    // Give back what a large request needed before waiting, maybe for long.
                    self.cbuf = BytesMut::new();
                }
                let mut shutdown = self.shutdown.clone();
                tokio::select! {
                    more = self.read_client() => if !more? { return Ok(Next::Terminate) },
                    _ = shutdown.changed() => {}
                }
                continue;
            };
            if !is_frontend_message(code) {
                return Err(ProtocolError::Unexpected {
                    code,
                    during: "a session",
                }
                .into());
            }
            if code == frontend::TERMINATE {
                return Ok(Next::Terminate);
            }
            let starts_request = !matches!(
                code,
                frontend::SYNC
                    | frontend::FLUSH
                    | frontend::COPY_DATA
                    | frontend::COPY_DONE
                    | frontend::COPY_FAIL
            );
            if starts_request && !self.skip_until_sync {
                return Ok(Next::Request);
            }
            self.discard(total).await?;
            if code == frontend::SYNC {
                self.skip_until_sync = false;
                messages::ready_for_query(&mut self.out, tx_status::IDLE);
            }
        }
    }

    /// Drops the next `n` client bytes, reading as needed.
    async fn discard(&mut self, mut n: usize) -> Result<(), Error> {
        loop {
            let k = n.min(self.cbuf.len());
            self.cbuf.advance(k);
            n -= k;
            if n == 0 {
                return Ok(());
            }
            if !self.read_client().await? {
                return Err(Error::ClientIo(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }

    /// Answers the request at the front of the buffer with `error` instead of running it.
    async fn refuse_request(&mut self, error: Error) -> Result<(), Error> {
        let Some(fields) = error.to_response() else {
            return Err(error);
        };
        fields.encode(&mut self.out);
        if !error.keeps_session() {
            flush(&mut self.client, &mut self.out).await?;
            return Err(error);
        }
        tracing::warn!(user = %self.login.user, database = %self.login.database, %error, "request refused");
        if let Some((code, total)) = frame::peek_header(&self.cbuf, frame::MAX_FRAME_LEN)?
            && matches!(code, frontend::QUERY | frontend::FUNCTION_CALL)
        {
            self.discard(total).await?;
            messages::ready_for_query(&mut self.out, tx_status::IDLE);
        } else {
            self.skip_until_sync = true;
        }
        Ok(())
    }

    async fn serve_with(&mut self, server: &mut PooledServer) -> Result<RelayEnd, Error> {
        self.sscan = FrameScanner::new(frame::MAX_FRAME_LEN);
        if !self.sync_params(server).await? {
            return Ok(RelayEnd::Released);
        }
        self.relay(server).await
    }

    /// Applies the client's settings to the server; `false` if the server failed first
    /// (the request was refused and the client may retry).
    async fn sync_params(&mut self, server: &mut PooledServer) -> Result<bool, Error> {
        let Some(sql) =
            params::sync_statements(&self.login.params, &server.params, server.defaults())
        else {
            return Ok(true);
        };
        match Box::pin(server.run_internal(&sql)).await {
            Ok(changes) => {
                for (name, value) in changes {
                    // Keep the server's spelling of the client's own settings, so the next
                    // comparison agrees, and tell the client when the spelling differs.
                    if let Some(asked) = self.login.params.get(&name)
                        && asked != value
                    {
                        self.login.params.set(&name, &value);
                        messages::parameter_status(&mut self.out, &name, &value);
                    }
                }
                Ok(true)
            }
            Err(ServerError::Query(fields)) => Err(Error::StartupSetting(fields)),
            Err(e) => {
                self.refuse_request(Error::Checkout(PoolError::Server(e)))
                    .await?;
                Ok(false)
            }
        }
    }

    fn may_release(&self, server: &PooledServer) -> bool {
        self.mode == PoolMode::Transaction
            && server.state() == ServerState::Idle
            && self.scanned == 0
            && self.cscan.at_boundary()
    }

    /// Relays until the server may be released or the client leaves. Writes to the server
    /// are polled together with reads from it, so a server blocked on sending results
    /// can never deadlock against pgate blocked on sending it requests.
    async fn relay(&mut self, server: &mut PooledServer) -> Result<RelayEnd, Error> {
        flush(&mut self.client, &mut self.out).await?;
        loop {
            if let Some(end) = self.scan_client(server)? {
                return Ok(end);
            }
            if self.may_release(server) {
                return Ok(RelayEnd::Released);
            }
            if self.mode == PoolMode::Session
                && self.shutting_down()
                && server.state() == ServerState::Idle
            {
                return Err(Error::ShuttingDown);
            }
            let read_client = self.cbuf.len() < MAX_PENDING_CLIENT_BYTES;
            let (client, cbuf, scanned) = (&mut self.client, &mut self.cbuf, self.scanned);
            let event =
                poll_fn(|cx| poll_relay(cx, client, server, cbuf, scanned, read_client)).await;
            match event {
                RelayEvent::ServerWrote(Ok(n)) => {
                    self.cbuf.advance(n);
                    self.scanned -= n;
                }
                RelayEvent::ServerRead(Ok(0))
                | RelayEvent::ServerWrote(Err(_))
                | RelayEvent::ServerRead(Err(_)) => {
                    server.on(ServerEvent::Failed);
                    return Err(Error::ServerLost(ServerError::Closed));
                }
                RelayEvent::ServerRead(Ok(_)) => self.relay_server(server).await?,
                RelayEvent::ClientRead(Ok(0)) => return Ok(RelayEnd::ClientGone),
                RelayEvent::ClientRead(Ok(_)) => {}
                RelayEvent::ClientRead(Err(e)) => return Err(e.into()),
            }
        }
    }

    /// Frames newly read client bytes, counting each message on the server's state.
    fn scan_client(&mut self, server: &mut PooledServer) -> Result<Option<RelayEnd>, Error> {
        loop {
            match self.cscan.next(&self.cbuf[self.scanned..], every_frame)? {
                Scan::Pass(n) => self.scanned += n,
                Scan::Header {
                    code: frontend::TERMINATE,
                    ..
                } => return Ok(Some(RelayEnd::ClientGone)),
                Scan::Header { code, .. } if is_frontend_message(code) => {
                    server.on(ServerEvent::Sent(code))
                }
                Scan::Header { code, .. } => {
                    return Err(ProtocolError::Unexpected {
                        code,
                        during: "a session",
                    }
                    .into());
                }
                Scan::Whole { .. } | Scan::NeedMore => return Ok(None),
            }
        }
    }

    /// Relays what the server sent, noting ReadyForQuery and ParameterStatus on the way.
    async fn relay_server(&mut self, server: &mut PooledServer) -> Result<(), Error> {
        let mut end = 0;
        loop {
            match self
                .sscan
                .next(&server.buf[end..], server_interest)
                .map_err(server_desync)?
            {
                Scan::Pass(n) => end += n,
                Scan::Whole { code, total } => {
                    let body = &server.buf[end + frame::HEADER_LEN..end + total];
                    let noted = Noted::decode(code, body).map_err(server_desync)?;
                    self.note(server, noted)?;
                    end += total;
                }
                Scan::Header { .. } | Scan::NeedMore => break,
            }
        }
        if end > 0 {
            flush(&mut self.client, &mut self.out).await?;
            self.client.write_all(&server.buf[..end]).await?;
            server.buf.advance(end);
        }
        Ok(())
    }

    fn note(&mut self, server: &mut PooledServer, noted: Noted) -> Result<(), Error> {
        match noted {
            Noted::Ready(status) => {
                server.on(ServerEvent::Ready(status));
                if server.state() == ServerState::Broken {
                    let e = ProtocolError::Unexpected {
                        code: backend::READY_FOR_QUERY,
                        during: "relay: no request was pending",
                    };
                    return Err(server_desync(e));
                }
            }
            Noted::Param(name, value) => {
                if params::is_client_reported(&name) {
                    self.login.params.set(&name, &value);
                }
                server.params.set(&name, &value);
            }
        }
        Ok(())
    }
}

/// The server messages the relay looks into.
enum Noted {
    Ready(u8),
    Param(String, String),
}

impl Noted {
    fn decode(code: u8, body: &[u8]) -> Result<Self, ProtocolError> {
        match code {
            backend::READY_FOR_QUERY => Ok(Noted::Ready(messages::decode_ready_for_query(body)?)),
            _ => {
                let (name, value) = messages::decode_parameter_status(body)?;
                Ok(Noted::Param(name, value))
            }
        }
    }
}

fn server_desync(e: ProtocolError) -> Error {
    Error::ServerLost(ServerError::Protocol(e))
}

enum RelayEvent {
    ServerWrote(std::io::Result<usize>),
    ServerRead(std::io::Result<usize>),
    ClientRead(std::io::Result<usize>),
}

/// One step of the relay: whichever of write-to-server (the first `scanned` bytes of
/// `cbuf`), read-from-server and read-from-client is ready first.
fn poll_relay<S: AsyncRead + Unpin>(
    cx: &mut Context<'_>,
    client: &mut S,
    server: &mut PooledServer,
    cbuf: &mut BytesMut,
    scanned: usize,
    read_client: bool,
) -> Poll<RelayEvent> {
    let conn: &mut crate::server::ServerConn = server;
    if scanned > 0
        && let Poll::Ready(r) = Pin::new(&mut conn.stream).poll_write(cx, &cbuf[..scanned])
    {
        return Poll::Ready(RelayEvent::ServerWrote(r));
    }
    conn.reserve_read();
    if let Poll::Ready(r) = poll_read_buf(Pin::new(&mut conn.stream), cx, &mut conn.buf) {
        return Poll::Ready(RelayEvent::ServerRead(r));
    }
    if read_client {
        if cbuf.capacity() - cbuf.len() < IDLE_BUFFER / 2 {
            cbuf.reserve(CLIENT_READ_CHUNK);
        }
        if let Poll::Ready(r) = poll_read_buf(Pin::new(client), cx, cbuf) {
            return Poll::Ready(RelayEvent::ClientRead(r));
        }
    }
    Poll::Pending
}
