//! Per-pool metrics: the families labelled by pool (backend, database, user) and the
//! [`PoolMetrics`] children each pool creates once and keeps, so the hot path increments a
//! cached child (one atomic add) instead of looking a label set up per event. Also the
//! [`Presence`] guard that counts a logged-in client under its state.

use std::time::Duration;

use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts};

use crate::pool::PoolKey;

/// Histogram buckets, in seconds: 100 us to 60 s.
pub const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

const POOL: &[&str] = &["backend", "database", "user"];

/// What a logged-in client is doing, for `pgate_clients`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    /// Holds a server.
    Active,
    /// Waits in `checkout` for a server.
    Waiting,
    /// Neither.
    Idle,
}

impl ClientState {
    pub const ALL: [ClientState; 3] = [ClientState::Active, ClientState::Waiting, ClientState::Idle];

    pub fn name(self) -> &'static str {
        match self {
            ClientState::Active => "active",
            ClientState::Waiting => "waiting",
            ClientState::Idle => "idle",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Why a server connection was closed, for `pgate_servers_closed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Idle past `server_idle_timeout` (beyond `min_idle`).
    IdleTimeout,
    /// Older than `server_lifetime`.
    Lifetime,
    /// Failed, lost step with the protocol, or left mid-request by its client.
    Broken,
    /// ROLLBACK / DISCARD ALL after a dirty release failed or timed out.
    ResetFailed,
    /// The check before reuse failed (the server had gone away).
    CheckFailed,
    /// The pool closed (shutdown).
    Shutdown,
    /// Opened before a RECONNECT, or before a reload changed the pool.
    Replaced,
}

impl CloseReason {
    pub const ALL: [CloseReason; 7] = [
        CloseReason::IdleTimeout,
        CloseReason::Lifetime,
        CloseReason::Broken,
        CloseReason::ResetFailed,
        CloseReason::CheckFailed,
        CloseReason::Shutdown,
        CloseReason::Replaced,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::Lifetime => "lifetime",
            CloseReason::Broken => "broken",
            CloseReason::ResetFailed => "reset_failed",
            CloseReason::CheckFailed => "check_failed",
            CloseReason::Shutdown => "shutdown",
            CloseReason::Replaced => "replaced",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Why a checkout gave no server, for `pgate_checkout_errors_total`.
const CHECKOUT_ERRORS: [&str; 3] = ["timeout", "server", "closed"];

/// The families labelled by pool; registered once, children made per pool.
pub(crate) struct PoolFamilies {
    clients: IntGaugeVec,
    transactions: IntCounterVec,
    queries: IntCounterVec,
    errors: IntCounterVec,
    received: IntCounterVec,
    sent: IntCounterVec,
    checkout_wait: HistogramVec,
    query_duration: HistogramVec,
    transaction_duration: HistogramVec,
    checkout_errors: IntCounterVec,
    prepared_hits: IntCounterVec,
    prepared_misses: IntCounterVec,
    prepared_evictions: IntCounterVec,
    settings_syncs: IntCounterVec,
    servers_opened: IntCounterVec,
    servers_closed: IntCounterVec,
    connect_errors: IntCounterVec,
}

impl PoolFamilies {
    pub(crate) fn new(r: &prometheus::Registry) -> Result<Self, prometheus::Error> {
        let counter = |name: &str, help: &str| super::counter_vec(r, name, help, POOL);
        let with = |name: &str, help: &str, extra: &str| {
            let labels = [POOL, &[extra]].concat();
            super::counter_vec(r, name, help, &labels)
        };
        let histogram = |name: &str, help: &str| -> Result<HistogramVec, prometheus::Error> {
            let family = HistogramVec::new(HistogramOpts::new(name, help).buckets(BUCKETS.to_vec()), POOL)?;
            r.register(Box::new(family.clone()))?;
            Ok(family)
        };
        let clients = IntGaugeVec::new(
            Opts::new("pgate_clients", "Logged-in clients by state: active (holds a server), waiting, idle."),
            &[POOL, &["state"]].concat(),
        )?;
        r.register(Box::new(clients.clone()))?;
        Ok(Self {
            clients,
            transactions: counter(
                "pgate_transactions_total",
                "Transactions ended (ReadyForQuery with status idle after a request).",
            )?,
            queries: counter(
                "pgate_queries_total",
                "Requests answered by the server with a ReadyForQuery: a simple Query, or extended-protocol messages up to a Sync.",
            )?,
            errors: with(
                "pgate_errors_total",
                "ErrorResponses sent to clients in sessions, by SQLSTATE class (first two characters).",
                "class",
            )?,
            received: counter("pgate_client_received_bytes_total", "Bytes read from clients in their sessions.")?,
            sent: counter("pgate_client_sent_bytes_total", "Bytes of server messages relayed to clients.")?,
            checkout_wait: histogram(
                "pgate_checkout_wait_seconds",
                "Time a client waited for a server of its pool (including opening one).",
            )?,
            query_duration: histogram(
                "pgate_query_duration_seconds",
                "Time from a request reaching pgate's server side to the server's ReadyForQuery.",
            )?,
            transaction_duration: histogram(
                "pgate_transaction_duration_seconds",
                "Time from a transaction's first request to the ReadyForQuery that ends it.",
            )?,
            checkout_errors: with(
                "pgate_checkout_errors_total",
                "Checkouts that gave no server, by reason (timeout, server, closed).",
                "reason",
            )?,
            prepared_hits: counter(
                "pgate_prepared_cache_hits_total",
                "Uses of a pool prepared statement that the server already had.",
            )?,
            prepared_misses: counter(
                "pgate_prepared_cache_misses_total",
                "Pool prepared statements pgate had to prepare on a server first.",
            )?,
            prepared_evictions: counter(
                "pgate_prepared_cache_evictions_total",
                "Prepared statements closed on a server to make room (max_prepared_statements).",
            )?,
            settings_syncs: counter(
                "pgate_settings_syncs_total",
                "Times a client's session settings were applied to a server at checkout.",
            )?,
            servers_opened: counter("pgate_servers_opened_total", "Server connections opened and logged in.")?,
            servers_closed: with("pgate_servers_closed_total", "Server connections closed, by reason.", "reason")?,
            connect_errors: super::counter_vec(
                r,
                "pgate_server_connect_errors_total",
                "Server connections that could not be opened, by backend and reason.",
                &["backend", "reason"],
            )?,
        })
    }
}

/// The label children of one pool, created with the pool.
pub struct PoolMetrics {
    labels: [String; 3],
    errors: IntCounterVec,
    connect_errors: IntCounterVec,
    clients: [IntGauge; 3],
    pub transactions: IntCounter,
    pub queries: IntCounter,
    pub received: IntCounter,
    pub sent: IntCounter,
    pub checkout_wait: Histogram,
    pub query_duration: Histogram,
    pub transaction_duration: Histogram,
    checkout_errors: [IntCounter; 3],
    pub prepared_hits: IntCounter,
    pub prepared_misses: IntCounter,
    pub prepared_evictions: IntCounter,
    pub settings_syncs: IntCounter,
    pub servers_opened: IntCounter,
    servers_closed: [IntCounter; CloseReason::ALL.len()],
}

impl std::fmt::Debug for PoolMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolMetrics").field("labels", &self.labels).finish_non_exhaustive()
    }
}

impl PoolMetrics {
    pub(crate) fn new(families: &PoolFamilies, key: &PoolKey) -> Self {
        let labels = [key.backend.clone(), key.database.clone(), key.user.clone()];
        let pool: [&str; 3] = [&labels[0], &labels[1], &labels[2]];
        let with = |family: &IntCounterVec, extra: &str| family.with_label_values(&[pool[0], pool[1], pool[2], extra]);
        Self {
            errors: families.errors.clone(),
            connect_errors: families.connect_errors.clone(),
            clients: ClientState::ALL
                .map(|s| families.clients.with_label_values(&[pool[0], pool[1], pool[2], s.name()])),
            transactions: families.transactions.with_label_values(&pool),
            queries: families.queries.with_label_values(&pool),
            received: families.received.with_label_values(&pool),
            sent: families.sent.with_label_values(&pool),
            checkout_wait: families.checkout_wait.with_label_values(&pool),
            query_duration: families.query_duration.with_label_values(&pool),
            transaction_duration: families.transaction_duration.with_label_values(&pool),
            checkout_errors: CHECKOUT_ERRORS.map(|reason| with(&families.checkout_errors, reason)),
            prepared_hits: families.prepared_hits.with_label_values(&pool),
            prepared_misses: families.prepared_misses.with_label_values(&pool),
            prepared_evictions: families.prepared_evictions.with_label_values(&pool),
            settings_syncs: families.settings_syncs.with_label_values(&pool),
            servers_opened: families.servers_opened.with_label_values(&pool),
            servers_closed: CloseReason::ALL.map(|reason| with(&families.servers_closed, reason.name())),
            labels,
        }
    }

    /// An ErrorResponse went to a client; `body` is its body (fields after the header).
    /// Errors are rare, so the class child is looked up here.
    pub fn error(&self, body: &[u8]) {
        self.error_class(sqlstate_class(body));
    }

    /// An error pgate itself sent to a client in a session, with this SQLSTATE.
    pub fn error_code(&self, sqlstate: &str) {
        self.error_class(class_of(sqlstate.as_bytes()));
    }

    fn error_class(&self, class: Option<[u8; 2]>) {
        let class = class.as_ref().and_then(|c| std::str::from_utf8(c).ok()).unwrap_or("unknown");
        self.errors.with_label_values(&[&self.labels[0], &self.labels[1], &self.labels[2], class]).inc();
    }

    /// A server of this pool could not be opened.
    pub fn connect_error(&self, e: &crate::server::ServerError) {
        self.connect_errors.with_label_values(&[&self.labels[0], e.reason()]).inc();
    }

    pub fn checkout_error(&self, e: &crate::pool::PoolError) {
        let i = match e {
            crate::pool::PoolError::Timeout { .. } => 0,
            crate::pool::PoolError::Server(_) => 1,
            crate::pool::PoolError::Closed(_) => 2,
        };
        self.checkout_errors[i].inc();
    }

    pub fn closed(&self, reason: CloseReason, n: usize) {
        self.servers_closed[reason.index()].inc_by(n as u64);
    }

    /// Counts a logged-in client as idle until the guard is told otherwise or dropped.
    pub fn presence(self: &std::sync::Arc<Self>) -> Presence {
        self.clients[ClientState::Idle.index()].inc();
        Presence { metrics: self.clone(), state: ClientState::Idle }
    }
}

/// A logged-in client counted under its state in `pgate_clients`; dropping it uncounts it.
#[derive(Debug)]
pub struct Presence {
    metrics: std::sync::Arc<PoolMetrics>,
    state: ClientState,
}

impl Presence {
    pub fn set(&mut self, state: ClientState) {
        if state != self.state {
            self.metrics.clients[self.state.index()].dec();
            self.metrics.clients[state.index()].inc();
            self.state = state;
        }
    }
}

impl Drop for Presence {
    fn drop(&mut self) {
        self.metrics.clients[self.state.index()].dec();
    }
}

/// The class (first two characters) of the SQLSTATE in an ErrorResponse body, when it is
/// two ASCII letters or digits; anything else a server might send is not a label.
pub fn sqlstate_class(body: &[u8]) -> Option<[u8; 2]> {
    let mut rest = body;
    while let Some((&kind, after)) = rest.split_first() {
        if kind == 0 {
            return None;
        }
        let end = after.iter().position(|&b| b == 0)?;
        let value = &after[..end];
        if kind == b'C' {
            return class_of(value);
        }
        rest = &after[end + 1..];
    }
    None
}

fn class_of(sqlstate: &[u8]) -> Option<[u8; 2]> {
    match sqlstate {
        [a, b, ..] if a.is_ascii_alphanumeric() && b.is_ascii_alphanumeric() => {
            Some([a.to_ascii_uppercase(), b.to_ascii_uppercase()])
        }
        _ => None,
    }
}

/// Seconds, as histograms take them.
pub fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}
