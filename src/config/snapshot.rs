//! The validated, typed, immutable configuration that the proxy runs on.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use super::model::{AuthMethod, OnSessionState, PoolMode, RawPool, SslMode, TlsVersion};
use super::secret::{ScramVerifier, StoredPassword};

#[derive(Debug)]
pub struct Snapshot {
    /// Where the configuration was read from (for messages and reloads).
    pub source: PathBuf,
    pub listen: Listen,
    pub auth: Auth,
    /// `[admin]`: who may use the admin console.
    pub admin: Admin,
    /// Client-facing TLS; `None` when disabled.
    pub tls: Option<TlsSettings>,
    pub backends: BTreeMap<String, Arc<Backend>>,
    pub routes: RouteTable,
    pub users: HashMap<String, Arc<User>>,
    /// `[[workspaces]]`; empty: every login is admitted and no statement is checked.
    pub workspaces: Arc<crate::access::Workspaces>,
    /// `[audit]`; `None`: no audit log.
    pub audit: Option<crate::audit::AuditSettings>,
    pub metrics: MetricsSettings,
    /// A hash of the file's text (48 bits, so a metric's float holds it exactly): tells
    /// replicas running different configurations apart.
    pub hash: u64,
    /// When this configuration was read.
    pub loaded_at: std::time::SystemTime,
    pub(super) pool_defaults: RawPool,
}

/// `[metrics]`: where the HTTP endpoint listens, and how backends are probed for /readyz.
#[derive(Debug, Clone)]
pub struct MetricsSettings {
    /// `None`: the endpoint is off.
    pub address: Option<String>,
    pub probe_interval: Duration,
    pub probe_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct Listen {
    pub address: String,
    pub max_client_connections: usize,
    pub login_timeout: Duration,
    pub shutdown_timeout: Duration,
}

/// The admin console's users (`[admin] users`); empty: nobody may use it.
#[derive(Debug, Clone, Default)]
pub struct Admin {
    pub users: BTreeSet<String>,
}

impl Admin {
    pub fn is_admin(&self, user: &str) -> bool {
        self.users.contains(user)
    }
}

#[derive(Debug, Clone)]
pub struct Auth {
    pub method: AuthMethod,
    pub trust_networks: Vec<IpNet>,
    pub cert_networks: Vec<IpNet>,
    /// Looking up users not in the configuration on their backend; `None`: disabled.
    pub lookup: Option<AuthLookup>,
}

/// `auth_query`: how secrets of unconfigured users are fetched.
#[derive(Clone)]
pub struct AuthLookup {
    pub query: String,
    pub user: String,
    pub password: Option<String>,
    pub dbname: Option<String>,
    pub ttl: Duration,
}

impl std::fmt::Debug for AuthLookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthLookup").field("query", &self.query).field("user", &self.user).finish_non_exhaustive()
    }
}

/// The lookup query pgate documents; `auth_user` alone turns it on.
pub const DEFAULT_AUTH_QUERY: &str = "SELECT usename, passwd FROM pgate.user_lookup($1)";

impl Auth {
    pub fn is_trusted(&self, addr: std::net::IpAddr) -> bool {
        let addr = canonical_ip(addr);
        self.trust_networks.iter().any(|net| net.contains(&addr))
    }

    pub fn needs_certificate(&self, addr: std::net::IpAddr) -> bool {
        let addr = canonical_ip(addr);
        self.cert_networks.iter().any(|net| net.contains(&addr))
    }
}

/// Client-facing TLS settings (files are read when the acceptor is built).
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub mode: SslMode,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
    pub crl: Option<PathBuf>,
    pub min_version: TlsVersion,
    pub identity_map: BTreeMap<String, Vec<String>>,
}

/// Backend-facing TLS settings of one backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendTlsSettings {
    pub mode: SslMode,
    pub root_cert: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub crl: Option<PathBuf>,
    pub min_version: TlsVersion,
}

/// IPv4-mapped IPv6 addresses (a dual-stack listener) are matched as IPv4.
fn canonical_ip(addr: std::net::IpAddr) -> std::net::IpAddr {
    match addr {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map(Into::into).unwrap_or(addr),
        v4 => v4,
    }
}

#[derive(Debug)]
pub struct Backend {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub pool: RawPool,
    pub tls: BackendTlsSettings,
    /// Built from `tls` at load; `None` when the mode is `disable`.
    pub connector: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl Backend {
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// Where one client-facing database name leads.
#[derive(Debug, Clone)]
pub struct RouteEntry {
    pub backend: Arc<Backend>,
    pub server_database: String,
    pub pool: RawPool,
}

#[derive(Debug, Default)]
pub struct RouteTable {
    pub exact: BTreeMap<String, RouteEntry>,
    /// The backend listing `"*"`: every database not routed elsewhere.
    pub fallback: Option<Arc<Backend>>,
}

#[derive(Debug)]
pub struct User {
    pub name: String,
    pub password: Option<StoredPassword>,
    /// The SCRAM verifier a login is checked against: the stored one, or one derived from
    /// a plain password once at load time (PBKDF2 is too slow to run per login).
    pub scram: Option<ScramVerifier>,
    pub server_user: String,
    pub server_password: Option<String>,
    /// This user's own authentication method, if not `[auth] method`.
    pub auth: Option<AuthMethod>,
    pub pool: RawPool,
}

impl User {
    /// A user pgate knows only from a proof of identity (a client certificate): no
    /// password, server login as the same name.
    pub fn implicit(name: &str) -> User {
        User {
            name: name.to_owned(),
            password: None,
            scram: None,
            server_user: name.to_owned(),
            server_password: None,
            auth: None,
            pool: RawPool::default(),
        }
    }
}

/// The pool settings in force for one pool, after all overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    pub mode: PoolMode,
    pub size: usize,
    pub min_idle: usize,
    pub query_wait_timeout: Duration,
    pub server_idle_timeout: Duration,
    pub server_lifetime: Duration,
    pub connect_timeout: Duration,
    pub server_check_delay: Duration,
    pub reset_timeout: Duration,
    /// A client idle inside a transaction longer than this is disconnected (0: never).
    pub idle_transaction_timeout: Duration,
    /// A client idle outside a transaction longer than this is disconnected (0: never).
    pub client_idle_timeout: Duration,
    /// Prepared statements kept per server connection (transaction and statement pooling).
    pub max_prepared_statements: usize,
    pub on_session_state: OnSessionState,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            mode: PoolMode::Transaction,
            size: 20,
            min_idle: 0,
            query_wait_timeout: Duration::from_secs(120),
            server_idle_timeout: Duration::from_secs(600),
            server_lifetime: Duration::from_secs(3600),
            connect_timeout: Duration::from_secs(5),
            server_check_delay: Duration::from_secs(30),
            reset_timeout: Duration::from_secs(5),
            idle_transaction_timeout: Duration::ZERO,
            client_idle_timeout: Duration::ZERO,
            max_prepared_statements: 200,
            on_session_state: OnSessionState::Pin,
        }
    }
}

impl PoolSettings {
    /// Applies the fields an override sets.
    pub fn apply(mut self, o: &RawPool) -> Self {
        self.mode = o.mode.unwrap_or(self.mode);
        self.size = o.size.unwrap_or(self.size);
        self.min_idle = o.min_idle.unwrap_or(self.min_idle);
        self.query_wait_timeout = o.query_wait_timeout.unwrap_or(self.query_wait_timeout);
        self.server_idle_timeout = o.server_idle_timeout.unwrap_or(self.server_idle_timeout);
        self.server_lifetime = o.server_lifetime.unwrap_or(self.server_lifetime);
        self.connect_timeout = o.connect_timeout.unwrap_or(self.connect_timeout);
        self.server_check_delay = o.server_check_delay.unwrap_or(self.server_check_delay);
        self.reset_timeout = o.reset_timeout.unwrap_or(self.reset_timeout);
        self.idle_transaction_timeout = o.idle_transaction_timeout.unwrap_or(self.idle_transaction_timeout);
        self.client_idle_timeout = o.client_idle_timeout.unwrap_or(self.client_idle_timeout);
        self.max_prepared_statements = o.max_prepared_statements.unwrap_or(self.max_prepared_statements);
        self.on_session_state = o.on_session_state.unwrap_or(self.on_session_state);
        self
    }
}

impl Snapshot {
    /// Settings for the pool of (route, user): global, then backend, then database alias,
    /// then user overrides.
    pub fn pool_settings(&self, route: &RouteEntry, user: &User) -> PoolSettings {
        PoolSettings::default()
            .apply(&self.pool_defaults)
            .apply(&route.backend.pool)
            .apply(&route.pool)
            .apply(&user.pool)
    }

    /// The `[pool]` settings, before any backend, database or user override.
    pub fn default_pool_settings(&self) -> PoolSettings {
        PoolSettings::default().apply(&self.pool_defaults)
    }

    /// The client-facing database names with a route, for error messages and `check`.
    pub fn routed_names(&self) -> Vec<&str> {
        self.routes.exact.keys().map(String::as_str).collect()
    }
}
