//! The pgaudit line field by field (context, LOGIN, LOGOUT, CANCEL, errors), `log_relation` and
//! `log_parameter`, and passwords redacted in both formats.

use std::path::Path;

use serde_json::Value;

use crate::common::raw::*;
use crate::common::*;
use crate::support::*;
use crate::workload::*;

/// A pgaudit line: the time, the `key=value` context, and what follows `AUDIT: `.
struct PgauditLine {
    time: String,
    context: Vec<(String, String)>,
    body: String,
}

fn pgaudit_lines(path: &Path) -> Vec<PgauditLine> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .map(|line| {
            let (prefix, body) = line.split_once(" AUDIT: ").unwrap_or_else(|| panic!("no AUDIT: in {line}"));
            let words: Vec<&str> = prefix.split(' ').collect();
            let context = words[3..]
                .iter()
                .map(|w| w.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())).expect("key=value"))
                .collect();
            PgauditLine { time: words[..3].join(" "), context, body: body.to_owned() }
        })
        .collect()
}

impl PgauditLine {
    fn get(&self, key: &str) -> &str {
        self.context.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).unwrap_or_else(|| panic!("{key}"))
    }

    fn keys(&self) -> Vec<&str> {
        self.context.iter().map(|(k, _)| k.as_str()).collect()
    }
}

/// `2026-11-22 10:15:03.481 UTC`.
fn assert_log_time(time: &str) {
    let shape: String = time.chars().map(|c| if c.is_ascii_digit() { '9' } else { c }).collect();
    assert_eq!(shape, "9999-99-99 99:99:99.999 UTC", "{time}");
}

const CONTEXT_KEYS: [&str; 8] = ["client", "user", "db", "workspace", "backend", "session", "tls", "identity"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgaudit_lines_carry_the_context_logins_logouts_and_no_passwords() {
    audit_database("audit_pgaudit");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    // SCRAM logins (no trust), default pgaudit settings; the workspace allows every class.
    let pgate = Pgate::start(&audit_config("audit_pgaudit", "", &sink_line(&path), "\"ALL\"")).await;
    let client = pgate.alice("audit_pgaudit").await;
    assert_eq!(simple_rows(&client, "SELECT id FROM aud.t WHERE id = 1").await, 1);
    // alice may not create roles: the server refuses it, and the log has no password.
    let create = "CREATE ROLE audit_x PASSWORD 'hunter2-secret'";
    failed_with(client.simple_query(create).await, "42501", create);
    let wrong = pgate.connect("alice", "not-her-password", "audit_pgaudit").await;
    failed_with(wrong, "28P01", "a wrong password");
    drop(client);
    settle_and_stop(pgate).await;

    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains("hunter2"), "a password reached the audit log:\n{text}");
    let lines = pgaudit_lines(&path);
    assert_eq!(lines.len(), 5, "{text}");
    let [login, select, create_role, failed, logout] = &lines[..] else { unreachable!() };
    for line in [login, select, create_role, logout] {
        assert_log_time(&line.time);
        assert!(line.get("client").starts_with("127.0.0.1:"), "{}", line.get("client"));
        let fixed = ["alice", "audit_pgaudit", "auditors", "data"];
        assert_eq!([line.get("user"), line.get("db"), line.get("workspace"), line.get("backend")], fixed);
        assert_eq!((line.get("tls"), line.get("identity")), ("-", "-"));
        assert!(u32::from_str_radix(line.get("session"), 16).is_ok(), "{}", line.get("session"));
        assert_eq!(line.get("session"), login.get("session"));
    }
    assert_eq!(login.keys(), CONTEXT_KEYS);
    assert_eq!(login.body, "LOGIN,ok,scram-sha-256");
    assert_eq!(select.keys(), CONTEXT_KEYS);
    assert_eq!(select.body, "SESSION,1,1,READ,SELECT,,,SELECT id FROM aud.t WHERE id = 1,<not logged>");
    // An error is said before AUDIT:, outside pgaudit's fields.
    assert_eq!(create_role.keys(), [&CONTEXT_KEYS[..], &["outcome", "sqlstate"]].concat());
    assert_eq!((create_role.get("outcome"), create_role.get("sqlstate")), ("error", "42501"));
    assert_eq!(create_role.body, "SESSION,2,1,ROLE,CREATE ROLE,,,CREATE ROLE audit_x PASSWORD <REDACTED>,<not logged>");
    assert_eq!(logout.keys(), CONTEXT_KEYS);
    assert_eq!(logout.body, "LOGOUT");
    // A failed login: the user and database it asked for, its reason CSV-quoted; it has no
    // workspace, backend or session yet, and says so as an absent value does (`-`, where a
    // quoted `"-"` would be a backend or session named "-").
    assert_log_time(&failed.time);
    assert_eq!(failed.keys(), CONTEXT_KEYS);
    assert_eq!(failed.body, "LOGIN,failed,-,\"password authentication failed for user \"\"alice\"\"\"");
    assert!(failed.get("client").starts_with("127.0.0.1:"), "{}", failed.get("client"));
    assert_eq!((failed.get("tls"), failed.get("identity")), ("-", "-"));
    let who = [failed.get("user"), failed.get("db"), failed.get("workspace")];
    assert_eq!(who, ["alice", "audit_pgaudit", "-"]);
    assert_eq!((failed.get("backend"), failed.get("session")), ("-", "-"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_are_redacted_in_json_too() {
    audit_database("audit_redact");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let audit = format!("{}\nformat = \"json\"", sink_line(&path));
    let pgate = Pgate::start(&audit_config("audit_redact", TRUST, &audit, "\"ALL\"")).await;
    let client = pgate.connect("alice", "", "audit_redact").await.unwrap();
    let create = "CREATE ROLE audit_x PASSWORD 'hunter2-secret'";
    failed_with(client.simple_query(create).await, "42501", create);
    let alter = "ALTER ROLE audit_x WITH LOGIN PASSWORD $$hunter2-secret$$";
    failed_with(client.simple_query(alter).await, "42704", alter);
    drop(client);
    settle_and_stop(pgate).await;

    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains("hunter2"), "a password reached the audit log:\n{text}");
    let statements: Vec<Value> = read_json(&path).into_iter().filter(|l| l["kind"] == "SESSION").collect();
    let seen: Vec<Expected> = statements.iter().map(Expected::of_line).collect();
    assert_eq!(
        seen,
        [
            Expected::error("ROLE", "CREATE ROLE", "42501", "CREATE ROLE audit_x PASSWORD <REDACTED>"),
            Expected::error("ROLE", "ALTER ROLE", "42704", "ALTER ROLE audit_x WITH LOGIN PASSWORD <REDACTED>"),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgaudit_log_relation_and_log_parameter() {
    audit_database("audit_params");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let audit = format!("{}\nlog_relation = true\nlog_parameter = true", sink_line(&path));
    let pgate = Pgate::start(&audit_config("audit_params", TRUST, &audit, READ_AND_SET)).await;
    let mut raw = RawClient::login_trusted(pgate.addr, "alice", "audit_params").await;
    let join = "SELECT t.v, u.id FROM aud.t t JOIN aud.u u ON u.t_id = t.id WHERE t.id = 1";
    raw.send(&query(join)).await;
    assert_eq!(codes(&raw.until_ready().await), "TDCZ");
    let bound = "SELECT v FROM aud.t WHERE id = $1 AND v IS DISTINCT FROM $2 AND $3::text IS NULL";
    raw.send(&[parse("", bound), bind_text(&[Some("1"), Some("x,y"), None]), execute("", 0), sync()].concat()).await;
    assert_eq!(first_column(&raw.until_ready().await), ["v1"]);
    drop(raw);
    // tokio-postgres binds in binary: the log shows the bytes in hex.
    let client = pgate.connect("alice", "", "audit_params").await.unwrap();
    assert_eq!(client.query(BY_ID, &[&7i32]).await.unwrap().len(), 1);
    drop(client);
    settle_and_stop(pgate).await;

    let statements: Vec<String> =
        pgaudit_lines(&path).into_iter().map(|l| l.body).filter(|b| b.starts_with("SESSION,")).collect();
    assert_eq!(
        statements,
        [
            format!("SESSION,1,1,READ,SELECT,TABLE,aud.t,\"{join}\",<none>"),
            format!("SESSION,1,1,READ,SELECT,TABLE,aud.u,\"{join}\",<none>"),
            format!("SESSION,2,1,READ,SELECT,TABLE,aud.t,{bound},\"1,\"\"x,y\"\",\""),
            format!("SESSION,1,1,READ,SELECT,TABLE,aud.t,{BY_ID},\\x00000007"),
        ]
    );
}

/// A CancelRequest is recorded under the session its key names (`forwarded` when a query
/// was running there, `ignored` for a key nobody has), before the cancelled statement's
/// error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_requests_are_recorded_under_their_session() {
    audit_database("audit_cancel");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let pgate = Pgate::start(&audit_config("audit_cancel", TRUST, &sink_line(&path), READ_AND_SET)).await;
    let client = std::sync::Arc::new(pgate.connect("alice", "", "audit_cancel").await.unwrap());
    let sleep = "SELECT pg_sleep(60)";
    let running = tokio::spawn({
        let client = client.clone();
        async move { client.simple_query(sleep).await }
    });
    wait_for_server("audit_cancel", sleep, "active").await;
    client.cancel_token().cancel_query(tokio_postgres::NoTls).await.unwrap();
    failed_with(running.await.unwrap(), "57014", sleep);
    let mut nobody = RawClient::connect(pgate.addr).await;
    nobody.send(&cancel_packet(0x7fff_0001, 42)).await;
    assert!(nobody.closed().await);
    drop(client);
    settle_and_stop(pgate).await;

    let lines = pgaudit_lines(&path);
    let bodies: Vec<(&str, &str)> = lines.iter().map(|l| (l.get("session"), l.body.as_str())).collect();
    let session = lines[0].get("session");
    assert_eq!(
        bodies,
        [
            (session, "LOGIN,ok,trust"),
            (session, "CANCEL,forwarded"),
            (session, "SESSION,1,1,READ,SELECT,,,SELECT pg_sleep(60),<not logged>"),
            ("7fff0001", "CANCEL,ignored"),
            (session, "LOGOUT"),
        ]
    );
    assert_eq!((lines[2].get("outcome"), lines[2].get("sqlstate")), ("error", "57014"));
}
