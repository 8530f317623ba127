//! One server process dies: `kill -9` (PostgreSQL then restarts every backend of the
//! instance) or SIGTERM (only that backend ends).

use std::time::{Duration, Instant};

use super::*;

/// A backend killed with SIGKILL could have left shared memory corrupt, so the postmaster
/// ends every other backend of that instance too and runs crash recovery: every client
/// holding a server of that instance loses it, exactly as it would connected directly.
/// What pgate promises is the rest: the killed client (and the others holding a server
/// there) learn it with 08006 within a second; a client that held no server there
/// (transaction pooling, between transactions) never notices once PostgreSQL is back; and
/// clients of another backend, mid-transaction throughout, see no error at all.
async fn kill_9_of_one_backend(mode: &str) {
    let main = private_cluster(&format!("kill9-{mode}"));
    let other = private_cluster(&format!("kill9-other-{mode}"));
    other.psql("postgres", "CREATE DATABASE aden OWNER alice").unwrap();
    let pgate = Pgate::start(&two_backends(&pool_head(mode), main.port(), other.port())).await;
    let workload = Workload::start(&pgate, "aden", 3).await;

    let victim = pgate.alice("akko").await;
    victim.batch_execute("BEGIN").await.unwrap();
    let pid: u32 = simple_row(&victim, "SELECT pg_backend_pid()").await[0].parse().unwrap();
    let (in_tx, in_tx_conn) = connect_with_task(&pgate.conninfo("alice", ALICE_PW, "akko")).await;
    in_tx.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let (between, between_conn) = connect_with_task(&pgate.conninfo("alice", ALICE_PW, "akko")).await;
    assert_eq!(simple_row(&between, "SELECT 1").await, ["1"]);
    let (in_tx_end, between_end) = (watch_end(in_tx_conn), watch_end(between_conn));
    let running = spawn_query(victim, "SELECT pg_sleep(30)");
    tokio::time::sleep(Duration::from_millis(300)).await;

    let before = workload.done();
    let killed = Instant::now();
    signal(pid, "KILL");
    let (err, after) = lost(running, killed).await;
    eprintln!("{mode}: kill -9 -> 08006 to the client of that backend after {after:?}");
    assert_eq!(sqlstate(&err).as_deref(), Some("08006"), "{err}");
    assert!(after < LOST_WITHIN, "the killed client waited {after:?}");
    let (err, after) = lost(in_tx_end, killed).await;
    eprintln!("{mode}: kill -9 -> 08006 to a client idle in a transaction on the same instance after {after:?}");
    assert_eq!(sqlstate(&err).as_deref(), Some("08006"), "{err}");
    assert!(after < LOST_WITHIN, "the client idle in a transaction waited {after:?}");

    let recovered = tokio::time::timeout(HUNG, async {
        while !accepting(main.port()).await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    recovered.await.expect("PostgreSQL recovers from the crash");
    if mode == "transaction" {
        let answer = tokio::time::timeout(HUNG, between.simple_query("SELECT 1")).await.unwrap();
        assert!(answer.is_ok(), "a client between transactions saw the crash: {answer:?}");
        assert!(!between_end.is_finished(), "its session goes on");
    } else {
        // Its server session, and the session state in it, is gone: it is told so.
        let (err, after) = lost(between_end, killed).await;
        assert_eq!(sqlstate(&err).as_deref(), Some("08006"), "{err}");
        assert!(after < LOST_WITHIN, "the idle session client waited {after:?}");
    }

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(workload.done() > before, "the other backend's clients kept working");
    let errors = workload.finish().await;
    assert!(errors.is_empty(), "clients of the other backend saw errors: {errors:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_backend_in_transaction_pooling() {
    kill_9_of_one_backend("transaction").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_backend_in_session_pooling() {
    kill_9_of_one_backend("session").await;
}

/// SIGTERM (what pg_terminate_backend sends) ends one backend cleanly: PostgreSQL tells its
/// client why (57P01), and every other client of the same instance, running transactions
/// or idle in one, goes on untouched.
async fn sigterm_of_one_backend(mode: &str) {
    let cluster = private_cluster(&format!("sigterm-{mode}"));
    let pgate = Pgate::start(&single_backend_config(&pool_head(mode), cluster.port())).await;
    let workload = Workload::start(&pgate, "akko", 3).await;
    let (in_tx, in_tx_conn) = connect_with_task(&pgate.conninfo("alice", ALICE_PW, "akko")).await;
    in_tx.batch_execute("CREATE TABLE marks (n int); BEGIN; INSERT INTO marks VALUES (1)").await.unwrap();

    let victim = pgate.alice("akko").await;
    victim.batch_execute("BEGIN").await.unwrap();
    let pid: u32 = simple_row(&victim, "SELECT pg_backend_pid()").await[0].parse().unwrap();
    let running = spawn_query(victim, "SELECT pg_sleep(30)");
    tokio::time::sleep(Duration::from_millis(300)).await;

    let before = workload.done();
    let terminated = Instant::now();
    signal(pid, "TERM");
    let (err, after) = lost(running, terminated).await;
    eprintln!("{mode}: SIGTERM -> {:?} to the client of that backend after {after:?}", sqlstate(&err));
    let code = sqlstate(&err).unwrap_or_default();
    assert!(code == "57P01" || code == "08006", "{err}");
    assert!(after < LOST_WITHIN, "the terminated client waited {after:?}");

    tokio::time::sleep(Duration::from_millis(300)).await;
    in_tx.batch_execute("INSERT INTO marks VALUES (2); COMMIT").await.expect("the open transaction goes on");
    assert_eq!(simple_row(&in_tx, "SELECT count(*) FROM marks").await, ["2"]);
    assert!(!in_tx_conn.is_finished());
    assert!(workload.done() > before, "the other clients kept working");
    let errors = workload.finish().await;
    assert!(errors.is_empty(), "other clients of the same backend saw errors: {errors:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_of_a_backend_in_transaction_pooling() {
    sigterm_of_one_backend("transaction").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_of_a_backend_in_session_pooling() {
    sigterm_of_one_backend("session").await;
}
