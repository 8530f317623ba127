//! A configuration reload (the admin console's RELOAD) and the running audit log: a class
//! taken out of `log` stops being recorded in an open session, a new sink gets every later
//! record (none lost or written twice), a sink that cannot be opened fails the reload and
//! changes nothing, and removing `[audit]` waits for a restart.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::common::*;
use crate::sinks::summary;
use crate::support::*;
use crate::workload::*;

/// carol may use the admin console.
fn head(extra: &str) -> String {
    format!("[admin]\nusers = [\"carol\"]\n{extra}{TRUST}")
}

/// Writes the configuration file: `audit` is the `[audit]` table's body.
fn write_config(path: &Path, db: &str, extra: &str, audit: &str) {
    std::fs::write(path, audit_config(db, &head(extra), audit, READ_AND_SET)).unwrap();
}

/// RELOAD through psql on the admin console; psql's error output when it fails.
async fn reload(pgate: &Pgate) -> Result<(), String> {
    let conninfo = format!("host=127.0.0.1 port={} user=carol dbname=pgate sslmode=disable", pgate.port());
    let mut command = tool("psql");
    command
        .arg(conninfo)
        .args(["-X", "-A", "-v", "ON_ERROR_STOP=1", "-c", "RELOAD"])
        .env("PGPASSWORD", CAROL_PW)
        .env("PGCONNECT_TIMEOUT", "10");
    let out = tokio::task::spawn_blocking(move || command.output()).await.unwrap().expect("psql runs");
    match out.status.success() {
        true => Ok(()),
        false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

/// Alice's lines (the admin's own LOGIN and LOGOUT left out).
fn alice(lines: Vec<Value>) -> Vec<Value> {
    lines.into_iter().filter(|l| l["user"] == "alice").collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_removes_a_class_stops_its_records_from_the_next_statement() {
    audit_database("audit_reload_log");
    let dir = tempfile::tempdir().unwrap();
    let (config, path) = (dir.path().join("pgate.toml"), dir.path().join("audit.log"));
    let audit = |log: &str, queue: usize| {
        format!("{}\nformat = \"json\"\nlog = [{log}]\nqueue_size = {queue}", sink_line(&path))
    };
    write_config(&config, "audit_reload_log", "", &audit(READ_AND_SET, 100));
    let pgate = Pgate::start_file(&config).await;
    let auditor = pgate.shared.auditor.clone().unwrap();
    let client = pgate.connect("alice", "", "audit_reload_log").await.unwrap();
    assert_eq!(simple_rows(&client, "SELECT 'before'").await, 1);
    client.simple_query("SET application_name = 'before'").await.unwrap();

    // READ is taken away; queue_size needs a restart.
    write_config(&config, "audit_reload_log", "", &audit("\"MISC_SET\"", 200));
    reload(&pgate).await.unwrap();
    assert_eq!(auditor.stats().capacity, 100, "the queue keeps its size");
    assert_eq!(simple_rows(&client, "SELECT 'after'").await, 1);
    client.simple_query("SET application_name = 'after'").await.unwrap();
    drop(client);
    let stats = settle_and_stop(pgate).await;

    assert_eq!(
        summary(&alice(read_json(&path))),
        [
            "LOGIN ok",
            "1 SELECT 'before' ok",
            "2 SET application_name = 'before' ok",
            "3 SET application_name = 'after' ok",
            "LOGOUT"
        ]
    );
    assert_eq!((stats.lost, stats.dropped, stats.refused), (0, 0, 0), "{stats:?}");
}

/// (session, statement id) of every statement line, and the LOGIN / LOGOUT lines per user.
fn statement_keys(lines: &[Value]) -> Vec<(String, u64)> {
    lines
        .iter()
        .filter(|l| l["kind"] == "SESSION")
        .map(|l| (l["session"].as_str().unwrap().to_owned(), l["statement_id"].as_u64().unwrap()))
        .collect()
}

fn count(lines: &[Value], kind: &str, user: &str) -> usize {
    lines.iter().filter(|l| l["kind"] == kind && l["user"] == user).count()
}

/// A busy session runs statements while the reload moves the sink: every record is in
/// exactly one of the files, the old one first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_to_a_new_sink_moves_later_records_there_losing_none() {
    audit_database("audit_reload_sink");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pgate.toml");
    let (old, new) = (dir.path().join("old.log"), dir.path().join("new.log"));
    let audit = |sink: &Path| format!("{}\nformat = \"json\"", sink_line(sink));
    write_config(&config, "audit_reload_sink", "", &audit(&old));
    let pgate = Pgate::start_file(&config).await;
    let client = pgate.connect("alice", "", "audit_reload_sink").await.unwrap();
    assert_eq!(simple_rows(&client, "SELECT 'before'").await, 1);

    let (ran, stop) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
    let busy = {
        let (conninfo, ran, stop) = (pgate.conninfo("alice", "", "audit_reload_sink"), ran.clone(), stop.clone());
        tokio::spawn(async move {
            let client = connect(&conninfo).await.unwrap();
            while !stop.load(Ordering::Relaxed) {
                let i = ran.load(Ordering::Relaxed);
                assert_eq!(simple_rows(&client, &format!("SELECT {i}")).await, 1);
                ran.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    wait_until("the busy session's records reach the old file", Duration::from_secs(20), || {
        read_json(&old).iter().filter(|l| l["kind"] == "SESSION").count() >= 20
    })
    .await;
    write_config(&config, "audit_reload_sink", "", &audit(&new));
    reload(&pgate).await.unwrap();
    let at_reload = ran.load(Ordering::Relaxed);
    wait_until("the busy session runs on", Duration::from_secs(20), || ran.load(Ordering::Relaxed) >= at_reload + 50)
        .await;
    stop.store(true, Ordering::Relaxed);
    busy.await.unwrap();
    assert_eq!(simple_rows(&client, "SELECT 'after'").await, 1);
    drop(client);
    let stats = settle_and_stop(pgate).await;

    let (old_lines, new_lines) = (read_json(&old), read_json(&new));
    assert!(summary(&alice(old_lines.clone())).contains(&"1 SELECT 'before' ok".to_owned()));
    assert!(summary(&alice(new_lines.clone())).contains(&"2 SELECT 'after' ok".to_owned()));
    let (before, after) = (statement_keys(&old_lines), statement_keys(&new_lines));
    assert!(!after.is_empty(), "records after the reload are in the new file");
    let mut by_session: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (session, id) in before.iter().chain(&after) {
        by_session.entry(session.clone()).or_default().push(*id);
    }
    let mut lengths: Vec<usize> = by_session.values().map(Vec::len).collect();
    lengths.sort();
    assert_eq!(lengths, [2, ran.load(Ordering::Relaxed)], "every statement once");
    for (session, ids) in &by_session {
        assert_eq!(
            *ids,
            (1..=ids.len() as u64).collect::<Vec<_>>(),
            "session {session}: old file, then new, once each"
        );
    }
    let all = [old_lines.clone(), new_lines.clone()].concat();
    assert_eq!((count(&all, "LOGIN", "alice"), count(&all, "LOGOUT", "alice")), (2, 2));
    assert_eq!((old_lines.len() + new_lines.len()) as u64, stats.written, "{stats:?}");
    assert_eq!((stats.lost, stats.dropped, stats.refused), (0, 0, 0), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_to_a_sink_that_cannot_be_opened_changes_nothing() {
    audit_database("audit_reload_bad");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pgate.toml");
    let (path, missing) = (dir.path().join("audit.log"), dir.path().join("missing/audit.log"));
    write_config(&config, "audit_reload_bad", "", &format!("{}\nformat = \"json\"", sink_line(&path)));
    let pgate = Pgate::start_file(&config).await;
    let limit = pgate.shared.config.load().listen.max_client_connections;
    let client = pgate.connect("alice", "", "audit_reload_bad").await.unwrap();
    assert_eq!(simple_rows(&client, "SELECT 'before'").await, 1);

    // A sink in a directory that does not exist, another class list, another client limit.
    let bad = format!("{}\nformat = \"json\"\nlog = [\"MISC_SET\"]", sink_line(&missing));
    write_config(&config, "audit_reload_bad", "[listen]\nmax_client_connections = 7\n", &bad);
    let error = reload(&pgate).await.unwrap_err();
    assert!(error.contains("configuration reload failed") && error.contains("missing/audit.log"), "{error}");
    assert_eq!(pgate.shared.config.load().listen.max_client_connections, limit, "the rest is not applied either");
    assert!(pgate.shared.auditor.as_ref().unwrap().settings().log.contains(pgate::sql::statement::AuditClass::Read));
    assert_eq!(simple_rows(&client, "SELECT 'after'").await, 1);
    drop(client);
    settle_and_stop(pgate).await;

    assert!(!dir.path().join("missing").exists());
    assert_eq!(
        summary(&alice(read_json(&path))),
        ["LOGIN ok", "1 SELECT 'before' ok", "2 SELECT 'after' ok", "LOGOUT"]
    );
}

/// Taking `[audit]` out needs a restart: the audit log goes on as it was, and the rest of
/// the reload applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_without_audit_keeps_the_audit_log_until_restart() {
    audit_database("audit_reload_off");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pgate.toml");
    let path = dir.path().join("audit.log");
    let audit = format!("{}\nformat = \"json\"", sink_line(&path));
    write_config(&config, "audit_reload_off", "", &audit);
    let pgate = Pgate::start_file(&config).await;
    let client = pgate.connect("alice", "", "audit_reload_off").await.unwrap();
    assert_eq!(simple_rows(&client, "SELECT 'before'").await, 1);

    let text = audit_config("audit_reload_off", &head("[listen]\nmax_client_connections = 7\n"), &audit, READ_AND_SET);
    std::fs::write(&config, text.replace(&format!("[audit]\n{audit}\n"), "")).unwrap();
    reload(&pgate).await.unwrap();
    assert_eq!(pgate.shared.config.load().listen.max_client_connections, 7);
    assert!(pgate.shared.config.load().audit.is_none());
    assert_eq!(simple_rows(&client, "SELECT 'after'").await, 1);
    drop(client);
    settle_and_stop(pgate).await;

    assert_eq!(
        summary(&alice(read_json(&path))),
        ["LOGIN ok", "1 SELECT 'before' ok", "2 SELECT 'after' ok", "LOGOUT"]
    );
}
