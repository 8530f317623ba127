//! Client messages on their way to the server. In transaction and statement pooling,
//! statement names are replaced by pool-wide ones, a statement the server lacks is prepared
//! first (an injected Parse whose reply is hidden), a Parse of a statement the server has is
//! answered by pgate, and a Close of a shared statement is answered without closing it.
//! Query and Parse texts are scanned for what they may do to the session.

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite};

use super::expect::{Fate, Request, Undo};
use super::inspect::{Decision, marker_query};
use super::session::{RelayEnd, Session, is_frontend_message};
use super::statements::Prepared;
use crate::config::OnSessionState;
use crate::error::Error;
use crate::params::quote_literal;
use crate::pool::PooledServer;
use crate::protocol::codes::frontend;
use crate::protocol::extended::{self, PORTAL, STATEMENT};
use crate::protocol::{FrameScanner, Interest, ProtocolError, Scan, frame, messages};
use crate::server::ServerEvent;
use crate::server::statements::{Admit, global_name};
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
const EMPTY_BIND: &[u8] = &[0, 0, 0, 0, 0, 0];

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

    /// A client without a server that prepares statements some server of the pool already
    /// accepted, then syncs (`Parse ... Sync`: pgbench prepares this way, synchronously),
    /// is answered by pgate; each Parse reaches a server when its statement is used. This
    /// spares a checkout, and a client blocked in such a call never waits for a server.
    pub(super) fn answer_parses_locally(&mut self) -> Result<bool, Error> {
        if !self.tracking() || self.skip_until_sync {
            return Ok(false);
        }
        let mut pos = 0;
        let mut parsed: Vec<(Bytes, Prepared)> = Vec::new();
        loop {
            let Some((code, total)) =
                crate::protocol::frame::peek_header(&self.cbuf[pos..], crate::protocol::frame::MAX_FRAME_LEN)?
            else {
                return Ok(false);
            };
            if self.cbuf.len() < pos + total {
                return Ok(false);
            }
            match code {
                frontend::PARSE => {
                    let parse = extended::decode_parse(&self.cbuf[pos + 5..pos + total])?;
                    let taken =
                        self.statements.get(parse.name).is_some() || parsed.iter().any(|(n, _)| n == parse.name);
                    if parse.name.is_empty() || taken || sql::effects(parse.query).any() {
                        return Ok(false);
                    }
                    if let Some(inspect) = self.inspect.as_mut()
                        && !inspect.would_allow_parse(parse.query)
                    {
                        // A refusal goes through a server, like any other.
                        return Ok(false);
                    }
                    let id = self.login.pool.statement_id(parse.definition);
                    if !self.login.pool.statement_confirmed(id) {
                        return Ok(false);
                    }
                    parsed.push((Bytes::copy_from_slice(parse.name), Prepared::new(id, parse.definition)));
                }
                frontend::SYNC if !parsed.is_empty() => {
                    if let Some(inspect) = self.inspect.as_mut() {
                        let mut at = 0;
                        while at < pos {
                            let (_, len) = crate::protocol::frame::peek_header(&self.cbuf[at..], usize::MAX)?
                                .ok_or(ProtocolError::MalformedMessage { what: "Parse" })?;
                            let parse = extended::decode_parse(&self.cbuf[at + 5..at + len])?;
                            // Checked just above: kept for its Binds.
                            let _ = inspect.parse(parse.name, parse.query);
                            at += len;
                        }
                    }
                    self.cbuf.advance(pos + total);
                    for (name, prepared) in parsed {
                        self.login.pool.live().totals.client_parse();
                        self.statements.insert(name, prepared);
                        self.out.extend_from_slice(&extended::parse_complete());
                    }
                    messages::ready_for_query(&mut self.out, crate::protocol::codes::tx_status::IDLE);
                    return Ok(true);
                }
                _ => return Ok(false),
            }
            pos += total;
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
    fn send(&mut self, server: &mut PooledServer, code: u8, frame: &[u8]) {
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

    fn refuses_state(&self) -> bool {
        self.tracking() && self.settings.on_session_state == OnSessionState::Error && self.pinned.is_empty()
    }

    fn forward_parse(&mut self, server: &mut PooledServer, frame: &[u8]) -> Result<(), Error> {
        let parse = extended::decode_parse(&frame[5..])?;
        if let Some(inspect) = self.inspect.as_mut()
            && let Err((marker, ticket)) = inspect.parse(parse.name, parse.query)
        {
            // The marker goes as the unnamed statement (the server knows the client's
            // statements by pool names only); the server's unnamed one is gone with it,
            // and so is the client's when that is the one it parsed.
            server.statements.unnamed = None;
            if parse.name.is_empty() {
                self.statements.unnamed = None;
            }
            self.expect.push_ticketed(Request::Parse, None, Some(ticket));
            self.send(server, frontend::PARSE, &marker_parse(b"", &marker)?);
            return Ok(());
        }
        let fx = sql::effects(parse.query);
        if let Some(reason) = fx.creates.filter(|_| self.refuses_state()) {
            // Refused before the server sees it; the rest of the pipeline is skipped, as a
            // server skips after an error.
            let refusal = refusal_error(reason);
            self.expect.push(Request::Parse, Fate::Answer(refusal), vec![]);
            self.skip_until_sync = true;
            return Ok(());
        }
        self.statements.note_effects(parse.name, &fx);
        self.effects.merge(fx);
        if parse.name.is_empty() {
            let definition = Bytes::copy_from_slice(parse.definition);
            self.statements.unnamed = Some(definition.clone());
            server.statements.unnamed = Some(definition);
            self.expect.push(Request::Parse, Fate::Relay, vec![Undo::ClientUnnamed, Undo::ServerUnnamed]);
            self.send(server, frontend::PARSE, frame);
            return Ok(());
        }
        let name = Bytes::copy_from_slice(parse.name);
        self.login.pool.live().totals.client_parse();
        if let Some(existing) = self.statements.get(&name).cloned() {
            // The name is taken: let the server say so, about its pool-wide statement.
            self.ensure(server, &existing);
            self.expect.push(Request::Parse, Fate::Relay, vec![]);
            self.send(server, frontend::PARSE, &existing.parse);
            return Ok(());
        }
        let prepared = Prepared::new(self.login.pool.statement_id(parse.definition), parse.definition);
        let undo_client = Undo::ClientStatement(name.clone());
        self.statements.insert(name, prepared.clone());
        match self.admit(server, prepared.id) {
            Admit::Present => {
                self.expect.push(Request::Parse, Fate::Answer(extended::parse_complete()), vec![undo_client]);
            }
            Admit::Prepare { close } => {
                self.close_on_server(server, close);
                let undo = vec![undo_client, Undo::ServerStatement(prepared.id)];
                self.expect.push_using(Request::Parse, Fate::Relay, undo, Some(prepared.id));
                self.send(server, frontend::PARSE, &prepared.parse);
            }
        }
        Ok(())
    }

    /// Makes sure the server has `prepared`, injecting its Parse (reply hidden) if not.
    fn ensure(&mut self, server: &mut PooledServer, prepared: &Prepared) {
        if let Admit::Prepare { close } = self.admit(server, prepared.id) {
            self.close_on_server(server, close);
            self.expect.push(Request::Parse, Fate::Hide, vec![Undo::ServerStatement(prepared.id)]);
            self.send(server, frontend::PARSE, &prepared.parse);
        }
    }

    /// Marks pool statement `id` as used on the server and says what it takes; counted as a
    /// cache hit, or a miss (and an eviction when one had to make room).
    fn admit(&self, server: &mut PooledServer, id: u64) -> Admit {
        let admit = server.statements.admit(id);
        let metrics = self.login.pool.metrics();
        match admit {
            Admit::Present => metrics.prepared_hits.inc(),
            Admit::Prepare { close: [_, evicted] } => {
                metrics.prepared_misses.inc();
                if evicted.is_some() {
                    metrics.prepared_evictions.inc();
                }
            }
        }
        admit
    }

    /// Makes sure the server's unnamed statement is the client's, injecting it if not.
    fn ensure_unnamed(&mut self, server: &mut PooledServer) {
        let Some(definition) = self.statements.unnamed.clone() else {
            return;
        };
        if server.statements.unnamed.as_ref() != Some(&definition) {
            server.statements.unnamed = Some(definition.clone());
            self.expect.push(Request::Parse, Fate::Hide, vec![Undo::ServerUnnamed]);
            self.send(server, frontend::PARSE, &extended::parse_frame(b"", &definition));
        }
    }

    /// Closes pool statements on the server (evicted from its cache, or stale).
    fn close_on_server(&mut self, server: &mut PooledServer, ids: [Option<u64>; 2]) {
        for id in ids.into_iter().flatten() {
            let frame = extended::target_frame(frontend::CLOSE, STATEMENT, global_name(id).as_bytes());
            self.expect.push(Request::Close, Fate::Hide, vec![]);
            self.send(server, frontend::CLOSE, &frame);
        }
    }

    /// The pool statement a client name stands for, made ready on the server.
    fn resolve(&mut self, server: &mut PooledServer, name: &[u8]) -> Option<Prepared> {
        if name.is_empty() {
            self.ensure_unnamed(server);
            return None;
        }
        let prepared = self.statements.get(name).cloned()?;
        self.ensure(server, &prepared);
        Some(prepared)
    }

    /// A statement's effects happen when it runs.
    fn note_bound(&mut self, statement: &[u8]) {
        if let Some(fx) = self.statements.effects_of(statement) {
            let fx = (**fx).clone();
            self.effects.merge(fx);
        }
    }

    fn forward_bind(&mut self, server: &mut PooledServer, frame: &[u8]) -> Result<(), Error> {
        let bind = extended::decode_bind(&frame[5..])?;
        if let Some(inspect) = self.inspect.as_mut()
            && let Err((marker, ticket)) = inspect.bind(bind.portal, bind.statement, bind.rest)
        {
            // A Bind of a statement that does not exist fails on the server; its error
            // carries the marker.
            self.last_bound = None;
            self.expect.push_ticketed(Request::Bind, None, Some(ticket));
            self.send(server, frontend::BIND, &extended::bind_frame(bind.portal, marker.as_bytes(), EMPTY_BIND));
            return Ok(());
        }
        self.note_bound(bind.statement);
        let prepared = self.resolve(server, bind.statement);
        self.last_bound = prepared.as_ref().map(|p| p.id);
        self.expect.push_using(Request::Bind, Fate::Relay, vec![], self.last_bound);
        match prepared {
            Some(p) => {
                let renamed = extended::bind_frame(bind.portal, global_name(p.id).as_bytes(), bind.rest);
                self.send(server, frontend::BIND, &renamed);
            }
            // Unknown names go as they are: the server's error names them as the client did.
            None => self.send(server, frontend::BIND, frame),
        }
        Ok(())
    }

    fn forward_describe(&mut self, server: &mut PooledServer, frame: &[u8]) -> Result<(), Error> {
        let (kind, name) = extended::decode_target(&frame[5..], "Describe")?;
        if kind == PORTAL {
            self.expect.push(Request::DescribePortal, Fate::Relay, vec![]);
            self.send(server, frontend::DESCRIBE, frame);
            return Ok(());
        }
        let prepared = self.resolve(server, name);
        let id = prepared.as_ref().map(|p| p.id);
        self.expect.push_using(Request::DescribeStatement, Fate::Relay, vec![], id);
        match prepared {
            Some(p) => {
                let renamed = extended::target_frame(frontend::DESCRIBE, STATEMENT, global_name(p.id).as_bytes());
                self.send(server, frontend::DESCRIBE, &renamed);
            }
            None => self.send(server, frontend::DESCRIBE, frame),
        }
        Ok(())
    }

    fn forward_close(&mut self, server: &mut PooledServer, frame: &[u8]) -> Result<(), Error> {
        let (kind, name) = extended::decode_target(&frame[5..], "Close")?;
        if let Some(inspect) = self.inspect.as_mut() {
            if kind == PORTAL { inspect.close_portal(name) } else { inspect.close_statement(name) }
        }
        if kind == PORTAL {
            self.expect.push(Request::Close, Fate::Relay, vec![]);
            self.send(server, frontend::CLOSE, frame);
            return Ok(());
        }
        // Pool statements are shared: the client's name goes, the server keeps the statement.
        if name.is_empty() {
            self.statements.unnamed = None;
        } else {
            self.statements.remove(name);
        }
        self.expect.push(Request::Close, Fate::Answer(extended::close_complete()), vec![]);
        Ok(())
    }
}

fn query_frame(sql: &str) -> Result<Bytes, Error> {
    let mut out = bytes::BytesMut::new();
    messages::query(&mut out, sql)?;
    Ok(out.freeze())
}

/// A Parse of the marker statement under `name`.
fn marker_parse(name: &[u8], marker: &str) -> Result<Bytes, Error> {
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

fn refusal_error(reason: PinReason) -> Bytes {
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
