//! Real drivers through pgate. Each driver runs its scenario script from tests/clients/
//! (psycopg 3, asyncpg, SQLAlchemy 2 over psycopg, pgjdbc) four times, each time on a
//! fresh database: against PostgreSQL directly, through pgate in session pooling, through
//! pgate in transaction pooling, and through pgate in transaction pooling inside a workspace
//! with statement rules and the audit log on (every statement parsed, checked, recorded). A
//! script prints one deterministic JSON document; the four must be identical and every run
//! must exit 0. pgbench `-M prepared` runs the
//! same three ways and must finish every transaction with consistent balances.
//!
//! tests/clients/setup.sh installs the drivers the first time (a venv under target/ with
//! pinned versions from PyPI, and JdbcSuite compiled against Debian's pgjdbc). Every run's
//! output and stderr are kept in target/clients-out/<suite>/ for a look or a `diff -u`.
//! `CLIENTS_ONLY=scenario,...` runs only those scenarios of each script.

mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use common::*;

/// Longest one script may take (a hang in pgate fails the test instead of stalling it).
const RUN_TIMEOUT: Duration = Duration::from_secs(300);
/// Debian's pgjdbc (libpostgresql-jdbc-java).
const PGJDBC_JAR: &str = "/usr/share/java/postgresql.jar";

/// Where setup.sh installed the drivers.
struct Drivers {
    python: PathBuf,
    java_classes: PathBuf,
}

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// Cargo's target directory (CARGO_TARGET_TMPDIR is `<target>/tmp`).
fn target_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).to_path_buf()
}

/// Runs tests/clients/setup.sh once per test binary; it is a no-op when nothing changed.
fn drivers() -> &'static Drivers {
    static DRIVERS: OnceLock<Result<Drivers, String>> = OnceLock::new();
    DRIVERS.get_or_init(setup).as_ref().unwrap_or_else(|e| panic!("{e}"))
}

fn setup() -> Result<Drivers, String> {
    let target = target_dir();
    let script = clients_dir().join("setup.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .arg(&target)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "the driver compatibility suite could not be set up: {} exited with {}.\n\
             It makes a Python venv with the drivers of tests/clients/requirements.txt (pip, from PyPI) \
             and compiles tests/clients/JdbcSuite.java against {PGJDBC_JAR}; it needs python3-venv, \
             default-jdk-headless and libpostgresql-jdbc-java.\n{}{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(Drivers { python: target.join("clients-venv/bin/python"), java_classes: target.join("clients-java") })
}

/// One driver's scenario script.
#[derive(Clone, Copy)]
enum Driver {
    Python(&'static str),
    Java,
}

impl Driver {
    fn command(self, port: u16, db: &str) -> tokio::process::Command {
        let drivers = drivers();
        let mut cmd = match self {
            Driver::Python(script) => {
                let mut cmd = tokio::process::Command::new(&drivers.python);
                cmd.arg(clients_dir().join(script)).env("PYTHONDONTWRITEBYTECODE", "1");
                cmd
            }
            Driver::Java => {
                let mut cmd = tokio::process::Command::new("java");
                let classpath = format!("{}:{PGJDBC_JAR}", drivers.java_classes.display());
                cmd.args(["-cp", &classpath, "JdbcSuite"]);
                cmd
            }
        };
        cmd.args(["127.0.0.1", &port.to_string(), "alice", ALICE_PW, db]);
        cmd
    }
}

/// Where a run goes: PostgreSQL itself, or pgate with one pool mode.
#[derive(Clone, Copy, PartialEq)]
enum Target {
    Direct,
    Session,
    Transaction,
    /// Transaction pooling in a workspace with statement rules, and the audit log.
    Workspace,
}

const TARGETS: [Target; 4] = [Target::Direct, Target::Session, Target::Transaction, Target::Workspace];

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Direct => "direct",
            Target::Session => "session",
            Target::Transaction => "transaction",
            Target::Workspace => "workspace",
        }
    }

    /// pgate in front of the data cluster, or nothing for a direct run. Transaction pooling
    /// gets 5 servers, so the scripts' concurrent connections (up to 50) share them. Session
    /// pooling gives each client a server of its own for its whole life: its pool must hold
    /// every connection a script has open at once, and servers are shared (after DISCARD
    /// ALL) only by clients that come one after another.
    async fn start(self) -> Option<Pgate> {
        let size = match self {
            Target::Direct => return None,
            Target::Session => 60,
            Target::Transaction | Target::Workspace => 5,
        };
        // connect_timeout: session pooling opens up to 50 servers at once beside a JVM and
        // Python drivers on two cores; a real hang still ends at RUN_TIMEOUT.
        let mode = if self == Target::Workspace { "transaction" } else { self.name() };
        let head = format!("[pool]\nmode = \"{mode}\"\nsize = {size}\nconnect_timeout = \"20s\"\n");
        let mut config = single_backend_config(&head, backends().data.port());
        if self == Target::Workspace {
            config.push_str(&workspace_and_audit());
        }
        Some(Pgate::start(&config).await)
    }
}

/// The workspace target: transaction pooling with statement rules on (every class, every
/// relation pattern the scripts need, a sensitive catalog named), so every statement a driver
/// sends is parsed and checked, and the audit log on: the drivers must notice neither.
fn workspace_and_audit() -> String {
    let dir = target_dir().join("clients-out");
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join(format!("audit-{}.log", std::process::id()));
    format!(
        "\n[[workspaces]]\nname = \"drivers\"\nusers = [\"alice\"]\ndatabases = [\"*\"]\n\
         relations = {{ allow = [\"*.*\", \"pg_catalog.pg_stat_activity\"], deny = [\"*.pgate_never\"] }}\n\n\
         [audit]\nsink = \"{}\"\nformat = \"json\"\n",
        log.display()
    )
}

/// What one run of a script left behind.
struct Run {
    target: Target,
    ok: bool,
    status: String,
    stdout: String,
    stderr_path: PathBuf,
    stdout_path: PathBuf,
}

fn out_dir(suite: &str) -> PathBuf {
    let dir = target_dir().join("clients-out").join(suite);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `driver` against `port`; stdout and stderr go to files in `dir`.
async fn run_script(driver: Driver, target: Target, port: u16, db: &str, dir: &Path) -> Run {
    let stdout_path = dir.join(format!("{}.json", target.name()));
    let stderr_path = dir.join(format!("{}.stderr", target.name()));
    let mut child = driver
        .command(port, db)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start the {} script: {e}", target.name()));
    let (ok, status) = match tokio::time::timeout(RUN_TIMEOUT, child.wait()).await {
        Ok(Ok(status)) => (status.success(), status.to_string()),
        Ok(Err(e)) => (false, format!("wait failed: {e}")),
        Err(_) => {
            let _ = child.kill().await;
            (false, format!("killed after {RUN_TIMEOUT:?}"))
        }
    };
    let stdout = std::fs::read_to_string(&stdout_path).unwrap_or_default();
    Run { target, ok, status, stdout, stderr_path, stdout_path }
}

/// The last `n` lines of a file.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `diff -u` of two outputs, at most `max` lines of it.
fn diff(a: &Path, b: &Path, max: usize) -> String {
    match std::process::Command::new("diff").arg("-u").arg(a).arg(b).output() {
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout);
            let mut lines: Vec<&str> = text.lines().collect();
            let more = lines.len().saturating_sub(max);
            lines.truncate(max);
            let mut s = lines.join("\n");
            if more > 0 {
                let _ = write!(s, "\n... {more} more lines");
            }
            s
        }
        Err(e) => format!("(diff could not run: {e}; compare {} and {})", a.display(), b.display()),
    }
}

/// A script's output split by scenario: the top-level keys of its JSON document (the
/// scripts print one key per line, indented by one space at the top level).
fn scenarios(output: &str) -> Vec<(&str, String)> {
    let mut out: Vec<(&str, String)> = Vec::new();
    for line in output.lines() {
        if let Some(rest) = line.strip_prefix(" \"")
            && let Some((name, _)) = rest.split_once("\": ")
        {
            out.push((name, String::new()));
        }
        if let Some((_, text)) = out.last_mut() {
            text.push_str(line.trim_end_matches(','));
            text.push('\n');
        }
    }
    out
}

/// The scenarios whose results differ between two outputs (or that only one has).
fn differing_scenarios(a: &str, b: &str) -> Vec<String> {
    let (a, b) = (scenarios(a), scenarios(b));
    let mut names: Vec<&str> = a.iter().chain(&b).map(|(n, _)| *n).collect();
    names.sort_unstable();
    names.dedup();
    let find = |list: &[(&str, String)], name: &str| list.iter().find(|(n, _)| *n == name).map(|(_, t)| t.clone());
    names.into_iter().filter(|n| find(&a, n) != find(&b, n)).map(str::to_owned).collect()
}

/// Runs one driver's script directly and through pgate in both pool modes; panics with
/// every failed run and every difference from the direct run.
async fn check_driver(suite: &str, driver: Driver) {
    drivers();
    let dir = out_dir(suite);
    let mut runs = Vec::new();
    for target in TARGETS {
        let db = format!("cl_{suite}_{}", target.name());
        fresh_database(&db);
        let pgate = target.start().await;
        let port = pgate.as_ref().map_or(backends().data.port(), Pgate::port);
        let run = run_script(driver, target, port, &db, &dir).await;
        if let Some(pgate) = pgate {
            pgate.stop().await;
        }
        runs.push(run);
    }

    let mut problems = Vec::new();
    for run in &runs {
        if !run.ok {
            let whose = if run.target == Target::Direct { "the script itself (no pgate)" } else { "pgate" };
            problems.push(format!(
                "{suite} {}: {} (a problem of {whose}); the end of its stderr ({}):\n{}",
                run.target.name(),
                run.status,
                run.stderr_path.display(),
                tail(&run.stderr_path, 40)
            ));
        }
    }
    let direct = &runs[0];
    for run in &runs[1..] {
        if run.stdout != direct.stdout {
            problems.push(format!(
                "{suite}: through pgate in {} pooling, scenarios [{}] differ from PostgreSQL's direct output:\n{}",
                run.target.name(),
                differing_scenarios(&direct.stdout, &run.stdout).join(", "),
                diff(&direct.stdout_path, &run.stdout_path, 150)
            ));
        }
    }
    assert!(problems.is_empty(), "{}\n\n(all outputs: {})", problems.join("\n\n"), dir.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg() {
    check_driver("psycopg", Driver::Python("psycopg_suite.py")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asyncpg() {
    check_driver("asyncpg", Driver::Python("asyncpg_suite.py")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlalchemy() {
    check_driver("sqlalchemy", Driver::Python("sqlalchemy_suite.py")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgjdbc() {
    check_driver("pgjdbc", Driver::Java).await;
}

/// pgbench with its statements prepared over the protocol (`-M prepared`), ten clients,
/// directly and through pgate in both pool modes: every transaction succeeds, and the
/// TPC-B balances add up afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_prepared() {
    const CLIENTS: u32 = 10;
    const PER_CLIENT: u32 = 150;
    for target in TARGETS {
        let db = format!("cl_pgbench_{}", target.name());
        fresh_database(&db);
        let pgate = target.start().await;
        let port = pgate.as_ref().map_or(backends().data.port(), Pgate::port);
        let run = |args: Vec<String>| {
            let mut cmd = tokio::process::Command::from(tool("pgbench"));
            cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "alice"])
                .args(&args)
                .arg(&db)
                .env("PGPASSWORD", ALICE_PW)
                .kill_on_drop(true);
            async move {
                let out = tokio::time::timeout(RUN_TIMEOUT, cmd.output()).await.expect("pgbench finishes").unwrap();
                let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
                assert!(out.status.success(), "pgbench {args:?} ({}) failed:\n{text}", target.name());
                text
            }
        };
        run(vec!["-i".into(), "-q".into(), "-s".into(), "1".into()]).await;
        let args = format!("-n -M prepared -c {CLIENTS} -j 2 -t {PER_CLIENT}");
        let out = run(args.split(' ').map(String::from).collect()).await;
        let total = CLIENTS * PER_CLIENT;
        assert!(out.contains(&format!("actually processed: {total}/{total}")), "{} pooling:\n{out}", target.name());
        assert!(out.contains("number of failed transactions: 0"), "{}:\n{out}", target.name());
        if let Some(pgate) = pgate {
            pgate.stop().await;
        }
        let balances = backends()
            .data
            .psql(
                &db,
                "SELECT count(*), sum(delta) = (SELECT sum(abalance) FROM pgbench_accounts), \
                 sum(delta) = (SELECT sum(tbalance) FROM pgbench_tellers), \
                 sum(delta) = (SELECT sum(bbalance) FROM pgbench_branches) FROM pgbench_history",
            )
            .unwrap();
        assert_eq!(balances, format!("{total}|t|t|t"), "{} pooling: history rows and balances", target.name());
    }
}
