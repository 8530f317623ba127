//! Certificates made at test time: a CA with server and client certificates, a CRL, an
//! expired certificate, and a second CA whose certificates pgate must not trust.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer, DnType, IsCa, KeyIdMethod,
    KeyPair, KeyUsagePurpose, RevokedCertParams, SerialNumber, date_time_ymd,
};

/// All files live in `dir`; every `*_cert` has a `*_key` beside it.
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// `<name>.crt` / `<name>.key`
    pub fn cert(&self, name: &str) -> String {
        self.path(&format!("{name}.crt")).display().to_string()
    }

    pub fn key(&self, name: &str) -> String {
        self.path(&format!("{name}.key")).display().to_string()
    }
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    p
}

fn leaf_params(cn: &str, sans: &[&str], serial: u64) -> CertificateParams {
    let mut p = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.serial_number = Some(SerialNumber::from(serial));
    p.not_before = date_time_ymd(2024, 1, 1);
    p.not_after = date_time_ymd(2099, 1, 1);
    p
}

fn write(dir: &Path, name: &str, cert_pem: &str, key: &KeyPair) {
    std::fs::write(dir.join(format!("{name}.crt")), cert_pem).unwrap();
    let key_path = dir.join(format!("{name}.key"));
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Makes the test PKI in a fresh directory:
/// - `ca`: the CA pgate trusts for clients and servers; `ca.crl` revokes `revoked`.
/// - `server` (CN and SAN `localhost`), `server2` (the same, a new key: for reloads).
/// - clients `alice`, `bob`, `reporting` (CN `svc-reporting`), `revoked` (CN alice),
///   `expired` (CN alice, expired in 2021); `stranger` (CN alice) from `other-ca`.
pub fn make_pki() -> Pki {
    let dir = tempfile::Builder::new().prefix("pgate-pki-").tempdir().unwrap().keep();
    let ca_key = KeyPair::generate().unwrap();
    let ca = CertifiedIssuer::self_signed(ca_params("pgate test CA"), ca_key).unwrap();
    std::fs::write(dir.join("ca.crt"), ca.pem()).unwrap();

    let leaves: &[(&str, &str, &[&str], u64)] = &[
        ("server", "localhost", &["localhost"], 10),
        ("server2", "localhost", &["localhost"], 11),
        ("alice", "alice", &[], 20),
        ("bob", "bob", &[], 21),
        ("reporting", "svc-reporting", &[], 22),
        ("revoked", "alice", &[], 666),
    ];
    for (name, cn, sans, serial) in leaves {
        let key = KeyPair::generate().unwrap();
        let cert = leaf_params(cn, sans, *serial).signed_by(&key, &ca).unwrap();
        write(&dir, name, &cert.pem(), &key);
    }
    let key = KeyPair::generate().unwrap();
    let mut expired = leaf_params("alice", &[], 30);
    expired.not_before = date_time_ymd(2020, 1, 1);
    expired.not_after = date_time_ymd(2021, 1, 1);
    write(&dir, "expired", &expired.signed_by(&key, &ca).unwrap().pem(), &key);

    let crl = CertificateRevocationListParams {
        this_update: date_time_ymd(2024, 1, 1),
        next_update: date_time_ymd(2099, 1, 1),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: vec![RevokedCertParams {
            serial_number: SerialNumber::from(666u64),
            revocation_time: date_time_ymd(2024, 6, 1),
            reason_code: None,
            invalidity_date: None,
        }],
        key_identifier_method: KeyIdMethod::Sha256,
    };
    std::fs::write(dir.join("ca.crl"), crl.signed_by(&ca).unwrap().pem().unwrap()).unwrap();

    let other_key = KeyPair::generate().unwrap();
    let other = CertifiedIssuer::self_signed(ca_params("some other CA"), other_key).unwrap();
    std::fs::write(dir.join("other-ca.crt"), other.pem()).unwrap();
    let key = KeyPair::generate().unwrap();
    write(&dir, "stranger", &leaf_params("alice", &[], 40).signed_by(&key, &other).unwrap().pem(), &key);
    let key = KeyPair::generate().unwrap();
    write(
        &dir,
        "other-server",
        &leaf_params("localhost", &["localhost"], 41).signed_by(&key, &other).unwrap().pem(),
        &key,
    );

    // psql reads client keys as the user running it; the tests run as that user.
    Pki { dir }
}
