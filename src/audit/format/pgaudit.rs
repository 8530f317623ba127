//! The pgaudit line: pgate's context as `key=value` pairs (where PostgreSQL would put its
//! `log_line_prefix`), then `AUDIT: ` and pgaudit's CSV fields, quoted exactly as pgaudit
//! quotes them. Connection events use the same prefix with `LOGIN`, `LOGOUT` and `CANCEL`
//! bodies.
//!
//! ```text
//! <time> client=<addr> user=<u> db=<d> workspace=<w|-> backend=<b> session=<id> tls=<v|-> identity=<i|->[ outcome=...] AUDIT: <body>
//! SESSION,<statement id>,<substatement id>,<class>,<command>,<object type>,<object name>,<statement>,<parameters>[,<rows>]
//! LOGIN,ok,<method>        LOGIN,failed,<method>,<reason>        LOGOUT        CANCEL,forwarded|ignored
//! ```
//! Every context key is always there, so the prefix parses by position too: an absent
//! workspace, TLS version or certificate identity is `-`. `identity` follows `tls` because
//! it comes from the TLS handshake. `outcome=error sqlstate=<code>` or
//! `outcome=denied rule=<rule>` is added before `AUDIT:` for a statement that did not
//! succeed, outside pgaudit's fields so that pgaudit parsers still read them. Class
//! `MISC_SET` is written `MISC`, as pgaudit writes SET statements; with `log_rows` a
//! statement without a row count shows 0, as pgaudit does.

use std::fmt::Write;

use super::{PREVIOUSLY_LOGGED, ParameterView, StatementView, log_time, pgaudit_class};
use crate::audit::config::AuditSettings;
use crate::audit::record::{Event, Outcome, Record, SessionContext};

pub(super) fn write(settings: &AuditSettings, record: &Record, out: &mut Vec<u8>) {
    let mut prefix = String::with_capacity(256);
    write_context(&mut prefix, record);
    if let Event::Statement(s) = &record.event {
        write_outcome(&mut prefix, &s.outcome);
    }
    prefix.push_str(" AUDIT: ");
    let mut line = String::with_capacity(256);
    match &record.event {
        Event::Statement(statement) => {
            let view = StatementView::new(settings, statement);
            for index in 0..view.objects.len() {
                line.clear();
                write_statement(&mut line, settings, &view, index);
                push_line(out, &prefix, &line);
            }
        }
        Event::Login { ok, method, reason } => {
            line.push_str(if *ok { "LOGIN,ok," } else { "LOGIN,failed," });
            csv(&mut line, method);
            if let Some(reason) = reason {
                line.push(',');
                csv(&mut line, reason);
            }
            push_line(out, &prefix, &line);
        }
        Event::Logout => push_line(out, &prefix, "LOGOUT"),
        Event::Cancel { forwarded } => {
            push_line(out, &prefix, if *forwarded { "CANCEL,forwarded" } else { "CANCEL,ignored" })
        }
    }
}

fn push_line(out: &mut Vec<u8>, prefix: &str, body: &str) {
    out.extend_from_slice(prefix.as_bytes());
    out.extend_from_slice(body.as_bytes());
    out.push(b'\n');
}

fn write_context(out: &mut String, record: &Record) {
    out.push_str(&log_time(record.time));
    let context = &*record.context;
    out.push_str(context.formatted.get_or_init(|| format_context(context)));
}

/// ` client=... identity=...`: the same for every record of a session.
fn format_context(context: &SessionContext) -> String {
    let SessionContext { client, user, database, workspace, backend, session_id, tls, identity, formatted: _ } =
        context;
    let mut out = String::with_capacity(160);
    let _ = write!(out, " client={client}");
    let pairs = [
        ("user", user.as_deref()),
        ("db", database.as_deref()),
        ("workspace", workspace.as_deref()),
        ("backend", backend.as_deref()),
        ("session", session_id.as_deref()),
        ("tls", tls.as_deref()),
        ("identity", identity.as_deref()),
    ];
    for (key, value) in pairs {
        let _ = write!(out, " {key}=");
        context_value(&mut out, value);
    }
    out
}

fn write_outcome(out: &mut String, outcome: &Outcome) {
    match outcome {
        Outcome::Ok => {}
        Outcome::Error { sqlstate } => {
            out.push_str(" outcome=error sqlstate=");
            context_value(out, Some(sqlstate));
        }
        Outcome::Denied { rule } => {
            out.push_str(" outcome=denied rule=");
            context_value(out, Some(rule));
        }
    }
}

/// `-` when absent. A value that could be misread (empty, `-`, or holding whitespace,
/// `"`, `=` or control characters) is double-quoted with `"` doubled.
fn context_value(out: &mut String, value: Option<&str>) {
    let Some(value) = value else {
        out.push('-');
        return;
    };
    let plain = !value.is_empty()
        && value != "-"
        && !value.chars().any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '=');
    if plain {
        out.push_str(value);
    } else {
        quote(out, value);
    }
}

fn write_statement(out: &mut String, settings: &AuditSettings, view: &StatementView<'_>, index: usize) {
    let s = view.record;
    let _ = write!(out, "SESSION,{},{},{},", s.statement_id, s.substatement_id, pgaudit_class(s.class));
    csv(out, &s.command);
    let (object_type, object_name) = view.objects[index].map_or(("", ""), |(t, n)| (t.as_str(), n.as_str()));
    out.push(',');
    csv(out, object_type);
    out.push(',');
    csv(out, object_name);
    out.push(',');
    if StatementView::full_line(settings, index) {
        csv(out, &view.text);
        out.push(',');
        write_parameters(out, &view.parameters);
    } else {
        let _ = write!(out, "{PREVIOUSLY_LOGGED},{PREVIOUSLY_LOGGED}");
    }
    if settings.log_rows {
        let _ = write!(out, ",{}", s.rows.unwrap_or(0));
    }
}

/// As pgaudit: each value CSV-quoted (NULL empty) and joined with commas, then the whole
/// list quoted again as one field.
fn write_parameters(out: &mut String, parameters: &ParameterView<'_>) {
    match parameters {
        ParameterView::Placeholder(placeholder) => out.push_str(placeholder),
        ParameterView::Values(values) => {
            let mut list = String::new();
            for (i, value) in values.iter().enumerate() {
                if i > 0 {
                    list.push(',');
                }
                if let Some(value) = value {
                    csv(&mut list, value);
                }
            }
            csv(out, &list);
        }
    }
}

/// pgaudit's CSV field: quoted only when it holds a comma, a double quote, CR or LF.
pub(super) fn csv(out: &mut String, field: &str) {
    if field.contains([',', '"', '\n', '\r']) {
        quote(out, field);
    } else {
        out.push_str(field);
    }
}

fn quote(out: &mut String, field: &str) {
    out.push('"');
    for c in field.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
}
