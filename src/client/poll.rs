//! The poll-level steps of the relay: one step over writing to the server, reading from
//! it and reading from the client, whichever is ready first; and a client read through a
//! stack buffer, so a client that waits holds no buffer of its own.

use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::io::poll_read_buf;

use crate::pool::PooledServer;

/// The most one client read takes: the stack buffer's size, so large requests and COPY
/// data move in big chunks.
const CLIENT_READ_CHUNK: usize = 8 * 1024;
/// While relaying, a client read buffer with less room than this grows first.
const MIN_READ_ROOM: usize = 512;

pub(super) enum RelayEvent {
    ServerWrote(std::io::Result<usize>),
    ServerRead(std::io::Result<usize>),
    ClientRead(std::io::Result<usize>),
}

/// One step of the relay: whichever of write-to-server (`to_server`), read-from-server and
/// read-from-client is ready first.
pub(super) fn poll_relay<S: AsyncRead + Unpin>(
    cx: &mut Context<'_>,
    client: &mut S,
    server: &mut PooledServer,
    cbuf: &mut BytesMut,
    to_server: &BytesMut,
    read_client: bool,
) -> Poll<RelayEvent> {
    let conn: &mut crate::server::ServerConn = server;
    if !to_server.is_empty()
        && let Poll::Ready(r) = Pin::new(&mut conn.stream).poll_write(cx, to_server)
    {
        return Poll::Ready(RelayEvent::ServerWrote(r));
    }
    if conn.stream.unflushed()
        && let Poll::Ready(Err(e)) = Pin::new(&mut conn.stream).poll_flush(cx)
    {
        return Poll::Ready(RelayEvent::ServerWrote(Err(e)));
    }
    conn.reserve_read();
    if let Poll::Ready(r) = poll_read_buf(Pin::new(&mut conn.stream), cx, &mut conn.buf) {
        return Poll::Ready(RelayEvent::ServerRead(r));
    }
    if read_client {
        // With little room, read through the stack: most requests are answered before the
        // client sends more, and a buffer reserved for a read that is not coming would cost
        // an 8 KiB allocation per request.
        let read = if cbuf.capacity() - cbuf.len() < MIN_READ_ROOM {
            poll_read_via_stack(cx, client, cbuf)
        } else {
            poll_read_buf(Pin::new(client), cx, cbuf)
        };
        if let Poll::Ready(r) = read {
            return Poll::Ready(RelayEvent::ClientRead(r));
        }
    }
    Poll::Pending
}

/// Reads the client into a buffer on the stack and appends what came to `cbuf`.
pub(super) fn poll_read_via_stack<S: AsyncRead + Unpin>(
    cx: &mut Context<'_>,
    client: &mut S,
    cbuf: &mut BytesMut,
) -> Poll<std::io::Result<usize>> {
    let mut stack = [MaybeUninit::<u8>::uninit(); CLIENT_READ_CHUNK];
    let mut buf = ReadBuf::uninit(&mut stack);
    std::task::ready!(Pin::new(client).poll_read(cx, &mut buf))?;
    cbuf.extend_from_slice(buf.filled());
    Poll::Ready(Ok(buf.filled().len()))
}
