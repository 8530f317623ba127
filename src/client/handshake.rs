//! The startup phase before login: SSLRequest / GSSENCRequest negotiation, CancelRequest,
//! and the StartupMessage itself.

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::Error;
use crate::protocol::codes::startup::{ACCEPT, REFUSE};
use crate::protocol::{CancelKey, ProtocolError, StartupMessage, StartupPacket, startup};

/// What a new connection turned out to be.
#[derive(Debug)]
pub enum Opening {
    Cancel(CancelKey),
    Startup(StartupMessage),
    /// The client asked for TLS and was told 'S': the TLS handshake comes next.
    StartTls,
    /// The peer closed before sending a packet (a TCP health probe, a port scan).
    Nothing,
}

/// Where the startup phase stands with encryption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encryption {
    /// TLS is configured: an SSLRequest is answered 'S'.
    Offered,
    /// No TLS: an SSLRequest is answered 'N'.
    Unavailable,
    /// Already inside TLS: another encryption request is a protocol violation.
    Established,
}

/// Reads startup packets until a StartupMessage or CancelRequest. An SSLRequest is
/// answered as `encryption` says; a GSSENCRequest 'N'; each at most once, as PostgreSQL
/// does. Reads go through `buf`, which keeps what arrived after the last packet.
pub async fn open<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    encryption: Encryption,
) -> Result<Opening, Error> {
    let (mut ssl_asked, mut gss_asked) = (false, false);
    loop {
        let Some(packet) = read_packet(stream, buf).await? else {
            return Ok(Opening::Nothing);
        };
        match packet {
            StartupPacket::SslRequest | StartupPacket::GssEncRequest if encryption == Encryption::Established => {
                return Err(ProtocolError::MalformedStartup("encryption requested inside TLS".into()).into());
            }
            StartupPacket::SslRequest if encryption == Encryption::Offered && !ssl_asked => {
                stream.write_all(&[ACCEPT]).await?;
                return Ok(Opening::StartTls);
            }
            StartupPacket::SslRequest if !ssl_asked => ssl_asked = true,
            StartupPacket::GssEncRequest if !gss_asked => gss_asked = true,
            StartupPacket::SslRequest | StartupPacket::GssEncRequest => {
                return Err(ProtocolError::MalformedStartup("encryption was requested twice".into()).into());
            }
            StartupPacket::Cancel(key) => return Ok(Opening::Cancel(key)),
            StartupPacket::Startup(m) => return Ok(Opening::Startup(m)),
        }
        stream.write_all(&[REFUSE]).await?;
    }
}

/// One length-prefixed startup packet; `None` on a clean EOF before its first byte.
async fn read_packet<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut BytesMut) -> Result<Option<StartupPacket>, Error> {
    buf.reserve(1024);
    while buf.len() < 4 {
        if stream.read_buf(buf).await? == 0 {
            return match buf.is_empty() {
                true => Ok(None),
                false => Err(Error::ClientIo(std::io::ErrorKind::UnexpectedEof.into())),
            };
        }
    }
    let body_len = startup::body_len([buf[0], buf[1], buf[2], buf[3]])?;
    while buf.len() < 4 + body_len {
        buf.reserve(4 + body_len - buf.len());
        if stream.read_buf(buf).await? == 0 {
            return Err(Error::ClientIo(std::io::ErrorKind::UnexpectedEof.into()));
        }
    }
    buf.advance(4);
    let body = buf.split_to(body_len);
    Ok(Some(startup::parse(&body)?))
}
