//! Opening a server connection: TCP, StartupMessage, authentication (SCRAM-SHA-256,
//! md5, cleartext, trust), then ParameterStatus and BackendKeyData up to ReadyForQuery.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::{ServerConn, ServerError, ServerState};
use crate::config::Backend;
use crate::params::Params;
use crate::protocol::codes::backend;
use crate::protocol::messages::{self, AuthRequest, ErrorFields};
use crate::protocol::{CancelKey, ProtocolError, frame};

const SCRAM: &str = "SCRAM-SHA-256";

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
    match tokio::time::timeout(target.connect_timeout, open(target, &addr, id)).await {
        Ok(result) => result,
        Err(_) => Err(ServerError::ConnectTimeout {
            backend: target.backend.name.clone(),
            addr,
            after: target.connect_timeout,
        }),
    }
}

async fn open(target: &Target, addr: &str, id: u64) -> Result<ServerConn, ServerError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|source| ServerError::Connect {
            backend: target.backend.name.clone(),
            addr: addr.to_owned(),
            source,
        })?;
    stream.set_nodelay(true)?;
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
    messages::startup_message(
        &mut out,
        [
            ("user", target.user.as_str()),
            ("database", target.database.as_str()),
        ],
    )?;
    conn.stream.write_all(&out).await?;
    login(&mut conn, target).await?;
    conn.defaults = Arc::new(conn.params.clone());
    Ok(conn)
}

/// Answers authentication requests, then reads the server's welcome up to ReadyForQuery.
async fn login(conn: &mut ServerConn, target: &Target) -> Result<(), ServerError> {
    let mut scram: Option<ScramSha256> = None;
    loop {
        let f = next_frame(conn).await?;
        match f.code {
            backend::AUTHENTICATION => {
                let request = AuthRequest::decode(&f.body)?;
                answer(conn, target, request, &mut scram).await?;
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
                return Err(ProtocolError::Unexpected {
                    code,
                    during: "server login",
                }
                .into());
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
) -> Result<(), ServerError> {
    let backend = || target.backend.name.clone();
    let password = || {
        target
            .password
            .as_deref()
            .ok_or_else(|| ServerError::NoPassword {
                backend: backend(),
                user: target.user.clone(),
            })
    };
    let scram_error = |e: std::io::Error| ServerError::Scram {
        backend: backend(),
        reason: e.to_string(),
    };
    let mut out = BytesMut::new();
    match request {
        AuthRequest::Ok => return Ok(()),
        AuthRequest::Cleartext => messages::password_message(&mut out, password()?)?,
        AuthRequest::Md5 { salt } => {
            let hash = md5_hash(target.user.as_bytes(), password()?.as_bytes(), salt);
            messages::password_message(&mut out, &hash)?;
        }
        AuthRequest::Sasl { mechanisms } => {
            if !mechanisms.iter().any(|m| m == SCRAM) {
                return Err(ServerError::Scram {
                    backend: backend(),
                    reason: format!("server offers only {mechanisms:?}"),
                });
            }
            let client = ScramSha256::new(password()?.as_bytes(), ChannelBinding::unsupported());
            messages::sasl_initial_response(&mut out, SCRAM, client.message())?;
            *scram = Some(client);
        }
        AuthRequest::SaslContinue(data) => {
            let client = scram.as_mut().ok_or(ProtocolError::Unexpected {
                code: b'R',
                during: "SCRAM continue",
            })?;
            client.update(&data).map_err(scram_error)?;
            messages::sasl_response(&mut out, client.message())?;
        }
        AuthRequest::SaslFinal(data) => {
            let mut client = scram.take().ok_or(ProtocolError::Unexpected {
                code: b'R',
                during: "SCRAM final",
            })?;
            // Verifies the server's signature: a server that does not know the secret fails here.
            return client.finish(&data).map_err(scram_error);
        }
        AuthRequest::Unsupported(method) => {
            return Err(ServerError::UnsupportedAuth {
                backend: backend(),
                method,
            });
        }
    }
    conn.stream.write_all(&out).await?;
    Ok(())
}
