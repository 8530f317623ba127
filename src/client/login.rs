//! Login: protocol version, user and database, route, authentication, pool, welcome
//! (AuthenticationOk, ParameterStatus, pgate's BackendKeyData, ReadyForQuery).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};

use super::io::{flush, read_frame};
use crate::auth::scram::{MECHANISM, ScramExchange};
use crate::auth::{self, AuthError, Plan};
use crate::cancel::CancelHandle;
use crate::config::{Snapshot, User};
use crate::error::Error;
use crate::params::{self, Params};
use crate::pool::{Pool, PoolKey};
use crate::protocol::codes::{frontend, tx_status};
use crate::protocol::{StartupMessage, messages};
use crate::proxy::Shared;
use crate::routing;
use crate::server::Target;

/// A client that passed login, ready for its session.
pub struct LoggedIn {
    /// Client bytes read but not yet handled (normally none).
    pub pending: BytesMut,
    pub user: String,
    pub database: String,
    pub pool: Arc<Pool>,
    pub params: Params,
    pub cancel: CancelHandle,
}

/// Logs a client in; `pending` holds what the client sent after its StartupMessage.
pub async fn login<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    mut pending: BytesMut,
    peer: SocketAddr,
    startup: StartupMessage,
    shared: &Shared,
    snapshot: &Snapshot,
) -> Result<LoggedIn, Error> {
    let mut out = BytesMut::new();
    let options = startup.protocol_options();
    if startup.minor_version > 0 || !options.is_empty() {
        messages::negotiate_protocol_version(&mut out, options);
    }
    let user_name = startup
        .get("user")
        .filter(|u| !u.is_empty())
        .ok_or(Error::MissingUser)?
        .to_owned();
    let database = startup
        .get("database")
        .filter(|d| !d.is_empty())
        .unwrap_or(&user_name)
        .to_owned();
    let params =
        params::from_startup(startup.params.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
    let route = routing::route(snapshot, &database)?;
    let user = snapshot.users.get(&user_name).cloned();

    let plan = auth::plan(
        &snapshot.auth,
        &user_name,
        user.as_deref(),
        peer.ip(),
        &shared.mock_nonce,
    );
    authenticate(stream, &mut pending, &mut out, &user_name, plan).await?;
    let user = user.ok_or_else(|| AuthError::PasswordFailed(user_name.clone()))?;
    // AuthenticationOk goes out with the welcome, in one write.
    messages::authentication_ok(&mut out);

    let pool = pool_for(shared, snapshot, &route, &user);
    let defaults = pool.learn_defaults().await.map_err(Error::LoginServer)?;
    let cancel = shared.cancels.register();
    welcome(&mut out, &defaults, &params, &cancel);
    flush(stream, &mut out).await?;
    Ok(LoggedIn {
        pending,
        user: user_name,
        database,
        pool,
        params,
        cancel,
    })
}

fn pool_for(
    shared: &Shared,
    snapshot: &Snapshot,
    route: &crate::config::RouteEntry,
    user: &User,
) -> Arc<Pool> {
    let settings = snapshot.pool_settings(route, user);
    let key = PoolKey {
        backend: route.backend.name.clone(),
        database: route.server_database.clone(),
        user: user.server_user.clone(),
    };
    let target = Target {
        backend: route.backend.clone(),
        database: route.server_database.clone(),
        user: user.server_user.clone(),
        password: user.server_password.clone(),
        connect_timeout: settings.connect_timeout,
        max_prepared_statements: settings.max_prepared_statements,
    };
    shared.pools.get_or_create(key, settings, target)
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

async fn authenticate<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    out: &mut BytesMut,
    user: &str,
    plan: Plan,
) -> Result<(), Error> {
    match plan {
        Plan::Trust => Ok(()),
        Plan::Refuse(e) => Err(e.into()),
        Plan::Md5(check) => {
            messages::authentication_md5(out, check.salt());
            flush(stream, out).await?;
            let f = read_frame(stream, buf, frontend::PASSWORD, "md5 authentication").await?;
            Ok(check.verify(user, messages::decode_password(&f.body)?)?)
        }
        Plan::Scram(verifier) => {
            messages::authentication_sasl(out, &[MECHANISM]);
            flush(stream, out).await?;
            let f = read_frame(stream, buf, frontend::PASSWORD, "SCRAM authentication").await?;
            let (mechanism, client_first) = messages::decode_sasl_initial_response(&f.body)?;
            let (exchange, server_first) =
                ScramExchange::start(&verifier, user, &mechanism, client_first)?;
            messages::authentication_sasl_continue(out, server_first.as_bytes());
            flush(stream, out).await?;
            let f = read_frame(stream, buf, frontend::PASSWORD, "SCRAM authentication").await?;
            let server_final = exchange.finish(&f.body)?;
            messages::authentication_sasl_final(out, server_final.as_bytes());
            Ok(())
        }
    }
}
