//! What the audit tests share: sinks (a FIFO read slowly by a thread), configurations, the
//! records a statement should leave, and reading JSON lines back.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::*;

/// The schema the test workspace may read, its tables, and a table outside the workspace.
pub const SCHEMA_SQL: &str = "SET ROLE alice; \
     CREATE SCHEMA aud; \
     CREATE TABLE aud.t (id int PRIMARY KEY, v text); \
     INSERT INTO aud.t SELECT g, 'v' || g FROM generate_series(1, 100) g; \
     CREATE TABLE aud.u (id int PRIMARY KEY, t_id int); \
     INSERT INTO aud.u SELECT g, g FROM generate_series(1, 10) g; \
     CREATE TABLE public.secret (x int)";

/// A database of its own for one test, with [`SCHEMA_SQL`] in it.
pub fn audit_database(name: &str) {
    fresh_database(name);
    backends().data.psql(name, SCHEMA_SQL).unwrap();
}

/// Logins from 127.0.0.1 without a password (no SCRAM work where a test does not need it).
pub const TRUST: &str = "[auth]\ntrust_networks = [\"127.0.0.1/32\"]\n";

/// The statement classes of the test workspace: it reads and sets settings, nothing else.
pub const READ_AND_SET: &str = "\"READ\", \"MISC_SET\"";

/// A configuration over the shared clusters (per-test databases routed to `data`) with an
/// `[audit]` table of `audit` (the sink line included), a workspace `auditors` for alice on
/// `db` that may run `classes` on `aud.*` only, and `head` (`[pool]`, `[auth]`...).
pub fn audit_config(db: &str, head: &str, audit: &str, classes: &str) -> String {
    format!(
        "{}\n[audit]\n{audit}\n\n[[workspaces]]\nname = \"auditors\"\nusers = [\"alice\"]\ndatabases = [\"{db}\"]\n\
         allow = [{classes}]\nrelations = {{ allow = [\"aud.*\"] }}\n",
        config_with_fallback(head)
    )
}

/// `sink = "<path>"`, for an `[audit]` table.
pub fn sink_line(path: &Path) -> String {
    format!("sink = \"{}\"", path.display())
}

/// A FIFO as the audit sink, read by a thread: paused until [`Fifo::resume`] if asked, then
/// `chunk` bytes per read with `delay` after each (for the first `slow_reads` reads; then
/// as fast as it can), so the writer waits on it.
pub struct Fifo {
    pub path: PathBuf,
    paused: Arc<AtomicBool>,
    reader: JoinHandle<Vec<u8>>,
}

impl Fifo {
    pub fn start(path: &Path, chunk: usize, delay: Duration, paused: bool) -> Fifo {
        Self::start_slow_for(path, chunk, delay, paused, usize::MAX)
    }

    pub fn start_slow_for(path: &Path, chunk: usize, delay: Duration, paused: bool, slow_reads: usize) -> Fifo {
        let status = std::process::Command::new("mkfifo").arg(path).status().expect("mkfifo runs");
        assert!(status.success(), "mkfifo {}", path.display());
        let paused = Arc::new(AtomicBool::new(paused));
        let (file, flag) = (path.to_owned(), paused.clone());
        let reader = std::thread::spawn(move || {
            // Blocks until pgate opens the FIFO for writing (at start).
            let mut fifo = File::open(&file).expect("open the FIFO for reading");
            let (mut out, mut buf) = (Vec::new(), vec![0; chunk]);
            let mut reads = 0;
            loop {
                reads += 1;
                if reads == slow_reads {
                    buf = vec![0; 1 << 16];
                }
                while flag.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                // EOF: the writer closed it (pgate's audit log was closed).
                let n = fifo.read(&mut buf).expect("read the FIFO");
                if n == 0 {
                    return out;
                }
                out.extend_from_slice(&buf[..n]);
                if reads < slow_reads {
                    std::thread::sleep(delay);
                }
            }
        });
        Fifo { path: path.to_owned(), paused, reader }
    }

    pub fn resume(&self) {
        self.paused.store(false, Ordering::Relaxed);
    }

    /// Everything read, once pgate has closed its audit log.
    pub fn finish(self) -> String {
        self.resume();
        String::from_utf8(self.reader.join().expect("the FIFO reader")).expect("audit lines are UTF-8")
    }
}

/// Waits (up to `limit`) until `done` holds; panics saying `what` otherwise.
pub async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "gave up waiting ({limit:?}) until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits (up to 20 s) until a server of the data cluster on `db` shows `query` in `state`
/// (`active`: running it; `idle`: it was the last one). psql runs on the blocking pool.
pub async fn wait_for_server(db: &str, query: &str, state: &str) {
    let count = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}' AND query = '{}' AND state = '{state}'",
        query.replace('\'', "''")
    );
    let start = Instant::now();
    loop {
        let count = count.clone();
        let found = tokio::task::spawn_blocking(move || backends().data.psql("postgres", &count).unwrap());
        if found.await.unwrap() == "1" {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "no server of {db} shows {query} {state}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until every client has left and every record has been written out, then stops
/// pgate (which closes the audit log) and returns the final counts.
pub async fn settle_and_stop(pgate: Pgate) -> pgate::audit::AuditStats {
    let shared = pgate.shared.clone();
    let auditor = shared.auditor.clone().expect("the audit log is on");
    wait_until("every client has left", Duration::from_secs(60), || shared.client_count() == 0).await;
    wait_until("the audit queue is empty", Duration::from_secs(60), || auditor.stats().queued == 0).await;
    pgate.stop().await;
    auditor.stats()
}

/// One JSON object per line; panics on a line that is not one.
pub fn json_lines(text: &str) -> Vec<Value> {
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l:?}"))).collect()
}

/// What a statement record should say; `parameters` is the JSON value (`"<not logged>"`,
/// `"<none>"` or an array).
#[derive(Debug, Clone, PartialEq)]
pub struct Expected {
    pub class: String,
    pub command: String,
    /// `ok`, `error <sqlstate>` or `denied <rule>`.
    pub outcome: String,
    pub rows: Option<u64>,
    pub statement: String,
    pub parameters: Value,
}

impl Expected {
    pub fn ok(class: &str, command: &str, rows: Option<u64>, statement: &str) -> Self {
        Self::new(class, command, "ok".into(), rows, statement)
    }

    pub fn error(class: &str, command: &str, sqlstate: &str, statement: &str) -> Self {
        Self::new(class, command, format!("error {sqlstate}"), None, statement)
    }

    pub fn denied(class: &str, command: &str, rule: &str, statement: &str) -> Self {
        Self::new(class, command, format!("denied {rule}"), None, statement)
    }

    fn new(class: &str, command: &str, outcome: String, rows: Option<u64>, text: &str) -> Self {
        let parameters = json!("<not logged>");
        Self { class: class.into(), command: command.into(), outcome, rows, statement: text.into(), parameters }
    }

    /// Bound parameters as the log shows them (tokio-postgres binds int4 in binary: hex).
    pub fn with_parameters(mut self, parameters: Value) -> Self {
        self.parameters = parameters;
        self
    }

    /// The same fields read from a JSON statement line.
    pub fn of_line(line: &Value) -> Expected {
        let text = |key: &str| line[key].as_str().unwrap_or_else(|| panic!("{key} in {line}")).to_owned();
        let outcome = match text("outcome").as_str() {
            "ok" => "ok".to_owned(),
            "error" => format!("error {}", text("sqlstate")),
            "denied" => format!("denied {}", text("rule")),
            other => panic!("unknown outcome {other} in {line}"),
        };
        Expected {
            class: text("class"),
            command: text("command"),
            outcome,
            rows: line["rows"].as_u64(),
            statement: text("statement"),
            parameters: line["parameters"].clone(),
        }
    }
}

/// An int4 as tokio-postgres binds it (binary), as the log writes a binary value.
pub fn int4_param(v: i32) -> String {
    format!("\\x{:08x}", v as u32)
}

/// The statement lines of one session, in file order, and its LOGIN / LOGOUT lines.
#[derive(Debug, Default)]
pub struct SessionLines {
    pub statements: Vec<Value>,
    pub logins: Vec<Value>,
    pub logouts: usize,
}

/// Groups lines by session id, keeping file order.
pub fn by_session(lines: &[Value]) -> std::collections::BTreeMap<String, SessionLines> {
    let mut sessions: std::collections::BTreeMap<String, SessionLines> = Default::default();
    for line in lines {
        let session = line["session"].as_str().expect("session").to_owned();
        let entry = sessions.entry(session).or_default();
        match line["kind"].as_str() {
            Some("SESSION") => entry.statements.push(line.clone()),
            Some("LOGIN") => entry.logins.push(line.clone()),
            Some("LOGOUT") => entry.logouts += 1,
            other => panic!("unexpected kind {other:?}: {line}"),
        }
    }
    sessions
}

/// Statement ids of statement lines, in order.
pub fn statement_ids(lines: &[Value]) -> Vec<u64> {
    lines.iter().map(|l| l["statement_id"].as_u64().expect("statement_id")).collect()
}

/// A Bind of the unnamed statement to the unnamed portal with text parameters, `None` for
/// NULL.
pub fn bind_text(params: &[Option<&str>]) -> Vec<u8> {
    // Portal "", statement "", no format codes (all text).
    let mut body = vec![0, 0, 0, 0];
    body.extend_from_slice(&(params.len() as i16).to_be_bytes());
    for p in params {
        match p {
            Some(p) => {
                body.extend_from_slice(&(p.len() as i32).to_be_bytes());
                body.extend_from_slice(p.as_bytes());
            }
            None => body.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    body.extend_from_slice(&0i16.to_be_bytes());
    crate::common::raw::message(b'B', &body)
}

/// A JSON audit file's lines (none when it does not exist).
pub fn read_json(path: &Path) -> Vec<Value> {
    json_lines(&std::fs::read_to_string(path).unwrap_or_default())
}
