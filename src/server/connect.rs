//! Opening a server connection: TCP, TLS as the backend's sslmode says (libpq's meanings:
//! `allow` tries plaintext first, `prefer` TLS first, `require` and stronger insist),
//! StartupMessage, authentication (SCRAM-SHA-256(-PLUS), md5, cleartext, trust), then
//! ParameterStatus and BackendKeyData up to ReadyForQuery.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{ServerConn, ServerError, ServerFacts, ServerState, ServerStream};
use crate::auth::derived::{DerivedKeys, Iterations, ScramKeys, ServerPassword};
use crate::auth::passthrough::{KeyedScram, Passthrough, parse_server_first};
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
    pub password: Option<ServerPassword>,
    /// The configuration key that gives `password`, for the message when it is missing.
    pub password_key: &'static str,
    /// SCRAM keys derived from passwords, shared by every pool.
    pub keys: Arc<DerivedKeys>,
    pub connect_timeout: Duration,
    /// Capacity of each server's prepared-statement cache.
    pub max_prepared_statements: usize,
    /// For users without a configured server password: what their last login proved,
    /// shared by every connection of the pool.
    pub passthrough: Arc<std::sync::Mutex<Option<Passthrough>>>,
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
    let local = tcp.local_addr().ok();
    let (stream, binding) = match (encrypt, target.backend.connector.clone()) {
        (Encrypt::Never, _) | (_, None) => (ServerStream::plain(tcp), None),
        (encrypt, Some(connector)) => negotiate(tcp, target, connector, encrypt == Encrypt::Always).await?,
    };
    let tls = stream.tls_version();
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
        synced_for: None,
        facts: Arc::new(ServerFacts::new(id, local, Arc::from(addr), tls)),
        tally: Default::default(),
        notifications: BytesMut::new(),
    };
    let mut out = BytesMut::new();
    messages::startup_message(&mut out, [("user", target.user.as_str()), ("database", target.database.as_str())])?;
    conn.write_all(&out).await?;
    login(&mut conn, target, binding).await?;
    conn.defaults = Arc::new(conn.params().clone());
    conn.facts.set_pid(conn.key.pid);
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
    let mut scram: Option<ScramLogin> = None;
    loop {
        let f = next_frame(conn).await?;
        match f.code {
            backend::AUTHENTICATION => {
                let request = AuthRequest::decode(&f.body)?;
                answer(conn, target, request, &mut scram, binding.as_deref()).await?;
            }
            backend::PARAMETER_STATUS => {
                let (name, value) = messages::decode_parameter_status(&f.body)?;
                conn.set_param(&name, &value);
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

/// The client side of a SCRAM login to a server, and where its keys come from.
struct ScramLogin {
    client: KeyedScram,
    keys: KeySource,
}

enum KeySource {
    /// Derived from the configured password once the server names salt and iterations.
    Password(ServerPassword),
    /// Recovered from a client's login (passthrough).
    Known(ScramKeys),
}

async fn answer(
    conn: &mut ServerConn,
    target: &Target,
    request: AuthRequest,
    scram: &mut Option<ScramLogin>,
    binding: Option<&[u8]>,
) -> Result<(), ServerError> {
    let backend = || target.backend.name.clone();
    let no_password =
        || ServerError::NoPassword { backend: backend(), user: target.user.clone(), key: target.password_key };
    let passthrough = target.passthrough.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let scram_error = |reason: String| ServerError::Scram { backend: backend(), reason };
    let out_of_turn = |during| ProtocolError::Unexpected { code: backend::AUTHENTICATION, during };
    let mut out = BytesMut::new();
    match request {
        AuthRequest::Ok => return Ok(()),
        AuthRequest::Cleartext => {
            let password = target.password.as_ref().ok_or_else(no_password)?;
            messages::password_message(&mut out, password.plain())?
        }
        AuthRequest::Md5 { salt } => {
            let stored = match (&target.password, &passthrough) {
                (Some(password), _) => password.md5(),
                (None, Some(Passthrough::Md5(stored))) => stored.as_str(),
                _ => return Err(no_password()),
            };
            messages::password_message(&mut out, &md5_answer(stored, salt))?;
        }
        AuthRequest::Sasl { mechanisms } => {
            let offers = |m: &str| mechanisms.iter().any(|o| o == m);
            // Bind the channel when the server can; over TLS without -PLUS say we could
            // have ('y'), over plaintext that we cannot ('n').
            let plus = binding.filter(|_| offers(SCRAM_PLUS));
            if plus.is_none() && !offers(SCRAM) {
                return Err(scram_error(format!("server offers only {mechanisms:?}")));
            }
            let mechanism = if plus.is_some() { SCRAM_PLUS } else { SCRAM };
            let keys = match (&target.password, passthrough) {
                (Some(password), _) => KeySource::Password(password.clone()),
                (None, Some(Passthrough::Scram(keys))) => KeySource::Known(keys),
                _ => return Err(no_password()),
            };
            let client = KeyedScram::new(plus.map(<[u8]>::to_vec), conn.stream.is_tls());
            messages::sasl_initial_response(&mut out, mechanism, client.client_first().as_bytes())?;
            *scram = Some(ScramLogin { client, keys });
        }
        AuthRequest::SaslContinue(data) => {
            let login = scram.as_mut().ok_or(out_of_turn("SCRAM continue"))?;
            let server_first =
                std::str::from_utf8(&data).map_err(|_| scram_error("server-first is not UTF-8".into()))?;
            let keys = match &login.keys {
                KeySource::Known(keys) => keys.clone(),
                KeySource::Password(password) => derive_keys(target, password, server_first).await?,
            };
            let reply = login.client.client_final(server_first, &keys).map_err(|e| scram_error(e.to_string()))?;
            messages::sasl_response(&mut out, reply.as_bytes())?;
        }
        AuthRequest::SaslFinal(data) => {
            // Verifies the server's signature: a server that does not know the secret fails here.
            let login = scram.take().ok_or(out_of_turn("SCRAM final"))?;
            return login
                .client
                .verify_server_final(&String::from_utf8_lossy(&data))
                .map_err(|e| scram_error(e.to_string()));
        }
        AuthRequest::Unsupported(method) => {
            return Err(ServerError::UnsupportedAuth { backend: backend(), method });
        }
    }
    conn.write_all(&out).await?;
    Ok(())
}

/// The keys for the salt and iteration count the server named: from memory after the
/// first login of this role, else derived once off the relay threads.
async fn derive_keys(target: &Target, password: &ServerPassword, server_first: &str) -> Result<ScramKeys, ServerError> {
    let scram_error = |reason: String| ServerError::Scram { backend: target.backend.name.clone(), reason };
    let first = parse_server_first(server_first).map_err(|e| scram_error(e.to_string()))?;
    let iterations = Iterations::new(first.iterations).ok_or_else(|| {
        scram_error(format!(
            "the server asks for {} PBKDF2 iterations; pgate accepts 1 to {}",
            first.iterations,
            crate::auth::derived::MAX_ITERATIONS
        ))
    })?;
    target
        .keys
        .scram(&target.backend.name, &target.user, password.plain(), &first.salt, iterations)
        .await
        .map_err(|e| scram_error(e.to_string()))
}

/// An md5 challenge answered from a stored `md5...` hash: md5(hash || salt).
fn md5_answer(stored: &str, salt: [u8; 4]) -> String {
    use md5::{Digest, Md5};
    let inner = stored.strip_prefix("md5").unwrap_or(stored);
    let digest = Md5::new().chain_update(inner.as_bytes()).chain_update(salt).finalize();
    format!("md5{}", digest.iter().map(|b| format!("{b:02x}")).collect::<String>())
}
