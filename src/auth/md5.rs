//! md5 password authentication, server side: the client answers
//! `"md5" + md5(hex(md5(password + user)) + salt)`.

use md5::{Digest, Md5};

use super::AuthError;

/// What an md5 login is checked against: the stored `md5...` hash, or nothing (always fails).
#[derive(Debug)]
pub struct Md5Check {
    stored: Option<String>,
    salt: [u8; 4],
}

impl Md5Check {
    pub fn new(stored_hash: String) -> Self {
        Self { stored: Some(stored_hash), salt: rand::random() }
    }

    pub fn for_password(password: &str, user: &str) -> Self {
        Self::new(postgres_protocol::password::md5(password.as_bytes(), user))
    }

    /// For unknown users: the exchange happens, and fails.
    pub fn impossible() -> Self {
        Self { stored: None, salt: rand::random() }
    }

    pub fn salt(&self) -> [u8; 4] {
        self.salt
    }

    pub fn verify(&self, user: &str, response: &[u8]) -> Result<(), AuthError> {
        let fail = || AuthError::PasswordFailed(user.to_owned());
        let stored = self.stored.as_deref().ok_or_else(fail)?;
        let inner = stored.strip_prefix("md5").ok_or_else(fail)?;
        let digest = Md5::new().chain_update(inner.as_bytes()).chain_update(self.salt).finalize();
        let expected = format!("md5{}", hex(&digest));
        if constant_time_eq(expected.as_bytes(), response) { Ok(()) } else { Err(fail()) }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_libpq_would_send() {
        let check = Md5Check::for_password("pw", "bob");
        let answer = postgres_protocol::authentication::md5_hash(b"bob", b"pw", check.salt());
        check.verify("bob", answer.as_bytes()).unwrap();
        let wrong = postgres_protocol::authentication::md5_hash(b"bob", b"nope", check.salt());
        assert!(check.verify("bob", wrong.as_bytes()).is_err());
        assert!(Md5Check::impossible().verify("bob", answer.as_bytes()).is_err());
    }
}
