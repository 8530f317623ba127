//! The TOML file as written: serde structs with `deny_unknown_fields` and the defaults.
//! Nothing here is validated; see `snapshot.rs` for the checked, typed form.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub listen: RawListen,
    pub auth: RawAuth,
    /// `[admin]`: who may use the admin console (the virtual database `pgate`).
    pub admin: RawAdmin,
    pub pool: RawPool,
    pub tls: Option<RawTls>,
    pub backends: BTreeMap<String, RawBackend>,
    pub databases: BTreeMap<String, Spanned<RawDatabase>>,
    pub users: Vec<Spanned<RawUser>>,
    pub workspaces: Vec<Spanned<crate::access::RawWorkspace>>,
    /// `[audit]`; absent: no audit log.
    pub audit: Option<crate::audit::RawAudit>,
    /// `[metrics]`: the HTTP endpoint with /metrics, /healthz and /readyz.
    pub metrics: RawMetrics,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawListen {
    pub address: String,
    pub max_client_connections: usize,
    #[serde(with = "humantime_serde")]
    pub login_timeout: Duration,
    /// How long a shutdown waits for clients to finish their transactions.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
}

impl Default for RawListen {
    fn default() -> Self {
        Self {
            address: "0.0.0.0:5432".into(),
            max_client_connections: 5000,
            login_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawMetrics {
    /// `false` turns the HTTP endpoint off (so does an empty `address`).
    pub enabled: bool,
    pub address: String,
    /// How often every backend is probed for /readyz.
    #[serde(with = "humantime_serde")]
    pub probe_interval: Duration,
    /// How long one probe may take.
    #[serde(with = "humantime_serde")]
    pub probe_timeout: Duration,
}

impl Default for RawMetrics {
    fn default() -> Self {
        Self {
            enabled: true,
            address: "0.0.0.0:9127".into(),
            probe_interval: Duration::from_secs(10),
            probe_timeout: Duration::from_secs(3),
        }
    }
}

/// `[admin]`: the users who may connect to the admin console. They log in like any user
/// (a `[[users]]` entry, `auth_query`, or a certificate); everyone else is refused there.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAdmin {
    pub users: Vec<Spanned<String>>,
}

/// libpq's sslmode values; for clients they say what pgate demands of them, for backends
/// what pgate demands of the server, with libpq's meanings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum TlsVersion {
    #[default]
    #[serde(rename = "1.2")]
    Tls12,
    #[serde(rename = "1.3")]
    Tls13,
}

/// Client-facing TLS.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// Defaults to `prefer` when a certificate is given.
    pub mode: Option<SslMode>,
    /// PEM certificate chain (leaf first) and its private key.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// PEM CA certificates that sign client certificates.
    pub client_ca: Option<PathBuf>,
    /// PEM certificate revocation list(s) for client certificates.
    pub crl: Option<PathBuf>,
    #[serde(default)]
    pub min_version: TlsVersion,
    /// Certificate identity (CN or DNS name) -> user names it may log in as.
    #[serde(default)]
    pub identity_map: BTreeMap<String, Vec<String>>,
}

/// Backend-facing TLS of one backend.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackendTls {
    pub mode: Option<SslMode>,
    /// PEM CA certificates that sign the server's certificate.
    pub root_cert: Option<PathBuf>,
    /// A client certificate and key pgate presents to the server.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub crl: Option<PathBuf>,
    #[serde(default)]
    pub min_version: TlsVersion,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum AuthMethod {
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
    #[serde(rename = "md5")]
    Md5,
    /// Only for clients in `trust_networks`; others are refused.
    #[serde(rename = "trust")]
    Trust,
    /// A verified TLS client certificate whose identity matches the user (or the map).
    #[serde(rename = "cert")]
    Cert,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAuth {
    pub method: AuthMethod,
    /// Clients connecting from these networks are let in without a password.
    pub trust_networks: Vec<IpNet>,
    /// Clients connecting from these networks authenticate by certificate.
    pub cert_networks: Vec<IpNet>,
    /// Users not in `[[users]]` are looked up on the route's backend with this query
    /// (`$1` is the user name; it returns user name and SCRAM or md5 secret) run as
    /// `auth_user`.
    pub auth_query: Option<String>,
    pub auth_user: Option<String>,
    pub auth_password: Option<String>,
    pub auth_password_file: Option<PathBuf>,
    /// The database the lookup runs in; defaults to the client's (server) database.
    pub auth_dbname: Option<String>,
    /// How long a looked-up secret is reused (a failed login refetches it sooner).
    #[serde(with = "humantime_serde")]
    pub auth_query_ttl: Duration,
}

impl Default for RawAuth {
    fn default() -> Self {
        Self {
            method: AuthMethod::ScramSha256,
            trust_networks: Vec::new(),
            cert_networks: Vec::new(),
            auth_query: None,
            auth_user: None,
            auth_password: None,
            auth_password_file: None,
            auth_dbname: None,
            auth_query_ttl: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolMode {
    /// A server belongs to one client for the whole session.
    Session,
    /// A server belongs to a client from the start to the end of a transaction.
    Transaction,
    /// A server belongs to a client for one statement; transactions are refused.
    Statement,
}

/// What transaction and statement pooling do when a client creates session state (LISTEN,
/// session advisory locks, temporary tables, WITH HOLD cursors, SQL PREPARE,
/// SET SESSION AUTHORIZATION).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnSessionState {
    /// Keep the client on its server until the state is gone or the client leaves.
    Pin,
    /// Refuse the statement with SQLSTATE 0A000.
    Error,
}

/// Pool settings; every field is optional so that a backend, database or user can
/// override just some of the global `[pool]` values.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPool {
    pub mode: Option<PoolMode>,
    pub size: Option<usize>,
    pub min_idle: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    pub query_wait_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub server_idle_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub server_lifetime: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub connect_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub server_check_delay: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub reset_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub idle_transaction_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub client_idle_timeout: Option<Duration>,
    pub max_prepared_statements: Option<usize>,
    pub on_session_state: Option<OnSessionState>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackend {
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    #[serde(default)]
    pub databases: Vec<Spanned<String>>,
    #[serde(default)]
    pub pool: RawPool,
    #[serde(default)]
    pub tls: RawBackendTls,
}

fn default_port() -> u16 {
    5432
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDatabase {
    pub backend: Spanned<String>,
    /// The database name on the backend; defaults to the alias itself.
    pub dbname: Option<String>,
    #[serde(default)]
    pub pool: RawPool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUser {
    pub name: String,
    /// A SCRAM-SHA-256 secret, an md5 secret or a plain password; `${ENV}` is expanded.
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
    /// The role pgate logs into the backend as; defaults to `name`.
    pub server_user: Option<String>,
    pub server_password: Option<String>,
    pub server_password_file: Option<PathBuf>,
    /// This user's authentication method, instead of `[auth] method`.
    pub auth: Option<AuthMethod>,
    #[serde(default)]
    pub pool: RawPool,
}

/// The configuration's own spellings, for `pgate check` and messages.
macro_rules! config_names {
    ($ty:ty { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(match self { $(Self::$variant => $name),+ })
            }
        }
    };
}

config_names!(SslMode {
    Disable => "disable",
    Allow => "allow",
    Prefer => "prefer",
    Require => "require",
    VerifyCa => "verify-ca",
    VerifyFull => "verify-full",
});
config_names!(TlsVersion { Tls12 => "1.2", Tls13 => "1.3" });
config_names!(AuthMethod { ScramSha256 => "scram-sha-256", Md5 => "md5", Trust => "trust", Cert => "cert" });
config_names!(PoolMode { Session => "session", Transaction => "transaction", Statement => "statement" });
config_names!(OnSessionState { Pin => "pin", Error => "error" });
