//! One admin's console session: simple Query messages are parsed and answered (a table or
//! a command tag, then ReadyForQuery); messages of the extended protocol get one clear
//! error up to their Sync. The session ends on Terminate, on KILL_CLIENT, or at shutdown
//! (57P01, like any idle client).

use std::sync::Arc;
use std::time::SystemTime;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::watch;

use super::commands::{self, Command, View};
use super::login::Admin;
use super::table::{self, Table};
use super::{AdminError, ClientEntry, ClientInfo, Origin, Registration, catalog, pause, views};
use crate::audit::{Event, Record};
use crate::client::io::{flush, send_error};
use crate::error::Error;
use crate::protocol::codes::{frontend, tx_status};
use crate::protocol::{BodyReader, Frame, ProtocolError, frame, messages};
use crate::proxy::Shared;

/// Admin queries are short; a longer message is refused as a protocol violation.
const MAX_ADMIN_FRAME: usize = 1024 * 1024;

/// What a command answers.
enum Reply {
    Table(Table),
    Done,
}

struct Session<S> {
    stream: S,
    /// Client bytes not yet handled.
    buf: BytesMut,
    out: BytesMut,
    shared: Arc<Shared>,
    admin: Admin,
    registration: Registration,
    /// The console's own entry, for KILL_CLIENT.
    entry: Arc<ClientEntry>,
    shutdown: watch::Receiver<bool>,
    /// After an extended-protocol message: drop messages up to the next Sync.
    skip_until_sync: bool,
}

/// Why the session stopped waiting for the client.
enum Interrupted {
    ClientGone,
    Error(Error),
}

pub async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    pending: BytesMut,
    admin: Admin,
    origin: Origin,
    shared: Arc<Shared>,
) {
    tracing::info!("admin console session started");
    let registration = shared.console.register(ClientInfo {
        peer: origin.peer,
        local: origin.local,
        user: admin.user.clone(),
        database: super::DATABASE.to_owned(),
        pool: None,
        tls: origin.tls.as_ref().map(|t| t.version),
        application_name: admin.application_name.clone(),
        session: admin.cancel.key().pid,
    });
    let entry = registration.entry().clone();
    let mut session = Session {
        stream,
        buf: pending,
        out: BytesMut::new(),
        shutdown: shared.shutdown_signal(),
        shared,
        admin,
        registration,
        entry,
        skip_until_sync: false,
    };
    let ended = session.serve().await;
    if let (Some(auditor), Some(context)) = (&session.shared.auditor, &session.admin.audit) {
        let _ =
            auditor.record(Record { time: SystemTime::now(), context: context.clone(), event: Event::Logout }).await;
    }
    match ended {
        Ok(()) => tracing::info!("admin console session ended"),
        Err(e) => {
            tracing::info!(error = %e, "admin console session ended");
            send_error(&mut session.stream, &e).await;
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    async fn serve(&mut self) -> Result<(), Error> {
        loop {
            let Some(frame) = self.next_frame().await? else { return Ok(()) };
            match frame.code {
                frontend::QUERY => {
                    if !self.query(&frame).await? {
                        return Ok(());
                    }
                }
                frontend::TERMINATE => return Ok(()),
                frontend::SYNC => {
                    self.skip_until_sync = false;
                    messages::ready_for_query(&mut self.out, tx_status::IDLE);
                }
                frontend::PARSE
                | frontend::BIND
                | frontend::DESCRIBE
                | frontend::EXECUTE
                | frontend::CLOSE
                | frontend::FLUSH => {
                    if !self.skip_until_sync {
                        self.error(AdminError::ExtendedProtocol);
                        self.skip_until_sync = true;
                    }
                }
                frontend::FUNCTION_CALL => {
                    self.error(AdminError::ExtendedProtocol);
                    messages::ready_for_query(&mut self.out, tx_status::IDLE);
                }
                // Copy messages outside a copy are ignored, as PostgreSQL ignores them.
                frontend::COPY_DATA | frontend::COPY_DONE | frontend::COPY_FAIL => {}
                code => return Err(ProtocolError::Unexpected { code, during: "the admin console" }.into()),
            }
        }
    }

    /// The next whole message; `None` when the client closed the connection.
    async fn next_frame(&mut self) -> Result<Option<Frame>, Error> {
        loop {
            if let Some(frame) = frame::split_frame(&mut self.buf, MAX_ADMIN_FRAME)? {
                return Ok(Some(frame));
            }
            flush(&mut self.stream, &mut self.out).await?;
            match self.read_or_interrupt().await {
                Ok(()) => {}
                Err(Interrupted::ClientGone) => return Ok(None),
                Err(Interrupted::Error(e)) => return Err(e),
            }
        }
    }

    /// Reads more client bytes, unless KILL_CLIENT or shutdown comes first.
    async fn read_or_interrupt(&mut self) -> Result<(), Interrupted> {
        if *self.shutdown.borrow() {
            return Err(Interrupted::Error(Error::ShuttingDown));
        }
        self.buf.reserve(1024);
        tokio::select! {
            read = self.stream.read_buf(&mut self.buf) => match read {
                Ok(0) => Err(Interrupted::ClientGone),
                Ok(_) => Ok(()),
                Err(e) => Err(Interrupted::Error(e.into())),
            },
            _ = self.shutdown.changed() => Err(Interrupted::Error(Error::ShuttingDown)),
            () = self.entry.killed() => Err(Interrupted::Error(Error::Killed)),
        }
    }

    /// Answers one Query; `false` when the client left while it ran.
    async fn query(&mut self, frame: &Frame) -> Result<bool, Error> {
        let mut reader = BodyReader::new(&frame.body, "Query");
        let text = reader.string()?;
        reader.finish()?;
        match commands::parse(&text) {
            Ok(Command::Empty) => table::empty_query_response(&mut self.out),
            Ok(command) => {
                tracing::info!(command = %text.trim(), "admin command");
                self.registration.busy();
                let done = self.run_until_interrupted(&command).await;
                self.registration.idle();
                match done {
                    Ok(Ok(Reply::Table(t))) => t.encode(&mut self.out),
                    Ok(Ok(Reply::Done)) => table::command_complete(&mut self.out, command.tag()),
                    Ok(Err(e)) => self.error(e),
                    Err(Interrupted::ClientGone) => return Ok(false),
                    Err(Interrupted::Error(e)) => return Err(e),
                }
            }
            Err(e) => self.error(e),
        }
        messages::ready_for_query(&mut self.out, tx_status::IDLE);
        Ok(true)
    }

    /// Runs a command; one that waits (PAUSE) stops waiting if the admin goes away, is
    /// killed, or pgate shuts down. Whatever the client sends meanwhile waits its turn.
    async fn run_until_interrupted(&mut self, command: &Command) -> Result<Result<Reply, AdminError>, Interrupted> {
        let shared = self.shared.clone();
        let execution = execute(&shared, command);
        tokio::pin!(execution);
        loop {
            tokio::select! {
                done = &mut execution => return Ok(done),
                interrupted = self.read_or_interrupt() => interrupted?,
            }
        }
    }

    fn error(&mut self, e: AdminError) {
        if let Some(fields) = Error::Admin(e).to_response() {
            fields.encode(&mut self.out);
        }
    }
}

async fn execute(shared: &Arc<Shared>, command: &Command) -> Result<Reply, AdminError> {
    match command {
        Command::Show(view) => Ok(Reply::Table(show(shared, *view))),
        Command::Reload => reload(shared).await.map(|()| Reply::Done),
        Command::Pause(db) => pause::pause(shared, db.as_deref()).await.map(|()| Reply::Done),
        Command::Resume(db) => pause::resume(shared, db.as_deref()).map(|()| Reply::Done),
        Command::Reconnect(db) => pause::reconnect(shared, db.as_deref()).map(|()| Reply::Done),
        Command::KillClient(id) => {
            let client = shared.console.clients.get(*id).ok_or(AdminError::NoSuchClient(*id))?;
            tracing::info!(client = id, user = %client.info.user, database = %client.info.database, "KILL_CLIENT");
            client.kill();
            Ok(Reply::Done)
        }
        Command::Shutdown => {
            shared.console.request_stop();
            Ok(Reply::Done)
        }
        Command::Empty => Ok(Reply::Done),
    }
}

fn show(shared: &Shared, view: View) -> Table {
    match view {
        View::Pools => views::pools(shared),
        View::Clients => views::clients(shared),
        View::Servers => views::servers(shared),
        View::Stats => views::stats(shared),
        View::StatsTotals => views::stats_totals(shared),
        View::Databases => catalog::databases(shared),
        View::Users => catalog::users(shared),
        View::Config => catalog::config(shared),
        View::Lists => views::lists(shared),
        View::Version => views::version(),
        View::Workspaces => catalog::workspaces(shared),
        View::Help => views::help(),
    }
}

/// RELOAD: what SIGHUP does. The file is read and validated off the relay threads (plain
/// passwords are turned into SCRAM secrets); an invalid one, or an audit sink that cannot
/// be opened, changes nothing.
async fn reload(shared: &Arc<Shared>) -> Result<(), AdminError> {
    let path = shared.config.load().source.clone();
    let loaded = tokio::task::spawn_blocking(move || crate::config::load(&path)).await;
    match loaded {
        Ok(Ok(snapshot)) => {
            let audit = shared.prepare_audit(&snapshot).map_err(|e| AdminError::Reload(e.to_string()))?;
            shared.apply_config(snapshot);
            audit.apply();
        }
        Ok(Err(e)) => return Err(AdminError::Reload(e.to_string())),
        Err(e) => return Err(AdminError::Reload(e.to_string())),
    }
    shared.reload_tls().map_err(|e| AdminError::TlsReload(e.to_string()))
}
