//! Opening a server connection: TCP, TLS as the backend's sslmode says (libpq's meanings:
//! `allow` tries plaintext first, `prefer` TLS first, `require` and stronger insist),
//! StartupMessage, authentication (SCRAM-SHA-256(-PLUS), md5, cleartext, trust), then
//! ParameterStatus and BackendKeyData up to ReadyForQuery.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{ServerConn, ServerError, ServerState, ServerStream};
use crate::config::{Backend, SslMode};
use crate::params::Params;
use crate::protocol::codes::backend;
use crate::protocol::codes::startup;
use crate::protocol::messages::{self, AuthRequest, ErrorFields};
use crate::protocol::{CancelKey, ProtocolError, frame};

const SCRAM: &str = "SCRAM-SHA-256";
const SCRAM_PLUS: &str = "SCRAM-SHA-256-PLUS";

/// Everything needed to open a server connection for one pool.
#[derive(Debug, Clone)]
pub struct Target {
    pub backend: Arc<Backend>,
    pub database: String,
    pub user: String,
    pub password: Option<String>,
    pub connect_timeout: Duration,
    /// Capacity of each server's prepared-statement cache.
    pub max_prepared_statements: usize,
}

/// Opens and logs in a server connection within `target.connect_timeout`.
pub async fn connect(target: &Target, id: u64) -> Result<ServerConn, ServerError> {
    let addr = target.backend.address();
    let attempt = async {
        match target.backend.tls.mode {
            SslMode::Disable => open(target, &addr, id, Encrypt::Never).await,
            // libpq's allow: plaintext first, TLS if the server refuses that.
            SslMode::Allow => match open(target, &addr, id, Encrypt::Never).await {
                Err(ServerError::Rejected { .. }) => open(target, &addr, id, Encrypt::IfOffered).await,
                other => other,
            },
            SslMode::Prefer => open(target, &addr, id, Encrypt::IfOffered).await,
            _ => open(target, &addr, id, Encrypt::Always).await,
        }
    };
    match tokio::time::timeout(target.connect_timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(ServerError::ConnectTimeout {
            backend: target.backend.name.clone(),
            addr,
            after: target.connect_timeout,
        }),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encrypt {
    Never,
    IfOffered,
    Always,
}

async fn open(target: &Target, addr: &str, id: u64, encrypt: Encrypt) -> Result<ServerConn, ServerError> {
    let backend = || target.backend.name.clone();
    let tcp = TcpStream::connect(addr).await.map_err(|source| ServerError::Connect {
        backend: backend(),
        addr: addr.to_owned(),
        source,
    })?;
    tcp.set_nodelay(true)?;
    let (stream, binding) = match (encrypt, target.backend.connector.clone()) {
        (Encrypt::Never, _) | (_, None) => (ServerStream::plain(tcp), None),
        (encrypt, Some(connector)) => negotiate(tcp, target, connector, encrypt == Encrypt::Always).await?,
    };
    let mut conn = ServerConn {
        stream,
        buf: BytesMut::with_capacity(super::READ_BUFFER),
        state: ServerState::Idle,
        key: CancelKey { pid: 0, secret: 0 },
        params: Params::default(),
        defaults: Arc::new(Params::default()),
        statements: super::ServerStatements::new(target.max_prepared_statements),
        created: Instant::now(),
        last_used: Instant::now(),
        id,
    };
    let mut out = BytesMut::new();
    messages::startup_message(&mut out, [("user", target.user.as_str()), ("database", target.database.as_str())])?;
    conn.write_all(&out).await?;
    login(&mut conn, target, binding).await?;
    conn.defaults = Arc::new(conn.params.clone());
    Ok(conn)
}

/// SSLRequest, then TLS if the server says 'S'. Returns the stream and, over TLS, the
/// server certificate's channel-binding hash (if it has one).
async fn negotiate(
    mut tcp: TcpStream,
    target: &Target,
    connector: Arc<rustls::ClientConfig>,
    required: bool,
) -> Result<(ServerStream, Option<Vec<u8>>), ServerError> {
    let backend = target.backend.name.clone();
    let mut request = BytesMut::new();
    messages::ssl_request(&mut request);
    tcp.write_all(&request).await?;
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer).await?;
    match answer[0] {
        startup::ACCEPT => {}
        startup::REFUSE if !required => return Ok((ServerStream::plain(tcp), None)),
        startup::REFUSE => return Err(ServerError::TlsRefused { backend, mode: target.backend.tls.mode }),
        other => {
            return Err(ServerError::Tls { backend, reason: format!("unexpected answer {other:?} to SSLRequest") });
        }
    }
    let name = ServerName::try_from(target.backend.host.clone())
        .map_err(|e| ServerError::Tls { backend: backend.clone(), reason: format!("host name: {e}") })?;
    let tls = tokio_rustls::TlsConnector::from(connector)
        .connect(name, tcp)
        .await
        .map_err(|e| ServerError::Tls { backend: backend.clone(), reason: e.to_string() })?;
    let binding = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|leaf| crate::tls::binding::end_point_hash(leaf).ok());
    Ok((ServerStream::tls(tls), binding))
}

/// Answers authentication requests, then reads the server's welcome up to ReadyForQuery.
async fn login(conn: &mut ServerConn, target: &Target, binding: Option<Vec<u8>>) -> Result<(), ServerError> {
    let mut scram: Option<ScramSha256> = None;
    loop {
        let f = next_frame(conn).await?;
        match f.code {
            backend::AUTHENTICATION => {
                let request = AuthRequest::decode(&f.body)?;
                answer(conn, target, request, &mut scram, binding.as_deref()).await?;
            }
            backend::PARAMETER_STATUS => {
                let (name, value) = messages::decode_parameter_status(&f.body)?;
                conn.params.set(&name, &value);
            }
            backend::BACKEND_KEY_DATA => conn.key = messages::decode_backend_key_data(&f.body)?,
            backend::ERROR_RESPONSE => {
                return Err(ServerError::Rejected {
                    backend: target.backend.name.clone(),
                    user: target.user.clone(),
                    fields: Box::new(ErrorFields::decode(&f.body)?),
                });
            }
            backend::READY_FOR_QUERY => {
                messages::decode_ready_for_query(&f.body)?;
                return Ok(());
            }
            backend::NOTICE_RESPONSE | backend::NEGOTIATE_PROTOCOL_VERSION => {}
            code => {
                return Err(ProtocolError::Unexpected { code, during: "server login" }.into());
            }
        }
    }
}

async fn next_frame(conn: &mut ServerConn) -> Result<frame::Frame, ServerError> {
    loop {
        if let Some(f) = frame::split_frame(&mut conn.buf, frame::MAX_FRAME_LEN)? {
            return Ok(f);
        }
        conn.read_more().await?;
    }
}

async fn answer(
    conn: &mut ServerConn,
    target: &Target,
    request: AuthRequest,
    scram: &mut Option<ScramSha256>,
    binding: Option<&[u8]>,
) -> Result<(), ServerError> {
    let backend = || target.backend.name.clone();
    let password = || {
        target
            .password
            .as_deref()
            .ok_or_else(|| ServerError::NoPassword { backend: backend(), user: target.user.clone() })
    };
    let scram_error = |e: std::io::Error| ServerError::Scram { backend: backend(), reason: e.to_string() };
    let mut out = BytesMut::new();
    match request {
        AuthRequest::Ok => return Ok(()),
        AuthRequest::Cleartext => messages::password_message(&mut out, password()?)?,
        AuthRequest::Md5 { salt } => {
            let hash = md5_hash(target.user.as_bytes(), password()?.as_bytes(), salt);
            messages::password_message(&mut out, &hash)?;
        }
        AuthRequest::Sasl { mechanisms } => {
            let offers = |m: &str| mechanisms.iter().any(|o| o == m);
            // Bind the channel when the server can; over TLS without -PLUS say we could
            // have ('y'), over plaintext that we cannot ('n').
            let (mechanism, channel) = match binding {
                Some(hash) if offers(SCRAM_PLUS) => (SCRAM_PLUS, ChannelBinding::tls_server_end_point(hash.to_vec())),
                _ if !offers(SCRAM) => {
                    let reason = format!("server offers only {mechanisms:?}");
                    return Err(ServerError::Scram { backend: backend(), reason });
                }
                _ if conn.stream.is_tls() => (SCRAM, ChannelBinding::unrequested()),
                _ => (SCRAM, ChannelBinding::unsupported()),
            };
            let client = ScramSha256::new(password()?.as_bytes(), channel);
            messages::sasl_initial_response(&mut out, mechanism, client.message())?;
            *scram = Some(client);
        }
        AuthRequest::SaslContinue(data) => {
            let client = scram.as_mut().ok_or(ProtocolError::Unexpected { code: b'R', during: "SCRAM continue" })?;
            client.update(&data).map_err(scram_error)?;
            messages::sasl_response(&mut out, client.message())?;
        }
        AuthRequest::SaslFinal(data) => {
            let mut client = scram.take().ok_or(ProtocolError::Unexpected { code: b'R', during: "SCRAM final" })?;
            // Verifies the server's signature: a server that does not know the secret fails here.
            return client.finish(&data).map_err(scram_error);
        }
        AuthRequest::Unsupported(method) => {
            return Err(ServerError::UnsupportedAuth { backend: backend(), method });
        }
    }
    conn.write_all(&out).await?;
    Ok(())
}
