//! Secrets fetched from a backend with `auth_query`, cached per (backend, user) for
//! `auth_query_ttl`. A login that fails against a cached secret drops it, so a changed
//! password is picked up at the next attempt.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::StoredPassword;
use crate::params::quote_literal;

/// (backend, user) -> when it was fetched, and what was found.
type Entries = HashMap<(String, String), (Instant, Option<StoredPassword>)>;

#[derive(Default)]
pub struct SecretCache {
    entries: Mutex<Entries>,
}

/// What the cache says about a user.
pub enum Cached {
    /// A fresh answer: the secret, or `None` for a user the backend does not have.
    Fresh(Option<StoredPassword>),
    Missing,
}

impl SecretCache {
    pub fn get(&self, backend: &str, user: &str, ttl: Duration) -> Cached {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get(&(backend.to_owned(), user.to_owned())) {
            Some((at, secret)) if at.elapsed() < ttl => Cached::Fresh(secret.clone()),
            _ => Cached::Missing,
        }
    }

    pub fn put(&self, backend: &str, user: &str, secret: Option<StoredPassword>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.insert((backend.to_owned(), user.to_owned()), (Instant::now(), secret));
    }

    /// After a failed login: the next one asks the backend again.
    pub fn forget(&self, backend: &str, user: &str) {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).remove(&(backend.to_owned(), user.to_owned()));
    }
}

/// The lookup query with the user name in place of `$1`, as a literal.
pub fn query_for(query: &str, user: &str) -> String {
    query.replace("$1", &quote_literal(user))
}

/// The secret from the lookup's first row (`user name, secret`); a NULL secret (no
/// password, or expired) is no secret.
pub fn secret_of(rows: &[Vec<Option<String>>]) -> Option<StoredPassword> {
    let secret = rows.first()?.get(1)?.as_deref()?;
    match StoredPassword::parse(secret) {
        StoredPassword::Plain(_) => None,
        stored => Some(stored),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_quotes_the_name() {
        assert_eq!(query_for("SELECT * FROM f($1)", "o'neil"), "SELECT * FROM f(E'o''neil')");
    }

    #[test]
    fn only_real_secrets_count() {
        let scram = crate::config::ScramVerifier::from_password("x");
        let text = format!(
            "SCRAM-SHA-256${}:{}${}:{}",
            scram.iterations,
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &scram.salt),
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &scram.stored_key),
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &scram.server_key)
        );
        assert!(matches!(secret_of(&[vec![Some("u".into()), Some(text)]]), Some(StoredPassword::Scram(_))));
        assert!(secret_of(&[vec![Some("u".into()), None]]).is_none());
        assert!(secret_of(&[vec![Some("u".into()), Some("plaintext".into())]]).is_none());
        assert!(secret_of(&[]).is_none());
    }
}
