//! Secrets: `${ENV}` expansion, `*_file` reading, and the stored password forms
//! (SCRAM-SHA-256 verifier, md5 hash, plain text). Secrets are never printed.

use std::fmt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// A SCRAM-SHA-256 verifier as stored in `pg_authid`:
/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramVerifier {
    pub iterations: usize,
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl ScramVerifier {
    pub fn parse(s: &str) -> Option<Self> {
        let rest = s.strip_prefix("SCRAM-SHA-256$")?;
        let (iter_salt, keys) = rest.split_once('$')?;
        let (iterations, salt) = iter_salt.split_once(':')?;
        let (stored, server) = keys.split_once(':')?;
        let verifier = ScramVerifier {
            iterations: iterations.parse().ok().filter(|&i| i > 0)?,
            salt: STANDARD.decode(salt).ok()?,
            stored_key: STANDARD.decode(stored).ok()?,
            server_key: STANDARD.decode(server).ok()?,
        };
        (verifier.stored_key.len() == 32 && verifier.server_key.len() == 32).then_some(verifier)
    }

    /// A fresh verifier for a plain password, as PostgreSQL would store it.
    pub fn from_password(password: &str) -> Self {
        let encoded = postgres_protocol::password::scram_sha_256(password.as_bytes());
        // postgres-protocol emits exactly the format parsed above.
        Self::parse(&encoded).expect("postgres-protocol produced a well-formed SCRAM secret")
    }
}

impl fmt::Debug for ScramVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ScramVerifier(iterations={}, <redacted>)", self.iterations)
    }
}

/// How a client's password is stored in the config.
#[derive(Clone)]
pub enum StoredPassword {
    Scram(ScramVerifier),
    /// `md5` followed by 32 hex digits of md5(password || user name).
    Md5(String),
    Plain(String),
}

impl StoredPassword {
    pub fn parse(s: &str) -> Self {
        if s.starts_with("SCRAM-SHA-256$")
            && let Some(v) = ScramVerifier::parse(s)
        {
            return StoredPassword::Scram(v);
        }
        if is_md5_secret(s) {
            return StoredPassword::Md5(s.to_owned());
        }
        StoredPassword::Plain(s.to_owned())
    }

    /// True for text that starts like a SCRAM secret but does not parse as one.
    pub fn looks_like_broken_scram(s: &str) -> bool {
        s.starts_with("SCRAM-SHA-256$") && ScramVerifier::parse(s).is_none()
    }
}

impl fmt::Debug for StoredPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoredPassword::Scram(v) => write!(f, "{v:?}"),
            StoredPassword::Md5(_) => f.write_str("Md5(<redacted>)"),
            StoredPassword::Plain(_) => f.write_str("Plain(<redacted>)"),
        }
    }
}

fn is_md5_secret(s: &str) -> bool {
    s.len() == 35 && s.starts_with("md5") && s[3..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// Replaces every `${NAME}` with the environment variable NAME; an unset variable is an
/// error that names the variable (never the value).
pub fn expand_env(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or("unterminated ${ in value")?;
        let name = &after[..end];
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!("invalid environment variable name {name:?}"));
        }
        let value = std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Reads a secret file (a Kubernetes secret mount); one trailing newline is dropped.
pub fn read_secret_file(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read secret file {}: {e}", path.display()))?;
    let text = text.strip_suffix('\n').unwrap_or(&text);
    Ok(text.strip_suffix('\r').unwrap_or(text).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifier_round_trip() {
        let v = ScramVerifier::from_password("secret");
        assert_eq!(v.iterations, 4096);
        assert_eq!(v.salt.len(), 16);
        assert!(ScramVerifier::parse("SCRAM-SHA-256$4096:c2FsdA==$short:keys").is_none());
    }

    #[test]
    fn stored_password_forms() {
        assert!(matches!(StoredPassword::parse("md5d4d6d6e7fd8b0e69ae0e60f0e0b0a0a1"), StoredPassword::Md5(_)));
        assert!(matches!(StoredPassword::parse("md5short"), StoredPassword::Plain(_)));
        assert!(StoredPassword::looks_like_broken_scram("SCRAM-SHA-256$x"));
        assert_eq!(format!("{:?}", StoredPassword::parse("hunter2")), "Plain(<redacted>)");
    }

    #[test]
    fn env_expansion() {
        let path = std::env::var("PATH").unwrap();
        assert_eq!(expand_env("a${PATH}b").unwrap(), format!("a{path}b"));
        assert!(expand_env("${PGATE_TEST_UNSET_Y}").unwrap_err().contains("PGATE_TEST_UNSET_Y"));
        assert!(expand_env("${oops").is_err());
        assert_eq!(expand_env("plain").unwrap(), "plain");
    }
}
