//! Failures: a backend that dies and comes back, a server terminated mid-query, and
//! query cancellation through pgate's own cancel keys.

mod common;

use std::time::{Duration, Instant};

use common::raw::*;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_killed_and_restarted() {
    let mut cluster = private_cluster("restart");
    let pgate = Pgate::start(&single_backend_config("[pool]\nsize = 3\n", cluster.port())).await;
    let (in_tx, in_tx_conn) = connect_with_task(&pgate.conninfo("alice", ALICE_PW, "akko")).await;
    in_tx.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let sleeper = pgate.alice("akko").await;
    let idle = pgate.alice("akko").await;
    let running = tokio::spawn(async move { sleeper.simple_query("SELECT pg_sleep(30)").await });
    tokio::time::sleep(Duration::from_millis(300)).await;

    cluster.stop("immediate").unwrap();
    // The running query and the open transaction are lost: 08006.
    let err = tokio::time::timeout(Duration::from_secs(10), running).await.unwrap().unwrap().unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("08006"), "{err}");
    let ended = tokio::time::timeout(Duration::from_secs(10), in_tx_conn).await.unwrap().unwrap();
    let err = ended.expect_err("the client in a transaction is disconnected");
    assert_eq!(sqlstate(&err).as_deref(), Some("08006"), "{err}");
    // A client without a server is refused for now but keeps its session.
    let err = idle.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("08006"), "{err}");

    cluster.start().unwrap();
    assert_eq!(simple_row(&idle, "SELECT 1").await, ["1"], "the same session works again");
    for _ in 0..5 {
        let client = pgate.alice("akko").await;
        assert_eq!(simple_row(&client, "SELECT 2").await, ["2"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_down_at_login_is_a_clear_error() {
    let cluster = private_cluster("down");
    let port = cluster.port();
    cluster.stop("fast").unwrap();
    let pgate = Pgate::start(&single_backend_config("[pool]\nconnect_timeout = \"2s\"\n", port)).await;
    let err = pgate.connect("alice", ALICE_PW, "akko").await.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("08006"));
    let message = db_message(&err);
    assert!(message.contains("could not connect to backend main"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_terminated_mid_query_is_replaced() {
    let cluster = private_cluster("terminate");
    let pgate = Pgate::start(&single_backend_config("[pool]\nsize = 1\n", cluster.port())).await;
    let victim = pgate.alice("akko").await;
    let pid = simple_row(&victim, "SELECT pg_backend_pid()").await[0].clone();
    let running = tokio::spawn(async move { victim.simple_query("SELECT pg_sleep(30)").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.psql("postgres", &format!("SELECT pg_terminate_backend({pid})")).unwrap();
    let err = tokio::time::timeout(Duration::from_secs(10), running).await.unwrap().unwrap().unwrap_err();
    // PostgreSQL says why first (57P01); either way the client learns its server is gone.
    let code = sqlstate(&err).unwrap_or_default();
    assert!(code == "57P01" || code == "08006", "{err}");
    let next = pgate.alice("akko").await;
    let new_pid = simple_row(&next, "SELECT pg_backend_pid()").await[0].clone();
    assert_ne!(new_pid, pid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_running_query_within_two_seconds() {
    let pgate = Pgate::start(&config("[pool]\nsize = 2\n")).await;
    let client = pgate.alice("akko").await;
    let token = client.cancel_token();
    let started = Instant::now();
    let running = tokio::spawn(async move {
        let r = client.simple_query("SELECT pg_sleep(30)").await;
        (r, client)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let (result, client) =
        tokio::time::timeout(Duration::from_secs(2), running).await.expect("canceled within 2 s").unwrap();
    let err = result.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("57014"));
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(simple_row(&client, "SELECT 1").await, ["1"], "the session goes on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_with_a_wrong_key_or_for_an_idle_client_does_nothing() {
    let pgate = Pgate::start(&config("[auth]\ntrust_networks = [\"127.0.0.1/32\"]\n")).await;
    let mut c = RawClient::login_trusted(pgate.addr, "dave", "akko").await;
    assert_ne!(c.pid, 0);
    // Idle: a cancel with the right key has nothing to cancel, and the next query runs.
    let mut canceller = RawClient::connect(pgate.addr).await;
    canceller.send(&cancel_packet(c.pid, c.secret)).await;
    assert!(canceller.closed().await, "a cancel request gets no answer");
    c.send(&query("SELECT pg_sleep(0.5), 'done'")).await;
    let started = Instant::now();
    for (pid, secret) in [(c.pid, c.secret ^ 1), (c.pid ^ 1, c.secret)] {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut wrong = RawClient::connect(pgate.addr).await;
        wrong.send(&cancel_packet(pid, secret)).await;
        assert!(wrong.closed().await);
    }
    let msgs = c.until_ready().await;
    assert!(msgs.iter().all(|m| m.0 != b'E'), "canceled by a wrong key: {msgs:?}");
    assert!(msgs.iter().any(|(code, body)| *code == b'D' && body.ends_with(b"done")));
    assert!(started.elapsed() >= Duration::from_millis(450));
    // The right key while running cancels.
    c.send(&query("SELECT pg_sleep(30)")).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut right = RawClient::connect(pgate.addr).await;
    right.send(&cancel_packet(c.pid, c.secret)).await;
    let msgs = c.until_ready().await;
    let err = msgs.iter().find(|m| m.0 == b'E').expect("canceled");
    assert_eq!(error_code(&err.1), "57014");
}
