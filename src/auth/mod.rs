//! Client authentication as pure exchanges (the I/O is in `client::login`): which method a
//! login gets (`plan`), SCRAM-SHA-256 (`scram`) and md5 (`md5`). Unknown users and users
//! without a password go through the same exchange as real ones and fail the same way, so
//! a client cannot learn which users exist. Towards servers: keys derived once from
//! configured passwords (`derived`) or recovered from clients' logins (`passthrough`).

pub mod derived;
pub mod lookup;
pub mod md5;
pub mod passthrough;
pub mod scram;

use std::net::IpAddr;

use crate::config::{Auth, AuthMethod, ScramVerifier, StoredPassword, User};

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Also used for unknown users and users without a password.
    #[error("password authentication failed for user \"{0}\"")]
    PasswordFailed(String),
    #[error("connection from {0} is refused: auth.method is trust and this address is not in auth.trust_networks")]
    NotTrusted(IpAddr),
    #[error("SASL mechanism \"{0}\" is not supported; use SCRAM-SHA-256")]
    UnsupportedMechanism(String),
    #[error("malformed SCRAM message from the client")]
    MalformedScram,
    #[error("certificate authentication failed for user \"{user}\": {reason}")]
    Certificate { user: String, reason: String },
    #[error("TLS is required (tls.mode = {0}): connect with sslmode=require or stronger")]
    TlsRequired(&'static str),
    #[error("the client certificate ({presented}) does not identify user \"{user}\" (tls.mode = verify-full)")]
    IdentityMismatch { user: String, presented: String },
    #[error("channel binding failed: {0}")]
    ChannelBinding(String),
}

/// How one login is checked.
#[derive(Debug)]
pub enum Plan {
    Trust,
    Scram(ScramVerifier),
    Md5(md5::Md5Check),
    /// The client's verified certificate must name the user (directly or through the map).
    Cert,
    Refuse(AuthError),
}

impl Plan {
    /// The method's name in the audit log.
    pub fn name(&self) -> &'static str {
        match self {
            Plan::Trust => "trust",
            Plan::Scram(_) => "scram-sha-256",
            Plan::Md5(_) => "md5",
            Plan::Cert => "cert",
            Plan::Refuse(_) => "refused",
        }
    }
}

/// Chooses the exchange for `user` (None: not configured) connecting from `peer`;
/// `fetched` is the secret `auth_query` found for an unconfigured user; `mock_nonce` seeds
/// the fake salts of logins that must fail.
pub fn plan(
    auth: &Auth,
    user_name: &str,
    user: Option<&User>,
    fetched: Option<&StoredPassword>,
    peer: IpAddr,
    mock_nonce: &[u8; 32],
) -> Plan {
    if auth.is_trusted(peer) && user.is_some() {
        return Plan::Trust;
    }
    let secret = user.and_then(|u| u.password.as_ref()).or(fetched);
    let method = match user.and_then(|u| u.auth) {
        Some(method) => method,
        None if auth.needs_certificate(peer) => AuthMethod::Cert,
        None => auth.method,
    };
    match method {
        AuthMethod::Trust => Plan::Refuse(AuthError::NotTrusted(peer)),
        AuthMethod::Cert => Plan::Cert,
        AuthMethod::ScramSha256 => match (user, fetched) {
            (None, Some(StoredPassword::Scram(v))) => Plan::Scram(v.clone()),
            _ => Plan::Scram(scram_verifier(user, user_name, mock_nonce)),
        },
        AuthMethod::Md5 => match secret {
            Some(StoredPassword::Scram(v)) => Plan::Scram(v.clone()),
            Some(StoredPassword::Md5(hash)) => Plan::Md5(md5::Md5Check::new(hash.clone())),
            Some(StoredPassword::Plain(p)) => Plan::Md5(md5::Md5Check::for_password(p, user_name)),
            None => Plan::Md5(md5::Md5Check::impossible()),
        },
    }
}

fn scram_verifier(user: Option<&User>, user_name: &str, mock_nonce: &[u8; 32]) -> ScramVerifier {
    match user.and_then(|u| u.scram.clone()) {
        Some(v) => v,
        None => scram::mock_verifier(user_name, mock_nonce),
    }
}
