//! Backend-facing TLS with libpq's sslmode meanings: `require` encrypts without checking
//! the server's certificate, `verify-ca` checks its chain (and CRLs) but not its name,
//! `verify-full` checks both. A client certificate may be presented.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, Error, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::{TlsError, load_certs, load_crls, load_key, protocol_versions, provider, root_store};
use crate::config::{BackendTlsSettings, SslMode};

/// The rustls client config for one backend, or `None` when its mode never uses TLS.
pub fn build(settings: &BackendTlsSettings) -> Result<Option<Arc<rustls::ClientConfig>>, TlsError> {
    if settings.mode == SslMode::Disable {
        return Ok(None);
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(protocol_versions(settings.min_version))
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let verifier: Arc<dyn ServerCertVerifier> = match (&settings.root_cert, settings.mode) {
        (Some(root), SslMode::VerifyCa | SslMode::VerifyFull) => {
            let mut v = WebPkiServerVerifier::builder_with_provider(
                Arc::new(root_store(root, "root certificate")?),
                provider(),
            );
            if let Some(crl) = &settings.crl {
                v = v.with_crls(load_crls(crl)?).allow_unknown_revocation_status().only_check_end_entity_revocation();
            }
            let webpki = v.build().map_err(|e| TlsError::Config(format!("root certificate: {e}")))?;
            match settings.mode {
                SslMode::VerifyFull => webpki,
                _ => Arc::new(LibpqVerifier { chain: Some(webpki), provider: provider() }),
            }
        }
        (None, SslMode::VerifyCa | SslMode::VerifyFull) => {
            return Err(TlsError::Config(format!("tls mode {:?} needs root_cert", settings.mode)));
        }
        _ => Arc::new(LibpqVerifier { chain: None, provider: provider() }),
    };
    let builder = builder.dangerous().with_custom_certificate_verifier(verifier);
    let config = match (&settings.cert, &settings.key) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(load_certs(cert, "client certificate")?, load_key(key)?)
            .map_err(|e| TlsError::Config(format!("client certificate and key: {e}")))?,
        (None, None) => builder.with_no_client_auth(),
        _ => return Err(TlsError::Config("give both cert and key, or neither".into())),
    };
    Ok(Some(Arc::new(config)))
}

/// libpq's weaker modes: `verify-ca` checks the chain and its revocation (`chain`) but not
/// the name; `require` (and `allow` / `prefer`) encrypts without authenticating the server.
/// Handshake signatures are checked either way.
#[derive(Debug)]
struct LibpqVerifier {
    chain: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for LibpqVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let Some(chain) = &self.chain else { return Ok(ServerCertVerified::assertion()) };
        // webpki checks the chain and CRLs before the name, so a name error means the
        // rest passed.
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(Error::InvalidCertificate(CertificateError::NotValidForName))
            | Err(Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. })) => {
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
