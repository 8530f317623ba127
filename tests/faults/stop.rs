//! An instance that stops answering (SIGSTOP of the postmaster and all its children):
//! the kernel still accepts TCP connections for it, but nothing ever replies.

use std::time::{Duration, Instant};

use super::*;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const QUERY_WAIT_TIMEOUT: Duration = Duration::from_secs(2);
const RESET_TIMEOUT: Duration = Duration::from_secs(1);
/// What a loaded 2-core machine may add to a deadline before the error reaches the client.
const MARGIN: Duration = Duration::from_secs(1);

/// GET on pgate's metrics endpoint: status and body.
async fn get(pgate: &Pgate, path: &str) -> (u16, String) {
    let exchange = async {
        let mut stream = TcpStream::connect(pgate.metrics_addr.expect("metrics on")).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: pgate\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let (head, body) = response.split_once("\r\n\r\n").expect("headers end");
        (head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status line"), body.to_owned())
    };
    tokio::time::timeout(HUNG, exchange).await.expect("the metrics endpoint answers")
}

/// Awaits a client call and how long it took; a call that outlives [`HUNG`] fails the test.
async fn timed<T>(call: impl std::future::Future<Output = T>) -> (T, Duration) {
    let started = Instant::now();
    let out = tokio::time::timeout(HUNG, call).await.expect("nothing waits forever");
    (out, started.elapsed())
}

fn assert_refused<T: std::fmt::Debug>(
    what: &str,
    result: Result<T, tokio_postgres::Error>,
    took: Duration,
    code: &str,
    deadline: Duration,
    says: &str,
) {
    let err = result.expect_err(what);
    let message = db_message(&err);
    eprintln!("stopped backend: {what} refused after {took:?}: {:?} {message}", sqlstate(&err));
    assert_eq!(sqlstate(&err).as_deref(), Some(code), "{what}: {err}");
    assert!(message.contains(says), "{what}: {message}");
    assert!(took >= deadline && took < deadline + MARGIN, "{what} took {took:?}, deadline {deadline:?}");
}

/// While the backend is stopped: a checkout from a full pool fails at query_wait_timeout
/// (53300); a login that needs a new server fails at connect_timeout (08006); an idle
/// server is probed before reuse (past server_check_delay), and a probe that gets no
/// answer costs reset_timeout before a new server is tried; a login to a pool that knows
/// its server parameters needs no server and succeeds; /readyz turns 503. After SIGCONT,
/// the transactions that were open go on and every pool serves again. (A request already
/// on a server, or handed a server used within server_check_delay, waits for it like for
/// a slow query: nothing tells the two apart.)
async fn stopped_backend(mode: &str) {
    let cluster = private_cluster(&format!("stop-{mode}"));
    for db in ["aden", "lightrag"] {
        cluster.psql("postgres", &format!("CREATE DATABASE {db} OWNER alice")).unwrap();
    }
    let head = format!(
        "[metrics]\naddress = \"127.0.0.1:0\"\nprobe_interval = \"200ms\"\nprobe_timeout = \"300ms\"\n\
         [pool]\nmode = \"{mode}\"\nsize = 2\nconnect_timeout = \"{}ms\"\nquery_wait_timeout = \"{}ms\"\n\
         reset_timeout = \"{}ms\"\nserver_check_delay = \"200ms\"\n",
        CONNECT_TIMEOUT.as_millis(),
        QUERY_WAIT_TIMEOUT.as_millis(),
        RESET_TIMEOUT.as_millis()
    );
    let pgate = Pgate::start(&single_backend_config(&head, cluster.port())).await;
    // Pool akko: both servers held by open transactions.
    let holders = [pgate.alice("akko").await, pgate.alice("akko").await];
    for h in &holders {
        h.batch_execute("BEGIN; SELECT 1").await.unwrap();
    }
    let waiting = pgate.alice("akko").await;
    // Pool aden: one idle server, idle past server_check_delay when it is next asked for.
    let first = pgate.alice("aden").await;
    assert_eq!(simple_row(&first, "SELECT 1").await, ["1"]);
    drop(first);
    let prober = pgate.alice("aden").await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    assert_eq!(get(&pgate, "/readyz").await.0, 200);
    let frozen = Frozen::freeze(&cluster);
    let (full, probed, fresh, known) = tokio::join!(
        timed(waiting.simple_query("SELECT 1")),
        timed(prober.simple_query("SELECT 1")),
        timed(pgate.connect("alice", ALICE_PW, "lightrag")),
        timed(pgate.connect("alice", ALICE_PW, "akko")),
    );
    assert_refused("a checkout from the full pool", full.0, full.1, "53300", QUERY_WAIT_TIMEOUT, "query_wait_timeout");
    assert_refused(
        "a checkout of the idle server",
        probed.0,
        probed.1,
        "08006",
        RESET_TIMEOUT + CONNECT_TIMEOUT,
        "connect_timeout",
    );
    assert_refused("a login to a new pool", fresh.0, fresh.1, "08006", CONNECT_TIMEOUT, "connect_timeout");
    let (known, took) = known;
    eprintln!("stopped backend: a login to a known pool took {took:?}");
    assert!(known.is_ok() && took < MARGIN, "a login needing no server: {took:?} {:?}", known.err());

    // The backend probe has a deadline too: /readyz says which backend does not answer.
    let (status, why) = get(&pgate, "/readyz").await;
    eprintln!("stopped backend: /readyz {status} {why}");
    assert!(status == 503 && why.contains("backend main"), "{status} {why}");

    let thawed = Instant::now();
    frozen.thaw();
    for h in &holders {
        let (done, _) = timed(h.batch_execute("COMMIT")).await;
        done.expect("an open transaction survives the stop");
    }
    // Session pooling: the holders keep their servers until they leave.
    drop(holders);
    for (client, what) in [(&waiting, "the client refused by the full pool"), (&prober, "the client refused a server")]
    {
        let (answer, _) = timed(client.simple_query("SELECT 1")).await;
        assert!(answer.is_ok(), "{what}: {answer:?}");
    }
    let (client, _) = timed(pgate.connect("alice", ALICE_PW, "lightrag")).await;
    assert_eq!(simple_row(&client.expect("a login to the new pool"), "SELECT 1").await, ["1"]);
    while get(&pgate, "/readyz").await.0 != 200 {
        assert!(thawed.elapsed() < SERVES_AGAIN_WITHIN, "/readyz stays 503 after SIGCONT");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let served = thawed.elapsed();
    eprintln!("stopped backend: every pool served again {served:?} after SIGCONT");
    assert!(served < SERVES_AGAIN_WITHIN, "served again after {served:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_backend_in_transaction_pooling() {
    stopped_backend("transaction").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_backend_in_session_pooling() {
    stopped_backend("session").await;
}
