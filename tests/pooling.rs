//! Pooling: transaction and session modes against a real backend, limits, waiting,
//! resets of dirty servers, settings per client, idle and lifetime limits.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures::future::join_all;
use tokio_postgres::types::Type;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_mode_serves_100_clients_with_5_servers() {
    fresh_database("pool_tx");
    let pgate = Pgate::start(&config_with_fallback("[pool]\nsize = 5\n")).await;
    let watch = ConnectionWatch::start("pool_tx", "alice");
    let mut clients = Vec::new();
    for _ in 0..100 {
        clients.push(pgate.alice("pool_tx").await);
    }
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, client)| {
            tokio::spawn(async move {
                for j in 0..10 {
                    let tx_sql = format!("BEGIN; SELECT {i} + {j}; SELECT pg_sleep(0.001); COMMIT");
                    client.batch_execute(&tx_sql).await?;
                    // Unnamed statements: Parse/Bind/Execute/Sync in one round trip.
                    let rows = client.query_typed("SELECT $1::int + 1", &[(&(i as i32), Type::INT4)]).await?;
                    assert_eq!(rows[0].get::<_, i32>(0), i as i32 + 1);
                }
                Ok::<_, tokio_postgres::Error>(())
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().expect("every client succeeds");
    }
    let max = watch.max();
    assert!(max <= 5, "the backend saw {max} connections for a pool of 5");
    assert!(max >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_mode_queues_sessions_and_discards_their_state() {
    fresh_database("pool_session");
    let pgate = Pgate::start(&config_with_fallback("[pool]\nmode = \"session\"\nsize = 3\n")).await;
    let watch = ConnectionWatch::start("pool_session", "alice");
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let info = pgate.conninfo("alice", ALICE_PW, "pool_session");
            tokio::spawn(async move {
                let client = connect(&info).await?;
                client
                    .batch_execute(&format!("SET work_mem = '{}kB'; CREATE TEMP TABLE mine (v int)", 1000 + i))
                    .await?;
                tokio::time::sleep(Duration::from_millis(30)).await;
                let wm: String = client.query_one("SHOW work_mem", &[]).await?.get(0);
                assert_eq!(wm, format!("{}kB", 1000 + i), "a session keeps its own settings");
                Ok::<_, tokio_postgres::Error>(())
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().expect("every session gets a server in turn");
    }
    assert!(watch.max() <= 3);

    // State left by a session never reaches the next one.
    let a = pgate.alice("pool_session").await;
    a.batch_execute("SET work_mem = '7777kB'; CREATE TEMP TABLE leftover (v int); PREPARE p AS SELECT 1; SELECT pg_advisory_lock(7)")
        .await
        .unwrap();
    drop(a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..3 {
        let b = pgate.alice("pool_session").await;
        let row = b
            .query_one(
                "SELECT current_setting('work_mem'), to_regclass('pg_temp.leftover') IS NULL, \
                 (SELECT count(*) FROM pg_prepared_statements WHERE name = 'p'), \
                 (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 7)",
                &[],
            )
            .await
            .unwrap();
        assert_ne!(row.get::<_, String>(0), "7777kB");
        assert!(row.get::<_, bool>(1), "temp table survived");
        assert_eq!(row.get::<_, i64>(2), 0, "prepared statement survived");
        assert_eq!(row.get::<_, i64>(3), 0, "advisory lock survived");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_wait_timeout_refuses_the_request_and_keeps_the_session() {
    fresh_database("pool_wait");
    let head = "[pool]\nsize = 1\nquery_wait_timeout = \"300ms\"\n";
    let pgate = Pgate::start(&config_with_fallback(head)).await;
    let holder = pgate.alice("pool_wait").await;
    let waiter = pgate.alice("pool_wait").await;
    holder.batch_execute("BEGIN; SELECT 1").await.unwrap();

    let started = Instant::now();
    let err = waiter.simple_query("SELECT 1").await.unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(280), "refused after {:?}", started.elapsed());
    assert_eq!(sqlstate(&err).as_deref(), Some("53300"));
    assert!(db_message(&err).contains("query_wait_timeout"), "{}", db_message(&err));
    // The extended protocol (Parse/Bind/Execute/Sync) is refused the same way.
    let err = waiter.query_one("SELECT $1::int", &[&1i32]).await.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("53300"));

    holder.batch_execute("COMMIT").await.unwrap();
    let v: i32 = waiter.query_one("SELECT $1::int", &[&5i32]).await.unwrap().get(0);
    assert_eq!(v, 5, "the refused client keeps a working session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_killed_mid_transaction_leaves_nothing_behind() {
    fresh_database("pool_kill");
    backends()
        .data
        .psql("pool_kill", "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1); GRANT ALL ON t TO alice")
        .unwrap();
    let pgate = Pgate::start(&config_with_fallback("[pool]\nsize = 1\n")).await;
    let (victim, connection) = connect_with_task(&pgate.conninfo("alice", ALICE_PW, "pool_kill")).await;
    victim
        .batch_execute(
            "BEGIN; CREATE TEMP TABLE victim_tmp (v int) ON COMMIT PRESERVE ROWS; \
             SELECT pg_advisory_lock(42); SELECT * FROM t WHERE id = 1 FOR UPDATE; \
             SET work_mem = '9999kB'; INSERT INTO t VALUES (2)",
        )
        .await
        .unwrap();
    connection.abort(); // the socket closes without Terminate, mid-transaction
    let _ = connection.await;

    let next = pgate.alice("pool_kill").await;
    // A simple query: in its implicit transaction now() is this statement's start time.
    let row = simple_row(
        &next,
        "SELECT now() = statement_timestamp(), to_regclass('pg_temp.victim_tmp') IS NULL, \
         (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 42), \
         current_setting('work_mem'), (SELECT count(*) FROM t)",
    )
    .await;
    assert_eq!(row[0], "t", "the next client runs inside the dead client's transaction");
    assert_eq!(row[1], "t", "temp table of the dead client is visible");
    assert_eq!(row[2], "0", "session advisory lock of the dead client is held");
    assert_ne!(row[3], "9999kB");
    assert_eq!(row[4], "1", "the dead client's insert was committed");
    next.batch_execute("SELECT * FROM t WHERE id = 1 FOR UPDATE NOWAIT").await.expect("row lock released");
}

/// The server of a client killed mid-query is not handed on with the query still running:
/// pgate cancels it and resets the server, then the same backend serves the next client
/// (before, the server was closed and its query ran on beside a replacement).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_killed_mid_query_gets_its_query_cancelled_and_its_server_reset() {
    fresh_database("pool_kill_query");
    let pgate = Pgate::start(&config_with_fallback("[pool]\nsize = 1\n")).await;
    let (victim, connection) = connect_with_task(&pgate.conninfo("alice", ALICE_PW, "pool_kill_query")).await;
    let victim_pid: i32 = victim.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    let running = tokio::spawn(async move { victim.simple_query("SELECT pg_sleep(3)").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    connection.abort();
    let _ = running.await;
    let next = pgate.alice("pool_kill_query").await;
    let started = Instant::now();
    let pid: i32 = next.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    assert!(started.elapsed() < Duration::from_secs(2), "the next client waited for the dead client's query");
    assert_eq!(pid, victim_pid, "the server was rescued, not replaced");
    let sleeping =
        "SELECT count(*)::text FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(3)' AND state = 'active'";
    assert_eq!(simple_row(&next, sleeping).await, ["0"], "the dead client's query was cancelled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_keep_their_own_settings_on_a_shared_server() {
    fresh_database("pool_params");
    let pgate = Pgate::start(&config_with_fallback("[pool]\nsize = 1\n")).await;
    let info = |app: &str| format!("{} application_name={app}", pgate.conninfo("alice", ALICE_PW, "pool_params"));
    let a = connect(&info("app_a")).await.unwrap();
    let b = connect(&format!("{} options='-c DateStyle=German'", info("app_b"))).await.unwrap();
    a.batch_execute("SET TimeZone = 'Asia/Tokyo'").await.unwrap();
    for _ in 0..3 {
        let ra = a.query_one("SELECT current_setting('application_name'), current_setting('TimeZone'), current_setting('DateStyle'), pg_backend_pid()", &[]).await.unwrap();
        let rb = b.query_one("SELECT current_setting('application_name'), current_setting('TimeZone'), current_setting('DateStyle'), pg_backend_pid()", &[]).await.unwrap();
        assert_eq!(ra.get::<_, i32>(3), rb.get::<_, i32>(3), "both must share the one server");
        assert_eq!(ra.get::<_, String>(0), "app_a");
        assert_eq!(rb.get::<_, String>(0), "app_b");
        assert_eq!(ra.get::<_, String>(1), "Asia/Tokyo");
        assert_ne!(rb.get::<_, String>(1), "Asia/Tokyo");
        assert!(rb.get::<_, String>(2).starts_with("German"), "{}", rb.get::<_, String>(2));
        assert!(!ra.get::<_, String>(2).starts_with("German"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_servers_close_down_to_min_idle() {
    fresh_database("pool_idle");
    let head = "[pool]\nsize = 4\nmin_idle = 2\nserver_idle_timeout = \"1s\"\n";
    let pgate = Pgate::start(&config_with_fallback(head)).await;
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(pgate.alice("pool_idle").await);
    }
    let watch = ConnectionWatch::start("pool_idle", "alice");
    let busy = clients.iter().map(|c| c.batch_execute("BEGIN; SELECT pg_sleep(1); COMMIT"));
    for r in join_all(busy).await {
        r.unwrap();
    }
    assert_eq!(watch.max(), 4, "four concurrent transactions need four servers");
    let mut settled = false;
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if data_connections("pool_idle", "alice") == 2 {
            settled = true;
            break;
        }
    }
    assert!(settled, "idle servers beyond min_idle were not closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_past_their_lifetime_are_replaced() {
    fresh_database("pool_lifetime");
    let head = "[pool]\nsize = 1\nserver_lifetime = \"1s\"\n";
    let pgate = Pgate::start(&config_with_fallback(head)).await;
    let client = pgate.alice("pool_lifetime").await;
    let before = simple_row(&client, "SELECT pg_backend_pid()").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = simple_row(&client, "SELECT pg_backend_pid()").await;
    assert_ne!(before, after, "a server past server_lifetime was reused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_do_not_wait_for_a_free_server() {
    fresh_database("pool_login");
    let head = "[pool]\nmode = \"session\"\nsize = 1\nquery_wait_timeout = \"300ms\"\n";
    let pgate = Pgate::start(&config_with_fallback(head)).await;
    let holder = pgate.alice("pool_login").await;
    assert_eq!(simple_row(&holder, "SELECT 1").await, ["1"]);
    // The one server belongs to `holder`; another client still logs in at once (the pool
    // knows what servers report), and only its query has to wait.
    let other = pgate.alice("pool_login").await;
    let err = other.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("53300"));
    drop(holder);
    let mut served = false;
    for _ in 0..50 {
        if other.simple_query("SELECT 1").await.is_ok() {
            served = true;
            break;
        }
    }
    assert!(served, "the freed server never reached the waiting client");
}

/// Fifty clients log in at once in session pooling, so fifty server logins start together
/// on a fresh pool: the SCRAM keys of alice's server password are derived (PBKDF2) once and
/// every other login reuses them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_session_logins_derive_the_server_key_once() {
    fresh_database("pool_derive");
    let pgate = Pgate::start(&config_with_fallback("[pool]\nmode = \"session\"\nsize = 60\n")).await;
    assert_eq!(pgate.shared.derived_keys.derivations(), 0);
    let logins = (0..50).map(|i| {
        let info = pgate.conninfo("alice", ALICE_PW, "pool_derive");
        async move {
            let client = connect(&info).await?;
            let row = client.query_one("SELECT $1::int, pg_backend_pid()", &[&i]).await?;
            Ok::<_, tokio_postgres::Error>((client, row.get::<_, i32>(1)))
        }
    });
    let clients: Vec<_> = join_all(logins).await.into_iter().map(|r| r.expect("every login succeeds")).collect();
    let mut pids: Vec<i32> = clients.iter().map(|(_, pid)| *pid).collect();
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), 50, "session pooling gave each client a server of its own");
    assert_eq!(pgate.shared.derived_keys.derivations(), 1, "one PBKDF2 for fifty server logins");
    drop(clients);
    pgate.stop().await;
}
