//! Turning records into lines: what both formats share (which records and which relations
//! are logged, the statement text once redacted and trimmed, the parameters with their
//! placeholders, the timestamp), and the two formats, `pgaudit` and `json`.

mod json;
mod pgaudit;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::config::{AuditFormat, AuditSettings};
use super::record::{Event, Outcome, Parameters, Record, StatementRecord};
use super::redact::redact;
use crate::sql::statement::AuditClass;

pub const NOT_LOGGED: &str = "<not logged>";
pub const NO_PARAMETERS: &str = "<none>";
pub const LONG_PARAMETER: &str = "<long param suppressed>";
pub const PREVIOUSLY_LOGGED: &str = "<previously logged>";

/// False for a statement the settings leave out: its class is not in `log`, or it only
/// touched the catalog and `log_catalog` is off. Denials, logins, logouts and cancels are
/// always logged.
pub fn is_logged(settings: &AuditSettings, record: &Record) -> bool {
    match &record.event {
        Event::Statement(s) => {
            matches!(s.outcome, Outcome::Denied { .. })
                || (settings.log.contains(s.class) && (settings.log_catalog || !s.catalog_only))
        }
        Event::Login { .. } | Event::Logout | Event::Cancel { .. } => true,
    }
}

/// Appends the record's lines (each ending in `\n`) to `out`.
pub fn write_record(settings: &AuditSettings, record: &Record, out: &mut Vec<u8>) {
    match settings.format {
        AuditFormat::Pgaudit => pgaudit::write(settings, record, out),
        AuditFormat::Json => json::write(settings, record, out),
    }
}

/// One statement record as its lines will show it.
struct StatementView<'a> {
    record: &'a StatementRecord,
    /// One line per entry; `None` is a line with empty object fields.
    objects: Vec<Option<&'a (String, String)>>,
    text: Cow<'a, str>,
    parameters: ParameterView<'a>,
}

impl<'a> StatementView<'a> {
    fn new(settings: &AuditSettings, record: &'a StatementRecord) -> Self {
        Self {
            record,
            objects: line_objects(settings, record),
            text: statement_text(&record.text),
            parameters: ParameterView::new(settings, &record.parameters),
        }
    }

    /// Whether line `index` carries the statement text and parameters, or
    /// `<previously logged>` (`log_statement_once`).
    fn full_line(settings: &AuditSettings, index: usize) -> bool {
        index == 0 || !settings.log_statement_once
    }
}

/// pgaudit writes one line for a SELECT or DML statement, with empty object fields, unless
/// `log_relation` asks for one per relation; a DDL, ROLE or FUNCTION statement names its
/// objects, one line each, as pgaudit's event-trigger lines do. With `log_catalog` off,
/// catalog relations get no line of their own.
fn line_objects<'a>(settings: &AuditSettings, record: &'a StatementRecord) -> Vec<Option<&'a (String, String)>> {
    let per_object = settings.log_relation || !matches!(record.class, AuditClass::Read | AuditClass::Write);
    let objects: Vec<_> = if per_object {
        record.objects.iter().filter(|(_, name)| settings.log_catalog || !is_catalog(name)).map(Some).collect()
    } else {
        Vec::new()
    };
    if objects.is_empty() { vec![None] } else { objects }
}

fn is_catalog(name: &str) -> bool {
    name.starts_with("pg_catalog.") || name.starts_with("information_schema.")
}

/// Redacted, and trimmed as pgaudit trims: leading whitespace, trailing whitespace and
/// semicolons.
fn statement_text(text: &str) -> Cow<'_, str> {
    let trim = |text: &str| -> (usize, usize) {
        let start = text.len() - text.trim_start_matches([' ', '\t', '\n', '\r']).len();
        let end = text.trim_end_matches([' ', '\t', '\n', '\r', ';']).len().max(start);
        (start, end)
    };
    match redact(text) {
        Cow::Borrowed(text) => {
            let (start, end) = trim(text);
            Cow::Borrowed(&text[start..end])
        }
        Cow::Owned(text) => {
            let (start, end) = trim(&text);
            Cow::Owned(text[start..end].to_owned())
        }
    }
}

/// The parameters field before a format writes it.
#[derive(Debug, PartialEq, Eq)]
enum ParameterView<'a> {
    /// `<not logged>` or `<none>`.
    Placeholder(&'static str),
    /// In order; `None` is NULL; a value longer than `log_parameter_max_size` bytes is
    /// `<long param suppressed>` (measured on the text, so a binary value's hex form).
    Values(Vec<Option<&'a str>>),
}

impl<'a> ParameterView<'a> {
    fn new(settings: &AuditSettings, parameters: &'a Parameters) -> Self {
        let max = settings.log_parameter_max_size;
        match parameters {
            _ if !settings.log_parameter => Self::Placeholder(NOT_LOGGED),
            Parameters::NotLogged => Self::Placeholder(NOT_LOGGED),
            Parameters::None => Self::Placeholder(NO_PARAMETERS),
            Parameters::Values(values) if values.is_empty() => Self::Placeholder(NO_PARAMETERS),
            Parameters::Values(values) => Self::Values(
                values
                    .iter()
                    .map(|v| v.as_deref().map(|v| if max > 0 && v.len() > max { LONG_PARAMETER } else { v }))
                    .collect(),
            ),
        }
    }
}

/// The class as pgaudit writes it: a SET statement is `MISC` (filtered by `MISC_SET`).
fn pgaudit_class(class: AuditClass) -> &'static str {
    match class {
        AuditClass::MiscSet => AuditClass::Misc.name(),
        class => class.name(),
    }
}

/// `2026-11-22T10:15:03.481Z`. Times outside 1970..10000 (a broken clock) are clamped
/// rather than failing the record.
fn rfc3339_millis(time: SystemTime) -> String {
    const LAST: Duration = Duration::from_millis(253_402_300_799_999);
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default().min(LAST);
    humantime::format_rfc3339_millis(UNIX_EPOCH + since_epoch).to_string()
}

/// `2026-11-22 10:15:03.481 UTC`, as PostgreSQL's `%m` log prefix writes it.
fn log_time(time: SystemTime) -> String {
    let mut s = rfc3339_millis(time).replacen('T', " ", 1);
    s.pop();
    s.push_str(" UTC");
    s
}
