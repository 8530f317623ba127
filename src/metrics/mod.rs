//! Prometheus metrics: the one [`Metrics`] owner of the registry and its families.
//!
//! Three kinds of figures end up on `/metrics`:
//! - per-pool figures on the hot path (transactions, queries, durations, bytes, clients by
//!   state...) through label children created once per pool and kept in the pool
//!   ([`PoolMetrics`], `pool.rs`), never looked up by label per event;
//! - rarer events (logins, TLS handshakes, cancels, denials, connect errors, pins, reloads)
//!   through the families here, labelled per event;
//! - gauges read from the live state at scrape time (servers by state, pool limits, waiting
//!   clients, backends up, the audit queue, the configuration): `live.rs`.
//!
//! Label values are bounded: backend, database and user of configured pools, workspace and
//! rule names of the configuration, and fixed words (state, reason, result, method, class).
//! Query text never becomes a label. The HTTP endpoint is in `http.rs`, readiness and the
//! backend probes in `readiness.rs`.

mod http;
mod live;
mod pool;
mod readiness;
#[cfg(test)]
mod tests;

use std::sync::Mutex;

use prometheus::{IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::access::{LoginDenial, Rule};
use crate::auth::AuthError;
use crate::error::Error;
use crate::proxy::Shared;
use crate::sql::PinReason;

pub use http::{bind, serve};
pub use pool::{BUCKETS, ClientState, CloseReason, PoolMetrics, Presence, seconds, sqlstate_class};
pub use readiness::{Readiness, probe_backends};

/// What `pgate_build_info` says: the crate version and the commit it was built from.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const COMMIT: &str = env!("PGATE_COMMIT");

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("metric family: {0}")]
    Family(#[from] prometheus::Error),
    #[error("cannot listen on {address} for /metrics (metrics.address): {source}")]
    Bind { address: String, source: std::io::Error },
}

/// The registry and every family registered in it. One per proxy, kept in [`Shared`].
pub struct Metrics {
    registry: Registry,
    pub(crate) pools: pool::PoolFamilies,
    logins: IntCounterVec,
    auth_failures: IntCounterVec,
    tls_handshakes: IntCounterVec,
    cancels: IntCounterVec,
    access_denials: IntCounterVec,
    config_reloads: IntCounterVec,
    /// Client tasks that panicked; the panic was caught and only that client was cut off.
    client_panics: IntCounter,
    /// One child per reason, in the order of [`PinReason::ALL`].
    pins: Vec<IntCounter>,
    /// Scrapes one at a time: the text is built whole for each.
    scrape: Mutex<()>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new() -> Result<Metrics, MetricsError> {
        let registry = Registry::new();
        let r = &registry;
        let pins_family =
            counter_vec(r, "pgate_pins_total", "Sessions pinned to their server, by reason.", &["reason"])?;
        let pins = PinReason::ALL.iter().map(|reason| pins_family.with_label_values(&[reason.name()])).collect();
        let build = IntGaugeVec::new(
            Opts::new("pgate_build_info", "Always 1; the labels say which pgate this is."),
            &["version", "commit"],
        )?;
        registry.register(Box::new(build.clone()))?;
        build.with_label_values(&[VERSION, COMMIT]).set(1);
        let client_panics = IntCounter::new(
            "pgate_client_panics_total",
            "Client tasks that panicked (a bug in pgate); each panic closed only its own client.",
        )?;
        registry.register(Box::new(client_panics.clone()))?;
        Ok(Metrics {
            pools: pool::PoolFamilies::new(r)?,
            logins: counter_vec(
                r,
                "pgate_logins_total",
                "Client logins, by result and method.",
                &["result", "method"],
            )?,
            auth_failures: counter_vec(
                r,
                "pgate_auth_failures_total",
                "Client authentications that failed, by reason.",
                &["reason"],
            )?,
            tls_handshakes: counter_vec(
                r,
                "pgate_tls_handshakes_total",
                "TLS handshakes with clients, by protocol version and result.",
                &["version", "result"],
            )?,
            cancels: counter_vec(r, "pgate_cancels_total", "Cancel requests from clients, by result.", &["result"])?,
            access_denials: counter_vec(
                r,
                "pgate_access_denials_total",
                "Logins and statements refused by workspace rules, by workspace and rule.",
                &["workspace", "rule"],
            )?,
            config_reloads: counter_vec(
                r,
                "pgate_config_reloads_total",
                "Configuration reloads, by result (a failed one keeps the running configuration).",
                &["result"],
            )?,
            client_panics,
            pins,
            registry,
            scrape: Mutex::new(()),
        })
    }

    /// The text exposition of every family, the live ones read from `shared` now.
    pub fn render(&self, shared: &Shared) -> String {
        let _one = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        let mut families = self.registry.gather();
        families.extend(live::families(shared));
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let mut text = String::with_capacity(16 * 1024);
        if let Err(e) = TextEncoder::new().encode_utf8(&families, &mut text) {
            // Only malformed families fail to encode: a bug, not a reason to fail the scrape.
            tracing::error!(error = %e, "cannot encode the metrics");
        }
        text
    }

    /// A client login ended: `Ok` or the error it was refused with; `method` is the
    /// authentication method it was given (`none` before one was chosen).
    pub fn login(&self, method: &str, outcome: Result<(), &Error>, workspaces: &crate::access::Workspaces) {
        let result = match outcome {
            Ok(()) => "ok",
            Err(e) => login_result(e),
        };
        self.logins.with_label_values(&[result, method]).inc();
        match outcome {
            Err(Error::Auth(e)) => self.auth_failures.with_label_values(&[auth_reason(e)]).inc(),
            Err(Error::Access(denial)) => {
                let (workspace, rule) = login_denial(denial);
                // A workspace the client named but the configuration lacks is not a label.
                let workspace = workspace.filter(|w| workspaces.get(w).is_some()).unwrap_or("");
                self.access_denials.with_label_values(&[workspace, rule]).inc();
            }
            _ => {}
        }
    }

    /// A statement refused by a workspace's rule.
    pub fn statement_denied(&self, workspace: &str, rule: Rule) {
        self.access_denials.with_label_values(&[workspace, rule.name()]).inc();
    }

    /// A TLS handshake with a client ended; `version` is `None` when it failed.
    pub fn tls_handshake(&self, version: Option<&str>, result: &str) {
        self.tls_handshakes.with_label_values(&[version.unwrap_or("unknown"), result]).inc();
    }

    /// A cancel request: `forwarded`, `unknown` (no query of that key runs) or `failed`.
    pub fn cancel(&self, result: &str) {
        self.cancels.with_label_values(&[result]).inc();
    }

    pub fn config_reload(&self, ok: bool) {
        self.config_reloads.with_label_values(&[if ok { "ok" } else { "error" }]).inc();
    }

    /// A client's task panicked and was cut off.
    pub fn client_panicked(&self) {
        self.client_panics.inc();
    }

    /// Client tasks that panicked so far.
    pub fn client_panics(&self) -> u64 {
        self.client_panics.get()
    }

    /// A session was pinned to its server for `reason`.
    pub fn pinned(&self, reason: PinReason) {
        if let Some(i) = PinReason::ALL.iter().position(|&r| r == reason) {
            self.pins[i].inc();
        }
    }

    /// Pins so far, by reason.
    pub fn pins(&self) -> Vec<(PinReason, u64)> {
        PinReason::ALL.iter().zip(&self.pins).map(|(&r, c)| (r, c.get())).collect()
    }
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> Result<IntCounterVec, prometheus::Error> {
    let family = IntCounterVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(family.clone()))?;
    Ok(family)
}

/// The `result` label of a failed login.
fn login_result(e: &Error) -> &'static str {
    match e {
        Error::Auth(_) => "auth_failed",
        Error::Access(LoginDenial::TooManyClients { .. }) | Error::TooManyClients(_) => "too_many_clients",
        Error::Access(_) | Error::NotAdmin(_) => "denied",
        Error::Route(_) => "unknown_database",
        Error::ShuttingDown => "shutting_down",
        Error::LoginTimeout(_) => "timeout",
        Error::LoginServer(_) | Error::AuthLookup { .. } | Error::StartupSetting(_) => "server_error",
        Error::ClientIo(_) => "client_gone",
        Error::Protocol(_) | Error::Params(_) | Error::MissingUser => "protocol_error",
        // Not login errors; named so a new variant has to be placed here.
        Error::Checkout(_) | Error::ServerLost(_) | Error::TransactionInStatementPooling => "server_error",
        Error::Admin(_) | Error::Killed | Error::IdleInTransaction(_) | Error::ClientIdle(_) => "server_error",
    }
}

fn auth_reason(e: &AuthError) -> &'static str {
    match e {
        AuthError::PasswordFailed(_) => "password",
        AuthError::NotTrusted(_) => "not_trusted",
        AuthError::UnsupportedMechanism(_) | AuthError::MalformedScram => "protocol",
        AuthError::Certificate { .. } => "certificate",
        AuthError::TlsRequired(_) => "tls_required",
        AuthError::IdentityMismatch { .. } => "identity_mismatch",
        AuthError::ChannelBinding(_) => "channel_binding",
    }
}

/// The workspace (when one is named) and rule of a refused login.
fn login_denial(denial: &LoginDenial) -> (Option<&str>, &'static str) {
    match denial {
        LoginDenial::NoWorkspace { .. } => (None, "login.no_workspace"),
        LoginDenial::NoGrant { .. } => (None, "login.no_grant"),
        LoginDenial::NotMember { workspace, .. } => (Some(workspace), "login.not_member"),
        LoginDenial::DatabaseNotGranted { workspace, .. } => (Some(workspace), "login.database"),
        LoginDenial::TooManyClients { workspace, .. } => (Some(workspace), "login.max_client_connections"),
    }
}
