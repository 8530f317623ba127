//! Configuration: the TOML model (`model`), secrets (`secret`), validation (`validate`)
//! into an immutable [`Snapshot`]. Nothing downstream re-validates. `diff` tells what a
//! reload from one snapshot to another would change.

pub mod diff;
mod model;
mod secret;
mod snapshot;
mod validate;

use std::path::{Path, PathBuf};

pub use diff::{Change, ConfigDiff, Effect, diff};
pub use model::{AuthMethod, OnSessionState, PoolMode, RawConfig, RawPool, SslMode, TlsVersion};
pub use secret::{ScramVerifier, StoredPassword};
pub use snapshot::Admin;
pub use snapshot::{
    Auth, AuthLookup, Backend, BackendTlsSettings, Listen, MetricsSettings, PoolSettings, RouteEntry, RouteTable,
    Snapshot, TlsSettings, User,
};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{location}: {message}")]
    Invalid { location: String, message: String },
}

/// The text being loaded, to turn byte offsets into `file:line`.
pub(crate) struct Source {
    path: PathBuf,
    text: String,
}

impl Source {
    fn location(&self, offset: Option<usize>) -> String {
        match offset {
            Some(o) => {
                let line = self.text[..o.min(self.text.len())].matches('\n').count() + 1;
                format!("{}:{line}", self.path.display())
            }
            None => self.path.display().to_string(),
        }
    }

    fn invalid(&self, offset: Option<usize>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid { location: self.location(offset), message: message.into() }
    }
}

/// Reads, parses and validates a configuration file.
pub fn load(path: &Path) -> Result<Snapshot, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
    parse(&text, path)
}

/// Parses and validates configuration text; `path` is used in messages.
pub fn parse(text: &str, path: &Path) -> Result<Snapshot, ConfigError> {
    let src = Source { path: path.to_path_buf(), text: text.to_owned() };
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let message = without_value(e.message());
        src.invalid(e.span().map(|s| s.start), message)
    })?;
    validate::build(raw, &src)
}

/// serde's "invalid type" and "invalid value" messages quote the value they got
/// (``integer `12345678` ``): on a password line written without quotes, that value is the
/// password, and these messages are logged on a failed reload. The value is left out; the
/// line number still points at it.
fn without_value(message: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: "] {
        let Some(rest) = message.strip_prefix(prefix) else { continue };
        let Some(end) = rest.rfind(", expected ") else { continue };
        let got = &rest[..end];
        let kind = got.find(['`', '"']).map_or(got, |at| got[..at].trim_end());
        return format!("{prefix}{kind}{}", &rest[end..]);
    }
    message.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[backends.infra]
host = "127.0.0.1"
databases = ["keycloak", "airflow"]

[backends.data]
host = "127.0.0.1"
port = 6543
databases = ["akko", "*"]
pool = { size = 40 }

[databases.rag]
backend = "data"
dbname = "lightrag"

[[users]]
name = "alice"
password = "pw"
"#;

    fn parse_str(text: &str) -> Result<Snapshot, ConfigError> {
        parse(text, Path::new("test.toml"))
    }

    #[test]
    fn routes_aliases_and_fallback() {
        let s = parse_str(BASE).unwrap();
        assert_eq!(s.routes.exact["keycloak"].backend.name, "infra");
        assert_eq!(s.routes.exact["rag"].server_database, "lightrag");
        assert_eq!(s.routes.fallback.as_ref().unwrap().name, "data");
        let alice = &s.users["alice"];
        assert_eq!(alice.server_password.as_deref(), Some("pw"));
        assert_eq!(s.pool_settings(&s.routes.exact["rag"], alice).size, 40);
        assert_eq!(s.pool_settings(&s.routes.exact["airflow"], alice).size, 20);
    }

    #[test]
    fn errors_carry_the_line() {
        let text = format!("{BASE}\n[databases.x]\nbackend = \"nope\"\n");
        let err = parse_str(&text).unwrap_err().to_string();
        assert!(err.starts_with("test.toml:21:"), "{err}");
        assert!(err.contains("no backend named \"nope\""), "{err}");
        let err = parse_str("[listen]\nadress = 1\n").unwrap_err().to_string();
        assert!(err.starts_with("test.toml:2:"), "{err}");
    }

    #[test]
    fn a_password_written_without_quotes_is_not_quoted_back() {
        for (value, kind) in [("12345678", "integer"), ("-1234.5678", "floating point"), ("true", "boolean")] {
            let text = BASE.replace("password = \"pw\"", &format!("password = {value}"));
            let err = parse_str(&text).unwrap_err().to_string();
            assert_eq!(err, format!("test.toml:18: invalid type: {kind}, expected a string"));
        }
        let text = BASE.replace("size = 40", "size = \"forty\"");
        let err = parse_str(&text).unwrap_err().to_string();
        assert!(err.ends_with("invalid type: string, expected usize"), "{err}");
    }

    #[test]
    fn duplicate_routes_and_fallbacks_are_rejected() {
        let dup = BASE.replace("[\"keycloak\", \"airflow\"]", "[\"keycloak\", \"akko\"]");
        assert!(parse_str(&dup).unwrap_err().to_string().contains("routed to both"));
        let two = BASE.replace("[\"keycloak\", \"airflow\"]", "[\"*\"]");
        assert!(parse_str(&two).unwrap_err().to_string().contains("fallback"));
    }

    #[test]
    fn md5_secret_with_scram_method_is_rejected() {
        let text = BASE.replace("password = \"pw\"", "password = \"md5d4d6d6e7fd8b0e69ae0e60f0e0b0a0a1\"");
        assert!(parse_str(&text).unwrap_err().to_string().contains("md5 secret"));
    }

    #[test]
    fn secrets_come_from_files_and_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "from-file\n").unwrap();
        let text = format!(
            "[[users]]\nname = \"a\"\npassword_file = \"{}\"\n\n[[users]]\nname = \"b\"\npassword = \"x\"\nserver_password = \"${{PATH}}\"\n",
            file.display()
        );
        let s = parse_str(&text).unwrap();
        assert_eq!(s.users["a"].server_password.as_deref(), Some("from-file"));
        assert_eq!(s.users["b"].server_password, std::env::var("PATH").ok());
        let missing = parse_str("[[users]]\nname = \"c\"\npassword_file = \"/nonexistent/pw\"\n").unwrap_err();
        assert!(missing.to_string().starts_with("test.toml:1: user \"c\""), "{missing}");
        let both =
            parse_str(&format!("[[users]]\nname = \"d\"\npassword = \"p\"\npassword_file = \"{}\"\n", file.display()));
        assert!(both.unwrap_err().to_string().contains("not both"));
    }

    #[test]
    fn auth_methods_are_spelled_as_in_pg_hba() {
        for (text, method) in
            [("scram-sha-256", AuthMethod::ScramSha256), ("md5", AuthMethod::Md5), ("trust", AuthMethod::Trust)]
        {
            let s = parse_str(&format!("[auth]\nmethod = \"{text}\"\n")).unwrap();
            assert_eq!(s.auth.method, method);
        }
    }

    #[test]
    fn auth_user_needs_a_password_which_its_users_entry_can_give() {
        let missing = parse_str(&format!("[auth]\nauth_user = \"pgate_auth\"\n{BASE}")).unwrap_err().to_string();
        assert!(missing.contains("auth.auth_password") && missing.contains("server_password"), "{missing}");
        let text = format!(
            "[auth]\nauth_user = \"pgate_auth\"\n{BASE}\n[[users]]\nname = \"pgate_auth\"\nserver_password = \"lookup-pw\"\n"
        );
        let s = parse_str(&text).unwrap();
        assert_eq!(s.auth.lookup.unwrap().password.as_deref(), Some("lookup-pw"));
    }

    #[test]
    fn config_names_print_as_written() {
        assert_eq!(AuthMethod::ScramSha256.to_string(), "scram-sha-256");
        assert_eq!(PoolMode::Transaction.to_string(), "transaction");
        assert_eq!(SslMode::VerifyFull.to_string(), "verify-full");
    }

    #[test]
    fn min_idle_above_size_is_rejected() {
        let text = format!("[pool]\nsize = 2\nmin_idle = 3\n{BASE}");
        assert!(parse_str(&text).unwrap_err().to_string().contains("min_idle"));
    }
}
