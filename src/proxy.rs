//! The proxy: the listener and accept loop, the state every client shares, the client
//! limit, the pool janitor, the metrics endpoint and backend probes, and graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::cancel::CancelRegistry;
use crate::client::{self, Admission};
use crate::config::Snapshot;
use crate::pool::Pools;
use crate::tls::{ClientTls, TlsError};

/// Query texts whose classification is kept (prepared statements classify once).
const CLASSIFIER_CACHE: usize = 10_000;

/// How long a shutdown waits for the audit log to be written out.
const AUDIT_FLUSH_TIMEOUT: Duration = Duration::from_secs(10);
/// The same, when a second signal asked pgate to stop at once.
const AUDIT_FLUSH_TIMEOUT_HURRIED: Duration = Duration::from_secs(1);

/// How often the janitor looks at the pools.
const JANITOR_PERIOD: Duration = Duration::from_secs(1);

/// State shared by all client tasks.
pub struct Shared {
    pub config: ArcSwap<Snapshot>,
    /// Client-facing TLS, swapped whole on reload so a handshake and its channel binding
    /// see the same certificate.
    tls: ArcSwapOption<ClientTls>,
    pub pools: Pools,
    pub cancels: Arc<CancelRegistry>,
    /// Seeds the fake SCRAM salts of logins that must fail.
    pub mock_nonce: [u8; 32],
    /// The metrics registry and its families.
    pub metrics: crate::metrics::Metrics,
    /// Listening and backend probes, for /readyz.
    pub readiness: crate::metrics::Readiness,
    pub started: std::time::SystemTime,
    /// Secrets `auth_query` fetched.
    pub secrets: crate::auth::lookup::SecretCache,
    /// SCRAM keys derived from configured server passwords (memory only, never logged).
    pub derived_keys: Arc<crate::auth::derived::DerivedKeys>,
    /// Statement classifications by text, for workspace rules and the audit log.
    pub classifier: crate::sql::classify::ClassifierCache,
    /// The audit log, when `[audit]` is configured.
    pub auditor: Option<Arc<crate::audit::Auditor>>,
    /// Clients per workspace, for their max_client_connections.
    pub workspace_clients: crate::access::WorkspaceClients,
    /// The admin console: the registry of clients, pauses, SHUTDOWN.
    pub console: crate::admin::Console,
    clients: AtomicUsize,
    shutdown: watch::Sender<bool>,
}

impl Shared {
    /// Builds the shared state; the audit log's writer starts on the current runtime.
    pub fn new(snapshot: Snapshot) -> Result<Arc<Self>, ProxyError> {
        let tls = snapshot.tls.as_ref().map(ClientTls::load).transpose()?.map(Arc::new);
        let auditor = snapshot.audit.clone().map(crate::audit::Auditor::start).transpose()?;
        Ok(Arc::new(Self {
            tls: ArcSwapOption::new(tls),
            config: ArcSwap::from_pointee(snapshot),
            pools: Pools::default(),
            cancels: Arc::default(),
            mock_nonce: rand::random(),
            metrics: crate::metrics::Metrics::new()?,
            readiness: Default::default(),
            started: std::time::SystemTime::now(),
            secrets: Default::default(),
            derived_keys: Arc::default(),
            classifier: crate::sql::classify::ClassifierCache::new(CLASSIFIER_CACHE),
            auditor,
            workspace_clients: Default::default(),
            console: Default::default(),
            clients: AtomicUsize::new(0),
            shutdown: watch::Sender::new(false),
        }))
    }

    /// The client-facing TLS in force now (`None`: TLS is disabled).
    pub fn client_tls(&self) -> Option<Arc<ClientTls>> {
        self.tls.load_full()
    }

    /// Makes a new, validated configuration the one in force. Workspaces' rules and pinned
    /// settings apply to every session's next statement and transaction, users and routes to
    /// the next login. Pools are brought in line one by one (see `pool::reload`): those
    /// that did not change keep their servers; the others get new servers as the old ones
    /// come free. Returns what happened to the pools.
    pub fn apply_config(&self, snapshot: Snapshot) -> Vec<crate::pool::PoolChange> {
        self.derived_keys.clear();
        let changes = self.pools.reconfigure(&snapshot, &self.derived_keys);
        self.config.store(Arc::new(snapshot));
        for change in &changes {
            tracing::info!(%change, "pool reconfigured");
        }
        tracing::info!(pools_changed = changes.len(), "configuration reloaded");
        changes
    }

    /// The audit log's part of a reload, checked before anything changes: a new sink file
    /// is opened (created if missing) here, so one that cannot be fails the reload. Apply
    /// the result after [`Self::apply_config`]; see [`crate::audit::reload`].
    pub fn prepare_audit(&self, next: &Snapshot) -> Result<crate::audit::AuditChange, crate::audit::AuditError> {
        crate::audit::AuditChange::prepare(self.auditor.as_ref(), next.audit.as_ref())
    }

    /// New handshakes use `tls` (`None`: TLS turned off); established connections keep
    /// theirs.
    pub fn set_client_tls(&self, tls: Option<Arc<ClientTls>>) {
        if let Some(tls) = &tls {
            tracing::info!(certificate = %tls.subject, "TLS certificates loaded");
        }
        self.tls.store(tls);
    }

    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Connected clients (logged in or logging in) that hold a slot.
    pub fn client_count(&self) -> usize {
        self.clients.load(Ordering::Relaxed)
    }

    /// Takes a place under `max_client_connections` for a new connection, if one is left.
    pub fn admit(self: &Arc<Self>) -> Admission {
        let max = self.config.load().listen.max_client_connections;
        let before = self.clients.fetch_add(1, Ordering::AcqRel);
        let slot = ClientSlot(self.clone());
        if before >= max {
            drop(slot);
            return Admission::OverLimit(max);
        }
        Admission::Admitted(slot)
    }
}

/// One place under `max_client_connections`, given back on drop.
pub struct ClientSlot(Arc<Shared>);

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("cannot listen on {address}: {source}")]
    Bind { address: String, source: std::io::Error },
    #[error("tls: {0}")]
    Tls(#[from] TlsError),
    #[error("audit: {0}")]
    Audit(#[from] crate::audit::AuditError),
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
}

pub struct Proxy {
    shared: Arc<Shared>,
    listener: TcpListener,
    /// The HTTP endpoint (`None`: metrics.address is off).
    metrics: Option<TcpListener>,
}

impl Proxy {
    /// Binds the listen address of `snapshot`, and its metrics address.
    pub async fn bind(snapshot: Snapshot) -> Result<Self, ProxyError> {
        let address = snapshot.listen.address.clone();
        let metrics_address = snapshot.metrics.address.clone();
        let shared = Shared::new(snapshot)?;
        let listener = TcpListener::bind(&address).await.map_err(|source| ProxyError::Bind { address, source })?;
        let metrics = match metrics_address {
            Some(address) => Some(crate::metrics::bind(&address).await?),
            None => None,
        };
        Ok(Self { shared, listener, metrics })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Where /metrics, /healthz and /readyz are served (`None`: the endpoint is off).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Serves until `stop` completes, then drains: idle clients are told 57P01 at once,
    /// clients inside a transaction finish it first, and after `shutdown_timeout` the
    /// rest are cut off.
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) {
        self.run_until(stop, std::future::pending()).await
    }

    /// Like [`Self::run`]; when `hurry` completes during the drain, the remaining clients
    /// are cut off at once and the audit log gets a short deadline.
    pub async fn run_until(
        self,
        stop: impl std::future::Future<Output = ()>,
        hurry: impl std::future::Future<Output = ()>,
    ) {
        // An admin's SHUTDOWN stops pgate like a signal does.
        let stop = crate::admin::until_stopped(self.shared.clone(), stop);
        let janitor = tokio::spawn(janitor(self.shared.clone()));
        let probes = tokio::spawn(crate::metrics::probe_backends(self.shared.clone()));
        if let Some(address) = self.metrics_addr() {
            tracing::info!(%address, "metrics endpoint listening (/metrics, /healthz, /readyz)");
        }
        let Proxy { shared, listener, metrics } = self;
        let http = metrics.map(|endpoint| tokio::spawn(crate::metrics::serve(endpoint, shared.clone())));
        shared.readiness.set_listening(true);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => spawn_client(&shared, stream, peer),
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::error!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                _ = &mut stop => break,
            }
        }
        // Not ready from this moment: load balancers stop sending new clients.
        shared.shutdown.send_replace(true);
        shared.console.clients.shut_down_all();
        shared.readiness.set_listening(false);
        drop(listener);
        let hurried = drain(&shared, hurry).await;
        janitor.abort();
        probes.abort();
        shared.pools.close_all();
        if let Some(auditor) = &shared.auditor {
            let timeout = if hurried { AUDIT_FLUSH_TIMEOUT_HURRIED } else { AUDIT_FLUSH_TIMEOUT };
            auditor.flush_and_close(timeout).await;
        }
        if let Some(http) = http {
            http.abort();
        }
    }
}

fn spawn_client(shared: &Arc<Shared>, stream: tokio::net::TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    tokio::spawn(client_task(shared.clone(), stream, peer));
}

/// All that one client's task runs: its place under `max_client_connections` (taken now),
/// its connection, and the containment of a panic. Public so a test can hold its size to
/// account: every connected client costs this much. The containment's future is the
/// task's whole state (no async block around it keeps copies of its arguments), which
/// keeps tokio's allocation for the task at 256 bytes.
pub fn client_task(
    shared: Arc<Shared>,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
) -> impl std::future::Future<Output = client::Ended> + Send {
    let admission = shared.admit();
    let serving = Box::pin(client::serve(stream, peer, shared.clone(), admission));
    client::contain(serving, peer, SharedMetrics(shared))
}

/// The metrics of `Shared`, reached through an owning handle.
struct SharedMetrics(Arc<Shared>);

impl std::ops::Deref for SharedMetrics {
    type Target = crate::metrics::Metrics;

    fn deref(&self) -> &Self::Target {
        &self.0.metrics
    }
}

/// Waits for the clients to finish, up to `shutdown_timeout` or until `hurry` completes;
/// returns true when hurried.
async fn drain(shared: &Shared, hurry: impl std::future::Future<Output = ()>) -> bool {
    let timeout = shared.config.load().listen.shutdown_timeout;
    tracing::info!(clients = shared.client_count(), ?timeout, "shutting down");
    let deadline = tokio::time::Instant::now() + timeout;
    // Clients held by PAUSE would wait out shutdown_timeout: they run their transaction and
    // are then told 57P01, like the rest.
    shared.pools.all().iter().filter(|p| p.is_paused()).for_each(|p| p.resume());
    tokio::pin!(hurry);
    while shared.client_count() > 0 && tokio::time::Instant::now() < deadline {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            _ = &mut hurry => {
                tracing::warn!(clients = shared.client_count(), "asked again to stop: closing the remaining clients now");
                return true;
            }
        }
    }
    let left = shared.client_count();
    if left > 0 {
        tracing::warn!(clients = left, "shutdown_timeout passed; closing the remaining clients");
    }
    false
}

async fn janitor(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(JANITOR_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for pool in shared.pools.all() {
            pool.maintain();
        }
    }
}

/// Reopens the audit log file on every SIGUSR1 (after logrotate moved it away).
pub async fn reopen_audit_on_sigusr1(shared: Arc<Shared>) {
    let Some(auditor) = shared.auditor.clone() else { return };
    let Ok(mut usr1) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1()) else {
        return tracing::error!("cannot watch SIGUSR1; the audit log will not be reopened on request");
    };
    while usr1.recv().await.is_some() {
        tracing::info!("reopening the audit log (SIGUSR1)");
        auditor.reopen();
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn stop_signal() {
    stop_signals().wait(1).await
}

/// SIGINT and SIGTERM, counted: the first asks for a graceful drain, a second one for an
/// immediate stop.
#[derive(Clone)]
pub struct StopSignals(watch::Receiver<u32>);

impl StopSignals {
    /// Resolves once `n` stop signals have arrived.
    pub async fn wait(mut self, n: u32) {
        // The sender lives as long as its task, which runs for the process's life.
        let _ = self.0.wait_for(|&count| count >= n).await;
    }

    /// Resolves at the first stop signal after it is first polled: the drain polls it once
    /// it has begun, whether a signal or the console's SHUTDOWN began it.
    pub async fn next(mut self) {
        let seen = *self.0.borrow_and_update();
        let _ = self.0.wait_for(|&count| count > seen).await;
    }
}

/// Starts counting SIGINT and SIGTERM (on the current runtime).
pub fn stop_signals() -> StopSignals {
    let (tx, rx) = watch::channel(0u32);
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| tracing::error!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops pgate"))
            .ok();
        let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            .map_err(|e| tracing::error!(error = %e, "cannot watch SIGINT"))
            .ok();
        loop {
            let term_recv = async {
                match term.as_mut() {
                    Some(term) => term.recv().await,
                    None => std::future::pending().await,
                }
            };
            let int_recv = async {
                match int.as_mut() {
                    Some(int) => int.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = term_recv => {}
                _ = int_recv => {}
            }
            tx.send_modify(|count| *count += 1);
        }
    });
    StopSignals(rx)
}
