//! Backend faults, timed: one server process killed or terminated, the whole instance
//! crash-restarted, and an instance that stops answering (SIGSTOP), each on private
//! clusters, in transaction and session pooling.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::raw::startup_packet;
use common::*;
use pgate::demo::cluster::Cluster;
use pgate::protocol::codes::backend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// The figures the failure guarantees state.
const LOST_WITHIN: Duration = Duration::from_secs(1);
const SERVES_AGAIN_WITHIN: Duration = Duration::from_secs(5);
/// Outer bound on any single client call: a call that takes this long is hung.
const HUNG: Duration = Duration::from_secs(20);

/// Sends a signal to a process of a test cluster (by its pid).
fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().unwrap();
    assert!(status.success(), "kill -{sig} {pid}");
}

/// The postmaster's pid (first line of postmaster.pid) and its children's (from /proc).
fn cluster_pids(cluster: &Cluster) -> (u32, Vec<u32>) {
    let text = std::fs::read_to_string(cluster.data_dir().join("postmaster.pid")).unwrap();
    let postmaster: u32 = text.lines().next().unwrap().trim().parse().unwrap();
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        let after_comm = &stat[stat.rfind(')').map_or(0, |i| i + 1)..];
        if after_comm.split_whitespace().nth(1).and_then(|p| p.parse::<u32>().ok()) == Some(postmaster) {
            children.push(pid);
        }
    }
    (postmaster, children)
}

/// A cluster whose processes are stopped; SIGCONT in Drop, so a failing test never
/// leaves a stopped cluster behind (its own Drop could not stop it either).
struct Frozen(Vec<u32>);

impl Frozen {
    fn freeze(cluster: &Cluster) -> Frozen {
        let (postmaster, _) = cluster_pids(cluster);
        // The postmaster first, so it forks no new child while the others are stopped.
        let mut frozen = Frozen(vec![postmaster]);
        signal(postmaster, "STOP");
        for pid in cluster_pids(cluster).1 {
            frozen.0.push(pid);
            signal(pid, "STOP");
        }
        frozen
    }

    /// SIGCONT now (Drop sends it).
    fn thaw(self) {}
}

impl Drop for Frozen {
    fn drop(&mut self) {
        for &pid in self.0.iter().rev() {
            let _ = std::process::Command::new("kill").arg("-CONT").arg(pid.to_string()).status();
        }
    }
}

/// True when PostgreSQL on `port` accepts a new connection: it answers a StartupMessage
/// with an authentication request, not an error ("starting up", "in recovery").
async fn accepting(port: u16) -> bool {
    let probe = async {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        s.write_all(&startup_packet(3 << 16, &[("user", "postgres"), ("database", "postgres")])).await.ok()?;
        let mut first = [0u8; 1];
        s.read_exact(&mut first).await.ok()?;
        Some(first[0] == backend::AUTHENTICATION)
    };
    matches!(tokio::time::timeout(Duration::from_millis(500), probe).await, Ok(Some(true)))
}

/// Polls [`accepting`] every 10 ms; the moment it first succeeds.
fn watch_accepting(port: u16) -> JoinHandle<Instant> {
    tokio::spawn(async move {
        loop {
            if accepting(port).await {
                return Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
}

/// An error a client was given: SQLSTATE, message, hint.
#[derive(Debug)]
struct Refusal {
    code: Option<String>,
    message: String,
    hint: Option<String>,
}

impl Refusal {
    fn of(e: &tokio_postgres::Error) -> Refusal {
        let hint = e.as_db_error().and_then(|d| d.hint()).map(str::to_owned);
        Refusal { code: sqlstate(e), message: db_message(e), hint }
    }
}

/// Runs `call` every 50 ms until it succeeds; the moment it did, and what it was told
/// before.
fn first_success<F, Fut>(mut call: F) -> JoinHandle<(Instant, Vec<Refusal>)>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), tokio_postgres::Error>> + Send,
{
    tokio::spawn(async move {
        let mut refusals = Vec::new();
        loop {
            match tokio::time::timeout(HUNG, call()).await {
                Ok(Ok(())) => return (Instant::now(), refusals),
                Ok(Err(e)) => refusals.push(Refusal::of(&e)),
                Err(_) => refusals.push(Refusal { code: None, message: "hung".into(), hint: None }),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

/// Clients each running short transactions (three round trips each) in a loop, counting
/// what succeeds and keeping every error.
struct Workload {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    tasks: Vec<JoinHandle<Vec<String>>>,
}

impl Workload {
    async fn start(pgate: &Pgate, db: &str, clients: usize) -> Workload {
        let (stop, done) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let client = pgate.alice(db).await;
            let (stop, done) = (stop.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                let mut errors = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let tx = async {
                        client.batch_execute("BEGIN").await?;
                        client.simple_query("SELECT pg_sleep(0.02)").await?;
                        client.batch_execute("COMMIT").await
                    };
                    match tokio::time::timeout(HUNG, tx).await {
                        Ok(Ok(())) => drop(done.fetch_add(1, Ordering::Relaxed)),
                        Ok(Err(e)) => errors.push(format!("{:?}: {}", sqlstate(&e), db_message(&e))),
                        Err(_) => errors.push("a transaction hung".into()),
                    }
                }
                errors
            }));
        }
        Workload { stop, done, tasks }
    }

    fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// Stops the clients; every error they saw.
    async fn finish(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        let mut errors = Vec::new();
        for task in self.tasks {
            errors.extend(tokio::time::timeout(HUNG, task).await.expect("workload stops").unwrap());
        }
        errors
    }
}

/// A query running on a spawned task; resolves to its result and when it ended.
fn spawn_query(
    client: tokio_postgres::Client,
    sql: &'static str,
) -> JoinHandle<(Result<(), tokio_postgres::Error>, Instant)> {
    tokio::spawn(async move {
        let r = client.simple_query(sql).await.map(drop);
        (r, Instant::now())
    })
}

/// How a client connection ended (tokio-postgres reports an error the server sent
/// unasked), and when.
fn watch_end(
    task: JoinHandle<Result<(), tokio_postgres::Error>>,
) -> JoinHandle<(Result<(), tokio_postgres::Error>, Instant)> {
    tokio::spawn(async move {
        let r = task.await.unwrap();
        (r, Instant::now())
    })
}

/// Awaits an ended query or connection: its error and how long after `since` it came.
async fn lost(
    ended: JoinHandle<(Result<(), tokio_postgres::Error>, Instant)>,
    since: Instant,
) -> (tokio_postgres::Error, Duration) {
    let (result, at) = tokio::time::timeout(HUNG, ended).await.expect("the client learns of the fault").unwrap();
    (result.expect_err("the client's server is gone"), at.duration_since(since))
}

/// A `[pool]` table in `mode`, with room for every client of a test.
fn pool_head(mode: &str) -> String {
    format!("[pool]\nmode = \"{mode}\"\nsize = 8\n")
}

/// Backend `main` (databases `*`) on `main_port`, and backend `other` for database `aden`.
fn two_backends(head: &str, main_port: u16, other_port: u16) -> String {
    format!(
        "{}\n[backends.other]\nhost = \"127.0.0.1\"\nport = {other_port}\ndatabases = [\"aden\"]\n",
        single_backend_config(head, main_port)
    )
}

#[path = "faults/kill.rs"]
mod kill;
#[path = "faults/restart.rs"]
mod restart;
#[path = "faults/stop.rs"]
mod stop;
