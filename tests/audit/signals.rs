//! The `pgate` binary as a child process: SIGUSR1 reopens the audit file after it was moved
//! away, SIGHUP moves it to another file (or fails and changes nothing), SIGTERM writes out
//! every record before exiting.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::common::*;
use crate::support::*;

/// Runs psql against the pgate binary; each `-c` is one simple query.
fn psql_binary(port: u16, statements: &[&str]) {
    let mut psql = tool("psql");
    psql.arg(format!("host=127.0.0.1 port={port} user=alice password={ALICE_PW} dbname=akko")).args(["-X", "-A", "-t"]);
    for sql in statements {
        psql.args(["-c", sql]);
    }
    let out = psql.output().unwrap();
    assert!(out.status.success(), "psql: {}", String::from_utf8_lossy(&out.stderr));
}

/// `pgate run` as a child process, with its standard error collected by a thread; killed
/// if the test fails before it exits.
struct Child {
    process: std::process::Child,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Drop for Child {
    fn drop(&mut self) {
        // Exited and reaped already when the test got that far: then this does nothing.
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl Child {
    fn start(config: &Path) -> Child {
        use std::io::{BufRead, BufReader};
        let mut process = std::process::Command::new(env!("CARGO_BIN_EXE_pgate"))
            .arg("run")
            .arg("--config")
            .arg(config)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(process.stderr.take().unwrap());
        let mut first = String::new();
        stderr.read_line(&mut first).unwrap();
        assert!(first.contains("pgate listening"), "{first}");
        let stderr = std::thread::spawn(move || {
            let mut rest = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut rest);
            first + &rest
        });
        Child { process, stderr: Some(stderr) }
    }

    fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.process.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name}");
    }

    /// Waits for the exit that SIGTERM asked for; returns the logs.
    fn wait(mut self) -> String {
        let mut status = None;
        wait_for_secs("pgate to exit after SIGTERM", 60, || {
            status = self.process.try_wait().unwrap();
            status.is_some()
        });
        let status = status.unwrap();
        let logs = self.stderr.take().unwrap().join().unwrap();
        assert!(status.success(), "{status}\n{logs}");
        logs
    }
}

/// Waits (up to 10 s) until `done` holds.
fn wait_for(what: &str, done: impl FnMut() -> bool) {
    wait_for_secs(what, 10, done);
}

fn wait_for_secs(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(secs), "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The statements of JSON lines, and how many LOGIN / LOGOUT lines they hold.
fn statements_and_edges(lines: &[Value]) -> (Vec<String>, usize, usize) {
    let statements = lines.iter().filter(|l| l["kind"] == "SESSION").map(|l| l["statement"].to_string()).collect();
    let count = |kind: &str| lines.iter().filter(|l| l["kind"] == kind).count();
    (statements, count("LOGIN"), count("LOGOUT"))
}

/// The binary: SIGUSR1 after the file was moved away makes a new file (old + new hold
/// every record once); SIGTERM writes out the records of everything that ran, including
/// the logout of a client still connected when it came.
#[test]
fn binary_reopens_on_sigusr1_and_flushes_on_sigterm() {
    use std::io::{BufRead, BufReader, Write};
    let b = backends();
    let dir = tempfile::tempdir().unwrap();
    let (path, moved) = (dir.path().join("audit.log"), dir.path().join("audit.log.1"));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = format!(
        "[listen]\naddress = \"127.0.0.1:{port}\"\n[metrics]\nenabled = false\n[audit]\n{}\nformat = \"json\"\n{}",
        sink_line(&path),
        routes_and_users(b.infra.port(), b.data.port())
    );
    let config_path = dir.path().join("pgate.toml");
    std::fs::write(&config_path, config).unwrap();
    let pgate = Child::start(&config_path);

    psql_binary(port, &["SELECT 'before-1'", "SELECT 'before-2'"]);
    // Rotated once those records are in the file (one still queued would rightly go to the
    // new file after the reopen).
    wait_for("the first records in the file", || {
        std::fs::read_to_string(&path).unwrap_or_default().contains("SELECT 'before-2'")
    });
    std::fs::rename(&path, &moved).unwrap();
    pgate.signal("USR1");
    wait_for("a new audit file after SIGUSR1", || path.exists());
    psql_binary(port, &["SELECT 'after-1'", "SELECT 'after-2'"]);

    // A client that stays connected across SIGTERM, and one more that ran and left.
    let mut open = tool("psql")
        .arg(format!("host=127.0.0.1 port={port} user=alice password={ALICE_PW} dbname=akko"))
        .args(["-X", "-A", "-t", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = open.stdin.take().unwrap();
    writeln!(stdin, "SELECT 'term-1';").unwrap();
    let mut answer = String::new();
    BufReader::new(open.stdout.take().unwrap()).read_line(&mut answer).unwrap();
    assert_eq!(answer.trim(), "term-1");
    psql_binary(port, &["SELECT 'term-2'"]);
    pgate.signal("TERM");
    let logs = pgate.wait();
    drop(stdin);
    let _ = open.wait();

    let (old, old_logins, old_logouts) = statements_and_edges(&read_json(&moved));
    let (new, new_logins, new_logouts) = statements_and_edges(&read_json(&path));
    assert_eq!(old, ["\"SELECT 'before-1'\"", "\"SELECT 'before-2'\""], "{logs}");
    assert_eq!(new, ["\"SELECT 'after-1'\"", "\"SELECT 'after-2'\"", "\"SELECT 'term-1'\"", "\"SELECT 'term-2'\""]);
    // Four sessions; the first one's logout may land in either file (it is written as
    // its session ends, around the rotation), but nowhere twice.
    assert_eq!((old_logins, new_logins), (1, 3));
    assert_eq!(old_logouts + new_logouts, 4, "{logs}");
}

/// `pgate_config_reloads_total{result}` from the binary's metrics endpoint.
fn reloads(metrics_port: u16, result: &str) -> u64 {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", metrics_port)) else { return 0 };
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: pgate\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let series = format!("pgate_config_reloads_total{{result=\"{result}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&series)).map_or(0, |v| v.trim().parse().unwrap())
}

/// SIGHUP with an audit sink in a directory that does not exist fails (counted as an
/// error) and changes nothing; then one with a new file moves later records there.
#[test]
fn binary_moves_the_audit_log_on_sighup_unless_the_new_sink_cannot_be_opened() {
    let b = backends();
    let dir = tempfile::tempdir().unwrap();
    let (old, new, missing) =
        (dir.path().join("old.log"), dir.path().join("new.log"), dir.path().join("missing/audit.log"));
    let free_port = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (port, metrics_port) = (free_port(), free_port());
    let config = |sink: &Path, log: &str| {
        format!(
            "[listen]\naddress = \"127.0.0.1:{port}\"\n[metrics]\naddress = \"127.0.0.1:{metrics_port}\"\n\
             [audit]\n{}\nformat = \"json\"\nlog = [{log}]\n{}",
            sink_line(sink),
            routes_and_users(b.infra.port(), b.data.port())
        )
    };
    let config_path = dir.path().join("pgate.toml");
    std::fs::write(&config_path, config(&old, "\"ALL\"")).unwrap();
    let pgate = Child::start(&config_path);
    psql_binary(port, &["SELECT 'one'"]);

    std::fs::write(&config_path, config(&missing, "\"NONE\"")).unwrap();
    pgate.signal("HUP");
    wait_for("the failed reload", || reloads(metrics_port, "error") == 1);
    psql_binary(port, &["SELECT 'two'"]);
    // (A logout still queued at the switch would rightly go to the new file.)
    wait_for("both sessions' records in the old file", || statements_and_edges(&read_json(&old)).2 == 2);

    std::fs::write(&config_path, config(&new, "\"ALL\"")).unwrap();
    pgate.signal("HUP");
    wait_for("the reload", || reloads(metrics_port, "ok") == 1);
    psql_binary(port, &["SELECT 'three'"]);
    pgate.signal("TERM");
    let logs = pgate.wait();

    assert!(logs.contains("configuration reload failed") && logs.contains("missing/audit.log"), "{logs}");
    assert!(!dir.path().join("missing").exists());
    let (before, before_logins, before_logouts) = statements_and_edges(&read_json(&old));
    let (after, after_logins, after_logouts) = statements_and_edges(&read_json(&new));
    assert_eq!(before, ["\"SELECT 'one'\"", "\"SELECT 'two'\""], "{logs}");
    assert_eq!(after, ["\"SELECT 'three'\""], "{logs}");
    assert_eq!((before_logins, before_logouts, after_logins, after_logouts), (2, 2, 1, 1), "{logs}");
}
