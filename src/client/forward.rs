//! Client messages on their way to the server: the scan of the client's bytes, Query,
//! Execute and FunctionCall, session pooling's messages as they are, and the refusal of
//! session state. Query and Parse texts are scanned for what they may do to the session.
//! Statement names in transaction and statement pooling are rewritten in `rewrite`.

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite};

use super::expect::{Fate, Request};
use super::inspect::{Decision, marker_query};
use super::session::{RelayEnd, Session, is_frontend_message};
use crate::config::OnSessionState;
use crate::error::Error;
use crate::params::quote_literal;
use crate::pool::PooledServer;
use crate::protocol::codes::frontend;
use crate::protocol::extended::{self, PORTAL};
use crate::protocol::{FrameScanner, Interest, ProtocolError, Scan, frame, messages};
use crate::server::ServerEvent;
use crate::sql::{self, PinReason};

fn client_interest(code: u8) -> Interest {
    use frontend::*;
    match code {
        QUERY | PARSE | BIND | DESCRIBE | CLOSE => Interest::Whole,
        _ => Interest::Header,
    }
}

/// With statement rules or audit, Execute (its portal) and FunctionCall are read too.
fn inspect_interest(code: u8) -> Interest {
    use frontend::*;
    match code {
        EXECUTE | FUNCTION_CALL => Interest::Whole,
        _ => client_interest(code),
    }
}

/// A Bind body after the names with no parameters and no result formats.
pub(super) const EMPTY_BIND: &[u8] = &[0, 0, 0, 0, 0, 0];

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// Whether pgate reads (and may rewrite) a message of this code whole before relaying it.
    pub(super) fn rewrites(&self, code: u8) -> bool {
        self.tracks_replies() && self.interest()(code) == Interest::Whole
    }

    fn interest(&self) -> fn(u8) -> Interest {
        if self.inspect.is_some() { inspect_interest } else { client_interest }
    }

    /// Frames newly read client bytes into `to_server`; `Some` when the client is leaving.
    pub(super) fn scan_client(&mut self, server: &mut PooledServer) -> Result<Option<RelayEnd>, Error> {
        let interest = self.interest();
        loop {
            match self.cscan.next(&self.cbuf, interest)? {
                Scan::Pass(n) => {
                    if !self.dropping_frame {
                        self.to_server.extend_from_slice(&self.cbuf[..n]);
                    }
                    self.cbuf.advance(n);
                    if self.cscan.at_boundary() {
                        self.dropping_frame = false;
                    }
                }
                Scan::Header { code: frontend::TERMINATE, .. } => {
                    // Terminate goes no further: the stream to the server ends on the
                    // boundary before it.
                    self.cscan = FrameScanner::new(frame::MAX_FRAME_LEN);
                    return Ok(Some(RelayEnd::ClientGone));
                }
                Scan::Header { code, .. } if !is_frontend_message(code) => {
                    return Err(ProtocolError::Unexpected { code, during: "a session" }.into());
                }
                Scan::Header { code, .. } if self.skip_until_sync && code != frontend::SYNC => {
                    self.dropping_frame = true
                }
                Scan::Header { code, .. } => {
                    self.skip_until_sync &= code != frontend::SYNC;
                    if self.expect_reply(code) {
                        server.on(ServerEvent::Sent(code));
                    }
                }
                Scan::Whole { code, total } => {
                    let frame = self.cbuf.split_to(total).freeze();
                    if !self.skip_until_sync {
                        self.forward_whole(server, code, frame)?;
                    }
                }
                Scan::NeedMore => return Ok(None),
            }
        }
    }

    /// Notes the reply a message calls for; `false` when the server will ignore it.
    fn expect_reply(&mut self, code: u8) -> bool {
        if !self.tracks_replies() {
            return true;
        }
        match code {
            frontend::EXECUTE => self.expect.push_using(Request::Execute, Fate::Relay, vec![], self.last_bound),
            frontend::SYNC => return self.expect.push_marker(Request::Sync),
            frontend::COPY_DONE | frontend::COPY_FAIL => {
                return self.expect.push_marker(Request::CopyEnd);
            }
            frontend::FUNCTION_CALL => self.expect.push(Request::Query, Fate::Relay, vec![]),
            _ => {}
        }
        true
    }

    /// Sends a whole frame pgate built or kept.
    pub(super) fn send(&mut self, server: &mut PooledServer, code: u8, frame: &[u8]) {
        self.to_server.extend_from_slice(frame);
        server.on(ServerEvent::Sent(code));
    }

    fn forward_whole(&mut self, server: &mut PooledServer, code: u8, frame: Bytes) -> Result<(), Error> {
        match code {
            frontend::QUERY => self.forward_query(server, frame),
            frontend::EXECUTE => self.forward_execute(server, &frame),
            frontend::FUNCTION_CALL => self.forward_function_call(server, frame),
            _ if !self.tracking() => self.forward_as_is(server, code, &frame),
            frontend::PARSE => self.forward_parse(server, &frame),
            frontend::BIND => self.forward_bind(server, &frame),
            frontend::DESCRIBE => self.forward_describe(server, &frame),
            _ => self.forward_close(server, &frame),
        }
    }

    /// Session pooling: statement names stay the client's; with an inspector, every
    /// message is checked and its reply followed.
    fn forward_as_is(&mut self, server: &mut PooledServer, code: u8, frame: &[u8]) -> Result<(), Error> {
        let body = &frame[5..];
        match code {
            frontend::PARSE => {
                let parse = extended::decode_parse(body)?;
                if let Some(inspect) = self.inspect.as_mut()
                    && let Err((marker, ticket)) = inspect.parse(parse.name, parse.query)
                {
                    self.expect.push_ticketed(Request::Parse, None, Some(ticket));
                    self.send(server, code, &marker_parse(parse.name, &marker)?);
                    return Ok(());
                }
                let fx = sql::effects(parse.query);
                self.statements.note_effects(parse.name, &fx);
                self.effects.merge(fx);
                if self.tracks_replies() {
                    self.expect.push(Request::Parse, Fate::Relay, vec![]);
                }
            }
            frontend::BIND if self.inspect.is_some() || self.statements.any_effects() => {
                // Session pooling decodes a Bind only when a statement may change the
                // session, or for the inspector.
                let bind = extended::decode_bind(body)?;
                self.note_bound(bind.statement);
                if let Some(inspect) = self.inspect.as_mut() {
                    if let Err((marker, ticket)) = inspect.bind(bind.portal, bind.statement, bind.rest) {
                        self.expect.push_ticketed(Request::Bind, None, Some(ticket));
                        self.send(server, code, &extended::bind_frame(bind.portal, marker.as_bytes(), EMPTY_BIND));
                        return Ok(());
                    }
                    self.expect.push(Request::Bind, Fate::Relay, vec![]);
                }
            }
            frontend::DESCRIBE | frontend::CLOSE if self.tracks_replies() => {
                let what = if code == frontend::CLOSE { "Close" } else { "Describe" };
                let (kind, name) = extended::decode_target(body, what)?;
                let request = match (code, kind) {
                    (frontend::CLOSE, _) => Request::Close,
                    (_, PORTAL) => Request::DescribePortal,
                    _ => Request::DescribeStatement,
                };
                if let (frontend::CLOSE, Some(inspect)) = (code, self.inspect.as_mut()) {
                    if kind == PORTAL { inspect.close_portal(name) } else { inspect.close_statement(name) }
                }
                self.expect.push(request, Fate::Relay, vec![]);
            }
            _ => {}
        }
        self.send(server, code, frame);
        Ok(())
    }

    fn forward_query(&mut self, server: &mut PooledServer, frame: Bytes) -> Result<(), Error> {
        let text = frame[5..].strip_suffix(b"\0").unwrap_or(&frame[5..]);
        let mut ticket = None;
        let mut frame = frame.clone();
        let mut fx = sql::effects(text);
        match self.inspect.as_mut().map(|i| i.query(text)) {
            Some(Decision::Refuse { marker, ticket: refused }) => {
                ticket = Some(refused);
                frame = query_frame(&marker_query(&marker))?;
                fx = sql::Effects::default();
            }
            Some(Decision::Run(t)) => ticket = t,
            None => {}
        }
        if let Some(reason) = fx.creates.filter(|_| self.refuses_state()) {
            frame = query_frame(&refusal_sql(reason))?;
            fx = sql::Effects::default();
        }
        self.effects.merge(fx);
        if self.tracking() {
            // A simple Query destroys the unnamed statement.
            self.statements.unnamed = None;
            server.statements.unnamed = None;
        }
        if self.tracks_replies() {
            self.expect.push_ticketed(Request::Query, None, ticket);
        }
        self.send(server, frontend::QUERY, &frame);
        Ok(())
    }

    /// Execute is read whole only for the inspector: its portal names the statement.
    fn forward_execute(&mut self, server: &mut PooledServer, frame: &[u8]) -> Result<(), Error> {
        let portal = extended::decode_execute(&frame[5..])?;
        let ticket = self.inspect.as_mut().and_then(|i| i.execute(portal));
        self.expect.push_ticketed(Request::Execute, self.last_bound, ticket);
        self.send(server, frontend::EXECUTE, frame);
        Ok(())
    }

    /// FunctionCall is read whole only for the inspector.
    fn forward_function_call(&mut self, server: &mut PooledServer, frame: Bytes) -> Result<(), Error> {
        let decision = self.inspect.as_mut().map(|i| i.function_call());
        let (frame, ticket) = match decision {
            Some(Decision::Refuse { marker, ticket }) => (query_frame(&marker_query(&marker))?, Some(ticket)),
            Some(Decision::Run(ticket)) => (frame, ticket),
            None => (frame, None),
        };
        self.expect.push_ticketed(Request::Query, None, ticket);
        let code = frame[0];
        self.send(server, code, &frame);
        Ok(())
    }

    pub(super) fn refuses_state(&self) -> bool {
        self.tracking() && self.settings.on_session_state == OnSessionState::Error && self.pinned.is_empty()
    }

    /// A statement's effects happen when it runs.
    pub(super) fn note_bound(&mut self, statement: &[u8]) {
        if let Some(fx) = self.statements.effects_of(statement) {
            let fx = (**fx).clone();
            self.effects.merge(fx);
        }
    }
}

fn query_frame(sql: &str) -> Result<Bytes, Error> {
    let mut out = bytes::BytesMut::new();
    messages::query(&mut out, sql)?;
    Ok(out.freeze())
}

/// A Parse of the marker statement under `name`.
pub(super) fn marker_parse(name: &[u8], marker: &str) -> Result<Bytes, Error> {
    let mut definition = marker_query(marker).into_bytes();
    definition.extend_from_slice(&[0, 0, 0]);
    Ok(extended::parse_frame(name, &definition))
}

fn refusal_message(reason: PinReason) -> (String, &'static str) {
    (
        format!("{} is not available in transaction pooling (on_session_state = \"error\")", reason.name()),
        "use a pool in session mode for this client, or set on_session_state = \"pin\"",
    )
}

/// A statement that fails on the server with pgate's refusal, so the transaction is
/// aborted exactly as a real error would abort it.
fn refusal_sql(reason: PinReason) -> String {
    let (message, hint) = refusal_message(reason);
    format!(
        "DO $pgate$BEGIN RAISE EXCEPTION USING ERRCODE = '0A000', MESSAGE = {}, HINT = {}; END$pgate$",
        quote_literal(&message),
        quote_literal(hint)
    )
}

pub(super) fn refusal_error(reason: PinReason) -> Bytes {
    let (message, hint) = refusal_message(reason);
    let fields = messages::ErrorFields {
        severity: crate::error::ERROR.into(),
        code: crate::protocol::codes::sqlstate::FEATURE_NOT_SUPPORTED.into(),
        message,
        detail: None,
        hint: Some(hint.into()),
    };
    let mut out = bytes::BytesMut::new();
    fields.encode(&mut out);
    out.freeze()
}
