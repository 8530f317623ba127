//! Transaction pooling's statement rewriting: client statement names onto pool-wide ones.
//!
//! In transaction and statement pooling, statement names are replaced by pool-wide ones, a
//! statement the server lacks is prepared first (an injected Parse whose reply is hidden), a
//! Parse of a statement the server has is answered by pgate, and a Close of a shared
//! statement is answered without closing it.

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite};

use super::expect::{Fate, Request, Undo};
use super::forward::{EMPTY_BIND, marker_parse, refusal_error};
use super::session::Session;
use super::statements::Prepared;
use crate::error::Error;
use crate::pool::PooledServer;
use crate::protocol::codes::frontend;
use crate::protocol::extended::{self, PORTAL, STATEMENT};
use crate::protocol::{ProtocolError, messages};
use crate::server::statements::{Admit, global_name};
use crate::sql;

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
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

    pub(super) fn forward_parse(&mut self, server: &mut PooledServer, frame: &[u8]) -> Result<(), Error> {
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

    pub(super) fn forward_bind(&mut self, server: &mut PooledServer, frame: &[u8]) -> Result<(), Error> {
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

    pub(super) fn forward_describe(&mut self, server: &mut PooledServer, frame: &[u8]) -> Result<(), Error> {
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

    pub(super) fn forward_close(&mut self, server: &mut PooledServer, frame: &[u8]) -> Result<(), Error> {
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
