//! The `[audit]` table: its TOML model (`RawAudit`, every key defaulted) and the validated
//! settings (`AuditSettings`) that `build` makes of it.
//!
//! The pgaudit settings keep pgaudit's names and defaults: `log_catalog` on, `log_relation`,
//! `log_parameter`, `log_rows` and `log_statement_once` off, `log_parameter_max_size` 0 (no
//! limit). `log` differs: pgaudit logs nothing by default, pgate every class, since a sink
//! configured to log nothing is rarely what was meant.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::sql::statement::AuditClass;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAudit {
    /// A file path, or `"stdout"`. Required: without `[audit]` there is no audit log.
    pub sink: Option<String>,
    pub format: AuditFormat,
    /// Statement classes to log; `ALL`, `NONE`, and `-CLASS` to take one away.
    pub log: Vec<String>,
    pub log_catalog: bool,
    pub log_relation: bool,
    pub log_parameter: bool,
    /// Bytes; a longer parameter is written as `<long param suppressed>`. 0: no limit.
    pub log_parameter_max_size: usize,
    pub log_rows: bool,
    pub log_statement_once: bool,
    pub on_full: OnFull,
    /// Records the queue holds before `on_full` applies.
    pub queue_size: usize,
    pub fsync: FsyncMode,
    #[serde(with = "humantime_serde")]
    pub fsync_interval: Duration,
    pub on_error: OnError,
}

impl Default for RawAudit {
    fn default() -> Self {
        Self {
            sink: None,
            format: AuditFormat::Pgaudit,
            log: ["READ", "WRITE", "FUNCTION", "ROLE", "DDL", "MISC", "MISC_SET"].map(String::from).to_vec(),
            log_catalog: true,
            log_relation: false,
            log_parameter: false,
            log_parameter_max_size: 0,
            log_rows: false,
            log_statement_once: false,
            on_full: OnFull::Block,
            queue_size: 10_000,
            fsync: FsyncMode::Interval,
            fsync_interval: Duration::from_secs(1),
            on_error: OnError::Deny,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditFormat {
    /// pgaudit's CSV fields behind pgate's `key=value` context.
    Pgaudit,
    /// JSON Lines.
    Json,
}

/// What `Auditor::record` does when the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFull {
    /// Wait for room: the statement's session waits, nothing is lost.
    Block,
    /// Count the record as dropped and warn.
    Drop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncMode {
    Interval,
    Always,
    Never,
}

/// What happens while the sink cannot be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Refuse new statements and keep the records until the sink recovers.
    Deny,
    /// Keep serving; records that cannot be written are counted as lost.
    Continue,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkTarget {
    Stdout,
    File(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// After every batch written.
    Always,
    /// When something was written since the last tick.
    Interval(Duration),
    Never,
}

/// A set of statement classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClassSet(u8);

impl ClassSet {
    pub fn all() -> Self {
        AuditClass::ALL.into_iter().fold(Self::default(), |set, c| set.with(c))
    }

    pub fn contains(self, class: AuditClass) -> bool {
        self.0 & Self::bit(class) != 0
    }

    pub fn with(self, class: AuditClass) -> Self {
        Self(self.0 | Self::bit(class))
    }

    pub fn without(self, class: AuditClass) -> Self {
        Self(self.0 & !Self::bit(class))
    }

    fn bit(class: AuditClass) -> u8 {
        1 << class as u8
    }
}

/// The validated `[audit]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSettings {
    pub sink: SinkTarget,
    pub format: AuditFormat,
    pub log: ClassSet,
    pub log_catalog: bool,
    pub log_relation: bool,
    pub log_parameter: bool,
    pub log_parameter_max_size: usize,
    pub log_rows: bool,
    pub log_statement_once: bool,
    pub on_full: OnFull,
    pub queue_size: usize,
    pub fsync: FsyncPolicy,
    pub on_error: OnError,
}

/// More would hold gigabytes of statement text in memory.
const MAX_QUEUE_SIZE: usize = 1_000_000;

/// Validates `[audit]`; the message names the key at fault.
pub fn build(raw: &RawAudit) -> Result<AuditSettings, String> {
    let sink = match raw.sink.as_deref() {
        None | Some("") => {
            return Err("audit.sink is required: a file path or \"stdout\" (remove [audit] to turn audit off)".into());
        }
        Some("stdout") => SinkTarget::Stdout,
        Some(path) => SinkTarget::File(PathBuf::from(path)),
    };
    if raw.queue_size == 0 || raw.queue_size > MAX_QUEUE_SIZE {
        return Err(format!("audit.queue_size must be between 1 and {MAX_QUEUE_SIZE}, not {}", raw.queue_size));
    }
    let fsync = match raw.fsync {
        FsyncMode::Always => FsyncPolicy::Always,
        FsyncMode::Never => FsyncPolicy::Never,
        FsyncMode::Interval if raw.fsync_interval.is_zero() => {
            return Err("audit.fsync_interval must be longer than 0 (or set audit.fsync = \"always\")".into());
        }
        FsyncMode::Interval => FsyncPolicy::Interval(raw.fsync_interval),
    };
    Ok(AuditSettings {
        sink,
        format: raw.format,
        log: parse_classes(&raw.log)?,
        log_catalog: raw.log_catalog,
        log_relation: raw.log_relation,
        log_parameter: raw.log_parameter,
        log_parameter_max_size: raw.log_parameter_max_size,
        log_rows: raw.log_rows,
        log_statement_once: raw.log_statement_once,
        on_full: raw.on_full,
        queue_size: raw.queue_size,
        fsync,
        on_error: raw.on_error,
    })
}

/// pgaudit's `log` list: entries (or comma-separated parts of them) are applied in order;
/// `-CLASS` takes a class away, `ALL` adds every class, `NONE` adds none, and `MISC`
/// includes `MISC_SET` as in pgaudit.
fn parse_classes(entries: &[String]) -> Result<ClassSet, String> {
    let mut set = ClassSet::default();
    for part in entries.iter().flat_map(|e| e.split(',')).map(str::trim).filter(|p| !p.is_empty()) {
        let (subtract, name) = match part.strip_prefix('-') {
            Some(name) => (true, name.trim()),
            None => (false, part),
        };
        let classes: Vec<AuditClass> = if name.eq_ignore_ascii_case("ALL") {
            AuditClass::ALL.to_vec()
        } else if name.eq_ignore_ascii_case("NONE") {
            Vec::new()
        } else if name.eq_ignore_ascii_case("MISC") {
            vec![AuditClass::Misc, AuditClass::MiscSet]
        } else {
            let class = AuditClass::from_name(name).ok_or_else(|| {
                let known: Vec<_> = AuditClass::ALL.iter().map(|c| c.name()).collect();
                format!("audit.log: unknown class {name:?}; known: {}, ALL, NONE", known.join(", "))
            })?;
            vec![class]
        };
        for class in classes {
            set = if subtract { set.without(class) } else { set.with(class) };
        }
    }
    Ok(set)
}

impl std::fmt::Display for SinkTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SinkTarget::Stdout => f.write_str("stdout"),
            SinkTarget::File(path) => write!(f, "{}", path.display()),
        }
    }
}

impl std::fmt::Display for AuditFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AuditFormat::Pgaudit => "pgaudit",
            AuditFormat::Json => "json",
        })
    }
}

impl std::fmt::Display for OnFull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OnFull::Block => "block",
            OnFull::Drop => "drop",
        })
    }
}

impl std::fmt::Display for OnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OnError::Deny => "deny",
            OnError::Continue => "continue",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<AuditSettings, String> {
        let raw: RawAudit = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        build(&raw)
    }

    fn classes(set: ClassSet) -> Vec<&'static str> {
        AuditClass::ALL.into_iter().filter(|c| set.contains(*c)).map(AuditClass::name).collect()
    }

    #[test]
    fn defaults_follow_pgaudit() {
        let s = parse(r#"sink = "/var/log/pgate/audit.log""#).unwrap();
        assert_eq!(s.sink, SinkTarget::File("/var/log/pgate/audit.log".into()));
        assert_eq!(s.format, AuditFormat::Pgaudit);
        assert_eq!(s.log, ClassSet::all());
        assert!(s.log_catalog && !s.log_relation && !s.log_parameter && !s.log_rows && !s.log_statement_once);
        assert_eq!(s.log_parameter_max_size, 0);
        assert_eq!((s.on_full, s.queue_size, s.on_error), (OnFull::Block, 10_000, OnError::Deny));
        assert_eq!(s.fsync, FsyncPolicy::Interval(Duration::from_secs(1)));
    }

    #[test]
    fn every_key_parses() {
        let s = parse(
            r#"
            sink = "stdout"
            format = "json"
            log = ["read", "WRITE"]
            log_catalog = false
            log_relation = true
            log_parameter = true
            log_parameter_max_size = 64
            log_rows = true
            log_statement_once = true
            on_full = "drop"
            queue_size = 5
            fsync = "interval"
            fsync_interval = "250ms"
            on_error = "continue"
            "#,
        )
        .unwrap();
        assert_eq!(s.sink, SinkTarget::Stdout);
        assert_eq!(s.format, AuditFormat::Json);
        assert_eq!(classes(s.log), ["READ", "WRITE"]);
        assert!(!s.log_catalog && s.log_relation && s.log_parameter && s.log_rows && s.log_statement_once);
        assert_eq!((s.log_parameter_max_size, s.on_full, s.queue_size), (64, OnFull::Drop, 5));
        assert_eq!((s.fsync, s.on_error), (FsyncPolicy::Interval(Duration::from_millis(250)), OnError::Continue));
        assert_eq!(parse("sink = 'a'\nfsync = 'always'").unwrap().fsync, FsyncPolicy::Always);
        assert_eq!(parse("sink = 'a'\nfsync = 'never'").unwrap().fsync, FsyncPolicy::Never);
    }

    #[test]
    fn class_lists_as_pgaudit_reads_them() {
        let log = |list: &str| parse(&format!("sink = 'a'\nlog = {list}")).map(|s| classes(s.log));
        assert_eq!(log(r#"["ALL", "-misc"]"#).unwrap(), ["READ", "WRITE", "FUNCTION", "ROLE", "DDL"]);
        assert_eq!(log(r#"["all, -misc_set"]"#).unwrap(), ["READ", "WRITE", "FUNCTION", "ROLE", "DDL", "MISC"]);
        assert_eq!(log(r#"["MISC"]"#).unwrap(), ["MISC", "MISC_SET"]);
        assert_eq!(log(r#"["ddl", "- ddl", "role"]"#).unwrap(), ["ROLE"]);
        assert!(log(r#"["NONE"]"#).unwrap().is_empty());
        assert!(log("[]").unwrap().is_empty());
        let err = log(r#"["READ", "SELECT"]"#).unwrap_err();
        assert!(err.contains("audit.log") && err.contains("\"SELECT\"") && err.contains("MISC_SET"), "{err}");
    }

    #[test]
    fn invalid_tables_name_the_key() {
        assert!(parse("format = 'json'").unwrap_err().contains("audit.sink"));
        assert!(parse("sink = ''").unwrap_err().contains("audit.sink"));
        assert!(parse("sink = 'a'\nqueue_size = 0").unwrap_err().contains("audit.queue_size"));
        assert!(parse("sink = 'a'\nfsync_interval = '0s'").unwrap_err().contains("audit.fsync_interval"));
        assert!(parse("sink = 'a'\nlog_everything = true").unwrap_err().contains("log_everything"));
        assert!(parse("sink = 'a'\non_full = 'wait'").unwrap_err().contains("wait"));
        assert!(parse("sink = 'a'\nfsync_interval = 'soon'").is_err());
    }
}
