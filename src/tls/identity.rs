//! Who a verified client certificate says the client is: its subject CN and DNS-name SANs,
//! matched against a user name directly or through `tls.identity_map`.

use std::collections::BTreeMap;

use rustls_pki_types::{CertificateDer, ServerName};
use x509_certificate::CapturedX509Certificate;

/// The identity of a client's verified certificate.
#[derive(Debug, Clone)]
pub struct PeerIdentity {
    der: CertificateDer<'static>,
    common_name: Option<String>,
}

impl PeerIdentity {
    pub fn new(der: CertificateDer<'static>) -> Self {
        let common_name = CapturedX509Certificate::from_der(der.to_vec()).ok().and_then(|c| c.subject_common_name());
        Self { der, common_name }
    }

    pub fn common_name(&self) -> Option<&str> {
        self.common_name.as_deref()
    }

    /// True when the certificate names `identity`: as its CN, or as a DNS-name SAN.
    pub fn is(&self, identity: &str) -> bool {
        if self.common_name.as_deref() == Some(identity) {
            return true;
        }
        let Ok(name) = ServerName::try_from(identity) else { return false };
        let Ok(cert) = webpki::EndEntityCert::try_from(&self.der) else { return false };
        cert.verify_is_valid_for_subject_name(&name).is_ok()
    }

    /// True when the certificate may log in as `user`: it names the user, or a mapped
    /// identity it names lists the user.
    pub fn may_be(&self, user: &str, map: &BTreeMap<String, Vec<String>>) -> bool {
        if map.is_empty() {
            return self.is(user);
        }
        map.iter().any(|(identity, users)| users.iter().any(|u| u == user) && self.is(identity))
    }

    /// For messages: what the certificate says.
    pub fn describe(&self) -> String {
        match &self.common_name {
            Some(cn) => format!("CN={cn}"),
            None => "a certificate without CN".into(),
        }
    }
}
