//! SCRAM ClientKey passthrough: when a client proves its password against a SCRAM secret
//! pgate fetched from the backend, pgate recovers the client's ClientKey
//! (ClientProof XOR ClientSignature) and later logs into the backend with it, computing
//! proofs for the server's challenges, so no password is stored anywhere in pgate.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::derived::ScramKeys;

/// What a server login needs instead of a password.
#[derive(Clone, PartialEq, Eq)]
pub enum Passthrough {
    /// From a SCRAM login: the client's key, and the secret's ServerKey to check the server.
    Scram(ScramKeys),
    /// From an md5 login: the stored `md5...` hash answers md5 challenges by itself.
    Md5(String),
}

impl std::fmt::Debug for Passthrough {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Passthrough::Scram(_) => "Passthrough::Scram(<redacted>)",
            Passthrough::Md5(_) => "Passthrough::Md5(<redacted>)",
        })
    }
}

pub(crate) fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

/// The ClientKey behind a verified client-final message, given the exchange's messages and
/// the secret's StoredKey. `None` when the proof does not match (it was checked already;
/// this is a second lock, not the first).
pub fn recover_client_key(
    client_first_bare: &str,
    server_first: &str,
    client_final: &str,
    stored_key: &[u8],
) -> Option<Vec<u8>> {
    let (without_proof, proof) = client_final.rsplit_once(",p=")?;
    let proof = STANDARD.decode(proof).ok()?;
    let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
    let signature = hmac(stored_key, auth_message.as_bytes());
    if proof.len() != signature.len() {
        return None;
    }
    let client_key = xor(&proof, &signature);
    (Sha256::digest(&client_key).as_slice() == stored_key).then_some(client_key)
}

/// The client side of SCRAM-SHA-256(-PLUS) towards a server, with a ClientKey instead of
/// a password: from a client's login (passthrough) or derived once from a configured
/// password (see `derived`).
pub struct KeyedScram {
    gs2_header: String,
    binding_data: Vec<u8>,
    nonce: String,
    state: KeyedState,
}

enum KeyedState {
    First,
    Final { auth_message: String, server_key: Vec<u8> },
}

/// The parts of a server-first message a client needs.
#[derive(Debug, PartialEq, Eq)]
pub struct ServerFirst<'a> {
    pub nonce: &'a str,
    pub salt: Vec<u8>,
    pub iterations: u32,
}

/// Parses `r=<nonce>,s=<salt>,i=<iterations>` (RFC 5802; a mandatory extension `m=` is
/// refused, as the RFC says).
pub fn parse_server_first(message: &str) -> Result<ServerFirst<'_>, KeyedScramError> {
    let fail = |why: &str| KeyedScramError(format!("server-first message {why}"));
    let mut parts = message.split(',');
    let mut field =
        |name: &str| parts.next().and_then(|p| p.strip_prefix(name)).ok_or_else(|| fail(&format!("without {name}")));
    let nonce = field("r=")?;
    let salt = STANDARD.decode(field("s=")?).map_err(|_| fail("with a salt that is not base64"))?;
    let iterations = field("i=")?.parse().map_err(|_| fail("with an iteration count that is not a number"))?;
    Ok(ServerFirst { nonce, salt, iterations })
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyedScramError(String);

impl KeyedScram {
    /// `binding`: the server certificate's tls-server-end-point hash, to use -PLUS; else
    /// `y` (`tls`: on TLS but the server offers no binding) or `n`.
    pub fn new(binding: Option<Vec<u8>>, tls: bool) -> Self {
        let gs2_header = match (&binding, tls) {
            (Some(_), _) => "p=tls-server-end-point,,",
            (None, true) => "y,,",
            (None, false) => "n,,",
        }
        .to_owned();
        let nonce: String = (0..24).map(|_| char::from(b'!' + rand::random_range(0..90u8)).to_string()).collect();
        let nonce = nonce.replace(',', "~");
        Self { gs2_header, binding_data: binding.unwrap_or_default(), nonce, state: KeyedState::First }
    }

    fn client_first_bare(&self) -> String {
        format!("n=,r={}", self.nonce)
    }

    pub fn client_first(&self) -> String {
        format!("{}{}", self.gs2_header, self.client_first_bare())
    }

    /// Answers the server-first message with the client-final one, proving `keys`.
    pub fn client_final(&mut self, server_first: &str, keys: &ScramKeys) -> Result<String, KeyedScramError> {
        let nonce = parse_server_first(server_first)?.nonce;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(KeyedScramError("server nonce does not extend the client's".into()));
        }
        let mut channel = self.gs2_header.as_bytes().to_vec();
        channel.extend_from_slice(&self.binding_data);
        let without_proof = format!("c={},r={nonce}", STANDARD.encode(channel));
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare());
        let stored_key = Sha256::digest(&keys.client_key);
        let proof = xor(&keys.client_key, &hmac(&stored_key, auth_message.as_bytes()));
        self.state = KeyedState::Final { auth_message, server_key: keys.server_key.clone() };
        Ok(format!("{without_proof},p={}", STANDARD.encode(proof)))
    }

    /// Checks the server's signature: a server that does not know the secret fails here.
    pub fn verify_server_final(&self, server_final: &str) -> Result<(), KeyedScramError> {
        let KeyedState::Final { auth_message, server_key } = &self.state else {
            return Err(KeyedScramError("server-final before server-first".into()));
        };
        let signature = server_final
            .strip_prefix("v=")
            .and_then(|v| STANDARD.decode(v).ok())
            .ok_or_else(|| KeyedScramError(format!("server says: {server_final}")))?;
        if signature == hmac(server_key, auth_message.as_bytes()) {
            Ok(())
        } else {
            Err(KeyedScramError("the server's signature does not match the secret".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::scram::{MECHANISM, ScramExchange};
    use crate::config::ScramVerifier;
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

    #[test]
    fn a_recovered_key_logs_in_where_the_password_would() {
        let verifier = ScramVerifier::from_password("s3cret");
        // A client logs into pgate with the password; pgate recovers its ClientKey.
        let mut client = ScramSha256::new(b"s3cret", ChannelBinding::unsupported());
        let client_first = String::from_utf8(client.message().to_vec()).unwrap();
        let (exchange, server_first) =
            ScramExchange::start(&verifier, "u", MECHANISM, client_first.as_bytes(), None).unwrap();
        client.update(server_first.as_bytes()).unwrap();
        let client_final = String::from_utf8(client.message().to_vec()).unwrap();
        exchange.finish(client_final.as_bytes()).unwrap();
        let bare = client_first.strip_prefix("n,,").unwrap();
        let key = recover_client_key(bare, &server_first, &client_final, &verifier.stored_key).unwrap();

        // pgate then answers a server holding the same secret, without the password.
        let keys = ScramKeys { client_key: key, server_key: verifier.server_key.clone() };
        let mut keyed = KeyedScram::new(None, false);
        let (server, server_first) =
            ScramExchange::start(&verifier, "u", MECHANISM, keyed.client_first().as_bytes(), None).unwrap();
        let client_final = keyed.client_final(&server_first, &keys).unwrap();
        let server_final = server.finish(client_final.as_bytes()).unwrap();
        keyed.verify_server_final(&server_final).unwrap();
    }

    #[test]
    fn a_wrong_key_is_refused_and_a_forged_server_is_caught() {
        let verifier = ScramVerifier::from_password("s3cret");
        let keys = ScramKeys { client_key: vec![7; 32], server_key: verifier.server_key.clone() };
        let mut keyed = KeyedScram::new(None, false);
        let (server, server_first) =
            ScramExchange::start(&verifier, "u", MECHANISM, keyed.client_first().as_bytes(), None).unwrap();
        let client_final = keyed.client_final(&server_first, &keys).unwrap();
        assert!(server.finish(client_final.as_bytes()).is_err());
        assert!(keyed.verify_server_final("v=AAAA").is_err());
    }

    #[test]
    fn server_first_messages() {
        let parsed = parse_server_first("r=abcXYZ,s=c2FsdA==,i=4096").unwrap();
        assert_eq!(parsed, ServerFirst { nonce: "abcXYZ", salt: b"salt".to_vec(), iterations: 4096 });
        for bad in ["", "m=ext,r=a,s=c2FsdA==,i=1", "r=a,s=!!,i=1", "r=a,s=c2FsdA==,i=many", "r=a,i=1"] {
            assert!(parse_server_first(bad).is_err(), "{bad}");
        }
    }
}
