//! The audit log against real PostgreSQL: completeness and order under load with a slow
//! sink, the drop policy's counts, every pool mode and extended-protocol failures here; a
//! failing sink, the pgaudit format, configuration reloads and the binary's signals in the
//! modules below.

mod common;
#[path = "audit/pgaudit.rs"]
mod pgaudit;
#[path = "audit/reload.rs"]
mod reload;
#[path = "audit/signals.rs"]
mod signals;
#[path = "audit/sinks.rs"]
mod sinks;
#[path = "audit/support.rs"]
mod support;
#[path = "audit/workload.rs"]
mod workload;

use std::time::Duration;

use common::raw::*;
use common::*;
use serde_json::Value;
use support::*;
use workload::*;

/// Compares a session's statement records with what its client sent, naming the first
/// difference instead of printing thousands of records.
fn assert_records(who: &str, seen: &[Value], expected: &[Expected]) {
    let ids = statement_ids(seen);
    let numbered: Vec<u64> = (1..=seen.len() as u64).collect();
    assert_eq!(ids, numbered, "{who}: statement ids are not 1, 2, 3... in file order");
    for (i, (line, want)) in seen.iter().zip(expected).enumerate() {
        assert_eq!(&Expected::of_line(line), want, "{who}: record {} differs: {line}", i + 1);
    }
    assert_eq!(seen.len(), expected.len(), "{who}: records in the log vs statements sent");
}

/// 50 clients on a transaction pool of 5, each running a mix of simple, extended and
/// pipelined statements, failures and refusals, while the audit writer is held back by a
/// slow FIFO reader behind a 64-record queue with `on_full = "block"`: every statement
/// leaves exactly one record, in its client's order, with its outcome.
///
/// Size: 50 clients x 2,000 statements (100,000 statements and 100 logins and logouts).
/// The writer is held back twice: stuck until the queue is full, then slow for a few
/// thousand reads (a few seconds); after that the reader keeps up, so the test's time is
/// the clients' own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_policy_keeps_every_record_of_a_busy_pool_in_order() {
    const CLIENTS: usize = 50;
    const PER_CLIENT: usize = 2000;
    audit_database("audit_load");
    let dir = tempfile::tempdir().unwrap();
    // Paused until the queue has filled behind the stuck writer, then slow: 512 bytes per
    // read and a millisecond's sleep (at most ~1,200 records a second, below what the
    // clients produce) for 3,000 reads, then as fast as it can.
    let fifo = Fifo::start_slow_for(&dir.path().join("audit.fifo"), 512, Duration::from_millis(1), true, 3000);
    let audit = format!(
        "{}\nformat = \"json\"\non_full = \"block\"\nqueue_size = 64\nfsync = \"never\"\nlog_parameter = true",
        sink_line(&fifo.path)
    );
    let head = format!("[pool]\nmode = \"transaction\"\nsize = 5\n{TRUST}");
    let pgate = Pgate::start(&audit_config("audit_load", &head, &audit, READ_AND_SET)).await;
    let auditor = pgate.shared.auditor.clone().unwrap();
    let runs: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let conninfo = pgate.conninfo("alice", "", "audit_load");
            tokio::spawn(async move {
                let client = connect(&conninfo).await.expect("connect");
                load_client(&client, c, PER_CLIENT).await
            })
        })
        .collect();
    // (A client that ended already has failed: its panic is reported below.)
    let capacity = auditor.stats().capacity;
    wait_until("the queue fills behind the stuck writer", Duration::from_secs(60), || {
        auditor.stats().queued >= capacity || runs.iter().any(|r| r.is_finished())
    })
    .await;
    fifo.resume();
    let mut expected = Vec::new();
    for run in runs {
        expected.push(run.await.expect("client task"));
    }
    let stats = settle_and_stop(pgate).await;
    let lines = json_lines(&fifo.finish());

    let sessions = by_session(&lines);
    assert_eq!(sessions.len(), CLIENTS, "one session id per client");
    let mut clients_seen = std::collections::BTreeSet::new();
    for (session, s) in &sessions {
        assert_eq!(s.logins.len(), 1, "session {session}: one LOGIN");
        assert_eq!(s.logins[0]["outcome"], "ok");
        assert_eq!(s.logins[0]["method"], "trust");
        assert_eq!(s.logouts, 1, "session {session}: one LOGOUT");
        let first = s.statements.first().and_then(|l| l["statement"].as_str()).unwrap_or_default();
        let c = (0..CLIENTS).find(|c| marker(*c) == first).unwrap_or_else(|| panic!("{session} starts with {first}"));
        assert!(clients_seen.insert(c), "client {c} has two sessions");
        assert_records(&format!("client {c} (session {session})"), &s.statements, &expected[c]);
        for line in &s.statements {
            assert_eq!(
                (&line["user"], &line["database"], &line["workspace"], &line["backend"]),
                (&Value::from("alice"), &Value::from("audit_load"), &Value::from("auditors"), &Value::from("data"))
            );
        }
    }
    let statements: usize = expected.iter().map(Vec::len).sum();
    let records = statements + 2 * CLIENTS;
    assert_eq!(lines.len(), records, "one line per statement, login and logout");
    assert_eq!(stats.written, records as u64);
    assert_eq!((stats.dropped, stats.lost, stats.refused, stats.sink_errors), (0, 0, 0, 0), "{stats:?}");
}

/// `on_full = "drop"` with a 4-record queue and a stalled FIFO: clients never wait, and
/// every record is either written or counted as dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_policy_counts_every_record_it_does_not_write() {
    const CLIENTS: usize = 10;
    const PER_CLIENT: usize = 200;
    audit_database("audit_drop");
    let dir = tempfile::tempdir().unwrap();
    let fifo = Fifo::start(&dir.path().join("audit.fifo"), 1024, Duration::from_millis(1), true);
    let audit =
        format!("{}\nformat = \"json\"\non_full = \"drop\"\nqueue_size = 4\nfsync = \"never\"", sink_line(&fifo.path));
    let head = format!("[pool]\nsize = 3\n{TRUST}");
    let pgate = Pgate::start(&audit_config("audit_drop", &head, &audit, READ_AND_SET)).await;
    let auditor = pgate.shared.auditor.clone().unwrap();
    let runs: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let conninfo = pgate.conninfo("alice", "", "audit_drop");
            tokio::spawn(async move {
                let client = connect(&conninfo).await.expect("connect");
                for i in 0..PER_CLIENT {
                    assert_eq!(simple_rows(&client, &format!("SELECT {}", c * 1000 + i)).await, 1);
                }
            })
        })
        .collect();
    // The reader stays paused until every client is done: 2,000 records of ~300 bytes do
    // not fit a 64 KiB pipe and a 4-record queue, so records must have been dropped.
    for run in runs {
        run.await.expect("client task");
    }
    let shared = pgate.shared.clone();
    wait_until("every client has left", Duration::from_secs(30), || shared.client_count() == 0).await;
    assert!(auditor.stats().dropped > 0, "{:?}", auditor.stats());
    fifo.resume();
    let stats = settle_and_stop(pgate).await;
    let lines = json_lines(&fifo.finish());

    let handed_in = (CLIENTS * PER_CLIENT + 2 * CLIENTS) as u64;
    assert_eq!(stats.written + stats.dropped, handed_in, "{stats:?}");
    assert_eq!(lines.len() as u64, stats.written);
    assert!(stats.dropped > 0);
    assert_eq!((stats.lost, stats.refused, stats.queued), (0, 0, 0), "{stats:?}");
    for (session, s) in by_session(&lines) {
        let ids = statement_ids(&s.statements);
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "session {session}: records out of order: {ids:?}");
    }
}

/// The same script in session, transaction and statement pooling leaves the same records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pool_mode_leaves_the_same_records() {
    audit_database("audit_modes");
    let dir = tempfile::tempdir().unwrap();
    for mode in ["session", "transaction", "statement"] {
        let path = dir.path().join(format!("{mode}.log"));
        let audit = format!("{}\nformat = \"json\"", sink_line(&path));
        let head = format!("[pool]\nmode = \"{mode}\"\nsize = 2\n{TRUST}");
        let pgate = Pgate::start(&audit_config("audit_modes", &head, &audit, READ_AND_SET)).await;
        let client = pgate.connect("alice", "", "audit_modes").await.unwrap();
        let expected = mode_script(&client).await;
        drop(client);
        let stats = settle_and_stop(pgate).await;
        let sessions = by_session(&read_json(&path));
        assert_eq!(sessions.len(), 1, "{mode}");
        let session = sessions.values().next().unwrap();
        assert_eq!((session.logins.len(), session.logouts), (1, 1), "{mode}");
        assert_records(&format!("{mode} pooling"), &session.statements, &expected);
        assert_eq!((stats.written, stats.dropped, stats.lost), (expected.len() as u64 + 2, 0, 0), "{mode}");
    }
}

/// An extended-protocol statement that fails before its Execute is answered, at its Bind
/// (a parameter that is not an int; a division the planner folds with the bound value) or
/// at its Parse (a missing table) with the Execute already sent, ran and failed as the same
/// statement does in a simple query: it leaves an error record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_failing_before_execute_is_recorded() {
    audit_database("audit_bind");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let audit = format!("{}\nformat = \"json\"", sink_line(&path));
    let pgate = Pgate::start(&audit_config("audit_bind", TRUST, &audit, READ_AND_SET)).await;
    let mut raw = RawClient::login_trusted(pgate.addr, "alice", "audit_bind").await;
    let cast = "SELECT $1::int + 1";
    raw.send(&[parse("", cast), bind_text(&[Some("abc")]), execute("", 0), sync()].concat()).await;
    let replies = raw.until_ready().await;
    assert_eq!(codes(&replies), "1EZ", "the Bind fails");
    assert_eq!(error_code(&replies[1].1), "22P02");
    let missing = "SELECT v FROM aud.missing";
    raw.send(&[parse("", missing), bind_text(&[]), execute("", 0), sync()].concat()).await;
    let replies = raw.until_ready().await;
    assert_eq!(codes(&replies), "EZ", "the Parse fails");
    assert_eq!(error_code(&replies[0].1), "42P01");
    drop(raw);
    let client = pgate.connect("alice", "", "audit_bind").await.unwrap();
    let folded = "SELECT 1/$1::int";
    failed_with(client.query(folded, &[&0i32]).await, "22012", folded);
    drop(client);
    settle_and_stop(pgate).await;

    let seen: Vec<Expected> =
        read_json(&path).iter().filter(|l| l["kind"] == "SESSION").map(Expected::of_line).collect();
    assert_eq!(
        seen,
        [
            Expected::error("READ", "SELECT", "22P02", cast),
            Expected::error("READ", "SELECT", "42P01", missing),
            Expected::error("READ", "SELECT", "22012", folded),
        ]
    );
}

/// A refusal the server skipped (an earlier statement of the pipeline failed) is recorded
/// in its place: after the failed statement, before the statements of the next Sync, also
/// when their replies reach pgate in one read. (The failing statement streams 20 MB first,
/// which the server sends faster than the client reads them: pgate lags behind the server,
/// so the replies after the rows are in its buffer together.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skipped_refusal_keeps_its_place_in_the_session_order() {
    audit_database("audit_order");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let audit = format!("{}\nformat = \"json\"", sink_line(&path));
    let pgate = Pgate::start(&audit_config("audit_order", TRUST, &audit, READ_AND_SET)).await;
    let mut raw = RawClient::login_trusted(pgate.addr, "alice", "audit_order").await;
    // 20 MB of rows, then division by zero.
    let flood = "SELECT CASE WHEN g < 200000 THEN repeat('x', 100) ELSE (1/(g-g))::text END \
                 FROM generate_series(1, 200000) g";
    let (refused, last) = ("DELETE FROM aud.t", "SELECT 3");
    let pipeline = [
        [parse("", flood), bind_text(&[]), execute("", 0)].concat(),
        [parse("", refused), bind_text(&[]), execute("", 0), sync()].concat(),
        [parse("", last), bind_text(&[]), execute("", 0), sync()].concat(),
    ];
    raw.send(&pipeline.concat()).await;
    let replies = raw.until_ready_n(2).await;
    assert_eq!(codes(&replies[replies.len() - 8..]), "DEZ12DCZ", "the flood fails; the refusal is skipped");
    drop(raw);
    settle_and_stop(pgate).await;

    let seen: Vec<Expected> =
        read_json(&path).iter().filter(|l| l["kind"] == "SESSION").map(Expected::of_line).collect();
    assert_eq!(
        seen,
        [
            Expected::error("READ", "SELECT", "22012", flood),
            Expected::denied("WRITE", "DELETE", "allow", refused),
            Expected::ok("READ", "SELECT", Some(1), last),
        ]
    );
}
