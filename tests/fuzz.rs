//! Protocol fuzzing on stable Rust: seeded, mutated frontend byte streams (see
//! `fuzz/generate.rs`) through pgate's decoders in process, and through a running pgate in
//! front of a real PostgreSQL and in front of a scripted server. No input may panic, hang a
//! connection past its deadline, or leak a server.
//!
//! `cargo test --test fuzz` runs a seeded slice of about 10^5 inputs in all. The seed is
//! `PGATE_FUZZ_SEED`; `PGATE_FUZZ_CASES` scales every layer (100000 is the default total).
//! The long run, 10^7 inputs, in the background:
//!
//! ```text
//! PGATE_FUZZ_CASES=10000000 PGATE_FUZZ_SEED=$RANDOM nohup cargo test --release --test fuzz \
//!     -- --nocapture > fuzz.log 2>&1 &
//! ```
//!
//! A failing in-process case prints `PGATE_FUZZ_REPLAY=<n>`; set it to run that case alone.

mod common;
#[path = "fuzz/decoders.rs"]
mod decoders;
#[path = "fuzz/generate.rs"]
mod generate;
#[path = "fuzz/network.rs"]
mod network;
#[path = "fuzz/scripted.rs"]
mod scripted;

use std::sync::atomic::Ordering;
use std::time::Instant;

use common::*;

use generate::{Gen, share};

/// Runs `cases` in-process cases from `seed`; each case has its own seed, printed when it
/// panics, so it can be replayed alone.
fn in_process(cases: usize, seed: u64) -> decoders::Reached {
    let mut reached = decoders::Reached::default();
    for case in 0..cases as u64 {
        let case_seed = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(case);
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| one_case(case_seed, &mut reached)));
        if let Err(e) = run {
            panic!("case {case} (PGATE_FUZZ_REPLAY={case_seed}) panicked: {e:?}");
        }
    }
    reached
}

fn one_case(case_seed: u64, reached: &mut decoders::Reached) {
    let mut g = Gen::new(case_seed);
    if g.chance(0.3) {
        let mut pieces = vec![g.startup_packet("dave", "akko")];
        if g.chance(0.5) {
            pieces.insert(0, generate::ssl_request());
        }
        pieces.extend((0..g.below(3)).map(|_| g.password_message()));
        let mutations = g.below(4);
        g.mutate(&mut pieces, mutations);
        decoders::startup_case(&mut g, &pieces, reached);
    } else {
        let n = 1 + g.below(8);
        let mut pieces = g.pipeline(n);
        if g.chance(0.2) {
            pieces.push(g.password_message());
        }
        let mutations = g.below(4);
        g.mutate(&mut pieces, mutations);
        let writes = g.split(&pieces);
        decoders::session_case(&mut g, &writes, reached);
    }
}

#[test]
fn decoders_never_panic_on_mutated_streams() {
    let (cases, seed) = share(92_000);
    if let Some(replay) = std::env::var("PGATE_FUZZ_REPLAY").ok().and_then(|v| v.parse().ok()) {
        return one_case(replay, &mut decoders::Reached::default());
    }
    let started = Instant::now();
    let reached = in_process(cases, seed);
    let took = started.elapsed();
    eprintln!(
        "{cases} in-process cases (seed {seed}) in {took:.1?}: {:.0} cases/s; {reached:?}",
        cases as f64 / took.as_secs_f64()
    );
    // The run must reach the decoders, not stop at the first bad header every time.
    assert!(reached.frames > cases as u64, "{reached:?}");
    assert!(reached.decoded_ok > cases as u64 / 2, "{reached:?}");
    assert!(reached.startup_packets > cases as u64 / 5, "{reached:?}");
    assert!(reached.classified > 0 && reached.scram > 0, "{reached:?}");
}

/// pgate's own account after a run: no panic, no client slot left, no server checked out,
/// no pool over its size; returns the servers the pools hold.
async fn assert_settled(pgate: &Pgate, size: usize) -> usize {
    let shared = pgate.shared.clone();
    let pools = shared.pools.all();
    let settled =
        network::eventually(20, || shared.client_count() == 0 && pools.iter().all(|p| p.server_counts().busy() == 0))
            .await;
    let counts: Vec<_> = pools.iter().map(|p| (p.key().to_string(), p.server_counts())).collect();
    assert!(settled, "clients left: {}; pools: {counts:?}", shared.client_count());
    let mut held = 0;
    for (key, c) in &counts {
        let total = c.active + c.idle + c.used + c.tested + c.login;
        assert!(total <= size, "pool {key} holds {total} servers, more than its size {size}: {c:?}");
        held += total;
    }
    assert_eq!(shared.metrics.client_panics(), 0, "a client task panicked");
    let scrape = shared.metrics.render(&shared);
    assert!(scrape.lines().any(|l| l == "pgate_client_panics_total 0"), "the panic counter is exported");
    held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_streams_through_pgate_to_postgresql() {
    let (cases, seed) = share(4_000);
    fresh_database("fuzz");
    let size = 6;
    // Statement rules and the audit log (with parameters) put the inspector on the path of
    // every Query, Parse, Bind and Execute.
    let audit_dir = tempfile::tempdir().unwrap();
    let audit_log = audit_dir.path().join("audit.log");
    let config = format!(
        "{}\n[[workspaces]]\nname = \"fuzz\"\nusers = [\"dave\"]\ndatabases = [\"fuzz\"]\n\
         allow = [\"READ\", \"WRITE\", \"FUNCTION\", \"MISC\"]\nrelations = {{ deny = [\"public.secrets\"] }}\n\
         session = {{ search_path = \"public\" }}\n\n[audit]\nsink = \"{}\"\nlog_parameter = true\n",
        config_with_fallback(&format!(
            "[listen]\nlogin_timeout = \"3s\"\n[pool]\nsize = {size}\nquery_wait_timeout = \"5s\"\n\
             [auth]\ntrust_networks = [\"127.0.0.1/32\"]\n"
        )),
        audit_log.display()
    );
    let pgate = Pgate::start(&config).await;
    // Found in process first: a word with a character across its byte 8 panicked the
    // statement scanner that runs on every Query.
    let mut raw = common::raw::RawClient::login_trusted(pgate.addr, "dave", "fuzz").await;
    raw.send(&common::raw::query("SELECT Jp\u{a1}kP\u{41e8}J")).await;
    let answer = common::raw::codes(&raw.until_ready().await);
    assert_eq!(answer, "EZ", "the session answers (column does not exist) and goes on");
    assert_eq!(pgate.shared.metrics.client_panics(), 0);
    drop(raw);
    let started = Instant::now();
    let late = network::run(pgate.addr, cases, seed, "dave", "fuzz").await;
    let took = started.elapsed();
    eprintln!("{cases} connections to PostgreSQL through pgate (seed {seed}) in {took:.1?}");
    assert!(late.is_empty(), "{} connections overran their deadline; first: {}", late.len(), late[0]);
    assert_settled(&pgate, size).await;
    assert!(data_connections("fuzz", "dave") <= size as i64, "PostgreSQL sees more servers than the pool size");
    // A well-behaved client is served as before.
    let client = pgate.connect("dave", "", "fuzz").await.expect("dave connects after the run");
    assert_eq!(simple_row(&client, "SELECT 41 + 1").await, ["42"]);
    drop(client);
    pgate.stop().await;
    let audited = std::fs::read_to_string(&audit_log).unwrap_or_default().lines().count();
    eprintln!("{audited} audit lines from the fuzzed sessions");
    assert!(audited > cases / 10, "the inspector saw the statements: {audited} audit lines");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_streams_through_pgate_to_a_scripted_server() {
    let (cases, seed) = share(4_000);
    let (server, port) = scripted::Scripted::start(seed).await;
    let size = 4;
    // A server the script stalls keeps its place in the pool while pgate tries to rescue
    // it for a client that left; a short reset_timeout keeps four places turning over.
    let pgate = Pgate::start(&single_backend_config(
        &format!(
            "[listen]\nlogin_timeout = \"3s\"\n[pool]\nsize = {size}\nquery_wait_timeout = \"5s\"\n\
             reset_timeout = \"1s\"\n[auth]\ntrust_networks = [\"127.0.0.1/32\"]\n"
        ),
        port,
    ))
    .await;
    let started = Instant::now();
    let late = network::run(pgate.addr, cases, seed, "alice", "akko").await;
    let took = started.elapsed();
    eprintln!(
        "{cases} connections to a scripted server through pgate (seed {seed}) in {took:.1?}; {} server connections",
        server.accepted.load(Ordering::SeqCst)
    );
    assert!(late.is_empty(), "{} connections overran their deadline; first: {}", late.len(), late[0]);
    let held = assert_settled(&pgate, size).await;
    // What pgate holds is all the server sees open (backend probes come and go).
    let matches = network::eventually(10, || server.open.load(Ordering::SeqCst) <= held).await;
    assert!(matches, "the server has {} connections open, pgate holds {held}", server.open.load(Ordering::SeqCst));
    server.chaos.store(false, Ordering::SeqCst);
    let client = pgate.alice("akko").await;
    client.simple_query("SELECT 1").await.expect("a well-behaved client is served after the run");
    drop(client);
    pgate.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_held_by_a_panicking_client_task_is_closed_not_reused() {
    fresh_database("fuzz_panic");
    let pgate =
        Pgate::start(&config_with_fallback("[pool]\nsize = 2\n[auth]\ntrust_networks = [\"127.0.0.1/32\"]\n")).await;
    let client = pgate.connect("dave", "", "fuzz_panic").await.expect("dave connects");
    assert_eq!(simple_row(&client, "SELECT 1").await, ["1"]);
    let shared = pgate.shared.clone();
    let pool = shared.pools.all().into_iter().find(|p| p.key().database == "fuzz_panic").expect("the pool exists");
    assert!(network::eventually(10, || pool.server_counts().idle == 1).await, "{:?}", pool.server_counts());
    assert_eq!(data_connections("fuzz_panic", "dave"), 1);

    // A client task that panics while it holds the pool's idle server, checked out clean.
    let holder = pool.clone();
    let task = async move {
        let server = holder.checkout().await.expect("checkout");
        tokio::task::yield_now().await;
        let held: Vec<_> = vec![server];
        panic!("injected panic while holding {} server(s)", held.len());
    };
    let peer = "127.0.0.1:40000".parse().unwrap();
    let ended = pgate::client::contain(Box::pin(task), peer, &shared.metrics).await;
    assert!(matches!(&ended, pgate::client::Ended::Panicked(m) if m.contains("injected")), "{ended:?}");
    assert_eq!(shared.metrics.client_panics(), 1);
    let scrape = shared.metrics.render(&shared);
    assert!(scrape.lines().any(|l| l == "pgate_client_panics_total 1"), "the panic is counted on /metrics");

    // The server was closed, not put back: the pool holds none and PostgreSQL sees it gone.
    // (Its backend is cancelled first, off the client's task, so this takes a moment.)
    let closed = network::eventually(10, || {
        let c = pool.server_counts();
        c.active + c.idle + c.used + c.tested + c.login == 0
    })
    .await;
    assert!(closed, "{:?}", pool.server_counts());
    assert_eq!(shared.metrics.client_panics(), 1);
    let gone = network::eventually(10, || data_connections("fuzz_panic", "dave") == 0).await;
    assert!(gone, "PostgreSQL still has the server of the panicked task");
    // The slot it held is free: the client that was connected all along is served.
    assert_eq!(simple_row(&client, "SELECT 2").await, ["2"]);
    drop(client);
    pgate.stop().await;
}
