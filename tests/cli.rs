//! The `pgate` binary: check, scram-secret, run (as a child process, stopped by SIGTERM)
//! and a smoke run of the demo.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn pgate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pgate"))
}

fn write_temp(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("pgate-test-{}-{name}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn check_accepts_the_shipped_config_and_prints_the_routes() {
    let out = pgate().args(["check", "--config", "config/pgate.toml"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for db in ["keycloak", "airflow", "superset", "polaris", "openmetadata", "mlflow", "jupyterhub"] {
        assert!(text.lines().any(|l| l.trim_start().starts_with(db) && l.contains("-> infra")), "{db}:\n{text}");
    }
    assert!(text.lines().any(|l| l.trim_start().starts_with("akko") && l.contains("-> data")));
    assert!(text.lines().any(|l| l.trim_start().starts_with("rag") && l.contains("database lightrag")));
    assert!(text.lines().any(|l| l.trim_start().starts_with('*') && l.contains("-> data")));
}

#[test]
fn check_prints_each_workspace_s_grants() {
    let text = std::fs::read_to_string("config/pgate.toml").unwrap().replace("# [[workspaces]]", "[[workspaces]]");
    let config = uncomment_block(&text, "[[workspaces]]");
    let path = write_temp("workspaces.toml", &config);
    let out = pgate().arg("check").arg("--config").arg(&path).output().unwrap();
    std::fs::remove_file(&path).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("workspaces (a login no workspace grants is refused):"), "{text}");
    assert!(text.contains("    databases: aden, akko, rag"), "{text}");
    assert!(text.contains("    classes: READ, MISC, MISC_SET"), "{text}");
    assert!(text.contains("relations: allow [alpha.*, public.lightrag_*], deny [alpha.secrets]"), "{text}");
    assert!(text.contains("pgate.workspace = \"alpha\""), "{text}");
}

/// The shipped config with the commented-out lines that follow each `marker` line made live.
fn uncomment_block(text: &str, marker: &str) -> String {
    let mut out = String::new();
    let mut live = false;
    for line in text.lines() {
        if line.starts_with(marker) {
            live = true;
        } else if live && line.starts_with("# ") && !line.starts_with("# --") {
            out.push_str(&line[2..]);
            out.push('\n');
            continue;
        } else if !line.starts_with('#') {
            live = false;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[test]
fn check_reports_the_file_and_line_of_an_error() {
    let path = write_temp(
        "bad.toml",
        "[backends.data]\nhost = \"h\"\ndatabases = [\"akko\"]\n\n[databases.x]\nbackend = \"nowhere\"\n",
    );
    let out = pgate().arg("check").arg("--config").arg(&path).output().unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:6:", path.display())), "{err}");
    assert!(err.contains("no backend named \"nowhere\""), "{err}");
}

#[test]
fn check_diff_prints_what_a_reload_from_the_running_file_would_change() {
    let running = "[backends.data]\nhost = \"h\"\ndatabases = [\"akko\", \"rag\"]\n\n\
                   [[users]]\nname = \"alice\"\npassword = \"pw\"\nserver_password = \"old-secret\"\n";
    let next = running.replace(", \"rag\"", "").replace("old-secret", "new-secret")
        + "\n[[users]]\nname = \"bob\"\npassword = \"pw\"\n";
    let (old_path, new_path) = (write_temp("diff-old.toml", running), write_temp("diff-new.toml", &next));
    let out = pgate().arg("check").arg("--config").arg(&new_path).arg("--diff").arg(&old_path).output().unwrap();
    let same = pgate().arg("check").arg("--config").arg(&old_path).arg("--diff").arg(&old_path).output().unwrap();
    std::fs::remove_file(&old_path).unwrap();
    std::fs::remove_file(&new_path).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.starts_with(&format!("{}: OK\n", new_path.display())), "the usual check output first:\n{text}");
    let changes = text.split_once(&format!("changes from {}:\n", old_path.display())).map(|(_, c)| c);
    assert_eq!(
        changes,
        Some(
            "  route rag removed: new logins get 3D000; existing sessions stay\n\
             \x20 user alice (server password changed): applies to the next login; existing sessions keep theirs\n\
             \x20 user bob added: applies to the next login; existing sessions keep theirs\n\
             \x20 pool data/akko/alice (server password changed): its servers are replaced as they come free; \
             clients keep their sessions\n"
        ),
        "{text}"
    );
    assert!(!text.contains("secret"), "{text}");
    let same_text = String::from_utf8_lossy(&same.stdout);
    assert!(same.status.success() && same_text.ends_with(":\n  no changes\n"), "{same_text}");
}

#[test]
fn scram_secret_prints_a_secret_the_config_accepts() {
    let mut child = pgate().arg("scram-secret").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"hunter2\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let secret = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(secret.starts_with("SCRAM-SHA-256$4096:"), "{secret}");
    let config = format!("[[users]]\nname = \"u\"\npassword = \"{secret}\"\n");
    let snapshot = pgate::config::parse(&config, std::path::Path::new("x.toml")).unwrap();
    assert!(matches!(snapshot.users["u"].password, Some(pgate::config::StoredPassword::Scram(_))));
    let empty = pgate().arg("scram-secret").stdin(Stdio::null()).output().unwrap();
    assert!(!empty.status.success());
}

#[test]
fn run_serves_until_sigterm() {
    let b = backends();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = format!(
        "[listen]\naddress = \"127.0.0.1:{port}\"\n[metrics]\nenabled = false\n{}",
        routes_and_users(b.infra.port(), b.data.port())
    );
    let path = write_temp("run.toml", &config);
    let mut child =
        pgate().arg("--config").arg(&path).args(["--log-format", "json"]).stderr(Stdio::piped()).spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.contains("pgate listening"), "{line}");
    assert!(line.trim_start().starts_with('{'), "json logs: {line}");
    let out = tool("psql")
        .arg(format!("host=127.0.0.1 port={port} user=alice password={ALICE_PW} dbname=keycloak"))
        .args(["-X", "-A", "-t", "-c", "SELECT current_database()"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "keycloak", "{}", String::from_utf8_lossy(&out.stderr));
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "pgate did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    std::fs::remove_file(&path).unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn demo_starts_two_clusters_serves_psql_and_cleans_up_on_ctrl_c() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = pgate()
        .args(["demo", "--port", &port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    // A failed assertion still stops the demo (SIGINT: it removes its clusters).
    let guard = InterruptOnDrop(child.id());
    let mut root = None;
    let mut line = String::new();
    while stdout.read_line(&mut line).unwrap() > 0 {
        if let Some(rest) = line.strip_prefix("starting two PostgreSQL clusters under ") {
            root = Some(rest.trim_end_matches(['\n', '.', ' ']).to_owned());
        }
        if line.contains("Press Ctrl-C") {
            break;
        }
        line.clear();
    }
    let root = root.expect("the demo names its directory");
    let psql = |db: &str, sql: &str| {
        let out = tool("psql")
            .arg(format!("postgresql://demo:demo@127.0.0.1:{port}/{db}"))
            .args(["-X", "-A", "-t", "-c", sql])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(psql("akko", "SELECT count(*) FROM orders"), "1000");
    assert_eq!(psql("analytics", "SELECT count(*) FROM orders"), "1000");
    assert_eq!(psql("keycloak", "SELECT count(*) FROM realm"), "2");
    // The analyst of workspace alpha: its schema, its rows of the shared table, nothing else.
    let analyst = |sql: &str| {
        let out = tool("psql")
            .arg(format!("postgresql://analyst:analyst@127.0.0.1:{port}/akko"))
            .args(["-X", "-A", "-t", "-c", sql])
            .output()
            .unwrap();
        (String::from_utf8_lossy(&out.stdout).trim().to_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    assert_eq!(analyst("SELECT count(*) FROM reports").0, "2");
    assert_eq!(analyst("SELECT note FROM public.shared_notes").0, "alpha: quarterly plan", "row-level security");
    let (rows, err) = analyst("SELECT * FROM public.orders");
    assert!(rows.is_empty() && err.contains("permission denied by pgate"), "{err}");
    let (_, err) = analyst("DELETE FROM alpha.reports");
    assert!(err.contains("may not run WRITE statements"), "{err}");
    let audit = std::fs::read_to_string(std::path::Path::new(&root).join("audit.log")).unwrap();
    assert!(audit.lines().any(|l| l.contains("user=analyst") && l.contains("outcome=denied")), "{audit}");
    drop(guard);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(!std::path::Path::new(&root).exists(), "{root} was not removed");
}

/// Sends SIGINT to a process when dropped.
struct InterruptOnDrop(u32);

impl Drop for InterruptOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-INT", &self.0.to_string()]).status();
    }
}
