//! TLS with a client: after an SSLRequest answered 'S' (plaintext bytes already sent behind
//! the request are a protocol violation: the CVE-2021-23214 class), or directly, as
//! PostgreSQL 17's `sslnegotiation=direct` opens with a ClientHello and must name ALPN
//! `postgresql`. The startup phase then continues inside TLS.

use std::sync::Arc;

use bytes::BytesMut;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;

use super::handshake::{self, Encryption, Opening};
use super::{Conn, Running, after_startup, forward_cancel, refuse};
use crate::error::Error;
use crate::protocol::ProtocolError;
use crate::protocol::codes::startup::TLS_HANDSHAKE_RECORD;
use crate::tls::{ALPN_POSTGRESQL, ClientTls, PeerIdentity};

/// What the connection's TLS says about the client.
#[derive(Clone)]
pub struct TlsFacts {
    pub tls: Arc<ClientTls>,
    /// The verified client certificate, if the client sent one.
    pub peer: Option<PeerIdentity>,
    pub version: &'static str,
}

/// True when the client's first byte opens a TLS handshake record.
pub async fn opens_with_tls(tcp: &TcpStream, deadline: Instant) -> bool {
    let mut first = [0u8; 1];
    matches!(tokio::time::timeout_at(deadline, tcp.peek(&mut first)).await, Ok(Ok(1)) if first[0] == TLS_HANDSHAKE_RECORD)
}

/// After 'S': nothing may have come behind the SSLRequest.
pub async fn upgrade(mut tcp: TcpStream, pending: BytesMut, tls: Arc<ClientTls>, conn: Conn) -> Option<Running> {
    if !pending.is_empty() {
        let violation = ProtocolError::MalformedStartup("plaintext data arrived after SSLRequest, before TLS".into());
        refuse(&mut tcp, conn.peer, violation.into()).await;
        return None;
    }
    let stream = accept(tcp, &tls, &conn, false).await?;
    inside(stream, tls, conn).await
}

/// PostgreSQL 17 direct TLS.
pub async fn direct(tcp: TcpStream, tls: Arc<ClientTls>, conn: Conn) -> Option<Running> {
    let stream = accept(tcp, &tls, &conn, true).await?;
    inside(stream, tls, conn).await
}

async fn accept(tcp: TcpStream, tls: &ClientTls, conn: &Conn, need_alpn: bool) -> Option<TlsStream<TcpStream>> {
    let metrics = &conn.shared.metrics;
    let stream = match tokio::time::timeout_at(conn.deadline, tls.acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            metrics.tls_handshake(None, "failed");
            tracing::info!(peer = %conn.peer, error = %e, "TLS handshake failed{}", explain_tls_error(&e));
            return None;
        }
        Err(_) => {
            metrics.tls_handshake(None, "timeout");
            tracing::debug!(peer = %conn.peer, "closed: TLS handshake not done within login_timeout");
            return None;
        }
    };
    let version = version_name(stream.get_ref().1.protocol_version());
    if need_alpn && stream.get_ref().1.alpn_protocol() != Some(ALPN_POSTGRESQL) {
        metrics.tls_handshake(Some(version), "no_alpn");
        tracing::info!(peer = %conn.peer, "refused: direct TLS without ALPN \"postgresql\"");
        return None;
    }
    metrics.tls_handshake(Some(version), "ok");
    Some(stream)
}

fn version_name(version: Option<rustls::ProtocolVersion>) -> &'static str {
    match version {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        _ => "TLS",
    }
}

async fn inside(mut stream: TlsStream<TcpStream>, tls: Arc<ClientTls>, conn: Conn) -> Option<Running> {
    let session = stream.get_ref().1;
    let peer = session.peer_certificates().and_then(|c| c.first()).map(|c| PeerIdentity::new(c.clone().into_owned()));
    let version = version_name(session.protocol_version());
    let facts = TlsFacts { tls, peer, version };
    let mut pending = BytesMut::new();
    let opened =
        tokio::time::timeout_at(conn.deadline, handshake::open(&mut stream, &mut pending, Encryption::Established))
            .await;
    match opened {
        Ok(Ok(Opening::Startup(startup))) => return after_startup(stream, pending, startup, Some(facts), conn).await,
        Ok(Ok(Opening::Cancel(key))) => forward_cancel(&conn.shared, key, conn.peer).await,
        Ok(Ok(Opening::Nothing | Opening::StartTls)) => {}
        Ok(Err(e)) => refuse(&mut stream, conn.peer, e).await,
        Err(_) => {
            refuse(&mut stream, conn.peer, Error::LoginTimeout(conn.shared.config.load().listen.login_timeout)).await
        }
    }
    None
}

/// Words for the handshake errors whose cause is not obvious from rustls's name for them.
fn explain_tls_error(error: &std::io::Error) -> &'static str {
    if error.to_string().contains("UnsupportedCertVersion") {
        ": the client certificate is X.509 version 1; pgate accepts version 3 certificates only \
         (OpenSSL-based servers accept v1 too): reissue it with extensions, e.g. `openssl x509 -req \
         ... -extfile <(printf 'basicConstraints=CA:FALSE')`"
    } else {
        ""
    }
}
