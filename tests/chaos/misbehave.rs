//! The misbehaving clients of the chaos test: each run picks one way to break the protocol
//! (garbage, cut packets, logins abandoned at every SCRAM step, wrong passwords, clients
//! vanishing mid-transaction or mid-query, wrong cancel keys, TLS handshakes cut halfway,
//! pipelines without Sync). Every statement they write is rolled back by their leaving.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use pgate::protocol::codes::{auth, backend, frontend, startup};
use postgres_protocol::authentication::sasl::{ChannelBinding, SCRAM_SHA_256, ScramSha256};
use rand::RngExt;
use rand::rngs::StdRng;
use tokio::io::AsyncWriteExt;

use crate::common::raw::*;

/// Where the misbehaving clients go, and a real TLS ClientHello to cut.
pub struct Target {
    pub addr: SocketAddr,
    pub user: String,
    pub password: String,
    pub database: String,
    pub client_hello: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Behaviour {
    RandomBytes,
    HalfStartup,
    ScramAbandoned,
    WrongPassword,
    VanishInTransaction,
    VanishMidQuery,
    TerminateInTransaction,
    HalfFrameAfterLogin,
    WrongCancelKey,
    TlsCut,
    PipelineWithoutSync,
}

pub const ALL: [Behaviour; 11] = [
    Behaviour::RandomBytes,
    Behaviour::HalfStartup,
    Behaviour::ScramAbandoned,
    Behaviour::WrongPassword,
    Behaviour::VanishInTransaction,
    Behaviour::VanishMidQuery,
    Behaviour::TerminateInTransaction,
    Behaviour::HalfFrameAfterLogin,
    Behaviour::WrongCancelKey,
    Behaviour::TlsCut,
    Behaviour::PipelineWithoutSync,
];

/// The first bytes rustls sends on a new connection: a complete ClientHello record.
pub fn client_hello() -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    assert_eq!(hello[0], startup::TLS_HANDSHAKE_RECORD);
    hello
}

/// How the client leaves: a FIN, or a RST (SO_LINGER 0).
async fn vanish(rng: &mut StdRng, c: RawClient) {
    if rng.random_bool(0.5) {
        let _ = c.stream.set_zero_linger();
    }
    drop(c);
}

/// Closes at once, or first stalls for up to a second.
async fn close_or_stall(rng: &mut StdRng, c: RawClient) {
    if rng.random_bool(0.5) {
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..1000))).await;
    }
    vanish(rng, c).await;
}

/// Where a SCRAM login stops: after the StartupMessage, after reading the SASL offer, after
/// sending the client-first message, after reading the server-first, after sending the
/// client-final message, or never (`Done`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Startup,
    Offer,
    ClientFirst,
    ServerFirst,
    ClientFinal,
    Done,
}

const STEPS: [Step; 5] = [Step::Startup, Step::Offer, Step::ClientFirst, Step::ServerFirst, Step::ClientFinal];

/// The authentication request code of an 'R' message, if it is one.
fn auth_code(m: &Option<Msg>) -> Option<i32> {
    match m {
        Some((code, body)) if *code == backend::AUTHENTICATION && body.len() >= 4 => {
            Some(i32::from_be_bytes([body[0], body[1], body[2], body[3]]))
        }
        _ => None,
    }
}

/// Logs in with SCRAM up to `stop`: `Ok(Some(client))` after ReadyForQuery when `stop` is
/// `Done`, `Ok(None)` when abandoned on purpose, `Err(first ErrorResponse's SQLSTATE or
/// what was unexpected)` otherwise.
async fn scram_login(t: &Target, password: &str, stop: Step) -> Result<Option<RawClient>, String> {
    let mut c = RawClient::connect(t.addr).await;
    let params = [("user", t.user.as_str()), ("database", t.database.as_str())];
    c.send(&startup_packet(startup::PROTOCOL_3_0, &params)).await;
    if stop == Step::Startup {
        return Ok(None);
    }
    let offer = c.recv().await;
    if auth_code(&offer) != Some(auth::SASL) {
        return Err(unexpected("a SASL offer", &offer));
    }
    if stop == Step::Offer {
        return Ok(None);
    }
    let mut scram = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
    let mut buf = BytesMut::new();
    postgres_protocol::message::frontend::sasl_initial_response(SCRAM_SHA_256, scram.message(), &mut buf).unwrap();
    c.send(&buf).await;
    if stop == Step::ClientFirst {
        return Ok(None);
    }
    let server_first = c.recv().await;
    if auth_code(&server_first) != Some(auth::SASL_CONTINUE) {
        return Err(unexpected("SASL continue", &server_first));
    }
    let body = server_first.map(|m| m.1).unwrap_or_default();
    scram.update(&body[4..]).map_err(|e| e.to_string())?;
    if stop == Step::ServerFirst {
        return Ok(None);
    }
    buf.clear();
    postgres_protocol::message::frontend::sasl_response(scram.message(), &mut buf).unwrap();
    c.send(&buf).await;
    if stop == Step::ClientFinal {
        return Ok(None);
    }
    let server_final = c.recv().await;
    if auth_code(&server_final) != Some(auth::SASL_FINAL) {
        return Err(unexpected("SASL final", &server_final));
    }
    for (code, body) in c.until_ready().await {
        if code == backend::ERROR_RESPONSE {
            return Err(error_code(&body));
        }
    }
    Ok(Some(c))
}

fn unexpected(wanted: &str, got: &Option<Msg>) -> String {
    match got {
        Some((code, body)) if *code == backend::ERROR_RESPONSE => error_code(body),
        Some((code, _)) => format!("{} instead of {wanted}", *code as char),
        None => format!("closed instead of {wanted}"),
    }
}

/// Logs in completely; `None` (and a note in `failures`) if that did not work.
async fn logged_in(t: &Target) -> Result<RawClient, String> {
    match scram_login(t, &t.password, Step::Done).await? {
        Some(c) => Ok(c),
        None => Err("abandoned".into()),
    }
}

/// Sends one simple query and reads its answer; Err with the SQLSTATE of an error.
async fn run(c: &mut RawClient, sql: &str) -> Result<(), String> {
    c.send(&query(sql)).await;
    let answer = c.until_ready().await;
    match answer.iter().find(|m| m.0 == backend::ERROR_RESPONSE) {
        Some((_, body)) => Err(error_code(body)),
        None if answer.last().map(|m| m.0) == Some(backend::READY_FOR_QUERY) => Ok(()),
        None => Err("closed".into()),
    }
}

/// The delta a misbehaviour writes: the well-behaved write at most 5000, so a committed
/// row of a misbehaving client shows, and says which misbehaviour wrote it.
pub fn doomed_delta(behaviour: Behaviour) -> i32 {
    1_000_000 + behaviour as i32
}

/// A write this client's leaving must roll back: one account and one history row.
fn doomed_write(rng: &mut StdRng, behaviour: Behaviour) -> String {
    let aid = rng.random_range(1..=crate::ACCOUNTS);
    let delta = doomed_delta(behaviour);
    format!(
        "UPDATE chaos_accounts SET abalance = abalance + {delta} WHERE aid = {aid}; \
         INSERT INTO chaos_history (aid, delta) VALUES ({aid}, {delta})"
    )
}

/// Runs one misbehaviour. Err only for what pgate got wrong from this client's side: a
/// login that should have worked and did not, or a wrong password not refused with 28P01.
pub async fn misbehave(t: &Target, rng: &mut StdRng, behaviour: Behaviour) -> Result<(), String> {
    match behaviour {
        Behaviour::RandomBytes => {
            let mut c = RawClient::connect(t.addr).await;
            let n = rng.random_range(1..512);
            let bytes: Vec<u8> = (0..n).map(|_| rng.random()).collect();
            let _ = c.stream.write_all(&bytes).await;
            close_or_stall(rng, c).await;
        }
        Behaviour::HalfStartup => {
            let mut c = RawClient::connect(t.addr).await;
            let packet = startup_packet(startup::PROTOCOL_3_0, &[("user", &t.user), ("database", &t.database)]);
            let _ = c.stream.write_all(&packet[..rng.random_range(1..packet.len())]).await;
            close_or_stall(rng, c).await;
        }
        Behaviour::ScramAbandoned => {
            let stop = STEPS[rng.random_range(0..STEPS.len())];
            if let Some(c) = scram_login(t, &t.password, stop).await? {
                vanish(rng, c).await;
            }
        }
        Behaviour::WrongPassword => match scram_login(t, "not-the-password", Step::Done).await {
            Err(code) if code == "28P01" => {}
            Err(other) => return Err(format!("wrong password: {other}")),
            Ok(_) => return Err("a wrong password got in".into()),
        },
        Behaviour::VanishInTransaction => {
            let mut c = logged_in(t).await?;
            run(&mut c, "BEGIN").await?;
            run(&mut c, &doomed_write(rng, behaviour)).await?;
            vanish(rng, c).await;
        }
        Behaviour::VanishMidQuery => {
            let mut c = logged_in(t).await?;
            let sleep = "SELECT pg_sleep(0.5)";
            // Without BEGIN, no write: PostgreSQL runs a Query it received to its end and
            // commits it, whether its client is still there or not.
            if rng.random_bool(0.7) {
                run(&mut c, "BEGIN").await?;
                run(&mut c, &doomed_write(rng, behaviour)).await?;
            }
            c.send(&query(sleep)).await;
            tokio::time::sleep(Duration::from_millis(rng.random_range(20..400))).await;
            vanish(rng, c).await;
        }
        Behaviour::TerminateInTransaction => {
            let mut c = logged_in(t).await?;
            run(&mut c, "BEGIN").await?;
            run(&mut c, &doomed_write(rng, behaviour)).await?;
            c.send(&message(frontend::TERMINATE, &[])).await;
            let _ = c.closed().await;
        }
        Behaviour::HalfFrameAfterLogin => {
            let mut c = logged_in(t).await?;
            if rng.random_bool(0.5) {
                run(&mut c, "BEGIN").await?;
                run(&mut c, &doomed_write(rng, behaviour)).await?;
            }
            let frame = query(&doomed_write(rng, behaviour));
            let _ = c.stream.write_all(&frame[..rng.random_range(1..frame.len())]).await;
            close_or_stall(rng, c).await;
        }
        Behaviour::WrongCancelKey => {
            let mut c = RawClient::connect(t.addr).await;
            c.send(&cancel_packet(rng.random(), rng.random())).await;
            let _ = c.closed().await;
        }
        Behaviour::TlsCut => {
            let mut c = RawClient::connect(t.addr).await;
            let mut request = 8i32.to_be_bytes().to_vec();
            request.extend_from_slice(&startup::SSL_REQUEST.to_be_bytes());
            c.send(&request).await;
            if c.recv_byte().await != startup::ACCEPT {
                return Err("pgate refused TLS".into());
            }
            let cut = if rng.random_bool(0.7) {
                t.client_hello[..rng.random_range(1..t.client_hello.len())].to_vec()
            } else {
                let mut garbage = vec![startup::TLS_HANDSHAKE_RECORD];
                garbage.extend((0..rng.random_range(1..300)).map(|_| rng.random::<u8>()));
                garbage
            };
            let _ = c.stream.write_all(&cut).await;
            close_or_stall(rng, c).await;
        }
        Behaviour::PipelineWithoutSync => {
            let mut c = logged_in(t).await?;
            let aid = rng.random_range(1..=crate::ACCOUNTS).to_string();
            let insert =
                format!("INSERT INTO chaos_history (aid, delta) VALUES ($1::int, {})", doomed_delta(behaviour));
            let mut pipeline = parse("", &insert);
            for _ in 0..rng.random_range(1..5) {
                pipeline.extend(bind("", "", &[&aid]));
                pipeline.extend(execute("", 0));
            }
            if rng.random_bool(0.5) {
                pipeline.extend(flush());
            }
            c.send(&pipeline).await;
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..200))).await;
            vanish(rng, c).await;
        }
    }
    Ok(())
}
