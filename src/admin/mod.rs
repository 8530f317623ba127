//! The admin console: the virtual database `pgate`, for the users in `[admin] users`.
//! PgBouncer's commands with PgBouncer's column names (SHOW POOLS, CLIENTS, SERVERS,
//! STATS, STATS_TOTALS, DATABASES, USERS, CONFIG, LISTS, VERSION), pgate's SHOW WORKSPACES,
//! and RELOAD, PAUSE, RESUME, RECONNECT, KILL_CLIENT, SHUTDOWN; over the simple query
//! protocol (psql). `login` admits admins, `session` reads and answers their queries,
//! `commands` parses them, `views` and `catalog` build the SHOW tables (`table`), `pause`
//! holds and releases pools, and `clients` is the registry of logged-in clients.

mod catalog;
mod clients;
mod commands;
mod login;
mod pause;
mod session;
mod table;
mod views;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument;

pub use clients::{ClientEntry, ClientInfo, ClientState, Registration, Registry};
pub use commands::COMMAND_LIST;

use crate::client::TlsFacts;
use crate::protocol::StartupMessage;
use crate::proxy::Shared;

/// The database name of the admin console. A database of that name reached through a
/// `"*"` backend is shadowed by it (an alias reaches it: `[databases.x] dbname = "pgate"`).
pub const DATABASE: &str = "pgate";

/// The hint of a command the console does not understand.
pub const COMMANDS_HINT: &str = "SHOW HELP lists the commands";

/// What an admin command can fail with; the console stays usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    #[error("cannot run \"{query}\": {reason}; the admin console knows: {}", COMMAND_LIST)]
    Syntax { query: String, reason: String },
    #[error("no such database: \"{database}\" (routed: {known})")]
    NoSuchDatabase { database: String, known: String },
    #[error("\"{database}\" is the admin console itself; name a routed database, or none for all of them")]
    ConsoleDatabase { database: String },
    #[error("no client with id {0} is connected")]
    NoSuchClient(u64),
    #[error("{what} is not paused")]
    NotPaused { what: String },
    #[error("configuration reload failed; the running configuration is unchanged: {0}")]
    Reload(String),
    #[error("the admin console speaks the simple query protocol (psql); the extended query protocol is not supported")]
    ExtendedProtocol,
}

/// The console's share of the proxy's state.
pub struct Console {
    /// Every logged-in client (admins included).
    pub clients: Registry,
    /// What PAUSE holds.
    pub pauses: pause::Pauses,
    /// SHUTDOWN was asked for.
    stop: watch::Sender<bool>,
}

impl Default for Console {
    fn default() -> Self {
        Self { clients: Registry::default(), pauses: Default::default(), stop: watch::Sender::new(false) }
    }
}

impl Console {
    /// Adds a logged-in client; its pool is paused if a PAUSE covers it.
    pub fn register(&self, info: ClientInfo) -> Registration {
        if let Some(pool) = &info.pool {
            self.pauses.adopt(pool);
        }
        self.clients.register(info)
    }

    /// An admin asked pgate to stop (SHUTDOWN).
    pub fn request_stop(&self) {
        self.stop.send_replace(true);
    }

    /// Resolves once SHUTDOWN was asked for.
    pub async fn stop_requested(&self) {
        let mut requested = self.stop.subscribe();
        let _ = requested.wait_for(|&stop| stop).await;
    }
}

/// `stop`, or an admin's SHUTDOWN, whichever comes first (what the proxy serves until).
pub async fn until_stopped(shared: Arc<Shared>, stop: impl Future<Output = ()>) {
    tokio::select! {
        () = stop => {}
        () = shared.console.stop_requested() => tracing::info!("SHUTDOWN asked by an admin"),
    }
}

/// True when the client asks for the admin console (its database, or by default its
/// user name, is `pgate`).
pub fn wants_console(startup: &StartupMessage) -> bool {
    let user = startup.get("user").unwrap_or_default();
    let database = startup.get("database").filter(|d| !d.is_empty()).unwrap_or(user);
    database == DATABASE
}

/// Where an admin connected from, and its login deadline.
pub struct Origin {
    pub peer: SocketAddr,
    pub local: Option<SocketAddr>,
    pub tls: Option<TlsFacts>,
    pub deadline: Instant,
}

/// Logs an admin in and serves its console session to the end.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    mut pending: BytesMut,
    startup: StartupMessage,
    origin: Origin,
    shared: Arc<Shared>,
) {
    let admin = match login::login(&mut stream, &mut pending, &startup, &origin, &shared).await {
        Ok(admin) => admin,
        Err(e) => {
            tracing::info!(peer = %origin.peer, error = %e, "admin console login refused");
            return crate::client::io::send_error(&mut stream, &e).await;
        }
    };
    let span = tracing::info_span!("admin", peer = %origin.peer, user = %admin.user);
    session::run(stream, pending, admin, origin, shared).instrument(span).await;
}
