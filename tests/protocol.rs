//! The startup phase and protocol edge cases: malformed packets, SSL / GSS negotiation,
//! protocol versions, client limits, login timeout, shutdown. Raw sockets where real
//! drivers would not send such bytes.

mod common;

use std::time::{Duration, Instant};

use common::raw::*;
use common::*;

const V3: i32 = 3 << 16;

fn trusted_config(head: &str) -> String {
    config(&format!("{head}\n[auth]\ntrust_networks = [\"127.0.0.1/32\"]\n"))
}

/// Sends `bytes` on a fresh connection; returns the SQLSTATE of the ErrorResponse that
/// comes back and whether the connection was then closed.
async fn fatal_for(pgate: &Pgate, bytes: &[u8]) -> (String, bool) {
    let mut c = RawClient::connect(pgate.addr).await;
    c.send(bytes).await;
    let (code, body) = c.recv().await.expect("an ErrorResponse");
    assert_eq!(code, b'E', "expected ErrorResponse, got {:?}", code as char);
    let fields = error_fields(&body);
    assert!(fields.contains(&(b'S', "FATAL".into())), "{fields:?}");
    (error_code(&body), c.closed().await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_startup_packets_get_fatal_08p01_and_are_closed() {
    let pgate = Pgate::start(&trusted_config("")).await;
    // Length word below the minimum and above PostgreSQL's limit.
    assert_eq!(fatal_for(&pgate, &[0, 0, 0, 3]).await, ("08P01".into(), true));
    assert_eq!(fatal_for(&pgate, &100_000i32.to_be_bytes()).await, ("08P01".into(), true));
    // Parameters without the final terminator, and with a name but no value.
    let mut unterminated = startup_packet(V3, &[("user", "dave")]);
    unterminated.pop();
    let len = unterminated.len() as i32;
    unterminated[..4].copy_from_slice(&len.to_be_bytes());
    assert_eq!(fatal_for(&pgate, &unterminated).await, ("08P01".into(), true));
    let mut dangling = Vec::new();
    dangling.extend_from_slice(&17i32.to_be_bytes());
    dangling.extend_from_slice(&V3.to_be_bytes());
    dangling.extend_from_slice(b"user\0dav");
    dangling.push(0);
    assert_eq!(fatal_for(&pgate, &dangling).await, ("08P01".into(), true));
    // A parameter name that cannot be a setting, and a duplicated parameter.
    let bad_name = startup_packet(V3, &[("user", "dave"), ("database", "akko"), ("x;drop", "1")]);
    assert_eq!(fatal_for(&pgate, &bad_name).await, ("08P01".into(), true));
    let twice = startup_packet(V3, &[("user", "dave"), ("user", "alice")]);
    assert_eq!(fatal_for(&pgate, &twice).await, ("08P01".into(), true));
    // Protocol 2 and an unknown request code.
    assert_eq!(fatal_for(&pgate, &startup_packet(2 << 16, &[("user", "dave")])).await, ("0A000".into(), true));
    assert_eq!(fatal_for(&pgate, &startup_packet(1234 << 16 | 9999, &[])).await, ("0A000".into(), true));
    // No user name.
    assert_eq!(fatal_for(&pgate, &startup_packet(V3, &[("database", "akko")])).await, ("28000".into(), true));
    // Replication connections and unknown startup options are refused clearly.
    let repl = startup_packet(V3, &[("user", "dave"), ("database", "akko"), ("replication", "true")]);
    assert_eq!(fatal_for(&pgate, &repl).await, ("0A000".into(), true));

    // Others are untouched by all of this.
    let c = pgate.connect("dave", "", "akko").await.unwrap();
    assert_eq!(simple_row(&c, "SELECT 1").await, ["1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encryption_requests_are_declined_once_each() {
    let pgate = Pgate::start(&trusted_config("")).await;
    let mut c = RawClient::connect(pgate.addr).await;
    c.send(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30]).await; // GSSENCRequest
    assert_eq!(c.recv_byte().await, b'N');
    c.send(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]).await; // SSLRequest
    assert_eq!(c.recv_byte().await, b'N');
    c.send(&startup_packet(V3, &[("user", "dave"), ("database", "akko")])).await;
    let msgs = c.until_ready().await;
    assert_eq!(msgs.first().map(|m| m.0), Some(b'R'), "AuthenticationOk first");
    assert_eq!(msgs.last().map(|m| m.0), Some(b'Z'));
    assert!(msgs.iter().any(|m| m.0 == b'K'), "BackendKeyData");
    assert!(msgs.iter().any(|m| m.0 == b'S' && m.1.starts_with(b"server_version\0")), "ParameterStatus");

    let mut twice = RawClient::connect(pgate.addr).await;
    twice.send(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]).await;
    assert_eq!(twice.recv_byte().await, b'N');
    twice.send(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]).await;
    let (code, body) = twice.recv().await.unwrap();
    assert_eq!((code, error_code(&body).as_str()), (b'E', "08P01"));

    // libpq: sslmode=prefer falls back to plaintext, sslmode=require refuses.
    let psql = |mode: &str| {
        tool("psql")
            .arg(format!("host=127.0.0.1 port={} user=dave dbname=akko sslmode={mode}", pgate.port()))
            .args(["-X", "-A", "-t", "-c", "SELECT 42"])
            .output()
            .unwrap()
    };
    let prefer = psql("prefer");
    assert_eq!(String::from_utf8_lossy(&prefer.stdout).trim(), "42", "{}", String::from_utf8_lossy(&prefer.stderr));
    let require = psql("require");
    assert!(!require.status.success());
    assert!(String::from_utf8_lossy(&require.stderr).contains("does not support SSL"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_minor_versions_and_protocol_options_are_negotiated_down() {
    let pgate = Pgate::start(&trusted_config("")).await;
    let mut c = RawClient::connect(pgate.addr).await;
    c.send(&startup_packet(3 << 16 | 2, &[("user", "dave"), ("database", "akko"), ("_pq_.fancy", "on")])).await;
    let (code, body) = c.recv().await.unwrap();
    assert_eq!(code, b'v', "NegotiateProtocolVersion");
    assert_eq!(&body[0..4], &0i32.to_be_bytes(), "newest minor version: 0");
    assert_eq!(&body[4..8], &1i32.to_be_bytes(), "one unsupported option");
    assert_eq!(&body[8..], b"_pq_.fancy\0");
    let msgs = c.until_ready().await;
    assert_eq!(msgs.last().map(|m| m.0), Some(b'Z'));
    c.send(&query("SELECT 7")).await;
    let msgs = c.until_ready().await;
    assert!(msgs.iter().any(|(code, body)| *code == b'D' && body.ends_with(b"7")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_after_login_is_a_protocol_violation_for_that_client_only() {
    let pgate = Pgate::start(&trusted_config("")).await;
    let bystander = pgate.connect("dave", "", "akko").await.unwrap();
    for garbage in [message(b'Z', b"I"), vec![b'Q', 0, 0, 0, 2], message(b'p', b"password\0")] {
        let mut c = RawClient::login_trusted(pgate.addr, "dave", "akko").await;
        c.send(&garbage).await;
        let (code, body) = c.recv().await.unwrap();
        assert_eq!((code, error_code(&body).as_str()), (b'E', "08P01"), "{:?}", error_fields(&body));
        assert!(c.closed().await);
    }
    // A violation in the middle of a transaction: the server is not reused dirty.
    let mut c = RawClient::login_trusted(pgate.addr, "dave", "akko").await;
    c.send(&query("BEGIN; CREATE TEMP TABLE left_behind (v int)")).await;
    c.until_ready().await;
    c.send(&[b'?', 0, 0, 0, 4]).await;
    assert_eq!(c.recv().await.map(|(code, b)| (code, error_code(&b))), Some((b'E', "08P01".into())));
    let row =
        simple_row(&bystander, "SELECT now() = statement_timestamp(), to_regclass('pg_temp.left_behind') IS NULL")
            .await;
    assert_eq!(row, ["t", "t"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_client_connections_refuses_with_53300_and_frees_on_leave() {
    let pgate = Pgate::start(&trusted_config("[listen]\nmax_client_connections = 3\n")).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(pgate.connect("dave", "", "akko").await.unwrap());
    }
    let err = pgate.connect("dave", "", "akko").await.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("53300"));
    assert!(db_message(&err).contains("too many clients"), "{}", db_message(&err));
    drop(held.pop());
    let mut admitted = false;
    for _ in 0..50 {
        if pgate.connect("dave", "", "akko").await.is_ok() {
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(admitted, "a freed place was not given to a new client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_timeout_closes_silent_and_stalled_logins() {
    let pgate = Pgate::start(&config("[listen]\nlogin_timeout = \"300ms\"\n")).await;
    let started = Instant::now();
    let mut silent = RawClient::connect(pgate.addr).await;
    assert!(silent.closed().await);
    assert!(started.elapsed() < Duration::from_secs(3));
    // Stalls in the middle of SCRAM: told why, then closed.
    let mut stalled = RawClient::connect(pgate.addr).await;
    stalled.send(&startup_packet(V3, &[("user", "alice"), ("database", "akko")])).await;
    let (code, _) = stalled.recv().await.unwrap();
    assert_eq!(code, b'R', "SASL request");
    let (code, body) = stalled.recv().await.unwrap();
    assert_eq!((code, error_code(&body).as_str()), (b'E', "57014"));
    assert!(stalled.closed().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_transactions_finish_and_tells_idle_clients_57p01() {
    let pgate = Pgate::start(&trusted_config("[listen]\nshutdown_timeout = \"10s\"\n")).await;
    let addr = pgate.addr;
    let mut idle = RawClient::login_trusted(addr, "dave", "akko").await;
    let mut busy = RawClient::login_trusted(addr, "dave", "akko").await;
    busy.send(&query("BEGIN; SELECT 1")).await;
    busy.until_ready().await;
    let stopping = tokio::spawn(pgate.stop());
    let (code, body) = idle.recv().await.unwrap();
    assert_eq!((code, error_code(&body).as_str()), (b'E', "57P01"));
    assert!(idle.closed().await);
    // The open transaction still commits, then that client is told too.
    busy.send(&query("SELECT 2; COMMIT")).await;
    let msgs = busy.until_ready().await;
    assert!(msgs.iter().all(|m| m.0 != b'E'), "{msgs:?}");
    assert!(msgs.iter().any(|m| m.0 == b'C' && m.1.starts_with(b"COMMIT")));
    let (code, body) = busy.recv().await.unwrap();
    assert_eq!((code, error_code(&body).as_str()), (b'E', "57P01"));
    tokio::time::timeout(Duration::from_secs(10), stopping).await.unwrap().unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "still accepting after shutdown");
}
