//! Session parameters (GUCs): what a client asked for, what a server currently has, and
//! the SET / RESET that brings a server in line with a client on checkout.
//!
//! Servers are opened with only `user` and `database`, so every server of a pool starts
//! from the backend's defaults and `RESET name` always means "back to the default".

use std::fmt::Write;
use std::hash::Hasher;

/// Startup parameters that are not session settings.
const NOT_SETTINGS: &[&str] = &["user", "database", "options", "replication"];

/// Reported parameters a client can change for its own session (PostgreSQL sends a
/// ParameterStatus when they change); the others (server_version, is_superuser, ...)
/// describe the server and are the same for every client of a pool.
const CLIENT_REPORTED: &[&str] = &[
    "application_name",
    "client_encoding",
    "datestyle",
    "intervalstyle",
    "timezone",
    "standard_conforming_strings",
    "default_transaction_read_only",
    "search_path",
];

/// An ordered name -> value list; names compare case-insensitively, as PostgreSQL's do.
///
/// Held as one string of `name NUL value NUL` pairs: every logged-in client keeps its
/// startup settings for as long as it is connected, and one allocation of a few dozen
/// bytes costs far less than a vector and two strings per setting. PostgreSQL's names and
/// values are C strings, so a NUL never belongs to one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    pairs: String,
}

impl Params {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.value_range(name).map(|range| &self.pairs[range])
    }

    /// Sets `name` to `value` (each cut at a NUL, where PostgreSQL would end it too).
    pub fn set(&mut self, name: &str, value: &str) {
        let (name, value) = (c_string(name), c_string(value));
        match self.value_range(name) {
            Some(range) => self.pairs.replace_range(range, value),
            None => {
                for part in [name, value] {
                    self.pairs.push_str(part);
                    self.pairs.push('\0');
                }
            }
        }
    }

    pub fn remove(&mut self, name: &str) {
        let name = c_string(name);
        if let Some(range) = self.value_range(name) {
            // From the start of the name to past the value's NUL.
            let start = range.start - name.len() - 1;
            self.pairs.replace_range(start..range.end + 1, "");
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut parts = self.pairs.split_terminator('\0');
        std::iter::from_fn(move || Some((parts.next()?, parts.next()?)))
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Gives back the room that growing left over (for settings kept a long time).
    pub fn shrink_to_fit(&mut self) {
        self.pairs.shrink_to_fit();
    }

    /// Where the value of `name` lies in `pairs`.
    fn value_range(&self, name: &str) -> Option<std::ops::Range<usize>> {
        let mut at = 0;
        let mut parts = self.pairs.split_terminator('\0');
        while let (Some(k), Some(v)) = (parts.next(), parts.next()) {
            let value_at = at + k.len() + 1;
            if k.eq_ignore_ascii_case(name) {
                return Some(value_at..value_at + v.len());
            }
            at = value_at + v.len() + 1;
        }
        None
    }

    /// A hash of the contents, independent of order and of the case of names: equal
    /// settings give equal fingerprints.
    pub fn fingerprint(&self) -> u64 {
        self.iter().fold(0u64, |sum, (name, value)| {
            let mut h = std::hash::DefaultHasher::new();
            for b in name.bytes() {
                h.write_u8(b.to_ascii_lowercase());
            }
            h.write_u8(0);
            h.write(value.as_bytes());
            sum.wrapping_add(h.finish())
        })
    }
}

/// `s` up to its first NUL, as a C string would end.
fn c_string(s: &str) -> &str {
    s.split('\0').next().unwrap_or_default()
}

/// True for a reported parameter whose change belongs to the client that caused it.
pub fn is_client_reported(name: &str) -> bool {
    CLIENT_REPORTED.iter().any(|n| n.eq_ignore_ascii_case(name))
}

#[derive(Debug, thiserror::Error)]
pub enum ParamError {
    #[error("invalid startup parameter name {0:?}")]
    BadName(String),
    #[error("startup option {0:?} is not supported by pgate; only \"-c name=value\" and \"--name=value\" are")]
    UnsupportedOption(String),
    #[error("replication connections are not supported by pgate")]
    Replication,
}

/// The settings a client asked for in its StartupMessage, `options` included.
pub fn from_startup<'a>(startup: impl Iterator<Item = (&'a str, &'a str)>) -> Result<Params, ParamError> {
    let mut params = Params::default();
    for (name, value) in startup {
        match name {
            "options" => parse_options(value, &mut params)?,
            "replication" => return Err(ParamError::Replication),
            _ if NOT_SETTINGS.contains(&name) || name.starts_with("_pq_.") => {}
            _ => {
                check_name(name)?;
                params.set(name, value);
            }
        }
    }
    params.shrink_to_fit();
    Ok(params)
}

fn check_name(name: &str) -> Result<(), ParamError> {
    if is_valid_name(name) { Ok(()) } else { Err(ParamError::BadName(name.to_owned())) }
}

/// A setting name pgate will write into SQL unquoted: letters, digits, `_` and `.`.
pub fn is_valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    first_ok && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
}

/// Parses libpq's `options`: `-c name=value` / `--name=value`, backslash escapes spaces.
fn parse_options(options: &str, params: &mut Params) -> Result<(), ParamError> {
    let words = split_options(options);
    let mut it = words.iter();
    while let Some(word) = it.next() {
        let setting = if word == "-c" {
            it.next().ok_or_else(|| ParamError::UnsupportedOption(word.clone()))?.as_str()
        } else if let Some(rest) = word.strip_prefix("-c") {
            rest
        } else if let Some(rest) = word.strip_prefix("--") {
            rest
        } else {
            return Err(ParamError::UnsupportedOption(word.clone()));
        };
        let (name, value) = setting.split_once('=').ok_or_else(|| ParamError::UnsupportedOption(word.clone()))?;
        let name = name.replace('-', "_");
        check_name(&name)?;
        params.set(&name, value);
    }
    Ok(())
}

fn split_options(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => word.extend(chars.next()),
            c if c.is_ascii_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// A SQL string literal that means `value` whatever standard_conforming_strings is.
pub fn quote_literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 3);
    out.push_str("E'");
    for c in value.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// The statements that move a server from `server` (its current values, with `defaults`
/// its values at connect) to what `client` asked for; `None` when nothing differs.
/// Names are validated at login, so they are safe to write unquoted.
pub fn sync_statements(client: &Params, server: &Params, defaults: &Params) -> Option<String> {
    // set_config, not SET: it parses list values (search_path, DateStyle) as PostgreSQL
    // parses startup options, where SET would take a quoted list as one name.
    let sets: Vec<String> = client
        .iter()
        .filter(|(n, v)| is_valid_name(n) && server.get(n) != Some(*v))
        .map(|(n, v)| format!("pg_catalog.set_config({}, {}, false)", quote_literal(n), quote_literal(v)))
        .collect();
    let mut sql = String::new();
    if !sets.is_empty() {
        let _ = write!(sql, "SELECT {};", sets.join(", "));
    }
    for (name, value) in server.iter().filter(|(n, _)| is_valid_name(n)) {
        if client.get(name).is_none() && defaults.get(name) != Some(value) {
            let _ = write!(sql, "RESET {name};");
        }
    }
    (!sql.is_empty()).then_some(sql)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        let mut p = Params::default();
        for (k, v) in pairs {
            p.set(k, v);
        }
        p
    }

    #[test]
    fn startup_settings_and_options() {
        let p = from_startup(
            [
                ("user", "u"),
                ("database", "d"),
                ("application_name", "psql"),
                ("options", "-c search_path=a\\ b --work-mem=64MB"),
            ]
            .into_iter(),
        )
        .unwrap();
        assert_eq!(p.get("APPLICATION_NAME"), Some("psql"));
        assert_eq!(p.get("search_path"), Some("a b"));
        assert_eq!(p.get("work_mem"), Some("64MB"));
        assert!(p.get("user").is_none());
        assert!(from_startup([("options", "-d 5")].into_iter()).is_err());
        assert!(from_startup([("x; drop", "1")].into_iter()).is_err());
        assert!(from_startup([("replication", "database")].into_iter()).is_err());
    }

    #[test]
    fn sync_sets_differences_and_resets_leftovers() {
        let defaults = params(&[("DateStyle", "ISO, MDY")]);
        let server = params(&[("DateStyle", "German, DMY"), ("application_name", "other")]);
        let client = params(&[("application_name", "mine")]);
        let sql = sync_statements(&client, &server, &defaults).unwrap();
        assert_eq!(sql, "SELECT pg_catalog.set_config(E'application_name', E'mine', false);RESET DateStyle;");
        assert!(sync_statements(&server, &server, &defaults).is_none());
    }

    #[test]
    fn set_replaces_in_place_and_remove_keeps_the_others() {
        let mut p = params(&[("a", "1"), ("TimeZone", "UTC"), ("c", "3")]);
        p.set("timezone", "Europe/Paris");
        p.set("a", "");
        assert_eq!(p.iter().collect::<Vec<_>>(), [("a", ""), ("TimeZone", "Europe/Paris"), ("c", "3")]);
        p.remove("TIMEZONE");
        assert_eq!(p.iter().collect::<Vec<_>>(), [("a", ""), ("c", "3")]);
        p.remove("a");
        p.remove("missing");
        assert_eq!(p.get("c"), Some("3"));
        assert_eq!(p.get("a"), None);
        p.remove("c");
        assert!(p.is_empty());
        // A NUL ends a name or a value, as it would in PostgreSQL.
        p.set("x\0y", "1\0two");
        assert_eq!(p.iter().collect::<Vec<_>>(), [("x", "1")]);
        p.set("last", "");
        p.remove("x\0y");
        assert_eq!(p.iter().collect::<Vec<_>>(), [("last", "")]);
    }

    #[test]
    fn literals_are_escaped() {
        assert_eq!(quote_literal("it's a \\ test"), "E'it''s a \\\\ test'");
    }

    #[test]
    fn fingerprints_ignore_order_and_name_case_but_not_values() {
        let a = params(&[("TimeZone", "UTC"), ("search_path", "a, b")]);
        let b = params(&[("search_path", "a, b"), ("timezone", "UTC")]);
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), params(&[("TimeZone", "utc"), ("search_path", "a, b")]).fingerprint());
        assert_ne!(a.fingerprint(), params(&[("TimeZone", "UTC")]).fingerprint());
        // The name/value boundary is part of what is hashed.
        assert_ne!(params(&[("ab", "c")]).fingerprint(), params(&[("a", "bc")]).fingerprint());
    }
}
