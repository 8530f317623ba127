//! SCRAM-SHA-256 server side: pgwire's `ScramServerAuth` checks the proof against a
//! pg_authid-style verifier. pgate adds the mock verifier for users that cannot log in.

use pgwire::api::auth::sasl::scram::{ScramSecret, ScramServerAuth, ScramServerAuthWaitingForClientFinal};
use pgwire::error::PgWireError;
use sha2::{Digest, Sha256};

use super::AuthError;
use crate::config::ScramVerifier;

pub const MECHANISM: &str = "SCRAM-SHA-256";
/// With `tls-server-end-point` channel binding; offered over TLS only.
pub const MECHANISM_PLUS: &str = "SCRAM-SHA-256-PLUS";

/// The server side of one SCRAM exchange, between client-first and client-final.
pub struct ScramExchange {
    waiting: ScramServerAuthWaitingForClientFinal,
    user: String,
    /// For ClientKey recovery: the client-first message without its gs2 header, the
    /// server-first message, and the secret's StoredKey.
    client_first_bare: String,
    server_first: String,
    stored_key: Vec<u8>,
}

impl ScramExchange {
    /// Checks the client-first message; returns the exchange and the server-first message.
    /// `bound` is the authenticator bound to the TLS certificate when the client is on
    /// TLS and -PLUS was offered: it then also refuses a client that claims the server
    /// cannot bind (the downgrade RFC 5802 forbids).
    pub fn start(
        verifier: &ScramVerifier,
        user: &str,
        mechanism: &str,
        client_first: &[u8],
        bound: Option<&ScramServerAuth>,
    ) -> Result<(Self, String), AuthError> {
        let plain = ScramServerAuth::new();
        let authenticator = match (mechanism, bound) {
            (MECHANISM, Some(bound)) | (MECHANISM_PLUS, Some(bound)) => bound,
            (MECHANISM, None) => &plain,
            _ => return Err(AuthError::UnsupportedMechanism(mechanism.to_owned())),
        };
        let secret = ScramSecret::Verifier {
            salt: verifier.salt.clone(),
            iterations: verifier.iterations,
            stored_key: verifier.stored_key.clone(),
            server_key: verifier.server_key.clone(),
        };
        let (server_first, waiting) =
            authenticator.on_client_first_message_with_secret(client_first, secret).map_err(|e| map_error(e, user))?;
        let client_first = String::from_utf8_lossy(client_first);
        // The gs2 header is "<flag>,<authzid>,"; the bare message follows it.
        let client_first_bare = client_first.splitn(3, ',').nth(2).unwrap_or_default().to_owned();
        let exchange = Self {
            waiting,
            user: user.to_owned(),
            client_first_bare,
            server_first: server_first.clone(),
            stored_key: verifier.stored_key.clone(),
        };
        Ok((exchange, server_first))
    }

    /// Checks the client proof; returns the server-final message on success.
    pub fn finish(self, client_final: &[u8]) -> Result<String, AuthError> {
        self.waiting.on_client_final_message(client_final).map_err(|e| map_error(e, &self.user))
    }

    /// Like [`Self::finish`], also returning the client's ClientKey for passthrough.
    pub fn finish_with_key(self, client_final: &[u8]) -> Result<(String, Vec<u8>), AuthError> {
        let text = String::from_utf8_lossy(client_final).into_owned();
        let (bare, server_first, stored_key) =
            (self.client_first_bare.clone(), self.server_first.clone(), self.stored_key.clone());
        let user = self.user.clone();
        let server_final = self.finish(client_final)?;
        let key = super::passthrough::recover_client_key(&bare, &server_first, &text, &stored_key)
            .ok_or(AuthError::PasswordFailed(user))?;
        Ok((server_final, key))
    }
}

fn map_error(e: PgWireError, user: &str) -> AuthError {
    match e {
        PgWireError::InvalidPassword(_) => AuthError::PasswordFailed(user.to_owned()),
        _ => AuthError::MalformedScram,
    }
}

/// A verifier no password matches, with a salt that is stable per user name for a given
/// `nonce` (one per process, as PostgreSQL's mock authentication), so probing reveals nothing.
pub fn mock_verifier(user: &str, nonce: &[u8; 32]) -> ScramVerifier {
    let salt = Sha256::new().chain_update(nonce).chain_update(user.as_bytes()).finalize();
    ScramVerifier {
        iterations: 4096,
        salt: salt[..16].to_vec(),
        stored_key: rand::random::<[u8; 32]>().to_vec(),
        server_key: rand::random::<[u8; 32]>().to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

    fn run(password: &str, verifier: &ScramVerifier) -> Result<(), AuthError> {
        let mut client = ScramSha256::new(password.as_bytes(), ChannelBinding::unrequested());
        let (exchange, server_first) = ScramExchange::start(verifier, "alice", MECHANISM, client.message(), None)?;
        client.update(server_first.as_bytes()).unwrap();
        let server_final = exchange.finish(client.message())?;
        client.finish(server_final.as_bytes()).unwrap();
        Ok(())
    }

    #[test]
    fn right_password_passes_wrong_fails() {
        let v = ScramVerifier::from_password("s3cret");
        run("s3cret", &v).unwrap();
        assert!(matches!(run("wrong", &v), Err(AuthError::PasswordFailed(_))));
    }

    #[test]
    fn mock_verifier_rejects_everything_with_a_stable_salt() {
        let nonce = [7; 32];
        let v = mock_verifier("ghost", &nonce);
        assert!(matches!(run("", &v), Err(AuthError::PasswordFailed(_))));
        assert_eq!(mock_verifier("ghost", &nonce).salt, v.salt);
        assert_ne!(mock_verifier("other", &nonce).salt, v.salt);
    }

    #[test]
    fn garbage_is_malformed() {
        let v = mock_verifier("x", &[0; 32]);
        assert!(matches!(ScramExchange::start(&v, "x", MECHANISM, b"nonsense", None), Err(AuthError::MalformedScram)));
        assert!(matches!(
            ScramExchange::start(&v, "x", "PLAIN", b"n,,n=,r=abc", None),
            Err(AuthError::UnsupportedMechanism(_))
        ));
    }
}
