//! Line format tests: both formats, every placeholder, CSV quoting, relations, redaction.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::{is_logged, write_record};
use crate::audit::config::{AuditFormat, AuditSettings, RawAudit, build};
use crate::audit::record::{Event, Outcome, Parameters, Record, SessionContext, StatementRecord};
use crate::sql::statement::AuditClass;

fn settings(edit: impl FnOnce(&mut RawAudit)) -> AuditSettings {
    let mut raw = RawAudit { sink: Some("stdout".into()), ..RawAudit::default() };
    edit(&mut raw);
    build(&raw).unwrap()
}

fn context() -> SessionContext {
    SessionContext {
        client: "10.42.0.7:51514".parse().unwrap(),
        user: Some("alice".into()),
        database: Some("akko".into()),
        workspace: Some("alpha".into()),
        backend: Some("data".into()),
        session_id: Some("7f3a".into()),
        tls: Some("TLSv1.3".into()),
        identity: None,
        formatted: Default::default(),
    }
}

fn statement(class: AuditClass, command: &str, text: &str) -> StatementRecord {
    StatementRecord {
        statement_id: 12,
        substatement_id: 1,
        class,
        command: command.into(),
        objects: Vec::new(),
        text: Arc::from(text),
        parameters: Parameters::NotLogged,
        outcome: Outcome::Ok,
        rows: None,
        duration: None,
        catalog_only: false,
    }
}

fn record(event: Event) -> Record {
    let time = humantime::parse_rfc3339("2026-11-22T10:15:03.481Z").unwrap();
    Record { time, context: Arc::new(context()), event }
}

fn lines(settings: &AuditSettings, record: &Record) -> Vec<String> {
    let mut out = Vec::new();
    write_record(settings, record, &mut out);
    let text = String::from_utf8(out).unwrap();
    assert!(text.ends_with('\n'));
    text.lines().map(str::to_owned).collect()
}

/// The part after `AUDIT: ` of each line (a line may hold newlines inside quotes).
fn bodies(settings: &AuditSettings, record: &Record) -> Vec<String> {
    let mut out = Vec::new();
    write_record(settings, record, &mut out);
    let text = String::from_utf8(out).unwrap();
    let body = text.strip_suffix('\n').unwrap();
    body.split(&format!("\n{PREFIX} AUDIT: "))
        .map(|b| b.strip_prefix(&format!("{PREFIX} AUDIT: ")).unwrap_or(b).to_owned())
        .collect()
}

const PREFIX: &str = "2026-11-22 10:15:03.481 UTC client=10.42.0.7:51514 user=alice db=akko workspace=alpha backend=data session=7f3a tls=TLSv1.3 identity=-";

#[test]
fn pgaudit_line_with_relation() {
    let mut s = statement(AuditClass::Read, "SELECT", "SELECT * FROM alpha.orders WHERE id = $1");
    s.objects = vec![("TABLE".into(), "alpha.orders".into())];
    let line = lines(&settings(|r| r.log_relation = true), &record(Event::Statement(s)));
    assert_eq!(
        line,
        [format!(
            "{PREFIX} AUDIT: SESSION,12,1,READ,SELECT,TABLE,alpha.orders,SELECT * FROM alpha.orders WHERE id = $1,<not logged>"
        )]
    );
}

#[test]
fn context_fields_absent_present_and_quoted() {
    let mut r = record(Event::Logout);
    r.context = Arc::new(SessionContext {
        user: Some("bob smith".into()),
        workspace: None,
        tls: None,
        identity: Some("CN=bob, O=\"acme\"".into()),
        ..context()
    });
    assert_eq!(
        lines(&settings(|_| {}), &r),
        [
            "2026-11-22 10:15:03.481 UTC client=10.42.0.7:51514 user=\"bob smith\" db=akko workspace=- backend=data session=7f3a tls=- identity=\"CN=bob, O=\"\"acme\"\"\" AUDIT: LOGOUT"
        ]
    );
}

#[test]
fn statement_csv_quoting_as_pgaudit() {
    let s = settings(|_| {});
    let text = "\n  SELECT 'a,b', \"Col\"\nFROM t;\r\n ;";
    let body = bodies(&s, &record(Event::Statement(statement(AuditClass::Read, "SELECT", text))));
    assert_eq!(body, ["SESSION,12,1,READ,SELECT,,,\"SELECT 'a,b', \"\"Col\"\"\nFROM t\",<not logged>"]);
    let body =
        bodies(&s, &record(Event::Statement(statement(AuditClass::Ddl, "CREATE TABLE", "CREATE TABLE \"x,y\" ()"))));
    assert_eq!(body, ["SESSION,12,1,DDL,CREATE TABLE,,,\"CREATE TABLE \"\"x,y\"\" ()\",<not logged>"]);
}

#[test]
fn log_relation_statement_once_and_rows() {
    let mut s = statement(AuditClass::Write, "INSERT", "INSERT INTO a.t SELECT * FROM a.u");
    s.objects = vec![("TABLE".into(), "a.t".into()), ("VIEW".into(), "a.u".into())];
    s.rows = Some(42);
    let r = record(Event::Statement(s));
    assert_eq!(
        bodies(&settings(|_| {}), &r),
        ["SESSION,12,1,WRITE,INSERT,,,INSERT INTO a.t SELECT * FROM a.u,<not logged>"]
    );
    assert_eq!(
        bodies(&settings(|c| (c.log_relation, c.log_rows) = (true, true)), &r),
        [
            "SESSION,12,1,WRITE,INSERT,TABLE,a.t,INSERT INTO a.t SELECT * FROM a.u,<not logged>,42",
            "SESSION,12,1,WRITE,INSERT,VIEW,a.u,INSERT INTO a.t SELECT * FROM a.u,<not logged>,42",
        ]
    );
    assert_eq!(
        bodies(&settings(|c| (c.log_relation, c.log_statement_once) = (true, true)), &r),
        [
            "SESSION,12,1,WRITE,INSERT,TABLE,a.t,INSERT INTO a.t SELECT * FROM a.u,<not logged>",
            "SESSION,12,1,WRITE,INSERT,VIEW,a.u,<previously logged>,<previously logged>",
        ]
    );
    let ddl = statement(AuditClass::Ddl, "DROP TABLE", "DROP TABLE a.x");
    assert_eq!(
        bodies(&settings(|c| c.log_rows = true), &record(Event::Statement(ddl))),
        ["SESSION,12,1,DDL,DROP TABLE,,,DROP TABLE a.x,<not logged>,0"]
    );
}

#[test]
fn ddl_names_its_objects_without_log_relation() {
    let mut s = statement(AuditClass::Ddl, "DROP TABLE", "DROP TABLE a.x, a.y");
    s.objects = vec![("TABLE".into(), "a.x".into()), ("TABLE".into(), "a.y".into())];
    assert_eq!(
        bodies(&settings(|_| {}), &record(Event::Statement(s))),
        [
            "SESSION,12,1,DDL,DROP TABLE,TABLE,a.x,DROP TABLE a.x, a.y,<not logged>",
            "SESSION,12,1,DDL,DROP TABLE,TABLE,a.y,DROP TABLE a.x, a.y,<not logged>"
        ]
        .map(|l| l.replace("DROP TABLE a.x, a.y,<", "\"DROP TABLE a.x, a.y\",<"))
    );
}

fn with_parameters(parameters: Parameters) -> Record {
    let mut s = statement(AuditClass::Read, "SELECT", "SELECT $1");
    s.parameters = parameters;
    record(Event::Statement(s))
}

#[test]
fn parameters_and_their_placeholders() {
    let on = settings(|c| c.log_parameter = true);
    let body = |s: &AuditSettings, p: Parameters| {
        bodies(s, &with_parameters(p))[0].strip_prefix("SESSION,12,1,READ,SELECT,,,SELECT $1,").unwrap().to_owned()
    };
    let values = |v: &[Option<&str>]| Parameters::Values(v.iter().map(|v| v.map(String::from)).collect());
    assert_eq!(body(&on, values(&[Some("5")])), "5");
    assert_eq!(body(&on, values(&[Some("1"), Some("2")])), "\"1,2\"");
    assert_eq!(
        body(&on, values(&[Some("1"), None, Some("a,b"), Some("say \"hi\"")])),
        r#""1,,""a,b"",""say """"hi""""""""#
    );
    assert_eq!(body(&on, values(&[Some("line\nbreak")])), "\"\"\"line\nbreak\"\"\"");
    assert_eq!(body(&on, values(&[])), "<none>");
    assert_eq!(body(&on, Parameters::None), "<none>");
    assert_eq!(body(&on, Parameters::NotLogged), "<not logged>");
    assert_eq!(body(&settings(|_| {}), values(&[Some("5")])), "<not logged>");
    let max = settings(|c| (c.log_parameter, c.log_parameter_max_size) = (true, 3));
    assert_eq!(body(&max, values(&[Some("abc"), Some("abcd"), None])), "\"abc,<long param suppressed>,\"");
}

#[test]
fn which_records_are_logged() {
    let only_write = settings(|c| c.log = vec!["WRITE".into()]);
    let mut s = statement(AuditClass::Read, "SELECT", "SELECT 1");
    assert!(!is_logged(&only_write, &record(Event::Statement(s.clone()))));
    s.outcome = Outcome::Denied { rule: "class READ".into() };
    assert!(is_logged(&only_write, &record(Event::Statement(s.clone()))));
    assert!(is_logged(&only_write, &record(Event::Logout)));

    let no_catalog = settings(|c| (c.log_catalog, c.log_relation) = (false, true));
    let mut s = statement(AuditClass::Read, "SELECT", "SELECT * FROM pg_catalog.pg_class, a.t");
    s.catalog_only = true;
    assert!(!is_logged(&no_catalog, &record(Event::Statement(s.clone()))));
    assert!(is_logged(&settings(|_| {}), &record(Event::Statement(s.clone()))));
    s.catalog_only = false;
    s.objects = vec![("TABLE".into(), "pg_catalog.pg_class".into()), ("TABLE".into(), "a.t".into())];
    let body = bodies(&no_catalog, &record(Event::Statement(s)));
    assert_eq!(body, ["SESSION,12,1,READ,SELECT,TABLE,a.t,\"SELECT * FROM pg_catalog.pg_class, a.t\",<not logged>"]);
}

#[test]
fn outcomes_classes_and_connection_events() {
    let s = settings(|_| {});
    let mut set = statement(AuditClass::MiscSet, "SET", "SET search_path = x");
    set.outcome = Outcome::Error { sqlstate: "22023".into() };
    let line = lines(&s, &record(Event::Statement(set.clone())));
    assert_eq!(
        line,
        [format!(
            "{PREFIX} outcome=error sqlstate=22023 AUDIT: SESSION,12,1,MISC,SET,,,SET search_path = x,<not logged>"
        )]
    );
    set.outcome = Outcome::Denied { rule: "workspace alpha: class MISC_SET".into() };
    let line = lines(&s, &record(Event::Statement(set)));
    assert!(
        line[0].contains(
            " identity=- outcome=denied rule=\"workspace alpha: class MISC_SET\" AUDIT: SESSION,12,1,MISC,SET,"
        )
    );

    let login = |ok, reason: Option<&str>| Event::Login {
        ok,
        method: "scram-sha-256".into(),
        reason: reason.map(String::from),
    };
    assert_eq!(bodies(&s, &record(login(true, None))), ["LOGIN,ok,scram-sha-256"]);
    assert_eq!(
        bodies(&s, &record(login(false, Some("password authentication failed for user \"bob\"")))),
        ["LOGIN,failed,scram-sha-256,\"password authentication failed for user \"\"bob\"\"\""]
    );
    assert_eq!(bodies(&s, &record(Event::Logout)), ["LOGOUT"]);
    assert_eq!(bodies(&s, &record(Event::Cancel { forwarded: true })), ["CANCEL,forwarded"]);
    assert_eq!(bodies(&s, &record(Event::Cancel { forwarded: false })), ["CANCEL,ignored"]);
}

#[test]
fn passwords_are_redacted_in_both_formats() {
    let r = record(Event::Statement(statement(AuditClass::Role, "ALTER ROLE", "ALTER ROLE bob PASSWORD 'hunter2';")));
    let pgaudit = lines(&settings(|_| {}), &r);
    assert!(
        pgaudit[0].ends_with("AUDIT: SESSION,12,1,ROLE,ALTER ROLE,,,ALTER ROLE bob PASSWORD <REDACTED>,<not logged>")
    );
    let json = lines(&settings(|c| c.format = AuditFormat::Json), &r);
    assert!(!json[0].contains("hunter2"));
    let v: Value = serde_json::from_str(&json[0]).unwrap();
    assert_eq!(v["statement"], "ALTER ROLE bob PASSWORD <REDACTED>");
}

fn json_lines(settings: &AuditSettings, record: &Record) -> Vec<Value> {
    lines(settings, record).iter().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn json_statement_lines() {
    let json = settings(|c| (c.format, c.log_parameter, c.log_relation) = (AuditFormat::Json, true, true));
    let mut s = statement(AuditClass::Write, "UPDATE", "UPDATE a.t SET v = $1 WHERE k = $2");
    s.objects = vec![("TABLE".into(), "a.t".into())];
    s.parameters = Parameters::Values(vec![Some("x\"y".into()), None]);
    s.rows = Some(3);
    s.duration = Some(Duration::from_micros(12_500));
    let v = json_lines(&json, &record(Event::Statement(s.clone())));
    assert_eq!(
        v,
        [json!({
            "time": "2026-11-22T10:15:03.481Z", "client": "10.42.0.7:51514", "user": "alice", "database": "akko",
            "workspace": "alpha", "backend": "data", "session": "7f3a", "tls": "TLSv1.3", "identity": null,
            "kind": "SESSION", "statement_id": 12, "substatement_id": 1, "class": "WRITE", "command": "UPDATE",
            "object_type": "TABLE", "object_name": "a.t", "statement": "UPDATE a.t SET v = $1 WHERE k = $2",
            "parameters": ["x\"y", null], "outcome": "ok", "sqlstate": null, "rule": null, "rows": 3, "duration_ms": 12.5,
        })]
    );

    s.outcome = Outcome::Denied { rule: "relation a.t".into() };
    s.class = AuditClass::MiscSet;
    s.objects.push(("TABLE".into(), "a.u".into()));
    s.parameters = Parameters::None;
    let once = settings(|c| (c.format, c.log_parameter, c.log_statement_once) = (AuditFormat::Json, true, true));
    let v = json_lines(&once, &record(Event::Statement(s)));
    assert_eq!(v.len(), 2);
    assert_eq!(
        (&v[0]["outcome"], &v[0]["rule"], &v[0]["class"]),
        (&json!("denied"), &json!("relation a.t"), &json!("MISC_SET"))
    );
    assert_eq!(
        (&v[0]["parameters"], &v[0]["rows"], &v[0]["object_name"]),
        (&json!("<none>"), &json!(3), &json!("a.t"))
    );
    assert_eq!(
        (&v[1]["statement"], &v[1]["parameters"]),
        (&json!("<previously logged>"), &json!("<previously logged>"))
    );
    assert_eq!(v[1]["object_name"], "a.u");

    let mut failed = statement(AuditClass::Read, "SELECT", "SELECT 1/0");
    failed.outcome = Outcome::Error { sqlstate: "22012".into() };
    let v = json_lines(&settings(|c| c.format = AuditFormat::Json), &record(Event::Statement(failed)));
    assert_eq!(
        (&v[0]["outcome"], &v[0]["sqlstate"], &v[0]["parameters"]),
        (&json!("error"), &json!("22012"), &json!("<not logged>"))
    );
    assert_eq!((&v[0]["object_type"], &v[0]["rows"], &v[0]["duration_ms"]), (&Value::Null, &Value::Null, &Value::Null));
}

#[test]
fn json_connection_events() {
    let json = settings(|c| c.format = AuditFormat::Json);
    let common = |kind: &str| {
        let mut v = json!({
            "time": "2026-11-22T10:15:03.481Z", "client": "10.42.0.7:51514", "user": "alice", "database": "akko",
            "workspace": "alpha", "backend": "data", "session": "7f3a", "tls": "TLSv1.3", "identity": null,
        });
        v["kind"] = json!(kind);
        v
    };
    let mut login = common("LOGIN");
    login["outcome"] = json!("failed");
    login["method"] = json!("md5");
    login["reason"] = json!("bad password");
    let event = Event::Login { ok: false, method: "md5".into(), reason: Some("bad password".into()) };
    assert_eq!(json_lines(&json, &record(event)), [login]);
    assert_eq!(json_lines(&json, &record(Event::Logout)), [common("LOGOUT")]);
    let mut cancel = common("CANCEL");
    cancel["outcome"] = json!("ignored");
    assert_eq!(json_lines(&json, &record(Event::Cancel { forwarded: false })), [cancel]);
}

#[test]
fn broken_clocks_do_not_fail_a_record() {
    let mut r = record(Event::Logout);
    r.time = UNIX_EPOCH - Duration::from_secs(5);
    assert!(lines(&settings(|_| {}), &r)[0].starts_with("1970-01-01 00:00:00.000 UTC client="));
    r.time = UNIX_EPOCH + Duration::from_secs(400_000_000_000);
    assert!(lines(&settings(|_| {}), &r)[0].starts_with("9999-12-31 23:59:59.999 UTC client="));
    let _ = SystemTime::now();
}
