//! The errors a client can be told about, and the ONE mapping from them to an
//! ErrorResponse: severity, SQLSTATE, message, hint.

use crate::access::LoginDenial;
use crate::admin::AdminError;
use crate::auth::AuthError;
use crate::params::ParamError;
use crate::pool::PoolError;
use crate::protocol::ProtocolError;
use crate::protocol::codes::sqlstate;
use crate::protocol::messages::ErrorFields;
use crate::routing::RouteError;
use crate::server::ServerError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The client broke the protocol; the connection closes.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Route(#[from] RouteError),
    /// No workspace admits the login.
    #[error(transparent)]
    Access(#[from] LoginDenial),
    #[error(transparent)]
    Params(#[from] ParamError),
    #[error("no PostgreSQL user name specified in startup packet")]
    MissingUser,
    #[error("sorry, too many clients already: pgate accepts {0} (listen.max_client_connections)")]
    TooManyClients(usize),
    #[error("pgate is shutting down")]
    ShuttingDown,
    #[error("canceling authentication due to timeout ({0:?}, listen.login_timeout)")]
    LoginTimeout(std::time::Duration),
    /// No server for the next transaction; the session stays usable.
    #[error(transparent)]
    Checkout(PoolError),
    /// No server could be reached while logging in; the connection closes.
    #[error(transparent)]
    LoginServer(PoolError),
    /// The server died under an open transaction or a running query.
    #[error("server connection lost: {0}")]
    ServerLost(ServerError),
    /// Statement pooling ended a statement inside a transaction; it was rolled back.
    #[error("transaction blocks are not allowed in statement pooling; the transaction was rolled back")]
    TransactionInStatementPooling,
    /// `auth_query` failed on the backend (the lookup function is missing, no rights...).
    #[error("the user lookup (auth_query) failed on backend {backend}: {message}")]
    AuthLookup { backend: String, message: String },
    /// A server rejected the settings the client asked for at startup.
    #[error("{}", .0.message)]
    StartupSetting(Box<ErrorFields>),
    /// An admin console command failed; the console stays usable.
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// A user not listed in `[admin] users` asked for the admin console.
    #[error("user \"{0}\" is not an admin user (admin.users); the database \"pgate\" is pgate's admin console")]
    NotAdmin(String),
    /// An admin ended this client's session (KILL_CLIENT).
    #[error("terminating connection: terminated by an administrator (KILL_CLIENT)")]
    Killed,
    /// The client sat inside a transaction, holding a server, past the pool's limit.
    #[error(
        "terminating connection due to idle-in-transaction timeout ({} without a request inside a transaction, pool idle_transaction_timeout); the transaction was rolled back",
        humantime::format_duration(*.0)
    )]
    IdleInTransaction(std::time::Duration),
    /// The client sent nothing past the pool's limit.
    #[error(
        "terminating connection due to idle-session timeout ({} without a request, pool client_idle_timeout)",
        humantime::format_duration(*.0)
    )]
    ClientIdle(std::time::Duration),
    /// The client's socket failed: there is nobody left to tell.
    #[error("client connection failed: {0}")]
    ClientIo(#[from] std::io::Error),
}

pub const FATAL: &str = "FATAL";
pub const ERROR: &str = "ERROR";

impl Error {
    /// True when the client can keep using its session after this error.
    pub fn keeps_session(&self) -> bool {
        matches!(self, Error::Checkout(_) | Error::TransactionInStatementPooling | Error::Admin(_))
    }

    /// The ErrorResponse a client gets; `None` when the client is gone.
    pub fn to_response(&self) -> Option<ErrorFields> {
        let severity = if self.keeps_session() { ERROR } else { FATAL };
        let (code, hint) = match self {
            Error::ClientIo(_) => return None,
            Error::StartupSetting(fields) => {
                return Some(ErrorFields { severity: FATAL.into(), ..(**fields).clone() });
            }
            Error::Protocol(ProtocolError::UnsupportedProtocol { .. }) => (sqlstate::FEATURE_NOT_SUPPORTED, None),
            Error::Protocol(_) => (sqlstate::PROTOCOL_VIOLATION, None),
            Error::Auth(e) => auth_code(e),
            Error::Route(_) => (
                sqlstate::INVALID_CATALOG_NAME,
                Some("connect to one of the listed databases, or ask the operator to route this one"),
            ),
            Error::Params(ParamError::BadName(_)) => (sqlstate::PROTOCOL_VIOLATION, None),
            Error::Params(_) => (sqlstate::FEATURE_NOT_SUPPORTED, None),
            Error::MissingUser => (sqlstate::INVALID_AUTHORIZATION_SPECIFICATION, None),
            Error::Access(LoginDenial::TooManyClients { .. }) => (
                sqlstate::TOO_MANY_CONNECTIONS,
                Some("retry later, or ask the operator to raise the workspace's max_client_connections"),
            ),
            Error::Access(_) => (
                sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
                Some(
                    "ask the operator for a [[workspaces]] grant, or pick a workspace with options=-c pgate.workspace=NAME",
                ),
            ),
            Error::AuthLookup { .. } => (
                sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
                Some(
                    "check auth_user and the lookup function on the backend (README: \"Passwords stay in PostgreSQL\")",
                ),
            ),
            Error::LoginTimeout(_) => (sqlstate::QUERY_CANCELED, None),
            Error::TooManyClients(_) => {
                (sqlstate::TOO_MANY_CONNECTIONS, Some("retry later, or raise listen.max_client_connections"))
            }
            Error::ShuttingDown => (
                sqlstate::ADMIN_SHUTDOWN,
                Some("reconnect: another pgate instance, or this one after restart, will serve you"),
            ),
            Error::Checkout(e) | Error::LoginServer(e) => return Some(pool_response(e, severity)),
            Error::TransactionInStatementPooling => (
                sqlstate::FEATURE_NOT_SUPPORTED,
                Some("run each statement on its own, or use a pool in transaction mode for this client"),
            ),
            Error::Admin(e) => return Some(admin_response(e)),
            Error::NotAdmin(_) => (
                sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
                Some("connect to a routed database, or ask the operator to list you in [admin] users"),
            ),
            Error::Killed => (sqlstate::ADMIN_SHUTDOWN, Some("reconnect if you still need a session")),
            Error::IdleInTransaction(_) => (
                sqlstate::IDLE_IN_TRANSACTION_SESSION_TIMEOUT,
                Some("end transactions promptly (COMMIT or ROLLBACK) and reconnect; do not leave them open while idle"),
            ),
            Error::ClientIdle(_) => (sqlstate::IDLE_SESSION_TIMEOUT, Some("reconnect when you need a session again")),
            Error::ServerLost(_) => {
                (sqlstate::CONNECTION_FAILURE, Some("the transaction was lost; reconnect and retry it"))
            }
        };
        Some(ErrorFields {
            severity: severity.into(),
            code: code.into(),
            message: self.to_string(),
            detail: None,
            hint: hint.map(Into::into),
        })
    }
}

fn admin_response(e: &AdminError) -> ErrorFields {
    let (code, hint) = match e {
        AdminError::Syntax { .. } => (sqlstate::SYNTAX_ERROR, Some(crate::admin::COMMANDS_HINT)),
        AdminError::NoSuchDatabase { .. } => {
            (sqlstate::INVALID_CATALOG_NAME, Some("SHOW DATABASES lists the databases pgate routes"))
        }
        AdminError::ConsoleDatabase { .. } => (sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE, None),
        AdminError::NoSuchClient(_) => {
            (sqlstate::UNDEFINED_OBJECT, Some("SHOW CLIENTS lists the clients and their ids"))
        }
        AdminError::NotPaused { .. } => {
            (sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE, Some("SHOW DATABASES shows what is paused"))
        }
        AdminError::Reload(_) => (sqlstate::CONFIG_FILE_ERROR, None),
        AdminError::ExtendedProtocol => {
            (sqlstate::FEATURE_NOT_SUPPORTED, Some("use psql, or a driver's simple query mode"))
        }
    };
    ErrorFields {
        severity: ERROR.into(),
        code: code.into(),
        message: e.to_string(),
        detail: None,
        hint: hint.map(Into::into),
    }
}

fn auth_code(e: &AuthError) -> (&'static str, Option<&'static str>) {
    match e {
        AuthError::PasswordFailed(_) => (sqlstate::INVALID_PASSWORD, None),
        AuthError::NotTrusted(_) | AuthError::TlsRequired(_) | AuthError::IdentityMismatch { .. } => {
            (sqlstate::INVALID_AUTHORIZATION_SPECIFICATION, None)
        }
        AuthError::Certificate { .. } => (sqlstate::INVALID_AUTHORIZATION_SPECIFICATION, None),
        AuthError::ChannelBinding(_) => (sqlstate::PROTOCOL_VIOLATION, None),
        AuthError::UnsupportedMechanism(_) | AuthError::MalformedScram => (sqlstate::PROTOCOL_VIOLATION, None),
    }
}

/// What to do about a server's refusal of pgate's login, by its SQLSTATE.
fn rejection_hint(code: &str) -> Option<&'static str> {
    match code {
        "3D000" => None,
        // Starting up, in crash recovery, shutting down (57P03, 57P01) or out of
        // connection slots (53300): this passes without anyone changing pgate's setup.
        "53300" | "57P01" | "57P03" => {
            Some("the backend is starting up, recovering, shutting down or full; retry shortly")
        }
        _ => Some("check the user's server_user / server_password in the pgate configuration"),
    }
}

fn pool_response(e: &PoolError, severity: &str) -> ErrorFields {
    let (code, message, detail, hint) = match e {
        PoolError::Timeout { .. } => (
            sqlstate::TOO_MANY_CONNECTIONS,
            e.to_string(),
            None,
            Some("retry; if this persists, raise the pool size or shorten the transactions that hold servers"),
        ),
        PoolError::Closed(_) => (sqlstate::ADMIN_SHUTDOWN, e.to_string(), None, None),
        PoolError::Server(ServerError::Rejected { backend, user, fields }) => {
            // A missing database is the client's to fix; other refusals are pgate's setup.
            let code = if fields.code == "3D000" { "3D000" } else { sqlstate::CONNECTION_FAILURE };
            (
                code,
                format!("backend {backend} refused the login of \"{user}\": {}", fields.message),
                Some(format!("the server said {} {}", fields.code, fields.message)),
                rejection_hint(&fields.code),
            )
        }
        PoolError::Server(ServerError::NoPassword { .. }) => (
            sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
            e.to_string(),
            None,
            Some("the pgate configuration lacks this password; `pgate check` names the key"),
        ),
        PoolError::Server(other) => (
            sqlstate::CONNECTION_FAILURE,
            other.to_string(),
            None,
            Some("the backend is unreachable or restarting; retry shortly"),
        ),
    };
    ErrorFields { severity: severity.into(), code: code.into(), message, detail, hint: hint.map(Into::into) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(code: &str, message: &str) -> Error {
        let fields = ErrorFields {
            severity: FATAL.into(),
            code: code.into(),
            message: message.into(),
            detail: None,
            hint: None,
        };
        let e = ServerError::Rejected { backend: "main".into(), user: "alice".into(), fields: Box::new(fields) };
        Error::Checkout(PoolError::Server(e))
    }

    #[test]
    fn a_backend_that_is_starting_or_recovering_is_not_blamed_on_credentials() {
        for (code, message) in
            [("57P03", "the database system is in recovery mode"), ("53300", "sorry, too many clients already")]
        {
            let r = rejected(code, message).to_response().unwrap();
            assert_eq!(r.code, sqlstate::CONNECTION_FAILURE);
            assert!(r.hint.as_deref().unwrap().contains("retry shortly"), "{r:?}");
            assert!(r.detail.as_deref().unwrap().contains(code), "{r:?}");
        }
        let r = rejected("28P01", "password authentication failed for user \"alice\"").to_response().unwrap();
        assert!(r.hint.as_deref().unwrap().contains("server_password"), "{r:?}");
        let r = rejected("3D000", "database \"x\" does not exist").to_response().unwrap();
        assert_eq!((r.code.as_str(), r.hint), ("3D000", None));
    }
}
