//! A sink that cannot be written: with `on_error = "deny"` statements are refused and the
//! records kept (a removed directory, a full disk); with `"continue"` they run and the
//! records are counted as lost.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::common::*;
use crate::support::*;
use crate::workload::*;

/// Once `written` records are in the file, moves it to `rotated`, removes its directory
/// and asks for a reopen (what SIGUSR1 does after a rotation): the reopen fails and the
/// sink is failing. (A record still queued at the reopen would rightly go to the new file.)
async fn break_sink(pgate: &Pgate, path: &Path, rotated: &Path, written: u64) {
    let auditor = pgate.shared.auditor.clone().unwrap();
    wait_until("the records so far are written", Duration::from_secs(10), || auditor.stats().written == written).await;
    std::fs::rename(path, rotated).unwrap();
    std::fs::remove_dir(path.parent().unwrap()).unwrap();
    auditor.reopen();
    wait_until("the sink is failing", Duration::from_secs(10), || auditor.stats().failing).await;
}

/// Recreates the directory; the writer's retry finds it within a few seconds.
async fn repair_sink(pgate: &Pgate, path: &Path) {
    std::fs::create_dir(path.parent().unwrap()).unwrap();
    let auditor = pgate.shared.auditor.clone().unwrap();
    wait_until("the sink recovers", Duration::from_secs(10), || !auditor.stats().failing).await;
}

/// What the lines say, in short: `LOGIN ok`, `3 SELECT 'x' ok`, `LOGOUT`.
pub fn summary(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .map(|l| match l["kind"].as_str().unwrap() {
            "SESSION" => {
                let outcome = match l["outcome"].as_str().unwrap() {
                    "ok" => "ok".to_owned(),
                    "error" => format!("error {}", l["sqlstate"].as_str().unwrap()),
                    _ => format!("denied {}", l["rule"].as_str().unwrap()),
                };
                format!("{} {} {outcome}", l["statement_id"], l["statement"].as_str().unwrap())
            }
            "LOGIN" => format!("LOGIN {}", l["outcome"].as_str().unwrap()),
            kind => kind.to_owned(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_sink_with_on_error_deny_refuses_statements_and_keeps_their_records() {
    audit_database("audit_deny");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs/audit.log");
    let rotated = dir.path().join("rotated.log");
    std::fs::create_dir(dir.path().join("logs")).unwrap();
    let audit = format!("{}\nformat = \"json\"\non_error = \"deny\"\nlog_parameter = true", sink_line(&path));
    let pgate = Pgate::start(&audit_config("audit_deny", TRUST, &audit, READ_AND_SET)).await;
    let client = pgate.connect("alice", "", "audit_deny").await.unwrap();
    assert_eq!(simple_rows(&client, "SELECT 'before'").await, 1);
    // Parsed now, bound while the sink fails.
    let add = "SELECT $1::int + 1";
    let prepared = client.prepare(add).await.unwrap();
    break_sink(&pgate, &path, &rotated, 2).await;

    // Simple and extended statements are refused; the session stays usable.
    for sql in ["SELECT 'during'", "SELECT 'during again'"] {
        let message = failed_with(client.simple_query(sql).await, "58030", sql);
        assert!(message.contains("cannot write its audit log"), "{message}");
    }
    let extended = "SELECT $1::text";
    let message = failed_with(client.query(extended, &[&"during"]).await, "58030", extended);
    assert!(message.contains("audit.on_error = \"deny\""), "{message}");
    failed_with(client.query(&prepared, &[&41i32]).await, "58030", add);
    repair_sink(&pgate, &path).await;
    assert_eq!(simple_rows(&client, "SELECT 'after'").await, 1);
    drop(client);
    let stats = settle_and_stop(pgate).await;

    assert_eq!(summary(&read_json(&rotated)), ["LOGIN ok", "1 SELECT 'before' ok"]);
    // The refusals' records were queued while the sink failed and written once it was back.
    let lines = read_json(&path);
    assert_eq!(
        summary(&lines),
        [
            "2 SELECT 'during' denied audit_unavailable",
            "3 SELECT 'during again' denied audit_unavailable",
            "4 SELECT $1::text denied audit_unavailable",
            "5 SELECT $1::int + 1 denied audit_unavailable",
            "6 SELECT 'after' ok",
            "LOGOUT",
        ]
    );
    // Refused at its Parse, a statement was never bound; refused at its Bind, its values
    // are known.
    let parameters: Vec<&Value> = lines[..4].iter().map(|l| &l["parameters"]).collect();
    let bound = serde_json::json!([int4_param(41)]);
    assert_eq!(parameters, [&Value::from("<none>"), &Value::from("<none>"), &Value::from("<not logged>"), &bound]);
    assert_eq!((stats.written, stats.lost, stats.dropped, stats.refused), (8, 0, 0, 0), "{stats:?}");
    assert!(stats.sink_errors >= 1 && !stats.failing, "{stats:?}");
}

/// A write that fails (a full disk: the path now leads to /dev/full) after the statement
/// already ran: its record is held, not lost, and written once the sink recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_whose_write_fails_is_written_after_recovery() {
    audit_database("audit_full");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let (first, second) = (dir.path().join("first.log"), dir.path().join("second.log"));
    let point_to = |target: &Path| {
        let link = dir.path().join("link.tmp");
        std::os::unix::fs::symlink(target, &link).unwrap();
        std::fs::rename(&link, &path).unwrap();
    };
    point_to(&first);
    let audit = format!("{}\nformat = \"json\"\non_error = \"deny\"", sink_line(&path));
    let pgate = Pgate::start(&audit_config("audit_full", TRUST, &audit, READ_AND_SET)).await;
    let auditor = pgate.shared.auditor.clone().unwrap();
    let client = pgate.connect("alice", "", "audit_full").await.unwrap();
    assert_eq!(simple_rows(&client, "SELECT 'first'").await, 1);
    wait_until("the first records are written", Duration::from_secs(10), || auditor.stats().written == 2).await;
    point_to(Path::new("/dev/full"));
    auditor.reopen();
    // The sink is not failing yet: the statement runs, and its record's write fails.
    assert_eq!(simple_rows(&client, "SELECT 'held'").await, 1);
    wait_until("the write fails", Duration::from_secs(10), || auditor.stats().failing).await;
    failed_with(client.simple_query("SELECT 'refused'").await, "58030", "SELECT 'refused'");
    point_to(&second);
    wait_until("the sink recovers", Duration::from_secs(10), || !auditor.stats().failing).await;
    assert_eq!(simple_rows(&client, "SELECT 'second'").await, 1);
    drop(client);
    let stats = settle_and_stop(pgate).await;

    assert_eq!(summary(&read_json(&first)), ["LOGIN ok", "1 SELECT 'first' ok"]);
    assert_eq!(
        summary(&read_json(&second)),
        ["2 SELECT 'held' ok", "3 SELECT 'refused' denied audit_unavailable", "4 SELECT 'second' ok", "LOGOUT"]
    );
    assert_eq!((stats.written, stats.lost, stats.dropped), (6, 0, 0), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_sink_with_on_error_continue_serves_and_counts_lost_records() {
    const DURING: usize = 5;
    audit_database("audit_continue");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs/audit.log");
    let rotated = dir.path().join("rotated.log");
    std::fs::create_dir(dir.path().join("logs")).unwrap();
    let audit = format!("{}\nformat = \"json\"\non_error = \"continue\"", sink_line(&path));
    let pgate = Pgate::start(&audit_config("audit_continue", TRUST, &audit, READ_AND_SET)).await;
    let auditor = pgate.shared.auditor.clone().unwrap();
    let client = pgate.connect("alice", "", "audit_continue").await.unwrap();
    assert_eq!(simple_rows(&client, "SELECT 'before'").await, 1);
    break_sink(&pgate, &path, &rotated, 2).await;
    for i in 0..DURING {
        assert_eq!(simple_rows(&client, &format!("SELECT 'during {i}'")).await, 1);
    }
    wait_until("the records of the outage are counted lost", Duration::from_secs(10), || {
        auditor.stats().lost == DURING as u64
    })
    .await;
    repair_sink(&pgate, &path).await;
    assert_eq!(simple_rows(&client, "SELECT 'after'").await, 1);
    drop(client);
    let stats = settle_and_stop(pgate).await;

    assert_eq!(summary(&read_json(&rotated)), ["LOGIN ok", "1 SELECT 'before' ok"]);
    assert_eq!(summary(&read_json(&path)), ["7 SELECT 'after' ok", "LOGOUT"]);
    assert_eq!((stats.written, stats.lost, stats.dropped, stats.refused), (4, DURING as u64, 0, 0), "{stats:?}");
}
