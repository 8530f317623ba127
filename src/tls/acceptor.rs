//! Client-facing TLS: the rustls server config (certificate chain, client CA with CRLs,
//! minimum version, ALPN `postgresql`), and what logins need from it: the mode to enforce,
//! the SCRAM-SHA-256-PLUS authenticator bound to this certificate, the identity map.

use std::collections::BTreeMap;
use std::sync::Arc;

use pgwire::api::auth::sasl::scram::ScramServerAuth;
use rustls::server::WebPkiClientVerifier;
use tokio_rustls::TlsAcceptor;

use super::{ALPN_POSTGRESQL, TlsError, load_certs, load_crls, load_key, protocol_versions, provider, root_store};
use crate::config::{SslMode, TlsSettings};

/// Everything a client connection needs of pgate's TLS; rebuilt on reload.
pub struct ClientTls {
    pub mode: SslMode,
    pub acceptor: TlsAcceptor,
    /// SCRAM-SHA-256-PLUS, bound to this certificate; `None` when its signature algorithm
    /// has no tls-server-end-point hash.
    pub scram_plus: Option<ScramServerAuth>,
    pub identity_map: BTreeMap<String, Vec<String>>,
    /// The leaf certificate's subject, for logs.
    pub subject: String,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls").field("mode", &self.mode).field("subject", &self.subject).finish()
    }
}

impl ClientTls {
    /// Reads the files and builds the configuration; any problem is an error, so a bad
    /// reload keeps the previous certificates.
    pub fn load(settings: &TlsSettings) -> Result<ClientTls, TlsError> {
        let chain = load_certs(&settings.cert, "certificate")?;
        let key = load_key(&settings.key)?;
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(protocol_versions(settings.min_version))
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = match &settings.client_ca {
            Some(ca) => {
                let roots = Arc::new(root_store(ca, "client CA")?);
                let mut verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
                    .only_check_end_entity_revocation()
                    .allow_unknown_revocation_status();
                if let Some(crl) = &settings.crl {
                    verifier = verifier.with_crls(load_crls(crl)?);
                }
                if settings.mode < SslMode::VerifyCa {
                    verifier = verifier.allow_unauthenticated();
                }
                let verifier = verifier.build().map_err(|e| TlsError::Config(format!("client CA: {e}")))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let leaf = chain[0].clone();
        let mut config =
            builder.with_single_cert(chain, key).map_err(|e| TlsError::Config(format!("certificate and key: {e}")))?;
        config.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
        let scram_plus = super::binding::end_point_hash(&leaf).ok().map(|_| {
            let mut auth = ScramServerAuth::new();
            // pgwire hashes the first certificate of this PEM the same way.
            let pem = pem_of(&leaf);
            auth.configure_certificate(pem.as_bytes()).map(|()| auth)
        });
        let subject = super::identity::PeerIdentity::new(leaf.clone()).describe();
        Ok(ClientTls {
            mode: settings.mode,
            acceptor: TlsAcceptor::from(Arc::new(config)),
            scram_plus: scram_plus.and_then(Result::ok),
            identity_map: settings.identity_map.clone(),
            subject,
        })
    }
}

fn pem_of(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}
