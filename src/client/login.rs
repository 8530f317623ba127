//! Login: protocol version, user and database, route, authentication, pool, welcome
//! (AuthenticationOk, ParameterStatus, pgate's BackendKeyData, ReadyForQuery).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};

use super::TlsFacts;
use super::inspect::Inspector;
use super::io::{flush, read_frame};
use crate::access::{Identity, Permit, WORKSPACE_SETTING, WorkspaceSlot};
use crate::admin::Registration;
use crate::audit::SessionContext;
use crate::auth::derived::ScramKeys;
use crate::auth::passthrough::Passthrough;
use crate::auth::scram::{MECHANISM, MECHANISM_PLUS, ScramExchange};
use crate::auth::{self, AuthError, Plan};
use crate::cancel::CancelHandle;
use crate::config::{Snapshot, SslMode, StoredPassword, User};
use crate::error::Error;
use crate::params::{self, Params};
use crate::pool::{Origin, Pool, PoolKey, login_target};
use crate::protocol::codes::{frontend, tx_status};
use crate::protocol::{StartupMessage, messages};
use crate::proxy::Shared;
use crate::routing;
use crate::server::ServerConn;

/// A client that passed login, ready for its session.
pub struct LoggedIn {
    /// Client bytes read but not yet handled (normally none).
    pub pending: BytesMut,
    pub user: String,
    pub database: String,
    pub pool: Arc<Pool>,
    pub params: Params,
    pub cancel: CancelHandle,
    /// Statement rules and audit, when a workspace has rules or the audit log is on.
    pub inspect: Option<Box<Inspector>>,
    /// The client's place under its workspace's max_client_connections: held, never read;
    /// the session's end gives it back.
    #[allow(dead_code)]
    pub workspace_slot: Option<WorkspaceSlot>,
    /// How the client proved who it is, as the audit log names it.
    pub method: &'static str,
    /// The client's entry in the admin console's registry (set once the session starts).
    pub registration: Option<Registration>,
}

impl LoggedIn {
    /// The client's entry in the admin console's registry.
    pub fn entry(&self) -> Option<&Arc<crate::admin::ClientEntry>> {
        self.registration.as_ref().map(|r| r.entry())
    }

    /// A request waits for a server (SHOW CLIENTS, SHOW POOLS).
    pub fn waiting(&self) {
        if let Some(r) = &self.registration {
            r.waiting();
        }
    }

    /// `server` now works for the client.
    pub fn serving(&self, server: &ServerConn) {
        if let Some(r) = &self.registration {
            r.serving(server);
        }
    }

    /// No server, no request under way.
    pub fn idle(&self) {
        if let Some(r) = &self.registration {
            r.idle();
        }
    }
}

/// Logs a client in; `pending` holds what the client sent after its StartupMessage, `tls`
/// what its TLS session says (`None`: plaintext). `method` learns the authentication
/// method as soon as it is chosen, for the metrics of a login that fails.
#[allow(clippy::too_many_arguments)]
pub async fn login<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    mut pending: BytesMut,
    peer: SocketAddr,
    startup: StartupMessage,
    shared: &Arc<Shared>,
    snapshot: &Snapshot,
    tls: Option<&TlsFacts>,
    method_used: &mut &'static str,
) -> Result<LoggedIn, Error> {
    let mut out = BytesMut::new();
    let options = startup.protocol_options();
    if startup.minor_version > 0 || !options.is_empty() {
        messages::negotiate_protocol_version(&mut out, options);
    }
    let user_name = startup.get("user").filter(|u| !u.is_empty()).ok_or(Error::MissingUser)?.to_owned();
    let database = startup.get("database").filter(|d| !d.is_empty()).unwrap_or(&user_name).to_owned();
    let mut params = params::from_startup(startup.params.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
    check_transport(snapshot, tls, &user_name)?;
    let route = routing::route(snapshot, &database)?;
    let configured = snapshot.users.get(&user_name).cloned();
    let fetched = match (&configured, &snapshot.auth.lookup) {
        (None, Some(lookup)) => super::lookup::fetch(shared, &route, lookup, &user_name).await?,
        _ => None,
    };

    let plan =
        auth::plan(&snapshot.auth, &user_name, configured.as_deref(), fetched.as_ref(), peer.ip(), &shared.mock_nonce);
    let by_certificate = matches!(plan, Plan::Cert);
    let method = plan.name();
    *method_used = method;
    let client_key = match authenticate(stream, &mut pending, &mut out, &user_name, plan, tls).await {
        Ok(key) => key,
        Err(e) => {
            if fetched.is_some() {
                // Maybe the password changed: ask the backend again next time.
                shared.secrets.forget(&route.backend.name, &user_name);
            }
            return Err(e);
        }
    };
    let user = proven_user(configured, &user_name, by_certificate, fetched.is_some())?;
    let certificate = tls.and_then(|t| t.peer.as_ref());
    let who = Identity { user: &user_name, certificate, database: &database, requested: params.get(WORKSPACE_SETTING) };
    let permit = snapshot.workspaces.authorize(who)?;
    let workspace_slot = permit.as_ref().map(|p| shared.workspace_clients.admit(&p.workspace)).transpose()?;
    if let Some(permit) = &permit {
        pin_settings(&mut params, permit);
        params.shrink_to_fit();
    }
    // AuthenticationOk goes out with the welcome, in one write.
    messages::authentication_ok(&mut out);

    let pool = pool_for(shared, snapshot, &database, &route, &user);
    if let Some(proof) = passthrough(fetched.as_ref(), client_key) {
        *pool.target().passthrough.lock().unwrap_or_else(|e| e.into_inner()) = Some(proof);
    }
    let defaults = pool.learn_defaults().await.map_err(Error::LoginServer)?;
    let cancel = shared.cancels.register();
    welcome(&mut out, &defaults, &params, &cancel);
    let facts = Facts { peer, user: &user_name, database: &database, tls, cancel: &cancel };
    let inspect = inspector(shared, &facts, permit, &pool, &params);
    flush(stream, &mut out).await?;
    Ok(LoggedIn {
        pending,
        user: user_name,
        database,
        pool,
        params,
        cancel,
        inspect,
        workspace_slot,
        method,
        registration: None,
    })
}

/// The user a successful authentication proved: the configured one, or, for a user the
/// configuration does not list, one known by certificate or by a secret from the backend
/// (whose server login then needs no configured password).
pub(crate) fn proven_user(
    configured: Option<Arc<User>>,
    name: &str,
    by_certificate: bool,
    fetched: bool,
) -> Result<Arc<User>, AuthError> {
    match configured {
        Some(user) => Ok(user),
        None if by_certificate || fetched => Ok(Arc::new(User::implicit(name))),
        None => Err(AuthError::PasswordFailed(name.to_owned())),
    }
}

/// What the audit context of a session is made of.
struct Facts<'a> {
    peer: SocketAddr,
    user: &'a str,
    database: &'a str,
    tls: Option<&'a TlsFacts>,
    cancel: &'a CancelHandle,
}

/// The workspace's settings win over the client's: they are what row-level security and
/// the rules rely on. A workspace with rules also fixes the search_path it checks names on.
fn pin_settings(params: &mut Params, permit: &Permit) {
    let ws = &permit.workspace;
    for (name, value) in &ws.session {
        params.set(name, value);
    }
    if ws.has_statement_rules() && params.get("search_path").is_none() {
        params.set("search_path", super::inspect::DEFAULT_SEARCH_PATH);
    }
}

fn inspector(
    shared: &Arc<Shared>,
    facts: &Facts<'_>,
    permit: Option<Permit>,
    pool: &Pool,
    params: &Params,
) -> Option<Box<Inspector>> {
    if permit.is_none() && shared.auditor.is_none() {
        return None;
    }
    let context = Arc::new(SessionContext {
        client: facts.peer,
        user: Some(facts.user.to_owned()),
        database: Some(facts.database.to_owned()),
        workspace: permit.as_ref().map(|p| p.workspace.name.clone()),
        backend: Some(pool.key().backend.clone()),
        session_id: Some(format!("{:x}", facts.cancel.key().pid)),
        tls: facts.tls.map(|t| t.version.to_owned()),
        identity: facts.tls.and_then(|t| t.peer.as_ref()).and_then(|p| p.common_name().map(str::to_owned)),
        formatted: Default::default(),
    });
    let search_path = params.get("search_path").unwrap_or(super::inspect::DEFAULT_SEARCH_PATH);
    let workspace = permit.map(|p| p.workspace);
    Some(Box::new(Inspector::new(shared.clone(), workspace, context, &pool.key().user, search_path)))
}

/// What `[tls] mode` demands of the connection itself, before any password.
pub(crate) fn check_transport(snapshot: &Snapshot, tls: Option<&TlsFacts>, user: &str) -> Result<(), AuthError> {
    let Some(settings) = &snapshot.tls else { return Ok(()) };
    match (settings.mode, tls) {
        (SslMode::Require, None) => Err(AuthError::TlsRequired("require")),
        (SslMode::VerifyCa, None) => Err(AuthError::TlsRequired("verify-ca")),
        (SslMode::VerifyFull, None) => Err(AuthError::TlsRequired("verify-full")),
        (SslMode::VerifyFull, Some(facts)) => match &facts.peer {
            Some(id) if id.may_be(user, &facts.tls.identity_map) => Ok(()),
            Some(id) => Err(AuthError::IdentityMismatch { user: user.to_owned(), presented: id.describe() }),
            None => Err(AuthError::IdentityMismatch { user: user.to_owned(), presented: "no certificate".into() }),
        },
        _ => Ok(()),
    }
}

fn pool_for(
    shared: &Shared,
    snapshot: &Snapshot,
    database: &str,
    route: &crate::config::RouteEntry,
    user: &Arc<User>,
) -> Arc<Pool> {
    let key = PoolKey {
        backend: route.backend.name.clone(),
        database: route.server_database.clone(),
        user: user.server_user.clone(),
    };
    let make = || {
        let settings = snapshot.pool_settings(route, user);
        let target = login_target(route, user, &settings, &shared.derived_keys);
        (settings, target, Origin::Logins { database: database.to_owned(), user: user.clone() })
    };
    shared.pools.get_or_create(key, make, &shared.metrics)
}

/// What a login with a fetched secret lets pgate do at the server: SCRAM with the client's
/// key, or md5 with the stored hash.
fn passthrough(fetched: Option<&StoredPassword>, client_key: Option<Vec<u8>>) -> Option<Passthrough> {
    match (fetched?, client_key) {
        (StoredPassword::Scram(v), Some(client_key)) => {
            Some(Passthrough::Scram(ScramKeys { client_key, server_key: v.server_key.clone() }))
        }
        (StoredPassword::Md5(hash), _) => Some(Passthrough::Md5(hash.clone())),
        _ => None,
    }
}

/// ParameterStatus as a fresh server reports it, with the client's own startup values.
fn welcome(out: &mut BytesMut, defaults: &Params, client: &Params, cancel: &CancelHandle) {
    for (name, value) in defaults.iter() {
        let value = client.get(name).unwrap_or(value);
        messages::parameter_status(out, name, value);
    }
    messages::backend_key_data(out, cancel.key());
    messages::ready_for_query(out, tx_status::IDLE);
}

/// Runs the exchange; a SCRAM login also yields the client's ClientKey (for passthrough).
pub(crate) async fn authenticate<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    out: &mut BytesMut,
    user: &str,
    plan: Plan,
    tls: Option<&TlsFacts>,
) -> Result<Option<Vec<u8>>, Error> {
    match plan {
        Plan::Trust => Ok(None),
        Plan::Refuse(e) => Err(e.into()),
        Plan::Cert => Ok(check_certificate(user, tls).map(|()| None)?),
        Plan::Md5(check) => {
            messages::authentication_md5(out, check.salt());
            flush(stream, out).await?;
            let f = read_frame(stream, buf, frontend::PASSWORD, "md5 authentication").await?;
            check.verify(user, messages::decode_password(&f.body)?)?;
            Ok(None)
        }
        Plan::Scram(verifier) => {
            let bound = tls.and_then(|t| t.tls.scram_plus.as_ref());
            let mechanisms: &[&str] = if bound.is_some() { &[MECHANISM_PLUS, MECHANISM] } else { &[MECHANISM] };
            messages::authentication_sasl(out, mechanisms);
            flush(stream, out).await?;
            let f = read_frame(stream, buf, frontend::PASSWORD, "SCRAM authentication").await?;
            let (mechanism, client_first) = messages::decode_sasl_initial_response(&f.body)?;
            let (exchange, server_first) = ScramExchange::start(&verifier, user, &mechanism, client_first, bound)?;
            messages::authentication_sasl_continue(out, server_first.as_bytes());
            flush(stream, out).await?;
            let f = read_frame(stream, buf, frontend::PASSWORD, "SCRAM authentication").await?;
            let (server_final, client_key) = exchange.finish_with_key(&f.body)?;
            messages::authentication_sasl_final(out, server_final.as_bytes());
            Ok(Some(client_key))
        }
    }
}

fn check_certificate(user: &str, tls: Option<&TlsFacts>) -> Result<(), AuthError> {
    let fail = |reason: String| AuthError::Certificate { user: user.to_owned(), reason };
    let facts =
        tls.ok_or_else(|| fail("the connection is not encrypted (connect with sslmode=require or stronger)".into()))?;
    let id = facts
        .peer
        .as_ref()
        .ok_or_else(|| fail("no client certificate was presented (set sslcert and sslkey)".into()))?;
    if id.may_be(user, &facts.tls.identity_map) {
        Ok(())
    } else {
        Err(fail(format!("the certificate ({}) does not identify this user", id.describe())))
    }
}
