//! Memory of the pgate binary (a child process, RSS from /proc) under slow readers and
//! many clients: a client that asks for ~1 GB and reads nothing costs a bounded buffer
//! (the server is blocked on send, pgate does not buffer), idle clients cost a few KiB
//! each (after a heavy workload too), and 10,000 clients over a pool of 20 run their
//! transactions without an error.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::raw::*;
use common::*;

/// About 1 GB of rows: 1,000,000 DataRows of 1,000 characters.
const HUGE_QUERY: &str = "SELECT repeat('x', 1000) FROM generate_series(1, 1000000)";

/// RSS growth allowed for one client that reads nothing. What pgate holds for it: the
/// server read buffer (32 KiB, grown to at most 64 KiB, `server::READ_BUFFER`) plus one
/// partial message; its writes to the client block in the kernel's socket buffer, which
/// is not pgate's memory. The rest of the ceiling is the allocator's slack.
const ONE_SLOW_READER_CEILING_KIB: u64 = 1024;
/// RSS growth allowed for ten such clients together (10 x 64 KiB of buffers + slack).
const TEN_SLOW_READERS_CEILING_KIB: u64 = 4096;
/// What an idle client may cost in `cargo test` (a debug build on a loaded machine): 2.9
/// KiB measured in debug and release builds, with room for another machine's allocator
/// and load. The figure itself is printed.
const IDLE_CLIENT_CEILING_KIB: f64 = 6.0;

/// `pgate run` as a child process with its logs drained by a thread, over the shared
/// clusters (with the `*` fallback), trusting 127.0.0.1. `PGATE_MEMORY_BIN` runs another
/// build (to compare one before a change).
struct Child {
    process: std::process::Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Child {
    async fn start(head: &str) -> Child {
        Self::start_with_soft_fd_limit(head, None).await
    }

    /// Like [`Self::start`], with the soft limit on open files lowered to `soft` first.
    async fn start_with_soft_fd_limit(head: &str, soft: Option<u64>) -> Child {
        let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let addr = free();
        let b = backends();
        let text = format!(
            "[listen]\naddress = \"{addr}\"\nmax_client_connections = 12000\n\
             [metrics]\naddress = \"127.0.0.1:0\"\n[auth]\ntrust_networks = [\"127.0.0.1/32\"]\n{head}\n{}",
            routes_and_users(b.infra.port(), b.data.port())
        )
        .replace("databases = [\"akko\", \"aden\"]", "databases = [\"akko\", \"aden\", \"*\"]");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgate.toml");
        std::fs::write(&path, text).unwrap();
        let ulimit = soft.map(|n| format!("ulimit -S -n {n} && ")).unwrap_or_default();
        let mut process = Command::new("sh")
            .arg("-c")
            .arg(format!("{ulimit}exec \"$0\" --config \"$1\""))
            .arg(std::env::var("PGATE_MEMORY_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_pgate").to_owned()))
            .arg(&path)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        common::process::forward_stderr(&mut process);
        let child = Child { process, addr, _dir: dir };
        let started = Instant::now();
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(started.elapsed() < Duration::from_secs(20), "pgate did not listen within 20s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        child
    }

    fn pid(&self) -> u32 {
        self.process.id()
    }

    /// Resident memory of the process, in KiB.
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("pgate is running");
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
        line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("VmRSS in kB")
    }

    /// RSS once it stopped moving (two samples 200 ms apart within 64 KiB), or after 3 s.
    async fn settled_rss_kib(&self) -> u64 {
        let started = Instant::now();
        let mut last = self.rss_kib();
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = self.rss_kib();
            if now.abs_diff(last) <= 64 || started.elapsed() > Duration::from_secs(3) {
                return now;
            }
            last = now;
        }
    }

    /// The soft and hard limits on open files of the running process, as /proc shows them.
    fn open_file_limits(&self) -> (String, String) {
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", self.pid())).unwrap();
        let line = limits.lines().find(|l| l.starts_with("Max open files")).expect("Max open files");
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields[3].to_owned(), fields[4].to_owned())
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// Lets this process (and the pgate it starts, which inherits it) open many sockets.
fn raise_fd_limit() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).expect("raise RLIMIT_NOFILE")
}

/// Counts backends on the data cluster of database `db` that match `condition`.
fn backends_where(db: &str, condition: &str) -> i64 {
    backends()
        .data
        .psql("postgres", &format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}' AND {condition}"))
        .unwrap()
        .parse()
        .unwrap()
}

/// Waits up to `secs` for `done`.
async fn until(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(secs), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Samples RSS every 100 ms for `secs`; the largest value.
async fn peak_rss_kib(pgate: &Child, secs: u64) -> u64 {
    let started = Instant::now();
    let mut peak = 0;
    while started.elapsed() < Duration::from_secs(secs) {
        peak = peak.max(pgate.rss_kib());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    peak
}

/// A client that asked for ~1 GB and reads `read` bytes of it, then nothing more.
async fn slow_reader(addr: SocketAddr, db: &str, read: usize) -> RawClient {
    let mut c = RawClient::login_trusted(addr, "alice", db).await;
    c.send(&query(HUGE_QUERY)).await;
    let mut got = 0;
    while got < read {
        let (_, body) = c.recv().await.expect("rows arrive");
        got += body.len() + 5;
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reads_nothing_costs_a_bounded_buffer() {
    let db = "memory_slow";
    fresh_database(db);
    let pgate = Child::start("[pool]\nsize = 20\n").await;
    // Warm-up: twelve servers in the pool (one per slow reader and one for afterwards),
    // and a result of a few MB through pgate, so the baseline has seen every code path.
    let mut warm = Vec::new();
    for _ in 0..12 {
        let mut c = RawClient::login_trusted(pgate.addr, "alice", db).await;
        c.send(&query("BEGIN")).await;
        c.until_ready().await;
        warm.push(c);
    }
    for c in &mut warm {
        c.send(&query("SELECT repeat('x', 1000) FROM generate_series(1, 2000)")).await;
        c.until_ready().await;
        c.send(&query("COMMIT")).await;
        c.until_ready().await;
    }
    drop(warm);
    let baseline = pgate.settled_rss_kib().await;

    // One client that read 64 KB and stopped: its server waits to send (ClientWrite),
    // pgate's memory does not grow with the result.
    let first = slow_reader(pgate.addr, db, 64 * 1024).await;
    until("the server to block on sending", 20, || {
        backends_where(db, "wait_event = 'ClientWrite' AND query LIKE 'SELECT repeat%'") == 1
    })
    .await;
    let one = peak_rss_kib(&pgate, 3).await;
    let grown = one.saturating_sub(baseline);
    println!("one slow reader: baseline {baseline} KiB, peak {one} KiB, growth {grown} KiB");
    assert!(grown < ONE_SLOW_READER_CEILING_KIB, "one slow reader grew pgate by {grown} KiB");

    // Ten together (nine more that read nothing at all).
    let mut readers = vec![first];
    for _ in 0..9 {
        readers.push(slow_reader(pgate.addr, db, 0).await);
    }
    until("ten servers blocked on sending", 30, || {
        backends_where(db, "wait_event = 'ClientWrite' AND query LIKE 'SELECT repeat%'") == 10
    })
    .await;
    let ten = peak_rss_kib(&pgate, 3).await;
    let grown = ten.saturating_sub(baseline);
    println!("ten slow readers: peak {ten} KiB, growth {grown} KiB ({} KiB each)", grown / 10);
    assert!(grown < TEN_SLOW_READERS_CEILING_KIB, "ten slow readers grew pgate by {grown} KiB");
    // Still blocked: nothing drained the results into pgate meanwhile.
    assert_eq!(backends_where(db, "wait_event = 'ClientWrite' AND query LIKE 'SELECT repeat%'"), 10);

    // The readers leave: their servers are closed (or reset), none keeps sending, and a
    // new client gets a clean server.
    drop(readers);
    until("the huge queries to end", 30, || {
        backends_where(db, "state = 'active' AND query LIKE 'SELECT repeat%'") == 0
    })
    .await;
    let mut after = RawClient::login_trusted(pgate.addr, "alice", db).await;
    for i in 0..15 {
        after.send(&query(&format!("SELECT {i}"))).await;
        let reply = after.until_ready().await;
        assert_eq!(codes(&reply), "TDCZ", "{reply:?}");
        assert_eq!(first_column(&reply), [i.to_string()]);
    }
}

/// Opens `n` idle logged-in clients of database `db` with libpq's usual startup parameters.
async fn open_idle(addr: SocketAddr, db: &str, n: usize) -> Vec<RawClient> {
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        let mut c = RawClient::connect(addr).await;
        let params =
            [("user", "alice"), ("database", db), ("application_name", "memory_test"), ("client_encoding", "UTF8")];
        c.send(&startup_packet(3 << 16, &params)).await;
        let reply = c.until_ready().await;
        assert_eq!(reply.last().map(|m| m.0), Some(b'Z'), "login failed: {reply:?}");
        clients.push(c);
    }
    clients
}

/// One fresh pgate: the marginal KiB per idle client between 1,000 and 2,000 of them.
async fn idle_round() -> f64 {
    let pgate = Child::start("[pool]\nsize = 5\n").await;
    idle_marginal_kib(&pgate, "memory_idle").await
}

/// Warms `pgate` up with clients that log in, run a query and leave, then opens 1,000 and
/// 1,000 more idle clients of `db`: the marginal KiB per idle client.
async fn idle_marginal_kib(pgate: &Child, db: &str) -> f64 {
    for _ in 0..2 {
        let mut warm = open_idle(pgate.addr, db, 100).await;
        for c in &mut warm {
            c.send(&query("SELECT 1")).await;
            c.until_ready().await;
        }
    }
    let first = open_idle(pgate.addr, db, 1000).await;
    let at_1000 = pgate.settled_rss_kib().await;
    let second = open_idle(pgate.addr, db, 1000).await;
    let at_2000 = pgate.settled_rss_kib().await;
    let marginal = at_2000.saturating_sub(at_1000) as f64 / 1000.0;
    println!("idle clients: RSS {at_1000} KiB at 1000, {at_2000} KiB at 2000: {marginal:.2} KiB per client");
    drop((first, second));
    marginal
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_client_costs_a_few_kib() {
    raise_fd_limit();
    fresh_database("memory_idle");
    let mut rounds = Vec::new();
    for _ in 0..3 {
        rounds.push(idle_round().await);
    }
    rounds.sort_by(f64::total_cmp);
    let (median, worst) = (rounds[1], rounds[2]);
    println!("idle client: median {median:.2} KiB, worst {worst:.2} KiB over 3 rounds (fresh process each)");
    assert!(median <= IDLE_CLIENT_CEILING_KIB, "an idle client costs {median:.2} KiB (rounds {rounds:?})");
}

/// The same figure on a process that first served a heavy workload (`pgbench -S`, 128
/// clients for 10 s over a pool of 20): what the allocator kept from it does not make
/// idle clients dearer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_client_costs_a_few_kib_after_a_heavy_workload() {
    raise_fd_limit();
    let db = "memory_workload";
    fresh_database(db);
    let pgate = Child::start("[pool]\nsize = 20\n").await;
    let pgbench = |args: &str| {
        let out = tool("pgbench")
            .args(["-h", "127.0.0.1", "-p", &pgate.addr.port().to_string(), "-U", "alice"])
            .args(args.split(' '))
            .arg(db)
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "pgbench {args} failed:\n{text}");
        text
    };
    pgbench("-i -q -s 1");
    let out = pgbench("-n -S -c 128 -j 2 -T 10");
    assert!(out.contains("number of failed transactions: 0"), "{out}");
    let tps = out.lines().find(|l| l.starts_with("tps")).unwrap_or_default();
    println!("workload: pgbench -S -c 128 -T 10: {tps}; RSS {} KiB", pgate.settled_rss_kib().await);
    let marginal = idle_marginal_kib(&pgate, db).await;
    println!("idle client after the workload: {marginal:.2} KiB");
    assert!(marginal <= IDLE_CLIENT_CEILING_KIB, "after a workload, an idle client costs {marginal:.2} KiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgate_raises_its_open_file_limit_to_the_hard_limit() {
    let pgate = Child::start_with_soft_fd_limit("", Some(256)).await;
    let (soft, hard) = pgate.open_file_limits();
    assert_eq!(soft, hard, "pgate started with a soft limit of 256 open files and kept {soft}");
}

/// The task spawned per client and the future of its connection, whose sizes every
/// connected client pays (tokio allocates the task whole when it is spawned). The startup
/// phase and the session are boxed apart from them, so neither sizes what a client holds
/// for its whole life; the session's own size shows in the idle client test's RSS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_task_of_a_client_is_small() {
    let pgate = Pgate::start(&config("")).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tcp = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
    let peer = tcp.local_addr().unwrap();
    let task = pgate::client::serve(tcp, peer, pgate.shared.clone(), pgate.shared.admit());
    let size = std::mem::size_of_val(&task);
    println!("the future of a client's connection: {size} bytes");
    // What is spawned per client holds that future boxed, once.
    let tcp = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
    let spawned = pgate::proxy::client_task(pgate.shared.clone(), tcp, peer);
    let outer = std::mem::size_of_val(&spawned);
    println!("the task spawned per client: {outer} bytes besides it");
    // At most 152 bytes, tokio's task (header, scheduler, id, trailer; 128-byte aligned)
    // takes 256 bytes; one more and it takes 384.
    assert!(outer <= 152, "the task spawned per client carries {outer} bytes besides the client's future");
    drop(spawned);
    // 15,896 bytes in a debug build before the TLS paths, the console and the relay were
    // boxed, 3,120 before the startup phase and the session were boxed apart.
    assert!(size <= 256, "the future of a client's connection is {size} bytes");
    drop(task);
    pgate.stop().await;
}

/// 10,000 clients at once over a pool of 20 in transaction pooling, each running three
/// transactions: no errors; prints pgate's RSS and its cost per client. Ignored in the
/// usual run (it takes a minute and 20,000 file descriptors); run it with
/// `cargo test --release --test memory -- --ignored --nocapture ten_thousand`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn ten_thousand_clients_over_a_pool_of_20() {
    const CLIENTS: usize = 10_000;
    let limit = raise_fd_limit();
    // This process holds the clients' sockets, pgate (which inherits the limit) theirs.
    assert!(limit >= CLIENTS as u64 + 1000, "the open file limit {limit} is too low for {CLIENTS} clients");
    fresh_database("memory_many");
    let pgate = Child::start("[pool]\nsize = 20\nmode = \"transaction\"\n").await;
    let conninfo = format!("host=127.0.0.1 port={} user=alice dbname=memory_many sslmode=disable", pgate.addr.port());
    for _ in 0..100 {
        connect(&conninfo).await.expect("warm-up client").simple_query("SELECT 1").await.unwrap();
    }
    let baseline = pgate.settled_rss_kib().await;

    // Log in with at most 200 logins in flight (the listen backlog is finite).
    let started = Instant::now();
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(200));
    let logins: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (gate, conninfo) = (gate.clone(), conninfo.clone());
            tokio::spawn(async move {
                let _permit = gate.acquire_owned().await.unwrap();
                connect(&conninfo).await
            })
        })
        .collect();
    let mut clients = Vec::with_capacity(CLIENTS);
    for login in logins {
        clients.push(login.await.unwrap().expect("login"));
    }
    let logged_in = started.elapsed();
    let connected = pgate.settled_rss_kib().await;

    // Every client runs three transactions of three statements, all at once.
    let started = Instant::now();
    let runs: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, client)| {
            tokio::spawn(async move {
                let mut errors = 0;
                for t in 0..3 {
                    for sql in ["BEGIN".to_owned(), format!("SELECT {i} + {t}"), "COMMIT".to_owned()] {
                        errors += usize::from(client.simple_query(&sql).await.is_err());
                    }
                }
                (client, errors)
            })
        })
        .collect();
    let mut clients = Vec::with_capacity(CLIENTS);
    let mut errors = 0;
    for run in runs {
        let (client, e) = run.await.unwrap();
        errors += e;
        clients.push(client);
    }
    let ran = started.elapsed();
    let after = pgate.settled_rss_kib().await;
    let per_client = |rss: u64| rss.saturating_sub(baseline) as f64 / CLIENTS as f64;
    println!(
        "{CLIENTS} clients: logins {logged_in:?}, {} transactions in {ran:?}, {errors} errors; RSS baseline \
         {baseline} KiB, {connected} KiB connected ({:.2} KiB per client), {after} KiB after the transactions \
         ({:.2} KiB per client)",
        3 * CLIENTS,
        per_client(connected),
        per_client(after)
    );
    assert_eq!(errors, 0);
    let servers = backends_where("memory_many", "usename = 'alice'");
    assert!(servers <= 20, "the pool holds {servers} servers");
    drop(clients);
}
