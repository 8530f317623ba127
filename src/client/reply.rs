//! Server messages on their way to the client: relayed as bytes, except the few pgate
//! looks into (ReadyForQuery, ParameterStatus, and in transaction pooling every reply that
//! ends a request), replies to pgate's own injected messages (dropped), error messages that
//! name pool-wide statements (rewritten to the client's names), and pgate's own answers
//! (inserted when their turn comes).

use std::time::Instant;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::expect::{Undo, Verdict};
use super::session::Session;
use crate::config::PoolMode;
use crate::error::Error;
use crate::metrics::seconds;
use crate::params;
use crate::pool::PooledServer;
use crate::protocol::codes::{backend, tx_status};
use crate::protocol::{Interest, ProtocolError, Scan, extended, frame, messages};
use crate::server::statements::parse_global_name;
use crate::server::{ServerError, ServerEvent, ServerState};

/// Session pooling: only what the relay itself needs (errors for their SQLSTATE metric).
fn plain_interest(code: u8) -> Interest {
    match code {
        backend::READY_FOR_QUERY | backend::PARAMETER_STATUS | backend::ERROR_RESPONSE => Interest::Whole,
        _ => Interest::None,
    }
}

/// Transaction pooling: every reply that can end a request is seen whole, so pgate's own
/// answers can follow it; rows and copy data stream through unseen.
fn tracking_interest(code: u8) -> Interest {
    use backend::*;
    match code {
        DATA_ROW | COPY_DATA => Interest::None,
        PARSE_COMPLETE | BIND_COMPLETE | CLOSE_COMPLETE | NO_DATA | ROW_DESCRIPTION | COMMAND_COMPLETE
        | EMPTY_QUERY_RESPONSE | PORTAL_SUSPENDED | READY_FOR_QUERY | ERROR_RESPONSE | PARAMETER_STATUS => {
            Interest::Whole
        }
        _ => Interest::Header,
    }
}

/// The part of a whole server message pgate needs, read before anything changes.
enum Seen {
    Ready(u8),
    Param(String, String),
    Error(Bytes),
    Other,
}

impl Seen {
    fn read(code: u8, body: &[u8]) -> Result<Seen, Error> {
        Ok(match code {
            backend::READY_FOR_QUERY => Seen::Ready(messages::decode_ready_for_query(body).map_err(server_desync)?),
            backend::PARAMETER_STATUS => {
                let (name, value) = messages::decode_parameter_status(body).map_err(server_desync)?;
                Seen::Param(name, value)
            }
            backend::ERROR_RESPONSE => Seen::Error(Bytes::copy_from_slice(body)),
            _ => Seen::Other,
        })
    }
}

/// What to do with one whole server message.
enum Action {
    Relay,
    Drop,
    Replace(Bytes),
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// Relays what the server sent, in order, with pgate's changes.
    pub(super) async fn relay_server(&mut self, server: &mut PooledServer) -> Result<(), Error> {
        let mut pos = 0;
        let relayed = self.relay_frames(server, &mut pos).await;
        // What was scanned leaves the buffer even when writing to the client failed, so the
        // buffer always starts where the scanner stands (a rescue drains from there).
        server.buf.advance(pos);
        relayed
    }

    async fn relay_frames(&mut self, server: &mut PooledServer, pos: &mut usize) -> Result<(), Error> {
        let interest = if self.tracks_replies() { tracking_interest } else { plain_interest };
        let mut from = 0;
        let mut sent = 0;
        loop {
            match self.sscan.next(&server.buf[*pos..], interest).map_err(server_desync)? {
                Scan::Pass(n) => *pos += n,
                Scan::Header { code, .. } => {
                    if self.expect.on_server_message(code).map_err(unexpected)? == Verdict::Drop {
                        return Err(server_desync(ProtocolError::Unexpected { code, during: "relay" }));
                    }
                    let ignored = self.expect.take_ignored_syncs();
                    if ignored > 0 {
                        server.on(ServerEvent::SyncsIgnored(ignored));
                    }
                }
                Scan::Whole { code, total } => {
                    let start = *pos;
                    let body = &server.buf[start + frame::HEADER_LEN..start + total];
                    let seen = Seen::read(code, body)?;
                    if let Some(inspect) = self.inspect.as_mut() {
                        let ticket = match code {
                            backend::ERROR_RESPONSE => self.expect.ticket_for_error(),
                            _ => self.expect.head_ticket(),
                        };
                        if let Some(ticket) = ticket {
                            ticket.on_reply(code, body, inspect.done_mut());
                        }
                    }
                    let action = self.on_whole(server, code, seen)?;
                    let answers = self.expect.take_ready();
                    // Handled: the message is consumed even if writing to the client fails.
                    *pos += total;
                    if matches!(action, Action::Relay) && answers.is_empty() {
                        continue;
                    }
                    let keep = if matches!(action, Action::Relay) { *pos } else { start };
                    self.client.write_all(&server.buf[from..keep]).await?;
                    sent += keep - from;
                    if let Action::Replace(bytes) = action {
                        self.client.write_all(&bytes).await?;
                        sent += bytes.len();
                    }
                    for answer in answers {
                        self.client.write_all(&answer).await?;
                        sent += answer.len();
                    }
                    from = *pos;
                }
                Scan::NeedMore => break,
            }
        }
        if *pos > from {
            self.client.write_all(&server.buf[from..*pos]).await?;
            sent += *pos - from;
        }
        self.login.pool.metrics().sent.inc_by(sent as u64);
        if *pos > 0 {
            self.client.flush().await?;
        }
        Ok(())
    }

    fn on_whole(&mut self, server: &mut PooledServer, code: u8, seen: Seen) -> Result<Action, Error> {
        // Session pooling tracks no replies (unless inspecting); `code` matters only to the
        // tracker.
        let verdict = if self.tracks_replies() {
            let v = self.expect.on_server_message(code).map_err(unexpected)?;
            for undo in self.expect.take_undone() {
                self.undo(server, undo);
            }
            for id in self.expect.take_confirmed() {
                self.login.pool.confirm_statement(id);
            }
            v
        } else {
            Verdict::Relay
        };
        let action = match seen {
            Seen::Ready(status) => {
                let action = self.on_ready(server, status)?;
                if verdict != Verdict::Drop {
                    self.count_ready(server, status);
                }
                action
            }
            Seen::Param(name, value) => {
                if params::is_client_reported(&name) {
                    self.set_client_param(&name, &value);
                }
                server.set_param(&name, &value);
                Action::Relay
            }
            Seen::Error(body) => {
                let action = if self.tracks_replies() { self.on_error(server, &body)? } else { Action::Relay };
                let metrics = self.login.pool.metrics();
                match (&action, verdict) {
                    (_, Verdict::Drop) | (Action::Drop, _) => {}
                    (Action::Relay, _) => metrics.error(&body),
                    (Action::Replace(frame), _) => metrics.error(frame.get(frame::HEADER_LEN..).unwrap_or_default()),
                }
                action
            }
            Seen::Other => Action::Relay,
        };
        Ok(if verdict == Verdict::Drop { Action::Drop } else { action })
    }

    /// A ReadyForQuery reached the client: a query ended, and with status idle a
    /// transaction. A request already in flight behind it starts its clock now.
    fn count_ready(&mut self, server: &PooledServer, status: u8) {
        let metrics = self.login.pool.metrics();
        let now = Instant::now();
        metrics.queries.inc();
        if let Some(started) = self.query_started.take() {
            metrics.query_duration.observe(seconds(now - started));
        }
        if status == tx_status::IDLE {
            metrics.transactions.inc();
            if let Some(started) = self.tx_started.take() {
                metrics.transaction_duration.observe(seconds(now - started));
            }
        }
        if matches!(server.state(), ServerState::Busy { .. }) {
            self.query_started = Some(now);
            self.tx_started.get_or_insert(now);
        }
    }

    fn on_ready(&mut self, server: &mut PooledServer, status: u8) -> Result<Action, Error> {
        server.on(ServerEvent::Ready(status));
        if server.state() == ServerState::Broken {
            let e =
                ProtocolError::Unexpected { code: backend::READY_FOR_QUERY, during: "relay: no request was pending" };
            return Err(server_desync(e));
        }
        self.login.pool.live().totals.finished(server.finished());
        let in_transaction = matches!(server.state(), ServerState::IdleInTransaction { .. });
        if self.settings.mode == PoolMode::Statement && in_transaction && self.pinned.is_empty() {
            // Statement pooling cannot keep a server for a transaction: end it, and tell the
            // client instead of letting it believe the transaction is open.
            self.refused_transaction = true;
            return Ok(Action::Drop);
        }
        Ok(Action::Relay)
    }

    /// Errors naming pool statements are told with the client's names; a statement whose
    /// cached plan went stale (DDL changed its result type) is closed before its next use.
    fn on_error(&mut self, server: &mut PooledServer, body: &Bytes) -> Result<Action, Error> {
        let failed = self.expect.take_failed_statement();
        if let Some(refusal) = self.inspect.as_mut().and_then(|i| i.refusal_for(body)) {
            return Ok(Action::Replace(refusal));
        }
        if let Some(id) = failed
            && body.windows(STALE_PLAN.len()).any(|w| w == STALE_PLAN)
        {
            server.statements.mark_stale(id);
        }
        if !body.windows(7).any(|w| w == b"pgate_s") {
            return Ok(Action::Relay);
        }
        let rewritten = extended::rewrite_error(backend::ERROR_RESPONSE, body, |text| self.client_names(text))
            .map_err(server_desync)?;
        Ok(Action::Replace(rewritten))
    }

    /// Replaces `pgate_s<id>` in `text` by the client's name for that statement.
    fn client_names(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(at) = rest.find("pgate_s") {
            out.push_str(&rest[..at]);
            let digits = rest[at + 7..].bytes().take_while(u8::is_ascii_digit).count();
            let global = &rest[at..at + 7 + digits];
            let client = parse_global_name(global).and_then(|id| self.statements.name_of(id));
            match client {
                Some(name) => out.push_str(&String::from_utf8_lossy(name)),
                None => out.push_str(global),
            }
            rest = &rest[at + 7 + digits..];
        }
        out.push_str(rest);
        out
    }

    fn undo(&mut self, server: &mut PooledServer, undo: Undo) {
        match undo {
            Undo::ClientStatement(name) => {
                self.statements.remove(&name);
            }
            Undo::ClientUnnamed => self.statements.unnamed = None,
            Undo::ServerStatement(id) => server.statements.remove(id),
            Undo::ServerUnnamed => server.statements.unnamed = None,
        }
    }
}

/// PostgreSQL's message when DDL changed what a prepared statement returns.
const STALE_PLAN: &[u8] = b"cached plan must not change result type";

pub(super) fn server_desync(e: ProtocolError) -> Error {
    Error::ServerLost(ServerError::Protocol(e))
}

fn unexpected(e: super::expect::Unexpected) -> Error {
    server_desync(ProtocolError::Unexpected { code: e.0, during: "relay: a reply to nothing pgate sent" })
}
