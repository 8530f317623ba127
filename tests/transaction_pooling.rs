//! Transaction pooling made invisible: named and unnamed prepared statements across
//! servers, pipelines with errors, portal suspension, session settings, pinning for session
//! state, SQL PREPARE, DISCARD ALL, on_session_state = "error", statement pooling.

mod common;

use std::time::Duration;

use common::raw::*;
use common::*;
use futures::future::join_all;

fn tx_config(db: &str, head: &str) -> String {
    fresh_database(db);
    config_with_fallback(&format!("[auth]\ntrust_networks = [\"127.0.0.1/32\"]\n{head}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_statements_follow_clients_across_servers() {
    let pgate = Pgate::start(&tx_config("tp_named", "[pool]\nsize = 3\n")).await;
    let mut clients = Vec::new();
    for _ in 0..12 {
        clients.push(pgate.alice("tp_named").await);
    }
    // Each client prepares once (tokio-postgres: a named statement), then executes it in
    // many transactions, each on whichever server is free.
    let runs = clients.into_iter().enumerate().map(|(i, c)| async move {
        let stmt = c.prepare("SELECT $1::int * 2, pg_backend_pid()").await?;
        let mut pids = std::collections::HashSet::new();
        for j in 0..40 {
            let row = c.query_one(&stmt, &[&(i as i32 * 100 + j)]).await?;
            assert_eq!(row.get::<_, i32>(0), (i as i32 * 100 + j) * 2);
            pids.insert(row.get::<_, i32>(1));
        }
        Ok::<_, tokio_postgres::Error>(pids)
    });
    let mut servers = std::collections::HashSet::new();
    for r in join_all(runs).await {
        servers.extend(r.expect("every execution succeeds"));
    }
    assert!(servers.len() > 1, "the test never moved a statement to another server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_beyond_max_prepared_statements_are_evicted_and_reprepared() {
    let pgate = Pgate::start(&tx_config("tp_evict", "[pool]\nsize = 1\nmax_prepared_statements = 2\n")).await;
    let c = pgate.alice("tp_evict").await;
    let mut stmts = Vec::new();
    for k in 0..5 {
        stmts.push(c.prepare(&format!("SELECT {k} + $1::int")).await.unwrap());
    }
    for round in 0..3 {
        for (k, s) in stmts.iter().enumerate() {
            let v: i32 = c.query_one(s, &[&round]).await.unwrap().get(0);
            assert_eq!(v, k as i32 + round);
        }
    }
    let on_server = simple_row(&c, "SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'pgate_s%'").await;
    assert!(on_server[0].parse::<i32>().unwrap() <= 2, "server holds {} statements", on_server[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unnamed_statement_survives_a_change_of_server() {
    let pgate = Pgate::start(&tx_config("tp_unnamed", "[pool]\nsize = 2\n")).await;
    let mut r = RawClient::login_trusted(pgate.addr, "dave", "tp_unnamed").await;
    let mut msgs = Vec::new();
    r.send(&[parse("", "SELECT pg_backend_pid(), $1::text"), sync()].concat()).await;
    msgs.extend(r.until_ready().await);
    assert_eq!(codes(&msgs), "1Z");
    // Another client now holds the server that has the unnamed statement.
    let hog = pgate.connect("dave", "", "tp_unnamed").await.unwrap();
    hog.batch_execute("BEGIN; SELECT 1").await.unwrap();
    r.send(&[bind("", "", &["hello"]), execute("", 0), sync()].concat()).await;
    let msgs = r.until_ready().await;
    assert_eq!(codes(&msgs), "2DCZ", "{msgs:?}");
    hog.batch_execute("COMMIT").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelines_with_errors_stay_in_step() {
    let pgate = Pgate::start(&tx_config("tp_pipe", "[pool]\nsize = 2\n")).await;
    let mut r = RawClient::login_trusted(pgate.addr, "dave", "tp_pipe").await;
    // Three syncs; the middle segment fails at its Execute, so its later messages (a Parse
    // of s3 included) are skipped, and the third segment runs.
    r.send(
        &[
            parse("s1", "SELECT 1"),
            bind("", "s1", &[]),
            execute("", 0),
            sync(),
            parse("s2", "SELECT 1 / (0 * random())::int"),
            bind("", "s2", &[]),
            execute("", 0),
            parse("s3", "SELECT 3"),
            bind("", "s1", &[]),
            execute("", 0),
            sync(),
            bind("", "s1", &[]),
            execute("", 0),
            sync(),
        ]
        .concat(),
    )
    .await;
    let msgs = r.until_ready_n(3).await;
    assert_eq!(codes(&msgs), "12DCZ12EZ2DCZ", "{msgs:?}");
    // s3 was skipped by the server, so it does not exist; s1 and s2 do.
    r.send(&[bind("", "s3", &[]), execute("", 0), sync()].concat()).await;
    let msgs = r.until_ready().await;
    let err = msgs.iter().find(|m| m.0 == b'E').expect("s3 must not exist");
    assert_eq!(error_code(&err.1), "26000");
    assert!(String::from_utf8_lossy(&err.1).contains("\"s3\""), "the error names the client's statement");
    // Reusing a name without closing it fails as on a real server, with the client's name.
    r.send(&[parse("s1", "SELECT 11"), sync()].concat()).await;
    let msgs = r.until_ready().await;
    let err = msgs.iter().find(|m| m.0 == b'E').expect("s1 exists");
    assert_eq!(error_code(&err.1), "42P05");
    let text = String::from_utf8_lossy(&err.1);
    assert!(text.contains("\"s1\"") && !text.contains("pgate_s"), "{text}");
    // Close, then the name is free again.
    r.send(&[close(b'S', "s1"), parse("s1", "SELECT 11"), bind("", "s1", &[]), execute("", 0), sync()].concat()).await;
    let msgs = r.until_ready().await;
    assert_eq!(codes(&msgs), "312DCZ");
    assert_eq!(first_column(&msgs), ["11"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_without_sync_and_portal_suspension() {
    let pgate = Pgate::start(&tx_config("tp_portal", "[pool]\nsize = 2\n")).await;
    let mut r = RawClient::login_trusted(pgate.addr, "dave", "tp_portal").await;
    // Describe and Flush: answers come back without a Sync, and the server stays ours.
    r.send(&[parse("q", "SELECT g FROM generate_series(1, 5) g"), describe(b'S', "q"), flush()].concat()).await;
    let mut got = Vec::new();
    while got.len() < 3 {
        got.push(r.recv().await.unwrap());
    }
    assert_eq!(codes(&got), "1tT");
    r.send(&[query("BEGIN")].concat()).await;
    // (A Query after a Flush is legal; it ends the implicit pipeline.)
    r.until_ready().await;
    r.send(&[bind("c", "q", &[]), execute("c", 2), sync()].concat()).await;
    let msgs = r.until_ready().await;
    assert_eq!(codes(&msgs), "2DDsZ");
    r.send(&[execute("c", 2), sync()].concat()).await;
    assert_eq!(first_column(&r.until_ready().await), ["3", "4"]);
    r.send(&[execute("c", 0), sync(), query("COMMIT")].concat()).await;
    let msgs = r.until_ready_n(2).await;
    assert_eq!(first_column(&msgs), ["5"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_follow_the_client_and_rolled_back_sets_do_not() {
    let pgate = Pgate::start(&tx_config("tp_settings", "[pool]\nsize = 1\n")).await;
    let a = pgate.alice("tp_settings").await;
    let b = pgate.alice("tp_settings").await;
    a.batch_execute("SET search_path = a_schema, public; SET work_mem = '4321kB'").await.unwrap();
    a.batch_execute("BEGIN; SET statement_timeout = '7s'; ROLLBACK").await.unwrap();
    a.batch_execute("BEGIN; SET LOCAL lock_timeout = '3s'; COMMIT").await.unwrap();
    a.batch_execute("SELECT set_config('myapp.tenant', 'acme', false)").await.unwrap();
    for _ in 0..3 {
        let ra = simple_row(&a, "SELECT current_setting('search_path'), current_setting('work_mem'), current_setting('statement_timeout'), current_setting('lock_timeout'), current_setting('myapp.tenant', true), pg_backend_pid()").await;
        let rb = simple_row(&b, "SELECT current_setting('search_path'), current_setting('work_mem'), current_setting('statement_timeout'), current_setting('lock_timeout'), current_setting('myapp.tenant', true), pg_backend_pid()").await;
        assert_eq!(ra[5], rb[5], "one server for both");
        assert_eq!(&ra[..5], ["a_schema, public", "4321kB", "0", "0", "acme"]);
        assert_eq!(&rb[..2], ["\"$user\", public", "4MB"]);
        assert_eq!(rb[4], "", "b must not see a's custom setting");
    }
    a.batch_execute("RESET ALL").await.unwrap();
    let ra = simple_row(&a, "SELECT current_setting('work_mem'), current_setting('search_path')").await;
    assert_eq!(ra, ["4MB", "\"$user\", public"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_state_pins_the_client_until_it_is_gone() {
    let pgate = Pgate::start(&tx_config("tp_pin", "[pool]\nsize = 2\n")).await;
    let a = pgate.alice("tp_pin").await;
    let others: Vec<_> = futures::future::join_all((0..4).map(|_| pgate.connect("alice", ALICE_PW, "tp_pin"))).await;
    let others: Vec<_> = others.into_iter().map(Result::unwrap).collect();
    a.batch_execute("CREATE TEMP TABLE mine (v int); INSERT INTO mine VALUES (1); SELECT pg_advisory_lock(77)")
        .await
        .unwrap();
    let pid = simple_row(&a, "SELECT pg_backend_pid()").await[0].clone();
    for round in 0..5 {
        // Others run meanwhile; `a` keeps its server, its temp table and its lock.
        join_all(others.iter().map(|o| o.batch_execute("SELECT pg_sleep(0.01)"))).await;
        let row = simple_row(&a, &format!("INSERT INTO mine VALUES ({round}) RETURNING pg_backend_pid()")).await;
        assert_eq!(row[0], pid);
    }
    let locked = simple_row(&others[0], "SELECT pg_try_advisory_lock(77)").await;
    assert_eq!(locked, ["f"], "the lock is a's");
    assert_eq!(pgate.shared.metrics.pins().iter().map(|(_, n)| n).sum::<u64>(), 2, "temp table and lock, once each");
    // Releasing everything unpins: afterwards a's transactions may run anywhere again,
    // and whatever server it leaves is clean.
    a.batch_execute("DROP TABLE mine; SELECT pg_advisory_unlock(77)").await.unwrap();
    let mut moved = false;
    for _ in 0..20 {
        let hold = others[1].batch_execute("BEGIN; SELECT pg_sleep(0.05)");
        let (_, row) = tokio::join!(hold, simple_row(&a, "SELECT pg_backend_pid()"));
        others[1].batch_execute("COMMIT").await.unwrap();
        if row[0] != pid {
            moved = true;
            break;
        }
    }
    assert!(moved, "a stayed pinned after releasing its state");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_pins_and_notifications_arrive() {
    let pgate = Pgate::start(&tx_config("tp_listen", "[pool]\nsize = 2\n")).await;
    let mut listener = RawClient::login_trusted(pgate.addr, "dave", "tp_listen").await;
    listener.send(&query("LISTEN jobs")).await;
    listener.until_ready().await;
    let notifier = pgate.connect("dave", "", "tp_listen").await.unwrap();
    for i in 0..3 {
        notifier.batch_execute(&format!("NOTIFY jobs, 'job {i}'")).await.unwrap();
        let (code, body) = tokio::time::timeout(Duration::from_secs(5), listener.recv()).await.unwrap().unwrap();
        assert_eq!(code, b'A', "NotificationResponse");
        assert!(String::from_utf8_lossy(&body).contains(&format!("job {i}")));
    }
}

/// After a transaction that changed settings pgate asks the server about the session; a
/// notification the server sends meanwhile is the listener's, not pgate's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_that_arrive_while_pgate_probes_the_session_reach_the_client() {
    const N: usize = 300;
    let db = "tp_notify_probe";
    let pgate = Pgate::start(&tx_config(db, "[pool]\nsize = 2\n")).await;
    let mut listener = RawClient::login_trusted(pgate.addr, "dave", db).await;
    listener.send(&query("LISTEN jobs")).await;
    listener.until_ready().await;
    let direct = format!("host=127.0.0.1 port={} user=dave dbname={db}", backends().data.port());
    let notifier = connect(&direct).await.expect("direct connection");
    let notify = tokio::spawn(async move {
        for i in 0..N {
            notifier.batch_execute(&format!("NOTIFY jobs, 'n{i}'")).await.unwrap();
        }
    });
    let (mut seen, mut probes) = (0, 0);
    while !notify.is_finished() {
        // A SET makes pgate probe the session once the transaction is over.
        listener.send(&query(&format!("SET application_name = 'probe{probes}'"))).await;
        seen += listener.until_ready().await.iter().filter(|m| m.0 == b'A').count();
        probes += 1;
    }
    notify.await.unwrap();
    while seen < N {
        match tokio::time::timeout(Duration::from_secs(5), listener.recv()).await {
            Ok(Some((b'A', _))) => seen += 1,
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    assert_eq!(seen, N, "every notification reached the listener ({probes} probes ran meanwhile)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_prepare_execute_deallocate_work_as_on_a_dedicated_connection() {
    let pgate = Pgate::start(&tx_config("tp_sqlprep", "[pool]\nsize = 2\n")).await;
    let c = pgate.alice("tp_sqlprep").await;
    let other = pgate.alice("tp_sqlprep").await;
    c.batch_execute("PREPARE twice(int) AS SELECT $1 * 2").await.unwrap();
    for i in 0..5 {
        let _hog = other.batch_execute("SELECT pg_sleep(0.01)");
        assert_eq!(simple_row(&c, &format!("EXECUTE twice({i})")).await, [(i * 2).to_string()]);
    }
    c.batch_execute("DEALLOCATE twice").await.unwrap();
    let err = c.simple_query("EXECUTE twice(1)").await.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("26000"));
    // DEALLOCATE ALL also drops the client's protocol-level statements, as PostgreSQL does.
    let stmt = c.prepare("SELECT 5").await.unwrap();
    c.batch_execute("DEALLOCATE ALL").await.unwrap();
    let err = c.query(&stmt, &[]).await.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("26000"));
    // ... and a fresh prepare works again.
    let stmt = c.prepare("SELECT 6").await.unwrap();
    assert_eq!(c.query_one(&stmt, &[]).await.unwrap().get::<_, i32>(0), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discard_all_returns_to_the_startup_settings() {
    let pgate = Pgate::start(&tx_config("tp_discard", "[pool]\nsize = 1\n")).await;
    let info = format!(
        "{} application_name=mine options='-c work_mem=1234kB'",
        pgate.conninfo("alice", ALICE_PW, "tp_discard")
    );
    let c = connect(&info).await.unwrap();
    c.batch_execute("SET work_mem = '999kB'; SET application_name = 'changed'").await.unwrap();
    c.batch_execute("DISCARD ALL").await.unwrap();
    let row = simple_row(&c, "SELECT current_setting('work_mem'), current_setting('application_name')").await;
    assert_eq!(row, ["1234kB", "mine"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_plan_after_ddl_recovers() {
    let pgate = Pgate::start(&tx_config("tp_ddl", "[pool]\nsize = 1\n")).await;
    let c = pgate.alice("tp_ddl").await;
    c.batch_execute("CREATE TABLE t (a int); INSERT INTO t VALUES (1)").await.unwrap();
    let stmt = c.prepare("SELECT * FROM t").await.unwrap();
    assert_eq!(c.query(&stmt, &[]).await.unwrap().len(), 1);
    c.batch_execute("ALTER TABLE t ADD COLUMN b int").await.unwrap();
    let err = c.query(&stmt, &[]).await.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("0A000"), "{err}");
    // As a driver would: prepare again. The pool-wide statement is replaced on the server.
    let stmt = c.prepare("SELECT * FROM t").await.unwrap();
    let rows = c.query(&stmt, &[]).await.unwrap();
    assert_eq!(rows[0].columns().len(), 2);
    let other = pgate.alice("tp_ddl").await;
    let stmt = other.prepare("SELECT * FROM t").await.unwrap();
    assert_eq!(other.query(&stmt, &[]).await.unwrap()[0].columns().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_session_state_error_refuses_and_keeps_the_session() {
    let pgate = Pgate::start(&tx_config("tp_refuse", "[pool]\nsize = 2\non_session_state = \"error\"\n")).await;
    let c = pgate.alice("tp_refuse").await;
    for sql in ["LISTEN x", "CREATE TEMP TABLE t (a int)", "SELECT pg_advisory_lock(1)", "PREPARE p AS SELECT 1"] {
        let err = c.simple_query(sql).await.unwrap_err();
        assert_eq!(sqlstate(&err).as_deref(), Some("0A000"), "{sql}: {err}");
        assert!(db_message(&err).contains("transaction pooling"), "{}", db_message(&err));
    }
    // Inside a transaction the refusal aborts it, as a real error would.
    c.batch_execute("BEGIN").await.unwrap();
    assert!(c.simple_query("LISTEN x").await.is_err());
    let err = c.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("25P02"));
    c.batch_execute("ROLLBACK").await.unwrap();
    // Over the extended protocol too.
    let err = c.prepare("LISTEN y").await.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("0A000"));
    assert_eq!(simple_row(&c, "SELECT 1").await, ["1"]);
    assert_eq!(pgate.shared.metrics.pins().iter().map(|(_, n)| n).sum::<u64>(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_pooling_runs_statements_and_refuses_transactions() {
    let pgate = Pgate::start(&tx_config("tp_statement", "[pool]\nsize = 1\nmode = \"statement\"\n")).await;
    let c = pgate.alice("tp_statement").await;
    let stmt = c.prepare("SELECT $1::int + 1").await.unwrap();
    assert_eq!(c.query_one(&stmt, &[&1]).await.unwrap().get::<_, i32>(0), 2);
    let err = c.batch_execute("BEGIN").await.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("0A000"));
    assert!(db_message(&err).contains("statement pooling"));
    // The refused transaction was rolled back: the next statement runs on its own.
    let row = simple_row(&c, "SELECT now() = statement_timestamp()").await;
    assert_eq!(row, ["t"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_prepared_in_transaction_pooling() {
    let pgate = Pgate::start(&tx_config("tp_bench", "[pool]\nsize = 3\n")).await;
    let run = |args: &[&str]| {
        let out = tool("pgbench")
            .args(["-h", "127.0.0.1", "-p", &pgate.port().to_string(), "-U", "alice"])
            .args(args)
            .arg("tp_bench")
            .env("PGPASSWORD", ALICE_PW)
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{text}");
        text
    };
    run(&["-i", "-q", "-s", "1"]);
    let out = run(&["-n", "-M", "prepared", "-c", "12", "-j", "2", "-t", "100"]);
    assert!(out.contains("actually processed: 1200/1200"), "{out}");
    assert!(out.contains("number of failed transactions: 0"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_parameters_and_queries_arrive_in_pieces() {
    let pgate = Pgate::start(&tx_config("tp_large", "[pool]\nsize = 2\n")).await;
    let client = pgate.alice("tp_large").await;
    // Far more than one socket read: pgate must wait for the whole Bind (or Query) before
    // it can rewrite it, and keep the server meanwhile.
    let blob: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
    let row =
        tokio::time::timeout(Duration::from_secs(20), client.query_one("SELECT length($1::bytea), md5($1)", &[&blob]))
            .await
            .expect("a large Bind is relayed, not spun on")
            .unwrap();
    assert_eq!(row.get::<_, i32>(0), 600_000);
    let literal = "z".repeat(700_000);
    let rows =
        tokio::time::timeout(Duration::from_secs(20), client.simple_query(&format!("SELECT length('{literal}')")))
            .await
            .expect("a large Query is relayed")
            .unwrap();
    let length = rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
        _ => None,
    });
    assert_eq!(length.as_deref(), Some("700000"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_returns_to_the_startup_value_in_both_pool_modes() {
    for mode in ["transaction", "session"] {
        let db = format!("tp_reset_{mode}");
        let pgate = Pgate::start(&tx_config(&db, &format!("[pool]\nsize = 2\nmode = \"{mode}\"\n"))).await;
        let conninfo = format!(
            "{} application_name=startup_app options='-c work_mem=3000kB'",
            pgate.conninfo("alice", ALICE_PW, &db)
        );
        let client = connect(&conninfo).await.unwrap();
        let other = pgate.alice(&db).await;
        let show = "SELECT current_setting('work_mem'), current_setting('application_name')";
        client.batch_execute("SET work_mem = '5MB'").await.unwrap();
        client.batch_execute("RESET work_mem").await.unwrap();
        client.batch_execute("SET application_name = 'other_app'").await.unwrap();
        client.batch_execute("SET application_name TO DEFAULT").await.unwrap();
        assert_eq!(simple_row(&client, show).await, ["3000kB", "startup_app"], "{mode}: RESET");
        assert_eq!(simple_row(&other, show).await, ["4MB", ""], "{mode}: the other client keeps its own");
        client.batch_execute("SET work_mem = '6MB'; RESET ALL").await.unwrap();
        assert_eq!(simple_row(&client, show).await, ["3000kB", "startup_app"], "{mode}: RESET ALL");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepared_set_takes_effect_when_it_is_executed() {
    let pgate = Pgate::start(&tx_config("tp_prepared_set", "[pool]\nsize = 1\n")).await;
    let a = pgate.alice("tp_prepared_set").await;
    let b = pgate.alice("tp_prepared_set").await;
    // Parse in one round trip, Bind/Execute in the next: the SET happens in the second.
    let set = a.prepare("SET work_mem TO '3000kB'").await.unwrap();
    a.execute(&set, &[]).await.unwrap();
    let show = "SELECT current_setting('work_mem')";
    assert_eq!(simple_row(&b, show).await, ["4MB"], "the setting must not leak to another client");
    assert_eq!(simple_row(&a, show).await, ["3000kB"], "and must stay with its client");
    let config = a.prepare("SELECT set_config('work_mem', '2500kB', false)").await.unwrap();
    a.query(&config, &[]).await.unwrap();
    assert_eq!(simple_row(&b, show).await, ["4MB"]);
    assert_eq!(simple_row(&a, show).await, ["2500kB"]);
}

/// After an error in copy-in mode the server drops CopyData, CopyDone and CopyFail and, for
/// an extended-protocol COPY, waits for a Sync: a client need not send CopyDone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_may_end_a_failed_copy_with_sync_alone() {
    let pgate = Pgate::start(&tx_config("tp_copy_sync", "[pool]\nsize = 1\n")).await;
    let mut r = RawClient::login_trusted(pgate.addr, "alice", "tp_copy_sync").await;
    r.send(&query("CREATE TABLE c (id int)")).await;
    assert_eq!(codes(&r.until_ready().await), "CZ");
    for round in 0..3 {
        // Extended protocol: the error, then a bare Sync.
        r.send(&[parse("", "COPY c FROM STDIN"), bind("", "", &[]), execute("", 0), sync()].concat()).await;
        assert_eq!(codes(&[r.recv().await.unwrap(), r.recv().await.unwrap(), r.recv().await.unwrap()]), "12G");
        r.send(&message(b'd', b"not a number\n")).await;
        assert_eq!(r.recv().await.unwrap().0, b'E', "round {round}");
        r.send(&sync()).await;
        assert_eq!(codes(&r.until_ready().await), "Z", "round {round}");
        // Simple protocol: the error and ReadyForQuery, then no CopyDone at all.
        r.send(&query("COPY c FROM STDIN")).await;
        assert_eq!(r.recv().await.unwrap().0, b'G');
        r.send(&message(b'd', b"not a number\n")).await;
        assert_eq!(codes(&r.until_ready().await), "EZ", "round {round}");
        // The next extended-protocol query's Sync is answered, and the server stays in step.
        r.send(&[parse("", "SELECT 1"), bind("", "", &[]), execute("", 0), sync()].concat()).await;
        assert_eq!(codes(&r.until_ready().await), "12DCZ", "round {round}");
        r.send(&query("SELECT count(*) FROM c")).await;
        assert_eq!(first_column(&r.until_ready().await), ["0"], "round {round}");
    }
}

/// A COPY that fails midway, however its CopyDone and the next query meet the server's
/// error, leaves the session in step: the next query gets its own answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_that_fails_midway_leaves_the_next_query_in_step() {
    let pgate = Pgate::start(&tx_config("tp_copy_fail", "[pool]\nsize = 2\n")).await;
    let mut r = RawClient::login_trusted(pgate.addr, "alice", "tp_copy_fail").await;
    r.send(&query("CREATE TABLE c (id int)")).await;
    assert_eq!(codes(&r.until_ready().await), "CZ");
    // A large copy that succeeds first, streamed in chunks.
    r.send(&query("COPY c FROM STDIN")).await;
    assert_eq!(r.recv().await.unwrap().0, b'G');
    let rows: String = (0..20_000).map(|i| format!("{i}\n")).collect();
    for chunk in rows.as_bytes().chunks(60_000) {
        r.send(&message(b'd', chunk)).await;
    }
    r.send(&message(b'c', b"")).await;
    assert_eq!(codes(&r.until_ready().await), "CZ");
    for round in 0..30 {
        r.send(&query("COPY c FROM STDIN")).await;
        assert_eq!(r.recv().await.unwrap().0, b'G');
        if round % 3 == 2 {
            // CopyDone and the next query as soon as the error shows, before its
            // ReadyForQuery.
            r.send(&message(b'd', b"not a number\n")).await;
            assert_eq!(r.recv().await.unwrap().0, b'E');
            r.send(&[message(b'c', b""), query("SELECT 1")].concat()).await;
            assert_eq!(r.recv().await.unwrap().0, b'Z');
            assert_eq!(codes(&r.until_ready().await), "TDCZ", "round {round}");
        } else if round % 3 == 0 {
            // The error and ReadyForQuery come back before the client ends its copy: the
            // server goes back to the pool in between.
            r.send(&message(b'd', b"not a number\n")).await;
            assert_eq!(codes(&r.until_ready().await), "EZ");
            r.send(&[message(b'c', b""), query("SELECT 1")].concat()).await;
            assert_eq!(codes(&r.until_ready().await), "TDCZ", "round {round}");
        } else {
            // The bad row, CopyDone and the next query in one write.
            r.send(&[message(b'd', b"not a number\n"), message(b'c', b""), query("SELECT 1")].concat()).await;
            assert_eq!(codes(&r.until_ready().await), "EZ");
            assert_eq!(codes(&r.until_ready().await), "TDCZ", "round {round}");
        }
    }
}
