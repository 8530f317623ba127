//! The `tls-server-end-point` channel binding (RFC 5929): a hash of the server's leaf
//! certificate with the hash of its signature algorithm (SHA-256 for MD5 and SHA-1).

use ring::digest;
use x509_certificate::{CapturedX509Certificate, SignatureAlgorithm};

use super::TlsError;

pub fn end_point_hash(cert_der: &[u8]) -> Result<Vec<u8>, TlsError> {
    let cert =
        CapturedX509Certificate::from_der(cert_der.to_vec()).map_err(|e| TlsError::Certificate(e.to_string()))?;
    let algorithm = match cert.signature_algorithm() {
        Some(SignatureAlgorithm::RsaSha1 | SignatureAlgorithm::RsaSha256 | SignatureAlgorithm::EcdsaSha256) => {
            &digest::SHA256
        }
        Some(SignatureAlgorithm::RsaSha384 | SignatureAlgorithm::EcdsaSha384) => &digest::SHA384,
        Some(SignatureAlgorithm::RsaSha512) => &digest::SHA512,
        other => {
            return Err(TlsError::Certificate(format!(
                "signature algorithm {other:?} has no tls-server-end-point hash; channel binding is unavailable"
            )));
        }
    };
    Ok(digest::digest(algorithm, cert_der).as_ref().to_vec())
}
