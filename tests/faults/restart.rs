//! The whole instance crash-restarted (`pg_ctl stop -m immediate`, then started again on
//! the same port), pgate running throughout.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;

/// Clients mid-query get 08006 within a second; once PostgreSQL accepts connections again,
/// a new client and (in transaction pooling) an existing one are served within 5 s. In
/// session pooling an existing client's server session is gone with the instance, so it is
/// disconnected with 08006 like the ones mid-query.
async fn crash_restart(mode: &str) {
    let mut cluster = private_cluster(&format!("restart-{mode}"));
    let port = cluster.port();
    let pgate = Pgate::start(&single_backend_config(&pool_head(mode), port)).await;
    let sleeper = pgate.alice("akko").await;
    let (existing, existing_conn) = connect_with_task(&pgate.conninfo("alice", ALICE_PW, "akko")).await;
    assert_eq!(simple_row(&existing, "SELECT 1").await, ["1"]);
    let existing_end = watch_end(existing_conn);
    let running = spawn_query(sleeper, "SELECT pg_sleep(30)");
    tokio::time::sleep(Duration::from_millis(300)).await;

    let stopped = Instant::now();
    tokio::task::block_in_place(|| cluster.stop("immediate")).unwrap();
    let (err, after) = lost(running, stopped).await;
    eprintln!("{mode}: immediate stop -> 08006 to a client mid-query after {after:?}");
    assert_eq!(sqlstate(&err).as_deref(), Some("08006"), "{err}");
    assert!(after < LOST_WITHIN, "the client mid-query waited {after:?}");
    let existing = if mode == "transaction" {
        assert!(!existing_end.is_finished(), "a client between transactions keeps its session");
        Some(Arc::new(existing))
    } else {
        let (err, after) = lost(existing_end, stopped).await;
        eprintln!("{mode}: immediate stop -> 08006 to an idle session client after {after:?}");
        assert_eq!(sqlstate(&err).as_deref(), Some("08006"), "{err}");
        assert!(after < LOST_WITHIN, "the idle session client waited {after:?}");
        None
    };

    // Clients keep trying while PostgreSQL is down; the clock starts when it accepts.
    let ready = watch_accepting(port);
    let conninfo = pgate.conninfo("alice", ALICE_PW, "akko");
    let new_client = first_success(move || {
        let conninfo = conninfo.clone();
        async move { connect(&conninfo).await?.simple_query("SELECT 1").await.map(drop) }
    });
    let existing_client = existing.map(|client| {
        first_success(move || {
            let client = client.clone();
            async move { client.simple_query("SELECT 1").await.map(drop) }
        })
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    tokio::task::block_in_place(|| cluster.start()).unwrap();
    assert_eq!(cluster.port(), port, "PostgreSQL came back on its port");

    let wait = |task: JoinHandle<(Instant, Vec<Refusal>)>| async move {
        tokio::time::timeout(Duration::from_secs(30), task).await.expect("served again").unwrap()
    };
    let ready = tokio::time::timeout(Duration::from_secs(30), ready).await.expect("PostgreSQL accepts").unwrap();
    let (served, mut refusals) = wait(new_client).await;
    let new_after = served.saturating_duration_since(ready);
    eprintln!("{mode}: PostgreSQL accepting -> a new client served after {new_after:?}");
    assert!(new_after <= SERVES_AGAIN_WITHIN, "a new client waited {new_after:?}");
    if let Some(task) = existing_client {
        let (served, more) = wait(task).await;
        let existing_after = served.saturating_duration_since(ready);
        eprintln!("{mode}: PostgreSQL accepting -> an existing client served after {existing_after:?}");
        assert!(existing_after <= SERVES_AGAIN_WITHIN, "an existing client waited {existing_after:?}");
        refusals.extend(more);
    }
    // Down or starting up, the backend is "gone" for a while: 08006, telling to retry.
    let mut messages: Vec<&str> = refusals.iter().map(|r| r.message.as_str()).collect();
    messages.dedup();
    eprintln!("{mode}: {} requests refused during the restart: {messages:?}", refusals.len());
    for r in &refusals {
        assert_eq!(r.code.as_deref(), Some("08006"), "{r:?}");
        assert!(r.hint.as_deref().is_some_and(|h| h.contains("retry")), "{r:?}");
    }
    assert!(!pgate.finished(), "pgate ran throughout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_restart_in_transaction_pooling() {
    crash_restart("transaction").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_restart_in_session_pooling() {
    crash_restart("session").await;
}
