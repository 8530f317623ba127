//! TLS on both sides with rustls (ring provider only): the client-facing acceptor with
//! client certificates and CRLs (`acceptor`), the backend-facing connector per backend with
//! libpq's sslmode meanings (`connector`), the peer's certificate identity (`identity`) and
//! the `tls-server-end-point` channel-binding hash (`binding`).

pub mod acceptor;
pub mod binding;
pub mod connector;
pub mod identity;

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

pub use acceptor::ClientTls;
pub use identity::PeerIdentity;

/// The ALPN protocol PostgreSQL 17 uses for direct TLS.
pub const ALPN_POSTGRESQL: &[u8] = b"postgresql";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {reason}")]
    File { what: &'static str, path: String, reason: String },
    #[error("{0}")]
    Config(String),
    #[error("certificate: {0}")]
    Certificate(String),
}

/// The one crypto provider pgate builds every TLS config with.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

static TLS13_ONLY: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];

pub fn protocol_versions(min: crate::config::TlsVersion) -> &'static [&'static rustls::SupportedProtocolVersion] {
    match min {
        crate::config::TlsVersion::Tls12 => rustls::ALL_VERSIONS,
        crate::config::TlsVersion::Tls13 => &TLS13_ONLY,
    }
}

fn file_error(what: &'static str, path: &Path, reason: impl ToString) -> TlsError {
    TlsError::File { what, path: path.display().to_string(), reason: reason.to_string() }
}

pub fn load_certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(what, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(what, path, e))?;
    if certs.is_empty() {
        return Err(file_error(what, path, "no PEM certificate in it"));
    }
    Ok(certs)
}

pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| file_error("private key", path, e))
}

pub fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    CertificateRevocationListDer::pem_file_iter(path)
        .map_err(|e| file_error("CRL", path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error("CRL", path, e))
}

pub fn root_store(path: &Path, what: &'static str) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in load_certs(path, what)? {
        roots.add(cert).map_err(|e| file_error(what, path, e))?;
    }
    Ok(roots)
}
