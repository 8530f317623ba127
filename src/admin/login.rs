//! Admin login: the same authentication as any client (a `[[users]]` entry, `auth_query`,
//! or a certificate; `[tls] mode` and trust networks apply), then the user must be listed
//! in `[admin] users`. Workspaces do not apply to the console. The welcome carries
//! PgBouncer-style ParameterStatus values, as no server stands behind the console.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};

use super::Origin;
use crate::audit::{Event, Record, SessionContext};
use crate::auth::{self, Plan};
use crate::cancel::CancelHandle;
use crate::client::audit_log::{self, Claimed};
use crate::client::io::flush;
use crate::client::login::{authenticate, check_transport, proven_user};
use crate::config::{RouteEntry, Snapshot};
use crate::error::Error;
use crate::protocol::codes::tx_status;
use crate::protocol::{StartupMessage, messages};
use crate::proxy::Shared;

/// A logged-in admin.
pub struct Admin {
    pub user: String,
    pub method: &'static str,
    pub cancel: CancelHandle,
    pub application_name: String,
    /// The audit log's context of the session (when the audit log is on).
    pub audit: Option<Arc<SessionContext>>,
}

/// Logs an admin in within the login deadline; failures are audited like any login's.
pub async fn login<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    pending: &mut BytesMut,
    startup: &StartupMessage,
    origin: &Origin,
    shared: &Arc<Shared>,
) -> Result<Admin, Error> {
    let snapshot = shared.config.load_full();
    let mut method = "none";
    let attempt = Box::pin(prove(stream, pending, startup, origin, shared, &snapshot, &mut method));
    let result = match tokio::time::timeout_at(origin.deadline, attempt).await {
        Ok(result) => result,
        Err(_) => Err(Error::LoginTimeout(snapshot.listen.login_timeout)),
    };
    // Console logins count in pgate_logins_total like any other.
    shared.metrics.login(method, result.as_ref().map(drop), &snapshot.workspaces);
    match result {
        Ok(admin) => {
            if let (Some(auditor), Some(context)) = (&shared.auditor, &admin.audit) {
                let event = Event::Login { ok: true, method: admin.method.into(), reason: None };
                let _ = auditor.record(Record { time: SystemTime::now(), context: context.clone(), event }).await;
            }
            Ok(admin)
        }
        Err(e) => {
            let claimed = shared.auditor.is_some().then(|| Claimed::of(startup, origin.peer, origin.tls.as_ref()));
            audit_log::login_failed(shared, claimed, &e).await;
            Err(e)
        }
    }
}

async fn prove<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    pending: &mut BytesMut,
    startup: &StartupMessage,
    origin: &Origin,
    shared: &Arc<Shared>,
    snapshot: &Snapshot,
    method_used: &mut &'static str,
) -> Result<Admin, Error> {
    let mut out = BytesMut::new();
    let options = startup.protocol_options();
    if startup.minor_version > 0 || !options.is_empty() {
        messages::negotiate_protocol_version(&mut out, options);
    }
    let user_name = startup.get("user").filter(|u| !u.is_empty()).ok_or(Error::MissingUser)?.to_owned();
    let tls = origin.tls.as_ref();
    check_transport(snapshot, tls, &user_name)?;
    let configured = snapshot.users.get(&user_name).cloned();
    let lookup_route = lookup_route(snapshot);
    let fetched = match (&configured, &snapshot.auth.lookup, &lookup_route) {
        (None, Some(lookup), Some(route)) => crate::client::lookup::fetch(shared, route, lookup, &user_name).await?,
        _ => None,
    };
    let plan = auth::plan(
        &snapshot.auth,
        &user_name,
        configured.as_deref(),
        fetched.as_ref(),
        origin.peer.ip(),
        &shared.mock_nonce,
    );
    let by_certificate = matches!(plan, Plan::Cert);
    let method = plan.name();
    *method_used = method;
    if let Err(e) = authenticate(stream, pending, &mut out, &user_name, plan, tls).await {
        if let (Some(_), Some(route)) = (&fetched, &lookup_route) {
            shared.secrets.forget(&route.backend.name, &user_name);
        }
        return Err(e);
    }
    proven_user(configured, &user_name, by_certificate, fetched.is_some())?;
    // Only now: who is an admin is not told to someone who has not proved who they are.
    if !snapshot.admin.is_admin(&user_name) {
        return Err(Error::NotAdmin(user_name));
    }
    messages::authentication_ok(&mut out);
    let application_name = startup.get("application_name").unwrap_or_default().to_owned();
    let version = format!("{}/pgate", env!("CARGO_PKG_VERSION"));
    for (name, value) in [
        ("server_version", version.as_str()),
        ("server_encoding", "UTF8"),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO"),
        ("TimeZone", "UTC"),
        ("standard_conforming_strings", "on"),
        ("integer_datetimes", "on"),
        ("is_superuser", "off"),
        ("application_name", application_name.as_str()),
    ] {
        messages::parameter_status(&mut out, name, value);
    }
    let cancel = shared.cancels.register();
    messages::backend_key_data(&mut out, cancel.key());
    messages::ready_for_query(&mut out, tx_status::IDLE);
    flush(stream, &mut out).await?;
    let audit = shared.auditor.is_some().then(|| {
        Arc::new(SessionContext {
            client: origin.peer,
            user: Some(user_name.clone()),
            database: Some(super::DATABASE.to_owned()),
            workspace: None,
            backend: None,
            session_id: Some(format!("{:x}", cancel.key().pid)),
            tls: tls.map(|t| t.version.to_owned()),
            identity: tls.and_then(|t| t.peer.as_ref()).and_then(|p| p.common_name().map(str::to_owned)),
            formatted: Default::default(),
        })
    });
    Ok(Admin { user: user_name, method, cancel, application_name, audit })
}

/// Where `auth_query` looks up an admin the configuration does not list: the `"*"`
/// backend, or the only backend; in its `auth_dbname` (default `postgres`).
fn lookup_route(snapshot: &Snapshot) -> Option<RouteEntry> {
    let backend = match &snapshot.routes.fallback {
        Some(fallback) => fallback.clone(),
        None if snapshot.backends.len() == 1 => snapshot.backends.values().next()?.clone(),
        None => return None,
    };
    Some(RouteEntry { backend, server_database: "postgres".into(), pool: Default::default() })
}
