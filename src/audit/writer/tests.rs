//! Queue and writer tests against real files: nothing lost with `block`, exact counts with
//! `drop`, failing sinks under both `on_error` policies, reopen, and closing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::Auditor;
use crate::audit::config::{AuditSettings, RawAudit, build};
use crate::audit::record::{Event, Outcome, Parameters, Record, SessionContext, StatementRecord};
use crate::audit::{AuditError, AuditStats};
use crate::sql::statement::AuditClass;

fn settings(path: &Path, edit: impl FnOnce(&mut RawAudit)) -> AuditSettings {
    let mut raw = RawAudit { sink: Some(path.display().to_string()), ..RawAudit::default() };
    edit(&mut raw);
    build(&raw).unwrap()
}

fn context(session: usize) -> Arc<SessionContext> {
    Arc::new(SessionContext {
        client: "127.0.0.1:40000".parse().unwrap(),
        user: Some("alice".into()),
        database: Some("akko".into()),
        workspace: None,
        backend: Some("data".into()),
        session_id: Some(format!("s{session}")),
        tls: None,
        identity: None,
        formatted: Default::default(),
    })
}

fn statement(context: &Arc<SessionContext>, id: u64, class: AuditClass) -> Record {
    let event = Event::Statement(StatementRecord {
        statement_id: id,
        substatement_id: 1,
        class,
        command: "SELECT".into(),
        objects: Vec::new(),
        text: Arc::from(format!("SELECT {id}")),
        parameters: Parameters::NotLogged,
        outcome: Outcome::Ok,
        rows: Some(1),
        duration: None,
        catalog_only: false,
    });
    Record::now(context.clone(), event)
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).map(|t| t.lines().map(String::from).collect()).unwrap_or_default()
}

/// Statement ids per session, in file order.
fn ids_by_session(lines: &[String]) -> BTreeMap<String, Vec<u64>> {
    let mut out: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for line in lines {
        let session = line.split(" session=").nth(1).and_then(|s| s.split(' ').next()).unwrap();
        let id = line.split("AUDIT: SESSION,").nth(1).and_then(|s| s.split(',').next()).unwrap();
        out.entry(session.to_owned()).or_default().push(id.parse().unwrap());
    }
    out
}

async fn until(what: &str, condition: impl Fn() -> bool) {
    for _ in 0..200 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting until {what}");
}

/// `producers` sessions each record `each` statements, concurrently; returns how many
/// `record` calls returned Err.
async fn produce(auditor: &Arc<Auditor>, producers: usize, each: u64) -> usize {
    let tasks: Vec<_> = (0..producers)
        .map(|p| {
            let auditor = auditor.clone();
            tokio::spawn(async move {
                let context = context(p);
                let mut errors = 0;
                for id in 1..=each {
                    errors += usize::from(auditor.record(statement(&context, id, AuditClass::Read)).await.is_err());
                }
                errors
            })
        })
        .collect();
    let mut errors = 0;
    for task in tasks {
        errors += task.await.unwrap();
    }
    errors
}

fn accounted(stats: &AuditStats) -> u64 {
    stats.written + stats.dropped + stats.refused + stats.lost + stats.queued
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_never_loses_and_keeps_each_session_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let auditor = Auditor::start(settings(&path, |c| (c.queue_size, c.fsync) = (2, "always".parse_mode()))).unwrap();
    assert_eq!(produce(&auditor, 16, 150).await, 0);
    auditor.flush_and_close(Duration::from_secs(20)).await;
    let stats = auditor.stats();
    assert_eq!((stats.written, stats.dropped, stats.lost, stats.queued, stats.capacity), (2400, 0, 0, 0, 2));
    let lines = read_lines(&path);
    assert_eq!(lines.len(), 2400);
    let sessions = ids_by_session(&lines);
    assert_eq!(sessions.len(), 16);
    for ids in sessions.values() {
        assert_eq!(*ids, (1..=150).collect::<Vec<_>>());
    }
}

/// Lets the tests write `"always".parse_mode()` for the serde enum.
trait ParseMode {
    fn parse_mode(self) -> crate::audit::config::FsyncMode;
}

impl ParseMode for &str {
    fn parse_mode(self) -> crate::audit::config::FsyncMode {
        serde_json::from_value(serde_json::Value::String(self.into())).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_counts_exactly_what_it_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let auditor = Auditor::start(settings(&path, |c| {
        (c.queue_size, c.on_full, c.fsync) = (1, crate::audit::config::OnFull::Drop, "always".parse_mode())
    }))
    .unwrap();
    assert_eq!(produce(&auditor, 8, 500).await, 0);
    auditor.flush_and_close(Duration::from_secs(20)).await;
    let stats = auditor.stats();
    assert_eq!(stats.written + stats.dropped, 4000, "{stats:?}");
    assert_eq!((stats.lost, stats.refused, stats.queued), (0, 0, 0));
    assert_eq!(read_lines(&path).len() as u64, stats.written);
}

#[tokio::test]
async fn failing_sink_with_deny_refuses_then_recovers_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let path = logs.join("audit.log");
    let auditor = Auditor::start(settings(&path, |_| {})).unwrap();
    let session = context(1);
    for id in 1..=3 {
        auditor.record(statement(&session, id, AuditClass::Read)).await.unwrap();
    }
    until("3 written", || auditor.stats().written == 3).await;

    std::fs::remove_dir_all(&logs).unwrap();
    auditor.reopen();
    until("the sink fails", || auditor.check_available().is_err()).await;
    let refused = auditor.check_available().unwrap_err().to_string();
    assert!(refused.contains("audit log") && refused.contains("refused"), "{refused}");
    for id in 4..=8 {
        assert!(auditor.record(statement(&session, id, AuditClass::Read)).await.is_err());
    }
    until("5 held", || auditor.stats().queued == 5).await;
    assert!(auditor.stats().failing && auditor.stats().sink_errors >= 1);

    std::fs::create_dir(&logs).unwrap();
    until("the sink recovers", || auditor.check_available().is_ok()).await;
    auditor.record(statement(&session, 9, AuditClass::Read)).await.unwrap();
    auditor.flush_and_close(Duration::from_secs(5)).await;
    let stats = auditor.stats();
    assert_eq!((stats.written, stats.lost, stats.refused, stats.dropped, stats.queued), (9, 0, 0, 0, 0));
    assert_eq!(ids_by_session(&read_lines(&path))["s1"], (4..=9).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_full_queue_behind_a_failing_sink_refuses_instead_of_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let path = logs.join("audit.log");
    let auditor = Auditor::start(settings(&path, |c| c.queue_size = 2)).unwrap();
    std::fs::remove_dir_all(&logs).unwrap();
    auditor.reopen();
    until("the sink fails", || auditor.check_available().is_err()).await;
    let session = context(1);
    for id in 1..=5 {
        assert!(auditor.record(statement(&session, id, AuditClass::Read)).await.is_err());
    }
    let stats = auditor.stats();
    assert_eq!((stats.queued, stats.refused), (2, 3));

    std::fs::create_dir(&logs).unwrap();
    auditor.flush_and_close(Duration::from_secs(5)).await;
    let stats = auditor.stats();
    assert_eq!((stats.written, stats.refused, stats.lost, stats.queued), (2, 3, 0, 0));
    assert_eq!(accounted(&stats), 5);
    assert_eq!(ids_by_session(&read_lines(&path))["s1"], [1, 2]);
}

#[tokio::test]
async fn failing_sink_with_continue_counts_lost_records() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let path = logs.join("audit.log");
    let auditor = Auditor::start(settings(&path, |c| c.on_error = crate::audit::config::OnError::Continue)).unwrap();
    let session = context(1);
    std::fs::remove_dir_all(&logs).unwrap();
    auditor.reopen();
    until("the sink fails", || auditor.stats().failing).await;
    assert!(auditor.check_available().is_ok());
    for id in 1..=5 {
        auditor.record(statement(&session, id, AuditClass::Read)).await.unwrap();
    }
    until("5 lost", || auditor.stats().lost == 5).await;

    std::fs::create_dir(&logs).unwrap();
    until("the sink recovers", || !auditor.stats().failing).await;
    for id in 6..=7 {
        auditor.record(statement(&session, id, AuditClass::Read)).await.unwrap();
    }
    auditor.flush_and_close(Duration::from_secs(5)).await;
    let stats = auditor.stats();
    assert_eq!((stats.written, stats.lost, stats.queued), (2, 5, 0));
    assert!(stats.sink_errors >= 1);
    assert_eq!(ids_by_session(&read_lines(&path))["s1"], [6, 7]);
}

#[tokio::test]
async fn write_errors_hold_records_and_closing_counts_them_lost() {
    let full = Path::new("/dev/full");
    if !full.exists() {
        return;
    }
    let auditor = Auditor::start(settings(full, |_| {})).unwrap();
    auditor.record(statement(&context(1), 1, AuditClass::Read)).await.unwrap();
    until("the write fails", || auditor.check_available().is_err()).await;
    assert!(auditor.check_available().unwrap_err().reason.contains("space"));
    auditor.flush_and_close(Duration::from_millis(300)).await;
    let stats = auditor.stats();
    assert_eq!((stats.written, stats.lost, stats.queued), (0, 1, 0));
}

#[tokio::test]
async fn reopen_after_rename_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let rotated = dir.path().join("audit.log.1");
    let auditor = Auditor::start(settings(&path, |_| {})).unwrap();
    let session = context(1);
    for id in 1..=50 {
        auditor.record(statement(&session, id, AuditClass::Read)).await.unwrap();
    }
    until("50 written", || auditor.stats().written == 50).await;
    std::fs::rename(&path, &rotated).unwrap();
    for id in 51..=60 {
        auditor.record(statement(&session, id, AuditClass::Read)).await.unwrap();
    }
    auditor.reopen();
    for id in 61..=100 {
        auditor.record(statement(&session, id, AuditClass::Read)).await.unwrap();
    }
    auditor.flush_and_close(Duration::from_secs(5)).await;
    let (old, new) = (read_lines(&rotated), read_lines(&path));
    assert_eq!(ids_by_session(&old)["s1"], (1..=50).collect::<Vec<_>>());
    assert_eq!(ids_by_session(&new)["s1"], (51..=100).collect::<Vec<_>>());
}

#[tokio::test]
async fn flush_and_close_writes_everything_then_counts_late_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let auditor = Auditor::start(settings(&path, |_| {})).unwrap();
    let session = context(1);
    for id in 1..=3000 {
        auditor.record(statement(&session, id, AuditClass::Read)).await.unwrap();
    }
    auditor.flush_and_close(Duration::from_secs(10)).await;
    assert_eq!(read_lines(&path).len(), 3000);
    assert!(auditor.check_available().is_err());
    assert!(auditor.record(statement(&session, 3001, AuditClass::Read)).await.is_err());
    let stats = auditor.stats();
    assert_eq!((stats.written, stats.dropped, stats.queued), (3000, 1, 0));
    assert_eq!(accounted(&stats), 3001);
    auditor.flush_and_close(Duration::from_secs(1)).await;
    auditor.reopen();
}

#[tokio::test]
async fn after_closing_continue_accepts_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let auditor = Auditor::start(settings(&path, |c| c.on_error = crate::audit::config::OnError::Continue)).unwrap();
    auditor.flush_and_close(Duration::from_secs(1)).await;
    assert!(auditor.check_available().is_ok());
    assert!(auditor.record(statement(&context(1), 1, AuditClass::Read)).await.is_ok());
    assert_eq!(auditor.stats().dropped, 1);
}

#[tokio::test]
async fn records_the_settings_leave_out_are_not_queued() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let auditor = Auditor::start(settings(&path, |c| c.log = vec!["WRITE".into()])).unwrap();
    assert!(auditor.logs(AuditClass::Write) && !auditor.logs(AuditClass::Read));
    let session = context(1);
    auditor.record(statement(&session, 1, AuditClass::Read)).await.unwrap();
    auditor.record(statement(&session, 2, AuditClass::Write)).await.unwrap();
    auditor.record(Record::now(session.clone(), Event::Logout)).await.unwrap();
    auditor.flush_and_close(Duration::from_secs(5)).await;
    let lines = read_lines(&path);
    assert_eq!(lines.len(), 2);
    assert!(lines[0].contains("AUDIT: SESSION,2,1,WRITE,") && lines[1].ends_with("AUDIT: LOGOUT"));
    assert_eq!(auditor.stats().written, 2);
}

#[tokio::test]
async fn a_path_that_cannot_be_opened_is_a_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, "").unwrap();
    let bad: PathBuf = file.join("audit.log");
    let error = Auditor::start(settings(&bad, |_| {})).err().unwrap();
    assert!(matches!(error, AuditError::Open { .. }));
    assert!(error.to_string().contains(&bad.display().to_string()), "{error}");
}

#[test]
fn starting_outside_a_runtime_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let error = Auditor::start(settings(&dir.path().join("audit.log"), |_| {})).err().unwrap();
    assert!(matches!(error, AuditError::NoRuntime));
}

#[test]
fn the_auditor_is_shared_across_sessions() {
    fn shared<T: Send + Sync>() {}
    shared::<Auditor>();
}

/// Statement ids per session of pgaudit or JSON lines, in file order.
fn ids_by_session_any(lines: &[String]) -> BTreeMap<String, Vec<u64>> {
    let (json, pgaudit): (Vec<String>, Vec<String>) = lines.iter().cloned().partition(|l| l.starts_with('{'));
    let mut out = ids_by_session(&pgaudit);
    for line in json {
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        let session = value["session"].as_str().unwrap().to_owned();
        out.entry(session).or_default().push(value["statement_id"].as_u64().unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_sink_gets_every_record_after_the_switch_and_none_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (dir.path().join("old.log"), dir.path().join("new.log"));
    let auditor = Auditor::start(settings(&old, |c| c.queue_size = 4)).unwrap();
    let next = settings(&new, |c| (c.queue_size, c.format) = (4, crate::audit::config::AuditFormat::Json));
    let producing = {
        let auditor = auditor.clone();
        tokio::spawn(async move { produce(&auditor, 8, 400).await })
    };
    until("records in the old file", || auditor.stats().written >= 200).await;
    let change = auditor.prepare(&next).unwrap();
    assert_eq!((change.changed(), change.ignored()), (&["sink", "format"][..], &[][..]));
    assert!(new.exists(), "prepare opens (creates) the new file");
    auditor.reconfigure(change);
    assert_eq!(producing.await.unwrap(), 0);
    auditor.flush_and_close(Duration::from_secs(20)).await;

    let (old_lines, new_lines) = (read_lines(&old), read_lines(&new));
    assert!(old_lines.iter().all(|l| !l.starts_with('{')) && new_lines.iter().all(|l| l.starts_with('{')));
    assert!(!new_lines.is_empty(), "records after the switch go to the new file");
    assert_eq!(old_lines.len() + new_lines.len(), 3200);
    assert_eq!(auditor.stats().written, 3200);
    let (before, after) = (ids_by_session_any(&old_lines), ids_by_session_any(&new_lines));
    for session in (0..8).map(|p| format!("s{p}")) {
        let mut ids = before.get(&session).cloned().unwrap_or_default();
        ids.extend(after.get(&session).into_iter().flatten());
        assert_eq!(ids, (1..=400).collect::<Vec<_>>(), "{session}: old file then new file, each record once");
    }
}

#[tokio::test]
async fn statement_settings_apply_at_once_and_the_queue_keeps_its_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let auditor = Auditor::start(settings(&path, |c| c.queue_size = 8)).unwrap();
    let session = context(1);
    auditor.record(statement(&session, 1, AuditClass::Read)).await.unwrap();
    let next = settings(&path, |c| {
        (c.log, c.log_rows, c.queue_size) = (vec!["WRITE".into()], true, 100);
    });
    let change = auditor.prepare(&next).unwrap();
    assert_eq!((change.changed(), change.ignored()), (&["log", "log_rows"][..], &["queue_size"][..]));
    auditor.reconfigure(change);
    assert!(!auditor.logs(AuditClass::Read) && auditor.logs(AuditClass::Write) && auditor.settings().log_rows);
    assert_eq!((auditor.settings().queue_size, auditor.stats().capacity), (8, 8));
    auditor.record(statement(&session, 2, AuditClass::Read)).await.unwrap();
    auditor.record(statement(&session, 3, AuditClass::Write)).await.unwrap();
    // The same settings again change nothing.
    let same = auditor.prepare(&next).unwrap();
    assert_eq!((same.changed(), same.ignored()), (&[][..], &["queue_size"][..]));
    auditor.flush_and_close(Duration::from_secs(5)).await;
    let lines = read_lines(&path);
    assert_eq!(ids_by_session(&lines)["s1"], [1, 3]);
    assert!(lines[1].ends_with(",1"), "log_rows applies to the writer too: {}", lines[1]);
}

#[tokio::test]
async fn a_new_sink_that_cannot_be_opened_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let missing = dir.path().join("missing/audit.log");
    let auditor = Auditor::start(settings(&path, |_| {})).unwrap();
    let error = auditor.prepare(&settings(&missing, |c| c.log = vec!["WRITE".into()])).err().unwrap();
    assert!(matches!(error, AuditError::Open { .. }) && error.to_string().contains("missing"), "{error}");
    assert!(auditor.logs(AuditClass::Read), "the other keys of that reload are not applied");
    auditor.record(statement(&context(1), 1, AuditClass::Read)).await.unwrap();
    auditor.flush_and_close(Duration::from_secs(5)).await;
    assert_eq!(ids_by_session(&read_lines(&path))["s1"], [1]);
    assert!(!dir.path().join("missing").exists());
}

#[tokio::test]
async fn records_held_by_a_failing_sink_go_to_the_new_sink() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let (path, new) = (logs.join("audit.log"), dir.path().join("new.log"));
    let auditor = Auditor::start(settings(&path, |_| {})).unwrap();
    let session = context(1);
    auditor.record(statement(&session, 1, AuditClass::Read)).await.unwrap();
    until("1 written", || auditor.stats().written == 1).await;
    std::fs::remove_dir_all(&logs).unwrap();
    auditor.reopen();
    until("the sink fails", || auditor.check_available().is_err()).await;
    for id in 2..=4 {
        assert!(auditor.record(statement(&session, id, AuditClass::Read)).await.is_err());
    }
    until("3 held", || auditor.stats().queued == 3).await;

    auditor.reconfigure(auditor.prepare(&settings(&new, |_| {})).unwrap());
    until("the new sink works", || auditor.check_available().is_ok()).await;
    auditor.record(statement(&session, 5, AuditClass::Read)).await.unwrap();
    auditor.flush_and_close(Duration::from_secs(5)).await;
    let stats = auditor.stats();
    assert_eq!((stats.written, stats.lost, stats.refused, stats.queued), (5, 0, 0, 0), "{stats:?}");
    assert_eq!(ids_by_session(&read_lines(&new))["s1"], [2, 3, 4, 5]);
}
