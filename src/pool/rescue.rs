//! A server whose client left while its requests ran: cancel them, drain the answers, roll
//! back and reset, and only then give its place back. A server that cannot be brought back
//! in `reset_timeout` is closed, and its place is kept until its backend has ended, so
//! PostgreSQL never sees more than `size` servers of the pool.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};

use super::Pool;
use super::guard::{release, reset};
use crate::cancel::{self, CancelTarget};
use crate::metrics::CloseReason;
use crate::protocol::codes::backend;
use crate::protocol::{ProtocolError, frame, messages};
use crate::server::{ServerConn, ServerError, ServerEvent};

/// Where the client's streams to and from a server stood when its session ended.
#[derive(Debug, Clone, Copy)]
pub struct Abandoned {
    /// The server got part of a message, or messages were framed for it and not sent:
    /// it cannot be brought back to a message boundary.
    pub request_torn: bool,
    /// Bytes of the reply message being relayed that the server has yet to send or pgate
    /// has yet to read: the server's buffer starts this far before a message boundary.
    pub reply_rest: usize,
}

/// Unknown (the session was dropped where it stood): assume the worst.
impl Default for Abandoned {
    fn default() -> Self {
        Self { request_torn: true, reply_rest: 0 }
    }
}

#[derive(Debug, thiserror::Error)]
enum RescueError {
    #[error("the cancel request failed: {0}")]
    Cancel(std::io::Error),
    #[error("the client left part of a message on the server")]
    TornRequest,
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}

/// Rescues `conn` off the client's task (see the module doc).
pub(super) fn spawn_rescue(pool: &Arc<Pool>, conn: Box<ServerConn>, left: Abandoned) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        conn.close();
        pool.closed(CloseReason::Broken);
        return pool.free_slot();
    };
    let pool = pool.clone();
    runtime.spawn(async move {
        let timeout = pool.settings().reset_timeout;
        let mut conn = conn;
        let testing = pool.testing();
        let rescued = tokio::time::timeout(timeout, rescue(&mut conn, left, timeout)).await;
        drop(testing);
        let error = match rescued {
            Ok(Ok(())) => return release(&pool, conn, false, Abandoned::default()),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within reset_timeout ({timeout:?})"),
        };
        let pid = conn.key().pid;
        tracing::warn!(pool = %pool.key(), backend_pid = pid, %error, "could not bring back a server its client left mid-request; closing it");
        conn.on(ServerEvent::Failed);
        conn.close();
        ensure_ended(&pool, pid, timeout).await;
        pool.closed(if left.request_torn { CloseReason::Broken } else { CloseReason::ResetFailed });
        pool.free_slot();
    });
}

/// Cancels what runs, ends a copy-in or an unsynced pipeline, and reads everything up to
/// the answer to a query of pgate's own that carries a random marker; then resets.
async fn rescue(conn: &mut ServerConn, left: Abandoned, timeout: Duration) -> Result<(), RescueError> {
    let target = CancelTarget { addr: conn.facts().backend_addr.clone(), key: conn.key() };
    // Sent before anything else, and acknowledged by PostgreSQL, so it cannot reach the
    // backend after the queries below have started.
    cancel::forward(&target, timeout).await.map_err(RescueError::Cancel)?;
    if left.request_torn {
        return Err(RescueError::TornRequest);
    }
    let marker = format!("pgate rescue {:016x}", rand::random::<u64>());
    let mut out = BytesMut::new();
    // Nothing the client did not commit may commit now:
    // - CopyFail ends a copy-in with an error (outside one it is ignored);
    // - an Execute of a portal that cannot exist fails, so the Sync that follows rolls an
    //   unsynced pipeline's implicit transaction back instead of committing it (while
    //   the server skips messages after an error, it is skipped);
    // - Sync ends the extended-protocol request, even one whose own Sync the server
    //   ignored inside its copy-in;
    // - ROLLBACK ends any transaction block, aborted or not;
    // - the marker's answer is the last thing to come.
    messages::copy_fail(&mut out, "the client disconnected")?;
    messages::execute(&mut out, &marker)?;
    messages::sync(&mut out);
    messages::query(&mut out, "ROLLBACK")?;
    messages::query(&mut out, &format!("SELECT '{marker}'"))?;
    conn.write_all(&out).await?;
    let status = drain_to_marker(conn, left.reply_rest, marker.as_bytes()).await?;
    conn.on(ServerEvent::Drained(status));
    reset(conn).await?;
    Ok(())
}

/// Discards the server's messages until the ReadyForQuery after the DataRow carrying
/// `marker`; returns that ReadyForQuery's transaction status. Large messages are skipped
/// as they stream, never buffered whole.
async fn drain_to_marker(conn: &mut ServerConn, mut skip: usize, marker: &[u8]) -> Result<u8, RescueError> {
    let mut marked = false;
    loop {
        if skip > 0 {
            let n = skip.min(conn.buf.len());
            conn.buf.advance(n);
            skip -= n;
        }
        let header = if skip == 0 { frame::peek_header(&conn.buf, frame::MAX_FRAME_LEN)? } else { None };
        let Some((code, total)) = header else {
            conn.read_more().await?;
            continue;
        };
        let wanted = code == backend::READY_FOR_QUERY || (code == backend::DATA_ROW && total <= 64 + marker.len());
        if !wanted {
            skip = total;
            continue;
        }
        if conn.buf.len() < total {
            conn.read_more().await?;
            continue;
        }
        let message = conn.buf.split_to(total);
        let body = &message[frame::HEADER_LEN..];
        match code {
            backend::DATA_ROW => marked |= body.windows(marker.len()).any(|w| w == marker),
            _ if marked => return Ok(messages::decode_ready_for_query(body)?),
            _ => {}
        }
    }
}

/// After a server was closed without being brought back: ends its backend through an idle
/// server of the pool, if one is at hand (`pg_terminate_backend`, waiting for the exit).
/// Without one, the cancel already sent and the closed socket end it: a backend notices
/// its client is gone at its next read, which is where a cancelled query goes. No server
/// is opened or waited for just for this, so a rescue never adds to the pool's servers.
async fn ensure_ended(pool: &Arc<Pool>, pid: i32, timeout: Duration) {
    let Some(mut other) = pool.idle_now() else { return };
    let wait_ms = (timeout / 2).as_millis().max(1);
    let sql = format!("SELECT pg_terminate_backend(pid, {wait_ms}) FROM pg_stat_activity WHERE pid = {pid}");
    match tokio::time::timeout(timeout, other.query_internal(&sql)).await {
        Ok(Ok(answer)) if answer.rows.iter().all(|row| row.first() == Some(&Some("t".to_owned()))) => {}
        Ok(Ok(_)) => {
            tracing::warn!(pool = %pool.key(), backend_pid = pid, "the backend of a closed server did not exit in time")
        }
        Ok(Err(error)) => {
            tracing::warn!(pool = %pool.key(), backend_pid = pid, %error, "could not make sure the backend of a closed server ended")
        }
        Err(_) => {
            other.on(ServerEvent::Failed);
            tracing::warn!(pool = %pool.key(), backend_pid = pid, "no answer while ending the backend of a closed server")
        }
    }
}
