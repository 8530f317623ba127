//! Clients that vanish while their server works (closed socket, reset, Terminate; mid-query,
//! mid-COPY, mid-reply, mid-pipeline, mid-message) in every pool mode: the backend's work is
//! cancelled and its locks released within about a second, the server is rolled back, reset
//! and reused (same backend), and PostgreSQL never sees more servers than the pool's size.
//! Also the idle limits: `idle_transaction_timeout` (25P03) and `client_idle_timeout` (57P05).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::raw::*;
use common::*;
use pgate::demo::cluster::Cluster;

/// Counts of `dave`'s backends on the cluster, sampled on a thread until stopped.
struct BackendWatch {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<i64>,
}

impl BackendWatch {
    fn start(cluster: &Cluster<'static>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let port = cluster.port();
        let handle = std::thread::spawn(move || {
            let mut max = 0;
            while !flag.load(Ordering::Relaxed) {
                max = max.max(count(port, "SELECT count(*) FROM pg_stat_activity WHERE usename = 'dave'"));
                std::thread::sleep(Duration::from_millis(20));
            }
            max
        });
        Self { stop, handle }
    }

    fn max(self) -> i64 {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap()
    }
}

/// A count from the cluster, asked directly (not through pgate), as the superuser.
fn count(port: u16, sql: &str) -> i64 {
    ask(port, sql).parse().unwrap_or(-1)
}

/// An answer from the cluster, asked directly (not through pgate), as the superuser.
fn ask(port: u16, sql: &str) -> String {
    let out = tool("psql")
        .args(["-U", "postgres", "-d", "postgres", "-XAtc", sql, "-p", &port.to_string(), "-h"])
        .arg(cluster_set().root())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Work of dave's still running or holding locks: active statements and advisory locks.
fn leftovers(port: u16) -> i64 {
    count(
        port,
        "SELECT (SELECT count(*) FROM pg_stat_activity WHERE usename = 'dave' AND state <> 'idle') \
              + (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory')",
    )
}

/// Waits until dave's backends are idle and hold no advisory lock; returns how long it took.
async fn leftovers_gone(port: u16) -> Duration {
    let started = Instant::now();
    while leftovers(port) != 0 {
        assert!(started.elapsed() < Duration::from_secs(30), "the vanished client's work still runs after 30 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

async fn start(cluster: &Cluster<'static>, mode: &str, extra: &str) -> Pgate {
    let head = format!(
        "[pool]\nmode = \"{mode}\"\nsize = 1\n{extra}\n[auth]\ntrust_networks = [\"127.0.0.1/32\"]\n\n[[users]]\nname = \"dave\"\n"
    );
    Pgate::start(&single_backend_config(&head, cluster.port())).await
}

/// Opens a transaction that holds an advisory lock, as the work a vanished client leaves.
async fn begin_holding_lock(c: &mut RawClient, key: u32) {
    c.send(&query("BEGIN")).await;
    c.until_ready().await;
    c.send(&query(&format!("SELECT pg_advisory_xact_lock({key})"))).await;
    assert_eq!(codes(&c.until_ready().await), "TDCZ", "the lock is taken");
}

async fn backend_pid(c: &mut RawClient) -> String {
    c.send(&query("SELECT pg_backend_pid()")).await;
    first_column(&c.until_ready().await).pop().expect("a pid")
}

/// Waits until the cluster shows dave's statement `like` running.
async fn running(port: u16, like: &str) {
    let sql = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE usename = 'dave' AND query LIKE '{like}%' AND state = 'active'"
    );
    let started = Instant::now();
    while count(port, &sql) != 1 {
        assert!(started.elapsed() < Duration::from_secs(10), "{like} never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[derive(Debug, Clone, Copy)]
enum Leave {
    Close,
    Reset,
    Terminate,
}

async fn leave(mut c: RawClient, how: Leave) {
    match how {
        Leave::Close => {}
        // A zero linger makes the close a reset, and never blocks the thread.
        #[allow(deprecated)]
        Leave::Reset => c.stream.set_linger(Some(Duration::ZERO)).unwrap(),
        Leave::Terminate => c.send(&message(b'X', &[])).await,
    }
    drop(c);
}

/// The work of a client that left is gone within about a second, and the same backend,
/// clean, serves the next client.
async fn assert_rescued(pgate: &Pgate, cluster: &Cluster<'static>, pid: &str, watch: BackendWatch) {
    let took = leftovers_gone(cluster.port()).await;
    eprintln!("the vanished client's work ended {took:?} after it left");
    assert!(took < Duration::from_secs(2), "work outlived its client by {took:?}");
    let mut next = RawClient::login_trusted(pgate.addr, "dave", "akko").await;
    assert_eq!(backend_pid(&mut next).await, pid, "the server was rescued and reused, not replaced");
    next.send(&query("SELECT count(*) FROM pg_prepared_statements")).await;
    assert_eq!(first_column(&next.until_ready().await), ["0"], "the server was reset");
    assert_eq!(watch.max(), 1, "PostgreSQL saw more servers than the pool's size");
}

async fn vanish_mid_query(mode: &str, how: Leave) {
    let cluster = private_cluster(&format!("vanish-{mode}-{how:?}").to_lowercase());
    let pgate = start(&cluster, mode, "").await;
    let watch = BackendWatch::start(&cluster);
    let mut c = RawClient::login_trusted(pgate.addr, "dave", "akko").await;
    let pid = backend_pid(&mut c).await;
    if mode != "statement" {
        begin_holding_lock(&mut c, 4242).await;
    }
    c.send(&query("SELECT pg_sleep(60)")).await;
    running(cluster.port(), "SELECT pg_sleep(60)").await;
    leave(c, how).await;
    assert_rescued(&pgate, &cluster, &pid, watch).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_pooling_client_closed_mid_query() {
    vanish_mid_query("session", Leave::Close).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_pooling_client_reset_mid_query() {
    vanish_mid_query("session", Leave::Reset).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_pooling_client_terminated_mid_query() {
    vanish_mid_query("transaction", Leave::Terminate).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_pooling_client_closed_mid_query() {
    vanish_mid_query("transaction", Leave::Close).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_pooling_client_closed_mid_query() {
    vanish_mid_query("statement", Leave::Close).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_vanishes_mid_copy_leaves_no_rows_and_no_lock() {
    let cluster = private_cluster("vanish-copy");
    cluster.psql("akko", "CREATE TABLE sink (n int); GRANT ALL ON sink TO dave").unwrap();
    let pgate = start(&cluster, "transaction", "").await;
    let watch = BackendWatch::start(&cluster);
    let mut c = RawClient::login_trusted(pgate.addr, "dave", "akko").await;
    let pid = backend_pid(&mut c).await;
    begin_holding_lock(&mut c, 4243).await;
    c.send(&query("COPY sink FROM STDIN")).await;
    assert_eq!(c.recv().await.map(|m| m.0), Some(b'G'), "CopyInResponse");
    c.send(&message(b'd', b"1\n2\n3\n")).await;
    running(cluster.port(), "COPY sink").await;
    leave(c, Leave::Close).await;
    assert_rescued(&pgate, &cluster, &pid, watch).await;
    assert_eq!(cluster.psql("akko", "SELECT count(*) FROM sink").unwrap(), "0", "the copy was rolled back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_a_large_result_then_vanishes() {
    let cluster = private_cluster("vanish-reply");
    let pgate = start(&cluster, "transaction", "").await;
    let watch = BackendWatch::start(&cluster);
    let mut c = RawClient::login_trusted(pgate.addr, "dave", "akko").await;
    let pid = backend_pid(&mut c).await;
    begin_holding_lock(&mut c, 4244).await;
    c.send(&query("SELECT repeat('x', 10000) FROM generate_series(1, 100000)")).await;
    // Some rows, then nothing: pgate and the server block on full socket buffers.
    for _ in 0..10 {
        c.recv().await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    leave(c, Leave::Reset).await;
    assert_rescued(&pgate, &cluster, &pid, watch).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_vanishes_mid_pipeline_without_sync() {
    let cluster = private_cluster("vanish-pipeline");
    let pgate = start(&cluster, "transaction", "").await;
    let watch = BackendWatch::start(&cluster);
    let mut c = RawClient::login_trusted(pgate.addr, "dave", "akko").await;
    let pid = backend_pid(&mut c).await;
    begin_holding_lock(&mut c, 4245).await;
    let mut pipeline = parse("", "SELECT pg_sleep(60)");
    pipeline.extend(bind("", "", &[]));
    pipeline.extend(execute("", 0));
    pipeline.extend(flush());
    c.send(&pipeline).await;
    running(cluster.port(), "SELECT pg_sleep(60)").await;
    leave(c, Leave::Close).await;
    assert_rescued(&pgate, &cluster, &pid, watch).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_vanishes_mid_message_gets_its_backend_ended() {
    let cluster = private_cluster("vanish-torn");
    cluster.psql("akko", "CREATE TABLE sink (n int); GRANT ALL ON sink TO dave").unwrap();
    let pgate = start(&cluster, "session", "").await;
    let mut c = RawClient::login_trusted(pgate.addr, "dave", "akko").await;
    let pid = backend_pid(&mut c).await;
    begin_holding_lock(&mut c, 4246).await;
    c.send(&query("COPY sink FROM STDIN")).await;
    assert_eq!(c.recv().await.map(|m| m.0), Some(b'G'), "CopyInResponse");
    // CopyData is relayed as it arrives: the server gets half a message.
    let whole = message(b'd', b"1\n2\n3\n");
    c.send(&whole[..whole.len() / 2]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    leave(c, Leave::Close).await;
    let took = leftovers_gone(cluster.port()).await;
    eprintln!("the torn session's lock went {took:?} after the client left");
    assert!(took < Duration::from_secs(2), "the lock outlived its client by {took:?}");
    let gone = format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}");
    let started = Instant::now();
    while count(cluster.port(), &gone) != 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the torn server's backend still exists: {}",
            ask(cluster.port(), &format!("SELECT state, query FROM pg_stat_activity WHERE pid = {pid}"))
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Its place in the pool (size 1) is free again.
    let mut next = RawClient::login_trusted(pgate.addr, "dave", "akko").await;
    assert_ne!(backend_pid(&mut next).await, pid, "a server that got half a message is never reused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_of_a_pipeline_the_client_never_synced_are_rolled_back() {
    // PostgreSQL commits an extended-protocol request's implicit transaction at Sync; a
    // client that vanished before sending one committed nothing, and neither may pgate's
    // rescue of its server.
    let cluster = private_cluster("vanish-unsynced");
    cluster.psql("akko", "CREATE TABLE sink (n int); GRANT ALL ON sink TO dave").unwrap();
    let pgate = start(&cluster, "transaction", "").await;
    let watch = BackendWatch::start(&cluster);
    let mut c = RawClient::login_trusted(pgate.addr, "dave", "akko").await;
    let pid = backend_pid(&mut c).await;
    let mut pipeline = parse("", "INSERT INTO sink VALUES (1)");
    pipeline.extend(bind("", "", &[]));
    pipeline.extend(execute("", 0));
    pipeline.extend(flush());
    c.send(&pipeline).await;
    let done: Vec<u8> = [c.recv().await, c.recv().await, c.recv().await].into_iter().flatten().map(|m| m.0).collect();
    assert_eq!(done, b"12C", "the INSERT ran, uncommitted");
    leave(c, Leave::Close).await;
    assert_rescued(&pgate, &cluster, &pid, watch).await;
    assert_eq!(cluster.psql("akko", "SELECT count(*) FROM sink").unwrap(), "0", "nothing was committed");
}

async fn expect_fatal(c: &mut RawClient, code: &str) -> String {
    let (kind, body) = c.recv().await.expect("an ErrorResponse before the close");
    assert_eq!(kind, b'E');
    assert_eq!(error_code(&body), code, "{:?}", error_fields(&body));
    assert!(c.closed().await, "the connection closes");
    error_fields(&body).into_iter().find(|(f, _)| *f == b'M').map(|(_, m)| m).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_in_transaction_past_the_limit_is_disconnected_and_its_server_reused() {
    let cluster = private_cluster("idle-tx");
    let pgate = start(&cluster, "transaction", "idle_transaction_timeout = \"1s\"").await;
    let mut c = RawClient::login_trusted(pgate.addr, "dave", "akko").await;
    let pid = backend_pid(&mut c).await;
    // Busy within the limit: requests 0.5 s apart keep the transaction.
    c.send(&query("BEGIN")).await;
    c.until_ready().await;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        c.send(&query("SELECT pg_advisory_xact_lock(4247)")).await;
        assert_eq!(codes(&c.until_ready().await), "TDCZ");
    }
    let idle_since = Instant::now();
    let message = expect_fatal(&mut c, "25P03").await;
    assert!(message.contains("idle_transaction_timeout"), "{message}");
    let after = idle_since.elapsed();
    assert!(after >= Duration::from_millis(900) && after < Duration::from_secs(5), "{after:?}");
    assert!(leftovers_gone(cluster.port()).await < Duration::from_secs(2), "rolled back at once");
    let mut next = RawClient::login_trusted(pgate.addr, "dave", "akko").await;
    assert_eq!(backend_pid(&mut next).await, pid, "the server was rolled back and reused");
    // Idle outside a transaction is no reason to disconnect here.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(backend_pid(&mut next).await, pid);
}

async fn idle_client_is_disconnected(mode: &str) {
    let cluster = private_cluster(&format!("idle-client-{mode}"));
    let pgate = start(&cluster, mode, "client_idle_timeout = \"1s\"").await;
    let mut c = RawClient::login_trusted(pgate.addr, "dave", "akko").await;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        backend_pid(&mut c).await;
    }
    let message = expect_fatal(&mut c, "57P05").await;
    assert!(message.contains("client_idle_timeout"), "{message}");
    let mut next = RawClient::login_trusted(pgate.addr, "dave", "akko").await;
    backend_pid(&mut next).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_client_past_client_idle_timeout_is_disconnected_in_transaction_pooling() {
    idle_client_is_disconnected("transaction").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_client_past_client_idle_timeout_is_disconnected_in_session_pooling() {
    idle_client_is_disconnected("session").await;
}
