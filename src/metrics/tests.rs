//! Unit tests of the metric families, the scrape-time gauges, readiness and the probe.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::pool::PoolKey;

const CONFIG: &str = r#"
[metrics]
address = "127.0.0.1:0"

[backends.main]
host = "127.0.0.1"
port = 1
databases = ["*"]

[[users]]
name = "alice"
password = "secret"

[[workspaces]]
name = "alpha"
users = ["alice"]
databases = ["*"]
"#;

fn shared() -> Arc<Shared> {
    let snapshot = crate::config::parse(CONFIG, Path::new("t.toml")).expect("valid");
    Shared::new(snapshot).expect("shared state")
}

fn key() -> PoolKey {
    PoolKey { backend: "main".into(), database: "akko".into(), user: "alice".into() }
}

/// The value of `series` (`name{label="value",...}`, labels in any order) in a scrape.
fn sample(text: &str, series: &str) -> Option<f64> {
    let (name, labels) = split_series(series);
    text.lines().find_map(|line| {
        let (line_series, value) = line.rsplit_once(' ')?;
        (split_series(line_series) == (name, labels.clone())).then(|| value.parse().ok())?
    })
}

fn split_series(series: &str) -> (&str, Vec<&str>) {
    match series.split_once('{') {
        Some((name, rest)) => {
            let mut labels: Vec<&str> = rest.trim_end_matches('}').split(',').filter(|l| !l.is_empty()).collect();
            labels.sort();
            (name, labels)
        }
        None => (series, Vec::new()),
    }
}

#[test]
fn every_family_registers_and_build_info_names_version_and_commit() {
    let shared = shared();
    let text = shared.metrics.render(&shared);
    let line = format!("pgate_build_info{{commit=\"{COMMIT}\",version=\"{VERSION}\"}} 1");
    assert!(text.contains(&line), "{text}");
    assert!(!COMMIT.is_empty());
    // Live families next to the registered ones: each name once.
    let mut names: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next()).collect();
    let all = names.len();
    names.dedup();
    assert_eq!(names.len(), all, "a family name appears twice");
    for name in ["pgate_ready", "pgate_draining", "pgate_config_hash", "pgate_backend_up", "pgate_client_connections"] {
        assert!(names.contains(&name), "{name} missing: {text}");
    }
    assert!(names.iter().all(|n| n.starts_with("pgate_")));
    assert_eq!(sample(&text, "pgate_config_hash"), Some(shared.config.load().hash as f64));
}

#[test]
fn pool_children_count_and_clients_move_between_states() {
    let shared = shared();
    let pool = PoolMetrics::new(&shared.metrics.pools, &key());
    let pool = Arc::new(pool);
    pool.transactions.inc();
    pool.queries.inc_by(3);
    pool.query_duration.observe(0.002);
    pool.error(b"SERROR\0C22012\0Mdivision by zero\0\0");
    pool.error_code("53300");
    pool.closed(CloseReason::IdleTimeout, 2);
    let mut presence = pool.presence();
    let other = pool.presence();
    presence.set(ClientState::Active);
    let text = shared.metrics.render(&shared);
    let labels = "backend=\"main\",database=\"akko\",user=\"alice\"";
    assert_eq!(sample(&text, &format!("pgate_transactions_total{{{labels}}}")), Some(1.0));
    assert_eq!(sample(&text, &format!("pgate_queries_total{{{labels}}}")), Some(3.0));
    assert_eq!(sample(&text, &format!("pgate_query_duration_seconds_count{{{labels}}}")), Some(1.0));
    assert_eq!(sample(&text, &format!("pgate_query_duration_seconds_bucket{{{labels},le=\"0.0025\"}}")), Some(1.0));
    assert_eq!(sample(&text, &format!("pgate_query_duration_seconds_bucket{{{labels},le=\"0.001\"}}")), Some(0.0));
    assert_eq!(sample(&text, &format!("pgate_errors_total{{{labels},class=\"22\"}}")), Some(1.0));
    assert_eq!(sample(&text, &format!("pgate_errors_total{{{labels},class=\"53\"}}")), Some(1.0));
    assert_eq!(sample(&text, &format!("pgate_servers_closed_total{{{labels},reason=\"idle_timeout\"}}")), Some(2.0));
    assert_eq!(sample(&text, &format!("pgate_clients{{{labels},state=\"active\"}}")), Some(1.0));
    assert_eq!(sample(&text, &format!("pgate_clients{{{labels},state=\"idle\"}}")), Some(1.0));
    drop((presence, other));
    let text = shared.metrics.render(&shared);
    for state in ["active", "idle", "waiting"] {
        assert_eq!(sample(&text, &format!("pgate_clients{{{labels},state=\"{state}\"}}")), Some(0.0), "{state}");
    }
}

#[test]
fn sqlstate_classes_are_two_letters_or_digits_and_nothing_else() {
    assert_eq!(sqlstate_class(b"SERROR\0VERROR\0C42501\0Mno\0\0"), Some(*b"42"));
    assert_eq!(sqlstate_class(b"Mno code\0\0"), None);
    assert_eq!(sqlstate_class(b"C\xff\xfe000\0\0"), None);
    assert_eq!(sqlstate_class(b"C4"), None, "unterminated");
    assert_eq!(sqlstate_class(b""), None);
}

#[test]
fn login_results_methods_and_denials_are_labelled() {
    use crate::access::LoginDenial;
    let shared = shared();
    let workspaces = shared.config.load().workspaces.clone();
    let m = &shared.metrics;
    m.login("scram-sha-256", Ok(()), &workspaces);
    m.login("scram-sha-256", Err(&Error::Auth(AuthError::PasswordFailed("x".into()))), &workspaces);
    let named = LoginDenial::NotMember { user: "bob".into(), workspace: "alpha".into() };
    m.login("md5", Err(&Error::Access(named)), &workspaces);
    // A workspace the client made up is not a label value.
    let made_up = LoginDenial::NotMember { user: "bob".into(), workspace: "x'); DROP".into() };
    m.login("md5", Err(&Error::Access(made_up)), &workspaces);
    m.login("none", Err(&Error::MissingUser), &workspaces);
    let text = m.render(&shared);
    assert_eq!(sample(&text, "pgate_logins_total{method=\"scram-sha-256\",result=\"ok\"}"), Some(1.0));
    assert_eq!(sample(&text, "pgate_logins_total{method=\"scram-sha-256\",result=\"auth_failed\"}"), Some(1.0));
    assert_eq!(sample(&text, "pgate_logins_total{method=\"md5\",result=\"denied\"}"), Some(2.0));
    assert_eq!(sample(&text, "pgate_logins_total{method=\"none\",result=\"protocol_error\"}"), Some(1.0));
    assert_eq!(sample(&text, "pgate_auth_failures_total{reason=\"password\"}"), Some(1.0));
    assert_eq!(sample(&text, "pgate_access_denials_total{rule=\"login.not_member\",workspace=\"alpha\"}"), Some(1.0));
    assert_eq!(sample(&text, "pgate_access_denials_total{rule=\"login.not_member\",workspace=\"\"}"), Some(1.0));
    assert!(!text.contains("DROP"));
}

#[test]
fn pins_count_by_reason() {
    let shared = shared();
    let reason = crate::sql::PinReason::ALL[0];
    shared.metrics.pinned(reason);
    shared.metrics.pinned(reason);
    let pins = shared.metrics.pins();
    assert_eq!(pins.iter().map(|(_, n)| n).sum::<u64>(), 2);
    let text = shared.metrics.render(&shared);
    assert_eq!(sample(&text, &format!("pgate_pins_total{{reason=\"{}\"}}", reason.name())), Some(2.0));
}

#[test]
fn readiness_needs_listening_fresh_backends_and_no_drain() {
    let shared = shared();
    let config = shared.config.load();
    let r = &shared.readiness;
    assert!(r.check(&config, false).unwrap_err().contains("not listening"));
    r.set_listening(true);
    let why = r.check(&config, false).unwrap_err();
    assert!(why.contains("backend main") && why.contains("not probed yet"), "{why}");
    r.record("main", Err(readiness::ProbeError::Answer(b'X')));
    assert!(r.check(&config, false).unwrap_err().contains("unexpected answer"));
    r.record("main", Ok(()));
    assert_eq!(r.check(&config, false), Ok(()));
    assert!(r.check(&config, true).unwrap_err().contains("draining"));
    let text = shared.metrics.render(&shared);
    assert_eq!(sample(&text, "pgate_backend_up{backend=\"main\"}"), Some(1.0));
}

/// A one-shot fake backend: answers an SSLRequest with `answer`.
async fn fake_backend(answer: u8) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut request = [0u8; 8];
        s.read_exact(&mut request).await.unwrap();
        s.write_all(&[answer]).await.unwrap();
        let _ = s.read(&mut [0u8; 1]).await;
    });
    port
}

#[tokio::test]
async fn the_probe_reaches_a_server_that_answers_and_says_why_not_otherwise() {
    let config = |port: u16| {
        let text = CONFIG.replace("port = 1", &format!("port = {port}"));
        Shared::new(crate::config::parse(&text, Path::new("t.toml")).unwrap()).unwrap()
    };
    let shared = config(fake_backend(b'N').await);
    shared.readiness.set_listening(true);
    let probes = tokio::spawn(probe_backends(shared.clone()));
    let started = Instant::now();
    while shared.readiness.check(&shared.config.load(), false).is_err() {
        assert!(started.elapsed() < Duration::from_secs(5), "the probe never reached the fake backend");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    probes.abort();

    let shared = config(fake_backend(b'X').await);
    let probes = tokio::spawn(probe_backends(shared.clone()));
    while shared.readiness.reach("main").last_error.is_none() {
        assert!(started.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    probes.abort();
    assert!(shared.readiness.reach("main").last_error.unwrap().contains("unexpected answer"));
}

/// The hot path's cost per transaction in the select-only shape (one query, one
/// transaction, a checkout, two reads and one reply): `cargo test --release --lib
/// metrics::tests::hot_path_cost -- --ignored --nocapture`.
#[test]
#[ignore]
fn hot_path_cost() {
    let shared = shared();
    let pool = Arc::new(PoolMetrics::new(&shared.metrics.pools, &key()));
    let mut presence = pool.presence();
    let n = 2_000_000;
    let started = Instant::now();
    for _ in 0..n {
        presence.set(ClientState::Waiting);
        let asked = Instant::now();
        pool.checkout_wait.observe(seconds(asked.elapsed()));
        presence.set(ClientState::Active);
        let query = Instant::now();
        pool.received.inc_by(std::hint::black_box(60));
        pool.received.inc_by(0);
        let now = Instant::now();
        pool.queries.inc();
        pool.query_duration.observe(seconds(now - query));
        pool.transactions.inc();
        pool.transaction_duration.observe(seconds(now - query));
        pool.sent.inc_by(std::hint::black_box(120));
        presence.set(ClientState::Idle);
    }
    let per = started.elapsed() / n;
    println!("metrics per transaction: {per:?}");
}
