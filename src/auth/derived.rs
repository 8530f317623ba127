//! Keys derived from server passwords, kept in memory so that a server login costs a few
//! HMACs instead of a PBKDF2. PostgreSQL keeps one salt and iteration count per role, so the
//! SCRAM ClientKey / ServerKey of (backend, server user, password, salt, iterations) serve
//! every later login of that role. The derivation itself runs on the blocking pool, a few
//! at a time, and once per key however many logins ask for it at the same moment.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use lru::LruCache;
use sha2::{Digest, Sha256};
use tokio::sync::{Semaphore, watch};

use super::passthrough::hmac;

/// Derived keys kept; past this the least recently used go (a pool re-derives on its next login).
const CAPACITY: usize = 1024;
/// PBKDF2 runs at once, each on a blocking-pool thread of its own.
const MAX_CONCURRENT_DERIVATIONS: usize = 2;
/// Iteration counts above this are refused: a server (or someone in its place) could
/// otherwise make each derivation take minutes. PostgreSQL's default is 4096.
pub const MAX_ITERATIONS: u32 = 10_000_000;

/// A SCRAM-SHA-256 ClientKey and ServerKey: what a login needs instead of the password.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramKeys {
    pub client_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl std::fmt::Debug for ScramKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScramKeys(<redacted>)")
    }
}

impl ScramKeys {
    /// RFC 5802's derivation: SaltedPassword = PBKDF2-HMAC-SHA-256(SASLprep(password)),
    /// ClientKey = HMAC(SaltedPassword, "Client Key"), ServerKey = HMAC(.., "Server Key").
    /// Expensive by design; call it off the relay threads.
    pub fn derive(password: &str, salt: &[u8], iterations: Iterations) -> Self {
        let mut salted = [0u8; 32];
        ring::pbkdf2::derive(ring::pbkdf2::PBKDF2_HMAC_SHA256, iterations.0, salt, &normalize(password), &mut salted);
        Self { client_key: hmac(&salted, b"Client Key"), server_key: hmac(&salted, b"Server Key") }
    }
}

/// An iteration count that was checked to be in 1..=[`MAX_ITERATIONS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Iterations(std::num::NonZeroU32);

impl Iterations {
    pub fn new(iterations: u32) -> Option<Self> {
        std::num::NonZeroU32::new(iterations).filter(|i| i.get() <= MAX_ITERATIONS).map(Self)
    }

    pub fn get(self) -> u32 {
        self.0.get()
    }
}

/// SASLprep as PostgreSQL applies it: a password that is not valid UTF-8, or that SASLprep
/// rejects, is used as it is.
fn normalize(password: &str) -> Vec<u8> {
    match stringprep::saslprep(password) {
        Ok(prepared) => prepared.into_owned().into_bytes(),
        Err(_) => password.as_bytes().to_vec(),
    }
}

/// A configured server password, with its md5 form computed once (md5 logins answer
/// `md5(md5(password || user) || salt)`, so the inner hash serves every login).
#[derive(Clone)]
pub struct ServerPassword {
    plain: Arc<str>,
    md5: Arc<str>,
}

impl ServerPassword {
    pub fn new(password: &str, user: &str) -> Self {
        let md5 = postgres_protocol::password::md5(password.as_bytes(), user);
        Self { plain: password.into(), md5: md5.into() }
    }

    pub fn plain(&self) -> &str {
        &self.plain
    }

    /// `md5` followed by the hex of md5(password || user), as pg_authid stores it.
    pub fn md5(&self) -> &str {
        &self.md5
    }
}

impl std::fmt::Debug for ServerPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerPassword(<redacted>)")
    }
}

/// What identifies one derivation. The password is kept only as a SHA-256 digest, so the
/// cache holds no second copy of it.
#[derive(Clone, PartialEq, Eq, Hash)]
struct KeyId {
    backend: String,
    user: String,
    password: [u8; 32],
    salt: Vec<u8>,
    iterations: Iterations,
}

/// The outcome of one derivation, once it is known.
type Outcome = Option<Result<ScramKeys, String>>;

#[derive(Debug, thiserror::Error)]
#[error("deriving the SCRAM keys failed: {0}")]
pub struct DeriveError(String);

/// The proxy's derived keys, shared by every pool.
pub struct DerivedKeys {
    entries: Mutex<LruCache<KeyId, watch::Receiver<Outcome>>>,
    running: Arc<Semaphore>,
    derivations: Arc<AtomicU64>,
}

impl std::fmt::Debug for DerivedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DerivedKeys").field("held", &self.len()).field("derivations", &self.derivations()).finish()
    }
}

impl Default for DerivedKeys {
    fn default() -> Self {
        Self {
            entries: Mutex::new(LruCache::new(NonZeroUsize::new(CAPACITY).expect("capacity is not zero"))),
            running: Arc::new(Semaphore::new(MAX_CONCURRENT_DERIVATIONS)),
            derivations: Arc::default(),
        }
    }
}

impl DerivedKeys {
    /// The keys for `password` with the server's `salt` and `iterations`: from memory, or
    /// derived once (later callers for the same keys wait for that one derivation).
    pub async fn scram(
        &self,
        backend: &str,
        user: &str,
        password: &str,
        salt: &[u8],
        iterations: Iterations,
    ) -> Result<ScramKeys, DeriveError> {
        let id = KeyId {
            backend: backend.to_owned(),
            user: user.to_owned(),
            password: Sha256::digest(password.as_bytes()).into(),
            salt: salt.to_vec(),
            iterations,
        };
        let mut outcome = self.entry(&id, password);
        let result = match outcome.wait_for(Option::is_some).await {
            Ok(done) => done.clone().expect("waited for Some"),
            Err(_) => Err("the derivation task ended without a result".to_owned()),
        };
        if result.is_err() {
            // Do not keep a failure: the next login tries again.
            self.lock().pop(&id);
        }
        result.map_err(DeriveError)
    }

    /// The entry for `id`, starting its derivation if there is none.
    fn entry(&self, id: &KeyId, password: &str) -> watch::Receiver<Outcome> {
        let mut entries = self.lock();
        if let Some(outcome) = entries.get(id) {
            return outcome.clone();
        }
        let (tx, rx) = watch::channel(None);
        entries.put(id.clone(), rx.clone());
        drop(entries);
        // A task of its own: the result is kept even if the login that asked gives up.
        let (running, counter) = (self.running.clone(), self.derivations.clone());
        let (password, salt, iterations) = (password.to_owned(), id.salt.clone(), id.iterations);
        tokio::spawn(async move {
            let result = match running.acquire_owned().await {
                Ok(_permit) => {
                    counter.fetch_add(1, Ordering::Relaxed);
                    tokio::task::spawn_blocking(move || ScramKeys::derive(&password, &salt, iterations))
                        .await
                        .map_err(|e| e.to_string())
                }
                Err(e) => Err(e.to_string()),
            };
            tx.send_replace(Some(result));
        });
        rx
    }

    /// PBKDF2 runs started so far (for tests and metrics).
    pub fn derivations(&self) -> u64 {
        self.derivations.load(Ordering::Relaxed)
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every key (a configuration reload may have changed passwords).
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<KeyId, watch::Receiver<Outcome>>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ScramVerifier;

    #[test]
    fn derived_keys_match_what_postgresql_stores() {
        let verifier = ScramVerifier::from_password("s3cret");
        let iterations = Iterations::new(verifier.iterations as u32).unwrap();
        let keys = ScramKeys::derive("s3cret", &verifier.salt, iterations);
        assert_eq!(keys.server_key, verifier.server_key);
        assert_eq!(Sha256::digest(&keys.client_key).as_slice(), verifier.stored_key.as_slice());
    }

    #[test]
    fn iteration_counts_are_bounded() {
        assert!(Iterations::new(0).is_none());
        assert!(Iterations::new(MAX_ITERATIONS + 1).is_none());
        assert_eq!(Iterations::new(4096).unwrap().get(), 4096);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_logins_at_once_derive_once() {
        let cache = Arc::new(DerivedKeys::default());
        let iterations = Iterations::new(4096).unwrap();
        let logins = (0..50).map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.scram("data", "alice", "pw", b"salt", iterations).await.unwrap() })
        });
        let keys: Vec<ScramKeys> = futures_join(logins).await;
        assert!(keys.windows(2).all(|w| w[0] == w[1]));
        assert_eq!(cache.derivations(), 1);
        // Another salt (the role's password was set again) is another derivation.
        cache.scram("data", "alice", "pw", b"other", iterations).await.unwrap();
        assert_eq!(cache.derivations(), 2);
        cache.clear();
        assert!(cache.is_empty());
    }

    async fn futures_join(handles: impl Iterator<Item = tokio::task::JoinHandle<ScramKeys>>) -> Vec<ScramKeys> {
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.unwrap());
        }
        out
    }
}
