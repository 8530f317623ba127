//! Small I/O helpers for the client socket during startup and login.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::Error;
use crate::protocol::{Frame, ProtocolError, frame};

/// Messages a client sends while logging in are small; anything larger is an attack.
pub const MAX_LOGIN_FRAME: usize = 64 * 1024;

/// Reads one whole frame of the type `expected`.
pub async fn read_frame<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    expected: u8,
    during: &'static str,
) -> Result<Frame, Error> {
    loop {
        if let Some(f) = frame::split_frame(buf, MAX_LOGIN_FRAME)? {
            if f.code != expected {
                return Err(ProtocolError::Unexpected { code: f.code, during }.into());
            }
            return Ok(f);
        }
        buf.reserve(1024);
        if stream.read_buf(buf).await? == 0 {
            return Err(Error::ClientIo(std::io::ErrorKind::UnexpectedEof.into()));
        }
    }
}

/// Writes and empties `out`.
pub async fn flush<S: AsyncWrite + Unpin>(stream: &mut S, out: &mut BytesMut) -> Result<(), Error> {
    if !out.is_empty() {
        stream.write_all(out).await?;
        out.clear();
        // TLS streams hold records until flushed; for TCP this costs nothing.
        stream.flush().await?;
    }
    Ok(())
}

/// Tells the client about `error` (if there is anyone to tell) and flushes.
pub async fn send_error<S: AsyncWrite + Unpin>(stream: &mut S, error: &Error) {
    if let Some(fields) = error.to_response() {
        let mut out = BytesMut::new();
        fields.encode(&mut out);
        if stream.write_all(&out).await.is_ok() {
            let _ = stream.flush().await;
        }
    }
}
