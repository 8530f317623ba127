//! The audit records of a connection's edges: logins (ok, or failed with the reason) and
//! cancel requests. Statement records come from the session's inspector.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use super::TlsFacts;
use super::login::LoggedIn;
use crate::audit::{Event, Record, SessionContext};
use crate::error::Error;
use crate::protocol::{CancelKey, StartupMessage};
use crate::proxy::Shared;

/// Who a client said it was, before it proved it.
pub struct Claimed(Arc<SessionContext>);

impl Claimed {
    pub fn of(startup: &StartupMessage, peer: SocketAddr, tls: Option<&TlsFacts>) -> Self {
        let user = startup.get("user").map(str::to_owned);
        let database = startup.get("database").map(str::to_owned).or_else(|| user.clone());
        Claimed(Arc::new(SessionContext {
            client: peer,
            user,
            database,
            workspace: None,
            backend: None,
            session_id: None,
            tls: tls.map(|t| t.version.to_owned()),
            identity: tls.and_then(|t| t.peer.as_ref()).and_then(|p| p.common_name().map(str::to_owned)),
            formatted: Default::default(),
        }))
    }
}

pub async fn login_failed(shared: &Shared, claimed: Option<Claimed>, error: &Error) {
    let (Some(auditor), Some(Claimed(context))) = (&shared.auditor, claimed) else { return };
    let event = Event::Login { ok: false, method: "-".into(), reason: Some(error.to_string()) };
    let _ = auditor.record(Record { time: SystemTime::now(), context, event }).await;
}

pub async fn login_ok(shared: &Shared, logged_in: &LoggedIn) {
    let (Some(auditor), Some(inspect)) = (&shared.auditor, &logged_in.inspect) else { return };
    let event = Event::Login { ok: true, method: logged_in.method.into(), reason: None };
    let _ = auditor.record(Record { time: SystemTime::now(), context: inspect.context().clone(), event }).await;
}

/// A CancelRequest comes on a connection of its own: its record names the connection and
/// the key's session, not a user.
pub async fn cancel(shared: &Shared, peer: SocketAddr, key: CancelKey, forwarded: bool) {
    let Some(auditor) = &shared.auditor else { return };
    let context = Arc::new(SessionContext {
        client: peer,
        user: None,
        database: None,
        workspace: None,
        backend: None,
        session_id: Some(format!("{:x}", key.pid)),
        tls: None,
        identity: None,
        formatted: Default::default(),
    });
    let _ = auditor.record(Record { time: SystemTime::now(), context, event: Event::Cancel { forwarded } }).await;
}
