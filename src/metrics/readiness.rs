//! Readiness for `/readyz`: listening, configuration loaded, not draining, and every
//! configured backend reached recently. A background task probes each backend every
//! `metrics.probe_interval`: a TCP connection, an SSLRequest and its one-byte answer, and
//! when the server says 'S' a TLS handshake (so PostgreSQL sees a clean close and logs
//! nothing), all within `metrics.probe_timeout`. A backend counts as reached while its last
//! success is at most three probe intervals old. Server logins are not needed for that:
//! a pool may sit idle for hours.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::{Backend, BackendTlsSettings, Snapshot, SslMode, TlsVersion};
use crate::protocol::codes::startup;
use crate::proxy::Shared;

/// A backend is reached while its last successful probe is this many intervals old at most.
const FRESH_INTERVALS: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("no answer within {0:?} (metrics.probe_timeout)")]
    Timeout(Duration),
    #[error("unexpected answer {0:?} to SSLRequest")]
    Answer(u8),
    #[error("TLS handshake failed: {0}")]
    Tls(String),
}

/// What is known of one backend.
#[derive(Debug, Clone, Default)]
pub struct Reach {
    /// The last probe succeeded.
    pub up: bool,
    pub last_ok: Option<(Instant, SystemTime)>,
    pub last_error: Option<String>,
}

/// The parts of readiness that are not in the configuration.
#[derive(Debug, Default)]
pub struct Readiness {
    listening: AtomicBool,
    backends: Mutex<HashMap<String, Reach>>,
}

impl Readiness {
    pub fn set_listening(&self, listening: bool) {
        self.listening.store(listening, Ordering::Release);
    }

    pub fn record(&self, backend: &str, result: Result<(), ProbeError>) {
        let mut backends = self.backends.lock().unwrap_or_else(|e| e.into_inner());
        let reach = backends.entry(backend.to_owned()).or_default();
        match result {
            Ok(()) => {
                reach.up = true;
                reach.last_ok = Some((Instant::now(), SystemTime::now()));
                reach.last_error = None;
            }
            Err(e) => {
                if reach.up || reach.last_error.is_none() {
                    tracing::warn!(backend, error = %e, "backend probe failed");
                }
                reach.up = false;
                reach.last_error = Some(e.to_string());
            }
        }
    }

    /// What is known of `backend` (default: never probed).
    pub fn reach(&self, backend: &str) -> Reach {
        self.backends.lock().unwrap_or_else(|e| e.into_inner()).get(backend).cloned().unwrap_or_default()
    }

    /// `Ok` when ready; else why not, in words for the probe's log.
    pub fn check(&self, config: &Snapshot, draining: bool) -> Result<(), String> {
        if draining {
            return Err("draining: pgate is shutting down".into());
        }
        if !self.listening.load(Ordering::Acquire) {
            return Err("not listening yet".into());
        }
        let fresh = config.metrics.probe_interval * FRESH_INTERVALS;
        let mut missing = Vec::new();
        for name in config.backends.keys() {
            let reach = self.reach(name);
            if reach.last_ok.is_none_or(|(at, _)| at.elapsed() > fresh) {
                let why = reach.last_error.unwrap_or_else(|| "not probed yet".into());
                missing.push(format!("backend {name} not reached in the last {fresh:?}: {why}"));
            }
        }
        if missing.is_empty() { Ok(()) } else { Err(missing.join("; ")) }
    }
}

/// Probes every configured backend now and then every `probe_interval`, for as long as it
/// runs (the proxy aborts it at shutdown). The configuration is read each round, so
/// reloads add and remove backends.
pub async fn probe_backends(shared: Arc<Shared>) {
    // For backends whose tls.mode is disable but whose server says 'S' anyway.
    let plain_connector = crate::tls::connector::build(&BackendTlsSettings {
        mode: SslMode::Require,
        root_cert: None,
        cert: None,
        key: None,
        crl: None,
        min_version: TlsVersion::Tls12,
    })
    .ok()
    .flatten();
    loop {
        let config = shared.config.load_full();
        // Side by side: a slow backend does not hold up the others.
        let mut probes = tokio::task::JoinSet::new();
        for backend in config.backends.values() {
            let connector = backend.connector.clone().or_else(|| plain_connector.clone());
            let shared = shared.clone();
            let backend = backend.clone();
            let timeout = config.metrics.probe_timeout;
            probes.spawn(async move {
                let result = match tokio::time::timeout(timeout, probe(&backend, connector)).await {
                    Ok(result) => result,
                    Err(_) => Err(ProbeError::Timeout(timeout)),
                };
                shared.readiness.record(&backend.name, result);
            });
        }
        while probes.join_next().await.is_some() {}
        let interval = config.metrics.probe_interval;
        drop(config);
        tokio::time::sleep(interval).await;
    }
}

/// One probe: TCP, SSLRequest, and TLS when offered.
async fn probe(backend: &Backend, connector: Option<Arc<rustls::ClientConfig>>) -> Result<(), ProbeError> {
    let mut tcp = TcpStream::connect(backend.address()).await.map_err(ProbeError::Connect)?;
    let mut request = bytes::BytesMut::new();
    crate::protocol::messages::ssl_request(&mut request);
    tcp.write_all(&request).await.map_err(ProbeError::Connect)?;
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer).await.map_err(ProbeError::Connect)?;
    match answer[0] {
        // The server waits for a StartupMessage; closing now is a quiet end for it.
        startup::REFUSE => Ok(()),
        startup::ACCEPT => {
            let Some(connector) = connector else { return Ok(()) };
            let name = ServerName::try_from(backend.host.clone()).map_err(|e| ProbeError::Tls(e.to_string()))?;
            let mut tls = tokio_rustls::TlsConnector::from(connector)
                .connect(name, tcp)
                .await
                .map_err(|e| ProbeError::Tls(e.to_string()))?;
            // close_notify, so the server reads a clean end of stream.
            let _ = tls.shutdown().await;
            Ok(())
        }
        other => Err(ProbeError::Answer(other)),
    }
}
