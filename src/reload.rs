//! Configuration reload (SIGHUP and the console's RELOAD): the file is read and validated,
//! the client TLS certificates and a new audit sink with it, and only then is anything
//! changed; pools are brought in line one by one (`pool::reload`), the audit log takes its
//! new settings (`audit::reload`).

use std::sync::Arc;

use crate::config::ConfigError;
use crate::pool::PoolChange;
use crate::proxy::Shared;
use crate::tls::{ClientTls, TlsError};

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("tls: {0}")]
    Tls(#[from] TlsError),
    #[error("audit: {0}")]
    Audit(#[from] crate::audit::AuditError),
    #[error("the reload task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Reads the configuration file in force again and applies it; an invalid file (or
/// certificate) changes nothing. Logged and counted either way.
pub async fn reload(shared: &Arc<Shared>) -> Result<Vec<PoolChange>, ReloadError> {
    let result = read_and_apply(shared).await;
    shared.metrics.config_reload(result.is_ok());
    if let Err(e) = &result {
        tracing::error!(error = %e, "configuration reload failed; keeping the running configuration");
    }
    result
}

async fn read_and_apply(shared: &Arc<Shared>) -> Result<Vec<PoolChange>, ReloadError> {
    let path = shared.config.load().source.clone();
    // Validation derives SCRAM secrets of plain passwords: off the relay threads.
    let snapshot = tokio::task::spawn_blocking(move || crate::config::load(&path)).await??;
    let tls = snapshot.tls.as_ref().map(ClientTls::load).transpose()?;
    // A new audit sink is opened here, so one that cannot be fails the reload.
    let audit = shared.prepare_audit(&snapshot)?;
    let changes = shared.apply_config(snapshot);
    audit.apply();
    shared.set_client_tls(tls.map(Arc::new));
    Ok(changes)
}

/// Reloads on every SIGHUP, for as long as the process runs.
pub async fn on_sighup(shared: Arc<Shared>) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        return tracing::error!("cannot watch SIGHUP; the configuration will not be reloaded");
    };
    while hup.recv().await.is_some() {
        tracing::info!("reloading the configuration (SIGHUP)");
        let _ = reload(&shared).await;
    }
}
