//! Metrics and health endpoints against real PostgreSQL: counters and histograms move by
//! exactly the workload's amounts between two scrapes, /healthz and /readyz answer as
//! Kubernetes probes expect (503 from the moment a drain starts, while a transaction in
//! flight still commits), pg_isready reports pgate as accepting connections, and the binary
//! exits 0 after SIGTERM (at once after a second one).

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use tokio_postgres::types::Type;

use common::process::{http_get as get, metric as value};

async fn scrape(pgate: &Pgate) -> String {
    let (status, body) = get(pgate.metrics_addr.expect("metrics on"), "/metrics").await;
    assert_eq!(status, 200);
    body
}

/// Waits up to `secs` for `done`.
async fn until(what: &str, secs: u64, mut done: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !done().await {
        assert!(started.elapsed() < Duration::from_secs(secs), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_and_histograms_move_by_the_workload() {
    fresh_database("metrics_tx");
    let pgate = Pgate::start(&config_with_fallback("[pool]\nsize = 2\n")).await;
    let client = pgate.alice("metrics_tx").await;
    let pool = [("database", "metrics_tx"), ("user", "alice")];
    let before = scrape(&pgate).await;
    assert_eq!(value(&before, "pgate_clients", &[pool[0], ("state", "idle")]), 1.0, "{before}");

    // 10 single-statement transactions, 5 of three round trips, 5 in the extended protocol
    // (Parse/Bind/Execute/Sync in one round trip): 20 transactions, 30 queries.
    for i in 0..10 {
        client.simple_query(&format!("SELECT {i}")).await.unwrap();
    }
    for _ in 0..5 {
        for sql in ["BEGIN", "SELECT pg_sleep(0.002)", "COMMIT"] {
            client.simple_query(sql).await.unwrap();
        }
    }
    for i in 0..5 {
        client.query_typed("SELECT $1::int", &[(&i, Type::INT4)]).await.unwrap();
    }
    let after = scrape(&pgate).await;
    let moved = |name: &str| value(&after, name, &pool) - value(&before, name, &pool);
    assert_eq!(moved("pgate_transactions_total"), 20.0);
    assert_eq!(moved("pgate_transaction_duration_seconds_count"), 20.0);
    assert_eq!(moved("pgate_queries_total"), 30.0);
    assert_eq!(moved("pgate_query_duration_seconds_count"), 30.0);
    // One checkout per transaction: the server is kept across the three round trips.
    assert_eq!(moved("pgate_checkout_wait_seconds_count"), 20.0);
    // The five slow transactions took at least 2 ms each.
    assert!(moved("pgate_transaction_duration_seconds_sum") >= 0.010);
    let slow = value(&after, "pgate_transaction_duration_seconds_bucket", &[pool[0], ("le", "0.001")]);
    assert!(slow <= 15.0, "the slow transactions are above the 1 ms bucket: {slow}");
    assert!(moved("pgate_client_received_bytes_total") > 0.0);
    assert!(moved("pgate_client_sent_bytes_total") > moved("pgate_client_received_bytes_total"));
    assert!(value(&after, "pgate_servers", &[pool[0], ("state", "idle")]) >= 1.0);
    assert_eq!(value(&after, "pgate_pool_size", &[pool[0], ("mode", "transaction")]), 2.0);

    // A failing statement: one error of class 22, and still a query and a transaction.
    let e = client.simple_query("SELECT 1/0").await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("22012"));
    // (The error may reach the client before the ReadyForQuery behind it reaches pgate.)
    client.simple_query("SELECT 1").await.unwrap();
    let last = scrape(&pgate).await;
    assert_eq!(value(&last, "pgate_errors_total", &[pool[0], ("class", "22")]), 1.0);
    assert_eq!(value(&last, "pgate_transactions_total", &pool), value(&after, "pgate_transactions_total", &pool) + 2.0);
    drop(client);
    until("the client to leave", 5, async || value(&scrape(&pgate).await, "pgate_clients", &[pool[0]]) == 0.0).await;
    pgate.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pool_shows_waiting_clients_and_counts_the_timeout() {
    fresh_database("metrics_wait");
    let pgate = Pgate::start(&config_with_fallback("[pool]\nsize = 1\nquery_wait_timeout = \"1500ms\"\n")).await;
    let pool = [("database", "metrics_wait")];
    let holder = pgate.alice("metrics_wait").await;
    holder.simple_query("BEGIN").await.unwrap();
    let waiter = pgate.alice("metrics_wait").await;
    let waiting = tokio::spawn(async move { waiter.simple_query("SELECT 1").await });
    until("a queued client", 5, async || {
        let text = scrape(&pgate).await;
        value(&text, "pgate_pool_waiting_clients", &pool) == 1.0
            && value(&text, "pgate_clients", &[pool[0], ("state", "waiting")]) == 1.0
            && value(&text, "pgate_clients", &[pool[0], ("state", "active")]) == 1.0
            && value(&text, "pgate_servers", &[pool[0], ("state", "active")]) == 1.0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let text = scrape(&pgate).await;
    assert!(value(&text, "pgate_pool_longest_wait_seconds", &pool) >= 0.2, "{text}");
    let e = waiting.await.unwrap().unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("53300"));
    let text = scrape(&pgate).await;
    assert_eq!(value(&text, "pgate_checkout_errors_total", &[pool[0], ("reason", "timeout")]), 1.0);
    assert_eq!(value(&text, "pgate_errors_total", &[pool[0], ("class", "53")]), 1.0);
    // Two checkouts so far: the holder's, and the one that timed out after 1.5 s.
    assert_eq!(value(&text, "pgate_checkout_wait_seconds_count", &pool), 2.0);
    assert!(value(&text, "pgate_checkout_wait_seconds_sum", &pool) >= 1.5);
    assert_eq!(value(&text, "pgate_pool_waiting_clients", &pool), 0.0);
    holder.simple_query("COMMIT").await.unwrap();
    pgate.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_are_counted_by_result_and_method() {
    let pgate = Pgate::start(&config("")).await;
    let before = scrape(&pgate).await;
    let scram = [("method", "scram-sha-256")];
    assert!(pgate.connect("alice", "wrong", "akko").await.is_err());
    drop(pgate.alice("akko").await);
    assert!(pgate.connect("alice", ALICE_PW, "nowhere").await.is_err());
    let after = scrape(&pgate).await;
    let moved = |name: &str, labels: &[(&str, &str)]| value(&after, name, labels) - value(&before, name, labels);
    assert_eq!(moved("pgate_logins_total", &[scram[0], ("result", "auth_failed")]), 1.0);
    assert_eq!(moved("pgate_logins_total", &[scram[0], ("result", "ok")]), 1.0);
    assert_eq!(moved("pgate_logins_total", &[("method", "none"), ("result", "unknown_database")]), 1.0);
    assert_eq!(moved("pgate_auth_failures_total", &[("reason", "password")]), 1.0);
    assert_eq!(value(&after, "pgate_build_info", &[]), 1.0);
    pgate.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_turns_503_when_the_drain_starts_and_the_transaction_in_flight_commits() {
    fresh_database("metrics_drain");
    let data = &backends().data;
    data.psql("metrics_drain", "CREATE TABLE t (v int); ALTER TABLE t OWNER TO alice").unwrap();
    let mut pgate = Pgate::start(&config_with_fallback("[listen]\nshutdown_timeout = \"20s\"\n")).await;
    let http = pgate.metrics_addr.unwrap();
    assert_eq!(get(http, "/healthz").await, (200, "ok\n".into()));
    until("/readyz 200", 10, async || get(http, "/readyz").await.0 == 200).await;
    assert_eq!(get(http, "/nothing").await.0, 404);

    let client = pgate.alice("metrics_drain").await;
    client.simple_query("BEGIN").await.unwrap();
    client.simple_query("INSERT INTO t VALUES (1)").await.unwrap();
    let stopping = Instant::now();
    pgate.begin_stop();
    until("/readyz 503", 2, async || get(http, "/readyz").await.0 == 503).await;
    assert!(stopping.elapsed() < Duration::from_secs(1), "503 came {:?} after the drain began", stopping.elapsed());
    let (_, why) = get(http, "/readyz").await;
    assert!(why.contains("draining"), "{why}");
    assert_eq!(value(&scrape(&pgate).await, "pgate_draining", &[]), 1.0);
    assert_eq!(get(http, "/healthz").await.0, 200, "alive while draining");
    client.simple_query("COMMIT").await.expect("the transaction in flight commits");
    assert_eq!(data.psql("metrics_drain", "SELECT count(*) FROM t").unwrap(), "1");
    until("the drain to end", 10, async || pgate.finished()).await;
    pgate.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_names_a_backend_that_cannot_be_reached() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let ghost = format!("\n[backends.ghost]\nhost = \"127.0.0.1\"\nport = {closed}\ndatabases = [\"ghostdb\"]\n");
    let pgate = Pgate::start(&format!(
        "{}{ghost}",
        config("[metrics]\naddress = \"127.0.0.1:0\"\nprobe_interval = \"200ms\"\n")
    ))
    .await;
    let http = pgate.metrics_addr.unwrap();
    until("the probes", 10, async || {
        let text = scrape(&pgate).await;
        value(&text, "pgate_backend_up", &[("backend", "data")]) == 1.0
            && value(&text, "pgate_backend_up", &[("backend", "infra")]) == 1.0
    })
    .await;
    let (status, why) = get(http, "/readyz").await;
    assert_eq!(status, 503);
    assert!(why.contains("backend ghost") && !why.contains("backend data"), "{why}");
    let text = scrape(&pgate).await;
    assert_eq!(value(&text, "pgate_backend_up", &[("backend", "ghost")]), 0.0);
    assert_eq!(value(&text, "pgate_ready", &[]), 0.0);
    pgate.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_isready_says_accepting_connections_even_with_workspaces() {
    let workspace = "\n[[workspaces]]\nname = \"alpha\"\nusers = [\"alice\"]\ndatabases = [\"akko\"]\n";
    for extra in ["", workspace] {
        let pgate = Pgate::start(&format!("{}{extra}", config(""))).await;
        let out = tool("pg_isready").args(["-h", "127.0.0.1", "-p", &pgate.port().to_string()]).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && stdout.contains("accepting connections"), "{stdout}");
        let port = pgate.port().to_string();
        let out =
            tool("pg_isready").args(["-h", "127.0.0.1", "-p", &port, "-U", "alice", "-d", "akko"]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
        pgate.stop().await;
    }
}

/// `pgate run` as a child process with its logs drained by a thread.
struct Child {
    process: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Child {
    /// Starts pgate over the shared clusters (with the `*` fallback); returns it, its
    /// client port and its metrics address.
    fn start(listen: &str) -> (Child, u16, SocketAddr) {
        let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let (port, http) = (free().port(), free());
        let b = backends();
        let text = format!(
            "[listen]\naddress = \"127.0.0.1:{port}\"\n{listen}\n[metrics]\naddress = \"{http}\"\n{}",
            routes_and_users(b.infra.port(), b.data.port())
        )
        .replace("databases = [\"akko\", \"aden\"]", "databases = [\"akko\", \"aden\", \"*\"]");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgate.toml");
        std::fs::write(&path, text).unwrap();
        let mut process = Command::new(env!("CARGO_BIN_EXE_pgate"))
            .arg("--config")
            .arg(&path)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        common::process::forward_stderr(&mut process);
        (Child { process, _dir: dir }, port, http)
    }

    fn signal(&self, name: &str) {
        let pid = self.process.id().to_string();
        assert!(Command::new("kill").args([&format!("-{name}"), &pid]).status().unwrap().success());
    }

    async fn exit_status(&mut self, within: Duration) -> std::process::ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.process.try_wait().unwrap() {
                return status;
            }
            assert!(started.elapsed() < within, "pgate did not exit within {within:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// Once the child pgate is ready: a client inside a transaction that inserted `value` into
/// `metrics_sigterm.t`.
async fn open_insert(port: u16, http: SocketAddr, value: i32) -> tokio_postgres::Client {
    until("/readyz 200", 20, async || {
        tokio::net::TcpStream::connect(http).await.is_ok() && get(http, "/readyz").await.0 == 200
    })
    .await;
    let conninfo =
        format!("host=127.0.0.1 port={port} user=alice password={ALICE_PW} dbname=metrics_sigterm sslmode=disable");
    let client = connect(&conninfo).await.unwrap();
    client.simple_query("BEGIN").await.unwrap();
    client.simple_query(&format!("INSERT INTO t VALUES ({value})")).await.unwrap();
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_transaction_commit_and_exits_0_and_a_second_one_stops_at_once() {
    fresh_database("metrics_sigterm");
    let data = &backends().data;
    data.psql("metrics_sigterm", "CREATE TABLE t (v int); ALTER TABLE t OWNER TO alice").unwrap();
    let listen = "shutdown_timeout = \"30s\"";

    // One SIGTERM: /readyz 503 at once, the transaction commits, exit status 0.
    let (mut pgate, port, http) = Child::start(listen);
    let client = open_insert(port, http, 1).await;
    pgate.signal("TERM");
    let signalled = Instant::now();
    until("/readyz 503", 2, async || get(http, "/readyz").await.0 == 503).await;
    assert!(signalled.elapsed() < Duration::from_secs(1), "503 came {:?} after SIGTERM", signalled.elapsed());
    client.simple_query("COMMIT").await.expect("the transaction in flight commits");
    let status = pgate.exit_status(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert_eq!(data.psql("metrics_sigterm", "SELECT count(*) FROM t").unwrap(), "1");

    // A second SIGTERM during the drain: the open transaction is cut, pgate exits at once.
    let (mut pgate, port, http) = Child::start(listen);
    let client = open_insert(port, http, 2).await;
    pgate.signal("TERM");
    until("/readyz 503", 2, async || get(http, "/readyz").await.0 == 503).await;
    let second = Instant::now();
    pgate.signal("INT");
    let status = pgate.exit_status(Duration::from_secs(5)).await;
    assert!(second.elapsed() < Duration::from_secs(3), "the second signal took {:?}", second.elapsed());
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(client.simple_query("COMMIT").await.is_err(), "the cut transaction cannot commit");
    assert_eq!(data.psql("metrics_sigterm", "SELECT count(*) FROM t").unwrap(), "1");

    // A drain the console's SHUTDOWN began: the first signal already stops at once.
    let (mut pgate, port, http) = Child::start(&format!("{listen}\n[admin]\nusers = [\"carol\"]"));
    let _in_flight = open_insert(port, http, 3).await;
    let console = format!("host=127.0.0.1 port={port} user=carol password={CAROL_PW} dbname=pgate sslmode=disable");
    let (admin, connection) = tokio_postgres::connect(&console, tokio_postgres::NoTls).await.expect("console login");
    tokio::spawn(connection);
    admin.simple_query("SHUTDOWN").await.expect("SHUTDOWN");
    until("/readyz 503", 2, async || get(http, "/readyz").await.0 == 503).await;
    let first = Instant::now();
    pgate.signal("TERM");
    let status = pgate.exit_status(Duration::from_secs(5)).await;
    assert!(first.elapsed() < Duration::from_secs(3), "the signal after SHUTDOWN took {:?}", first.elapsed());
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert_eq!(data.psql("metrics_sigterm", "SELECT count(*) FROM t").unwrap(), "1", "the cut transaction is gone");
}
