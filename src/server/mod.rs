//! Server connections: one PostgreSQL connection pgate opened (`ServerConn`), its
//! protocol state (`state`), and how it is opened and logged in (`connect`).

mod connect;
mod facts;
mod state;
pub mod statements;
mod stream;
mod tally;

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub use connect::{Target, connect};
pub use facts::ServerFacts;
pub use state::{ServerEvent, ServerState};
pub use statements::ServerStatements;
pub use stream::ServerStream;
pub use tally::Finished;

use crate::params::Params;
use crate::protocol::codes::backend;
use crate::protocol::messages::{self, ErrorFields};
use crate::protocol::{CancelKey, ProtocolError, extended, frame};

/// What one of pgate's own queries returned.
#[derive(Debug, Default)]
pub struct InternalAnswer {
    /// ParameterStatus changes reported while it ran.
    pub changes: Vec<(String, String)>,
    /// Its rows, as text columns.
    pub rows: Vec<Vec<Option<String>>>,
}

/// Server read buffers start here and grow for large messages.
const READ_BUFFER: usize = 32 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("could not connect to backend {backend} at {addr}: {source}")]
    Connect { backend: String, addr: String, source: io::Error },
    #[error("could not connect to backend {backend} at {addr}: no answer within {after:?} (pool connect_timeout)")]
    ConnectTimeout { backend: String, addr: String, after: Duration },
    #[error("backend {backend} refused the login of \"{user}\": {}", fields.message)]
    Rejected { backend: String, user: String, fields: Box<ErrorFields> },
    #[error("backend {backend} asks for a password for \"{user}\", and none is configured: set {key}")]
    NoPassword { backend: String, user: String, key: &'static str },
    #[error(
        "backend {backend} asks for authentication method {method}, which pgate does not speak to servers (use scram-sha-256, md5, password or trust)"
    )]
    UnsupportedAuth { backend: String, method: i32 },
    #[error("backend {backend} does not accept TLS, and its tls.mode is {mode:?}")]
    TlsRefused { backend: String, mode: crate::config::SslMode },
    #[error("TLS with backend {backend} failed: {reason}")]
    Tls { backend: String, reason: String },
    #[error("SCRAM exchange with backend {backend} failed: {reason}")]
    Scram { backend: String, reason: String },
    #[error("server connection lost step with the protocol: {0}")]
    Protocol(#[from] ProtocolError),
    #[error("server closed the connection unexpectedly")]
    Closed,
    #[error("server connection failed: {0}")]
    Io(#[from] io::Error),
    #[error("{}", .0.message)]
    Query(Box<ErrorFields>),
}

impl ServerError {
    /// A word for metrics (`pgate_server_connect_errors_total`).
    pub fn reason(&self) -> &'static str {
        match self {
            ServerError::Connect { .. } => "connect",
            ServerError::ConnectTimeout { .. } => "timeout",
            ServerError::Rejected { .. } => "rejected",
            ServerError::NoPassword { .. } => "no_password",
            ServerError::UnsupportedAuth { .. } | ServerError::Scram { .. } => "auth",
            ServerError::TlsRefused { .. } | ServerError::Tls { .. } => "tls",
            ServerError::Protocol(_) => "protocol",
            ServerError::Closed | ServerError::Io(_) => "io",
            ServerError::Query(_) => "query",
        }
    }
}

/// One PostgreSQL connection. Owned by the pool while idle and by one client task while
/// checked out; the client task relays through `stream` and `buf` directly.
#[derive(Debug)]
pub struct ServerConn {
    pub(crate) stream: ServerStream,
    /// Bytes read from the server and not yet relayed.
    pub(crate) buf: BytesMut,
    state: ServerState,
    key: CancelKey,
    /// Session parameters as the server has them now.
    params: Params,
    /// The fingerprint of the client settings last applied, while `params` is exactly the
    /// defaults overlaid with them: a client with the same settings needs no sync.
    synced_for: Option<u64>,
    /// Session parameters as the server had them after connecting.
    defaults: Arc<Params>,
    /// Prepared statements the server holds for the pool.
    pub(crate) statements: ServerStatements,
    created: Instant,
    last_used: Instant,
    id: u64,
    /// What the admin console lists of this connection.
    facts: Arc<ServerFacts>,
    /// Request and transaction timing and message counts, for the pool's totals.
    tally: tally::Tally,
    /// NotificationResponses that arrived during pgate's own queries: they belong to the
    /// client (a LISTEN keeps it on this server), which gets them next.
    notifications: BytesMut,
}

impl ServerConn {
    /// Notifications that arrived while pgate ran its own queries (see `notifications`).
    pub fn take_notifications(&mut self) -> Option<BytesMut> {
        (!self.notifications.is_empty()).then(|| self.notifications.split())
    }

    pub fn state(&self) -> ServerState {
        self.state
    }

    pub fn on(&mut self, event: ServerEvent) {
        let before = self.state;
        self.state = self.state.on(event);
        let sent = match event {
            ServerEvent::Sent(code) => Some(code),
            _ => None,
        };
        self.tally.on(before, self.state, sent);
    }

    /// A ReadyForQuery from the server reached the client: the request's (and maybe the
    /// transaction's) duration and the messages counted since the last one.
    pub fn finished(&mut self) -> Finished {
        self.tally.finish(self.state)
    }

    pub fn facts(&self) -> &Arc<ServerFacts> {
        &self.facts
    }

    pub fn key(&self) -> CancelKey {
        self.key
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn defaults(&self) -> &Arc<Params> {
        &self.defaults
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    pub fn set_param(&mut self, name: &str, value: &str) {
        self.params.set(name, value);
        self.synced_for = None;
    }

    /// Replaces the parameters; `synced_for` is the fingerprint of the client settings they
    /// are the defaults overlaid with, if they are.
    pub fn set_params(&mut self, params: Params, synced_for: Option<u64>) {
        self.params = params;
        self.synced_for = synced_for;
    }

    pub fn synced_for(&self) -> Option<u64> {
        self.synced_for
    }

    pub fn mark_synced(&mut self, fingerprint: u64) {
        self.synced_for = Some(fingerprint);
    }

    pub fn age(&self) -> Duration {
        self.age_at(Instant::now())
    }

    pub fn idle_for(&self) -> Duration {
        self.idle_at(Instant::now())
    }

    // The `_at` forms let a caller read the clock once for several of them: a checkout and a
    // release each need two, on every transaction.
    pub fn age_at(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.created)
    }

    pub fn idle_at(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_used)
    }

    pub fn touch_at(&mut self, now: Instant) {
        self.last_used = now;
    }

    pub async fn write_all(&mut self, bytes: &[u8]) -> Result<(), ServerError> {
        let written = async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        };
        if let Err(e) = written.await {
            self.on(ServerEvent::Failed);
            return Err(e.into());
        }
        Ok(())
    }

    /// Makes room in `buf` for the next read.
    pub fn reserve_read(&mut self) {
        if self.buf.capacity() - self.buf.len() < READ_BUFFER / 4 {
            self.buf.reserve(READ_BUFFER);
        }
    }

    /// Reads what the server has sent into `buf`; EOF is an error.
    pub async fn read_more(&mut self) -> Result<usize, ServerError> {
        self.reserve_read();
        match self.stream.read_buf(&mut self.buf).await {
            Ok(0) => {
                self.on(ServerEvent::Failed);
                Err(ServerError::Closed)
            }
            Ok(n) => Ok(n),
            Err(e) => {
                self.on(ServerEvent::Failed);
                Err(e.into())
            }
        }
    }

    /// Runs pgate's own simple query (reset, parameter sync, health check) and consumes
    /// its whole answer. ParameterStatus messages update `params`; the changes are
    /// returned. A server error is returned after ReadyForQuery, with the server usable.
    pub async fn run_internal(&mut self, sql: &str) -> Result<Vec<(String, String)>, ServerError> {
        Ok(self.query_internal(sql).await?.changes)
    }

    /// Like [`Self::run_internal`], returning the rows (text columns) as well.
    pub async fn query_internal(&mut self, sql: &str) -> Result<InternalAnswer, ServerError> {
        let mut out = BytesMut::new();
        messages::query(&mut out, sql)?;
        self.write_all(&out).await?;
        self.on(ServerEvent::Sent(crate::protocol::codes::frontend::QUERY));
        // A simple Query destroys the unnamed statement.
        self.statements.unnamed = None;
        let mut answer = InternalAnswer::default();
        let mut error = None;
        loop {
            let Some(f) = frame::split_frame(&mut self.buf, frame::MAX_FRAME_LEN)? else {
                self.read_more().await?;
                continue;
            };
            match f.code {
                backend::PARAMETER_STATUS => {
                    let (name, value) = messages::decode_parameter_status(&f.body)?;
                    self.set_param(&name, &value);
                    answer.changes.push((name, value));
                }
                backend::DATA_ROW => answer.rows.push(extended::decode_data_row(&f.body)?),
                backend::ERROR_RESPONSE if error.is_none() => error = Some(ErrorFields::decode(&f.body)?),
                backend::READY_FOR_QUERY => {
                    self.on(ServerEvent::Ready(messages::decode_ready_for_query(&f.body)?));
                    break;
                }
                backend::NOTIFICATION_RESPONSE => {
                    self.notifications.put_u8(f.code);
                    self.notifications.put_u32(frame_length(f.body.len()));
                    self.notifications.extend_from_slice(&f.body);
                }
                _ => {}
            }
        }
        if self.state != ServerState::Idle {
            self.on(ServerEvent::Failed);
        }
        match error {
            Some(fields) => Err(ServerError::Query(Box::new(fields))),
            None => Ok(answer),
        }
    }

    /// A cheap check before reuse: an idle server has nothing to say, so buffered bytes
    /// or anything on the socket (a FATAL from a restarting backend, EOF) mean it is gone.
    pub fn looks_alive(&mut self) -> bool {
        if !self.buf.is_empty() || self.state != ServerState::Idle || !self.stream.quiet() {
            self.on(ServerEvent::Failed);
            return false;
        }
        true
    }

    /// Says goodbye when the connection is at a message boundary; best effort, no wait.
    pub fn close(self) {
        if matches!(self.state, ServerState::Idle | ServerState::IdleInTransaction { .. }) {
            let mut out = BytesMut::new();
            messages::terminate(&mut out);
            self.stream.try_write_plain(&out);
        }
    }
}

/// The length field of a message whose body is `body` bytes (it counts itself); bodies
/// come from frames that fitted `frame::MAX_FRAME_LEN`.
fn frame_length(body: usize) -> u32 {
    u32::try_from(body + 4).unwrap_or(u32::MAX)
}
