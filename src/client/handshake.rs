//! The startup phase before login: SSLRequest / GSSENCRequest negotiation, CancelRequest,
//! and the StartupMessage itself.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::Error;
use crate::protocol::codes::startup::REFUSE;
use crate::protocol::{CancelKey, ProtocolError, StartupMessage, StartupPacket, startup};

/// What a new connection turned out to be.
#[derive(Debug)]
pub enum Opening {
    Cancel(CancelKey),
    Startup(StartupMessage),
    /// The peer closed before sending a packet (a TCP health probe, a port scan).
    Nothing,
}

/// Reads startup packets until a StartupMessage or CancelRequest. Encryption requests are
/// declined with 'N' (client TLS is not configured), each at most once, as PostgreSQL does.
pub async fn open<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) -> Result<Opening, Error> {
    let (mut ssl_asked, mut gss_asked) = (false, false);
    loop {
        let Some(packet) = read_packet(stream).await? else {
            return Ok(Opening::Nothing);
        };
        match packet {
            StartupPacket::SslRequest if !ssl_asked => ssl_asked = true,
            StartupPacket::GssEncRequest if !gss_asked => gss_asked = true,
            StartupPacket::SslRequest | StartupPacket::GssEncRequest => {
                return Err(ProtocolError::MalformedStartup(
                    "encryption was requested twice".into(),
                )
                .into());
            }
            StartupPacket::Cancel(key) => return Ok(Opening::Cancel(key)),
            StartupPacket::Startup(m) => return Ok(Opening::Startup(m)),
        }
        stream.write_all(&[REFUSE]).await?;
    }
}

/// One length-prefixed startup packet; `None` on a clean EOF before its first byte.
async fn read_packet<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Option<StartupPacket>, Error> {
    let mut len = [0u8; 4];
    let first = stream.read(&mut len).await?;
    if first == 0 {
        return Ok(None);
    }
    stream.read_exact(&mut len[first..]).await?;
    let body_len = startup::body_len(len)?;
    let mut body = vec![0u8; body_len];
    stream.read_exact(&mut body).await?;
    Ok(Some(startup::parse(&body)?))
}
