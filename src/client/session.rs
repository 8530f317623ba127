//! The session loop of a logged-in client: wait for a request, check a server out, relay
//! until the server is idle (transaction and statement pooling, unless the client is pinned)
//! or the client leaves (session pooling), and let the pool guard decide what happens to the
//! server. Client-to-server handling is in `forward`, server-to-client in `reply`, the work
//! at the end of a transaction (probe, pinning) in `after`, the settings' sync in
//! `settings`, the poll-level relay step in `poll`, idle limits in `idle`.

use std::future::poll_fn;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use super::expect::Expectations;
use super::idle::IdleLimit;
use super::inspect::Inspector;
use super::io::flush;
use super::login::LoggedIn;
use super::poll::{RelayEvent, poll_read_via_stack, poll_relay};
use super::statements::ClientStatements;
use crate::cancel::CancelTarget;
use crate::config::{PoolMode, PoolSettings};
use crate::error::Error;
use crate::metrics::{ClientState, Presence, seconds};
use crate::params::Params;
use crate::pool::{Abandoned, PooledServer};
use crate::protocol::codes::{frontend, tx_status};
use crate::protocol::{FrameScanner, ProtocolError, frame, messages};
use crate::proxy::Shared;
use crate::server::{ServerError, ServerEvent, ServerState};
use crate::sql::{Effects, PinReason};

/// Client bytes framed but not yet sent to the server are capped; past this the client is
/// not read until the server catches up.
pub(super) const MAX_PENDING_CLIENT_BYTES: usize = 256 * 1024;

/// How a stretch of relaying ended.
pub(super) enum RelayEnd {
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
    pub(super) client: S,
    /// Client bytes not yet framed.
    pub(super) cbuf: BytesMut,
    /// Client messages framed (and maybe rewritten), ready for the server.
    pub(super) to_server: BytesMut,
    pub(super) cscan: FrameScanner,
    pub(super) sscan: FrameScanner,
    /// Messages pgate itself owes the client (local ReadyForQuery, errors, answers).
    pub(super) out: BytesMut,
    pub(super) login: LoggedIn,
    /// The pool's settings as they were at login (shared, not copied).
    pub(super) settings: Arc<PoolSettings>,
    pub(super) shared: Arc<Shared>,
    /// After a refused extended-protocol request: drop messages up to its Sync.
    pub(super) skip_until_sync: bool,
    /// The client message being relayed is dropped (it is being skipped).
    pub(super) dropping_frame: bool,
    /// Replies owed by the server (transaction and statement pooling).
    pub(super) expect: Expectations,
    pub(super) statements: ClientStatements,
    /// What the client's statements since the last check may have done to the session.
    pub(super) effects: Effects,
    /// Why the client holds its server across transactions (empty: it does not).
    pub(super) pinned: Vec<PinReason>,
    /// Reasons already counted for this session, and whether its pinning was logged.
    pub(super) pin_counted: Vec<PinReason>,
    pub(super) pin_logged: bool,
    /// The client's settings from its StartupMessage (what DISCARD ALL goes back to),
    /// copied only when they first change: until then they are `login.params`.
    pub(super) startup_params: Option<Params>,
    /// The pool statement of the last Bind, blamed for a stale-plan error at Execute.
    pub(super) last_bound: Option<u64>,
    /// Statement pooling: the server ended a statement inside a transaction.
    pub(super) refused_transaction: bool,
    /// `login.params.fingerprint()`, until the client's settings change.
    pub(super) params_fingerprint: Option<u64>,
    /// Statement rules and audit tickets (`None`: no workspace rules, no audit log).
    pub(super) inspect: Option<Box<Inspector>>,
    /// This client in `pgate_clients`, under its state.
    presence: Presence,
    /// When the request the server is working on reached it, and when the transaction's
    /// first request did (for the duration histograms).
    pub(super) query_started: Option<Instant>,
    pub(super) tx_started: Option<Instant>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub fn new(client: S, mut login: LoggedIn, shared: Arc<Shared>) -> Self {
        let settings = Arc::clone(&login.pool.settings());
        let inspect = login.inspect.take();
        let presence = login.pool.metrics().presence();
        Self {
            client,
            cbuf: std::mem::take(&mut login.pending),
            to_server: BytesMut::new(),
            cscan: FrameScanner::new(frame::MAX_FRAME_LEN),
            sscan: FrameScanner::new(frame::MAX_FRAME_LEN),
            out: BytesMut::new(),
            startup_params: None,
            login,
            settings,
            shared,
            skip_until_sync: false,
            dropping_frame: false,
            expect: Expectations::default(),
            statements: ClientStatements::default(),
            effects: Effects::default(),
            pinned: Vec::new(),
            pin_counted: Vec::new(),
            pin_logged: false,
            last_bound: None,
            refused_transaction: false,
            params_fingerprint: None,
            inspect,
            presence,
            query_started: None,
            tx_started: None,
        }
    }

    /// The client socket, for a last message after the session ends.
    pub fn client(&mut self) -> &mut S {
        &mut self.client
    }

    /// Transaction and statement pooling rename statements and track replies; session
    /// pooling relays as it is.
    pub(super) fn tracking(&self) -> bool {
        self.settings.mode != PoolMode::Session
    }

    /// Replies are followed message by message: to rename statements (transaction and
    /// statement pooling), or to end audit records and replace refusals (any mode).
    pub(super) fn tracks_replies(&self) -> bool {
        self.tracking() || self.inspect.is_some()
    }

    /// `flush_audit` for the relay loop: boxed, and only with an inspector. Inline, the
    /// audit's wait would size every request's future past what the allocator serves from
    /// its fast path.
    async fn flush_audit_if_inspected(&mut self) {
        if self.inspect.is_some() {
            Box::pin(self.flush_audit()).await;
        }
    }

    /// Hands finished audit records to the auditor; with `on_full = "block"` this waits
    /// for room, so the client's next results wait too and nothing is lost.
    pub(super) async fn flush_audit(&mut self) {
        let Some(inspect) = self.inspect.as_mut() else { return };
        for ticket in self.expect.take_retired() {
            ticket.skipped(inspect.done_mut());
        }
        let records = inspect.take_done();
        if let Some(auditor) = inspect.auditor() {
            for record in records {
                // A sink that is failing keeps what it was given (on_error = "deny") or
                // counts it as lost (on_error = "continue"); either way the auditor says so.
                let _ = auditor.record(record).await;
            }
        }
    }

    /// The session is over: statements still waiting for an answer are recorded as lost.
    pub async fn finish_audit(&mut self) {
        let Some(inspect) = self.inspect.as_mut() else { return };
        for ticket in self.expect.drain_tickets() {
            ticket.abandon(inspect.done_mut());
        }
        let logout = crate::audit::Record {
            time: std::time::SystemTime::now(),
            context: inspect.context().clone(),
            event: crate::audit::Event::Logout,
        };
        self.flush_audit().await;
        if let Some(auditor) = self.inspect.as_ref().and_then(|i| i.auditor()) {
            let _ = auditor.record(logout).await;
        }
    }

    /// True while the client keeps its server between transactions.
    fn holds_server(&self) -> bool {
        self.settings.mode == PoolMode::Session || !self.pinned.is_empty()
    }

    pub async fn run(&mut self) -> Result<(), Error> {
        loop {
            if let Next::Terminate = self.wait_for_request().await? {
                return Ok(());
            }
            // Boxed: checking a server out and relaying need far more state than waiting
            // does, and the task of an idle client should not carry it (one allocation
            // per request).
            match Box::pin(self.serve_request()).await? {
                RelayEnd::Released => continue,
                RelayEnd::ClientGone => return Ok(()),
            }
        }
    }

    /// Where the streams to and from the server stand, for a server still busy when the
    /// session lets go of it.
    fn abandoned(&self) -> Abandoned {
        Abandoned {
            request_torn: !self.to_server.is_empty() || !self.cscan.at_boundary(),
            reply_rest: self.sscan.rest_of_frame(),
        }
    }

    /// Checks a server out for the request at hand and relays until it is released.
    async fn serve_request(&mut self) -> Result<RelayEnd, Error> {
        self.presence.set(ClientState::Waiting);
        self.login.waiting();
        let asked = Instant::now();
        let checkout = self.login.pool.checkout().await;
        self.login.pool.metrics().checkout_wait.observe(seconds(asked.elapsed()));
        let mut server = match checkout {
            Ok(server) => server,
            Err(e) => {
                self.login.pool.metrics().checkout_error(&e);
                self.presence.set(ClientState::Idle);
                self.login.idle();
                self.refuse_request(Error::Checkout(e)).await?;
                return Ok(RelayEnd::Released);
            }
        };
        self.presence.set(ClientState::Active);
        self.login.serving(&server);
        if self.settings.mode == PoolMode::Session {
            server.reset_on_release();
        }
        self.login.cancel.set(Some(CancelTarget { addr: server.facts().backend_addr.clone(), key: server.key() }));
        let end = self.serve_with(&mut server).await;
        self.login.cancel.set(None);
        self.login.cancel.settle().await;
        server.left_at(self.abandoned());
        // The server goes back only now: no cancel can reach it on this client's behalf.
        drop(server);
        self.presence.set(ClientState::Idle);
        self.login.idle();
        end
    }

    fn shutting_down(&self) -> bool {
        self.login.entry().map_or_else(|| self.shared.is_shutting_down(), |entry| entry.is_shutting_down())
    }

    /// Reads more client bytes; `false` on EOF. Without room in `cbuf` the bytes come
    /// through the stack, so a client waiting with nothing buffered holds no buffer.
    async fn read_client(&mut self) -> Result<bool, Error> {
        let n = if self.cbuf.capacity() > self.cbuf.len() {
            self.client.read_buf(&mut self.cbuf).await?
        } else {
            let (client, cbuf) = (&mut self.client, &mut self.cbuf);
            poll_fn(|cx| poll_read_via_stack(cx, client, cbuf)).await?
        };
        self.login.pool.metrics().received.inc_by(n as u64);
        Ok(n > 0)
    }

    /// Handles what needs no server (Sync, Flush, stray copy messages, Terminate) until a
    /// message arrives that does.
    async fn wait_for_request(&mut self) -> Result<Next, Error> {
        loop {
            let Some((code, total)) = frame::peek_header(&self.cbuf, frame::MAX_FRAME_LEN)? else {
                if !self.wait_for_client(0).await? {
                    return Ok(Next::Terminate);
                }
                continue;
            };
            if !is_frontend_message(code) {
                return Err(ProtocolError::Unexpected { code, during: "a session" }.into());
            }
            if code == frontend::TERMINATE {
                return Ok(Next::Terminate);
            }
            let starts_request = !matches!(
                code,
                frontend::SYNC | frontend::FLUSH | frontend::COPY_DATA | frontend::COPY_DONE | frontend::COPY_FAIL
            );
            if starts_request && !self.skip_until_sync {
                if self.cbuf.len() < total && self.rewrites(code) {
                    // No server is held while a client uploads a message pgate must see
                    // whole.
                    if !self.wait_for_client(total).await? {
                        return Ok(Next::Terminate);
                    }
                    continue;
                }
                if self.answer_parses_locally()? {
                    continue;
                }
                return Ok(Next::Request);
            }
            self.discard(total).await?;
            if code == frontend::SYNC {
                self.skip_until_sync = false;
                messages::ready_for_query(&mut self.out, tx_status::IDLE);
            }
        }
    }

    /// Flushes what pgate owes the client and reads more of its bytes, making room for a
    /// message of `expected` bytes; `false` on EOF.
    async fn wait_for_client(&mut self, expected: usize) -> Result<bool, Error> {
        flush(&mut self.client, &mut self.out).await?;
        if self.shutting_down() {
            return Err(Error::ShuttingDown);
        }
        if self.cbuf.is_empty() && self.to_server.is_empty() {
            // Waiting, maybe for long, holds no buffer: thousands of idle clients are
            // common, and a buffer costs only an allocation when the next request comes.
            self.cbuf = BytesMut::new();
            self.to_server = BytesMut::new();
            self.out = BytesMut::new();
        }
        self.cbuf.reserve(expected.saturating_sub(self.cbuf.len()));
        // The registry's entry wakes the task at shutdown; a watch channel would take a
        // lock twice per wait.
        let entry = self.login.entry().cloned();
        let shutdown = async {
            match &entry {
                Some(entry) => entry.shutting_down().await,
                None => std::future::pending().await,
            }
        };
        let limit = IdleLimit::outside_transaction(&self.settings);
        tokio::select! {
            biased;
            more = IdleLimit::apply(limit, self.read_client()) => more?,
            () = shutdown => Ok(true),
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
    pub(super) async fn refuse_request(&mut self, error: Error) -> Result<(), Error> {
        let Some(fields) = error.to_response() else {
            return Err(error);
        };
        self.login.pool.metrics().error_code(&fields.code);
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

    /// Notifications that came in while pgate asked the server about the session.
    async fn relay_notifications(&mut self, server: &mut PooledServer) -> Result<(), Error> {
        if let Some(notifications) = server.take_notifications() {
            self.out.extend_from_slice(&notifications);
            flush(&mut self.client, &mut self.out).await?;
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

    /// Nothing is on its way to or from the server on the client's behalf, and no client
    /// byte is waiting to be framed.
    pub(super) fn nothing_in_flight(&self) -> bool {
        self.to_server.is_empty() && self.cscan.at_boundary() && self.cbuf.is_empty() && self.expect.is_empty()
    }

    fn at_rest(&self, server: &PooledServer) -> bool {
        server.state() == ServerState::Idle && self.nothing_in_flight()
    }

    /// Relays until the server may be released or the client leaves. Writes to the server
    /// are polled together with reads from it, so a server blocked on sending results
    /// can never deadlock against pgate blocked on sending it requests.
    async fn relay(&mut self, server: &mut PooledServer) -> Result<RelayEnd, Error> {
        loop {
            let end = self.scan_client(server)?;
            if self.query_started.is_none() && matches!(server.state(), ServerState::Busy { .. }) {
                // A request is on its way: the clock of the duration histograms starts.
                let now = Instant::now();
                self.query_started = Some(now);
                self.tx_started.get_or_insert(now);
            }
            self.flush_audit_if_inspected().await;
            if let Some(end) = end {
                return Ok(end);
            }
            self.out.extend(self.expect.take_ready().into_iter().flatten());
            flush(&mut self.client, &mut self.out).await?;
            if self.at_rest(server) {
                if self.settings.mode != PoolMode::Session {
                    self.after_transaction(server).await?;
                    self.relay_notifications(server).await?;
                    if !self.holds_server() {
                        return Ok(RelayEnd::Released);
                    }
                } else if self.effects.any() {
                    self.after_session_statements(server).await?;
                    self.relay_notifications(server).await?;
                }
            }
            if self.holds_server() && self.shutting_down() && self.at_rest(server) {
                return Err(Error::ShuttingDown);
            }
            let read_client = self.to_server.len() < MAX_PENDING_CLIENT_BYTES;
            let limit = self.idle_limit(server);
            let (client, cbuf, to_server) = (&mut self.client, &mut self.cbuf, &self.to_server);
            let relayed = poll_fn(|cx| poll_relay(cx, client, server, cbuf, to_server, read_client));
            let event = IdleLimit::apply(limit, relayed).await?;
            match event {
                RelayEvent::ServerWrote(Ok(n)) => self.to_server.advance(n),
                RelayEvent::ServerRead(Ok(0)) | RelayEvent::ServerWrote(Err(_)) | RelayEvent::ServerRead(Err(_)) => {
                    server.on(ServerEvent::Failed);
                    return Err(Error::ServerLost(ServerError::Closed));
                }
                RelayEvent::ServerRead(Ok(_)) => {
                    self.relay_server(server).await?;
                    self.flush_audit_if_inspected().await;
                    if self.refused_transaction {
                        self.end_refused_transaction(server).await?;
                    }
                }
                RelayEvent::ClientRead(Ok(0)) => return Ok(RelayEnd::ClientGone),
                RelayEvent::ClientRead(Ok(n)) => self.login.pool.metrics().received.inc_by(n as u64),
                RelayEvent::ClientRead(Err(e)) => return Err(e.into()),
            }
        }
    }
}

pub(super) fn is_frontend_message(code: u8) -> bool {
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
