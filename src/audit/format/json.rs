//! The JSON Lines format: one object per line (per relation with `log_relation`, as in the
//! pgaudit format), serialized by serde_json. Every line has the context fields and `kind`
//! (`SESSION`, `LOGIN`, `LOGOUT`, `CANCEL`); statement lines add pgaudit's fields plus
//! `outcome`, `sqlstate`, `rule`, `rows` and `duration_ms`; login lines add `outcome`
//! (`ok` | `failed`), `method` and `reason`; cancel lines add `outcome` (`forwarded` |
//! `ignored`).

use serde::Serialize;

use super::{PREVIOUSLY_LOGGED, ParameterView, StatementView, rfc3339_millis};
use crate::audit::config::AuditSettings;
use crate::audit::record::{Event, Outcome, Record};

#[derive(Serialize)]
struct Line<'a> {
    time: &'a str,
    client: String,
    user: Option<&'a str>,
    database: Option<&'a str>,
    workspace: Option<&'a str>,
    backend: Option<&'a str>,
    session: Option<&'a str>,
    tls: Option<&'a str>,
    identity: Option<&'a str>,
    kind: &'static str,
    #[serde(flatten)]
    detail: Detail<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Detail<'a> {
    Statement(StatementLine<'a>),
    Login { outcome: &'static str, method: &'a str, reason: Option<&'a str> },
    Cancel { outcome: &'static str },
    Logout {},
}

#[derive(Serialize)]
struct StatementLine<'a> {
    statement_id: u64,
    substatement_id: u32,
    /// The configuration's class name (`MISC_SET` stays `MISC_SET` here).
    class: &'static str,
    command: &'a str,
    object_type: Option<&'a str>,
    object_name: Option<&'a str>,
    statement: &'a str,
    parameters: Parameters<'a>,
    outcome: &'static str,
    sqlstate: Option<&'a str>,
    rule: Option<&'a str>,
    rows: Option<u64>,
    duration_ms: Option<f64>,
}

/// The values, or the placeholder string.
#[derive(Serialize)]
#[serde(untagged)]
enum Parameters<'a> {
    Placeholder(&'static str),
    Values(&'a [Option<&'a str>]),
}

pub(super) fn write(settings: &AuditSettings, record: &Record, out: &mut Vec<u8>) {
    let time = rfc3339_millis(record.time);
    let c = &*record.context;
    let line = |kind, detail| Line {
        time: &time,
        client: c.client.to_string(),
        user: c.user.as_deref(),
        database: c.database.as_deref(),
        workspace: c.workspace.as_deref(),
        backend: c.backend.as_deref(),
        session: c.session_id.as_deref(),
        tls: c.tls.as_deref(),
        identity: c.identity.as_deref(),
        kind,
        detail,
    };
    match &record.event {
        Event::Statement(statement) => {
            let view = StatementView::new(settings, statement);
            for index in 0..view.objects.len() {
                push(out, &line("SESSION", Detail::Statement(statement_line(settings, &view, index))));
            }
        }
        Event::Login { ok, method, reason } => {
            let outcome = if *ok { "ok" } else { "failed" };
            push(out, &line("LOGIN", Detail::Login { outcome, method, reason: reason.as_deref() }));
        }
        Event::Logout => push(out, &line("LOGOUT", Detail::Logout {})),
        Event::Cancel { forwarded } => {
            let outcome = if *forwarded { "forwarded" } else { "ignored" };
            push(out, &line("CANCEL", Detail::Cancel { outcome }));
        }
    }
}

fn statement_line<'a>(settings: &AuditSettings, view: &'a StatementView<'a>, index: usize) -> StatementLine<'a> {
    let s = view.record;
    let (statement, parameters) = if StatementView::full_line(settings, index) {
        let parameters = match &view.parameters {
            ParameterView::Placeholder(p) => Parameters::Placeholder(p),
            ParameterView::Values(values) => Parameters::Values(values),
        };
        (view.text.as_ref(), parameters)
    } else {
        (PREVIOUSLY_LOGGED, Parameters::Placeholder(PREVIOUSLY_LOGGED))
    };
    let (outcome, sqlstate, rule) = match &s.outcome {
        Outcome::Ok => ("ok", None, None),
        Outcome::Error { sqlstate } => ("error", Some(sqlstate.as_str()), None),
        Outcome::Denied { rule } => ("denied", None, Some(rule.as_str())),
    };
    StatementLine {
        statement_id: s.statement_id,
        substatement_id: s.substatement_id,
        class: s.class.name(),
        command: &s.command,
        object_type: view.objects[index].map(|(t, _)| t.as_str()),
        object_name: view.objects[index].map(|(_, n)| n.as_str()),
        statement,
        parameters,
        outcome,
        sqlstate,
        rule,
        rows: s.rows,
        duration_ms: s.duration.map(|d| d.as_secs_f64() * 1000.0),
    }
}

fn push(out: &mut Vec<u8>, line: &Line<'_>) {
    // Serializing strings, numbers and options into a Vec does not fail; if it ever did,
    // the partial object is cut off so the file keeps one object per line, and said.
    let start = out.len();
    match serde_json::to_writer(&mut *out, line) {
        Ok(()) => out.push(b'\n'),
        Err(e) => {
            out.truncate(start);
            tracing::error!(error = %e, kind = line.kind, "an audit record could not be written as JSON");
        }
    }
}
