//! The in-process layer: mutated streams through pgate's frame scanner and every decoder of
//! peer bytes (startup packets, login messages, extended-protocol bodies, server replies),
//! SCRAM message parsing, startup settings and the SQL classifier. Errors are fine; a panic
//! fails the test (with the seed and case to replay), as does a scanner that disagrees with
//! the frame splitter.

use bytes::BytesMut;
use pgate::auth::{passthrough, scram};
use pgate::config::ScramVerifier;
use pgate::protocol::codes::frontend::*;
use pgate::protocol::{Interest, Scan, extended, frame, messages, startup};

use super::generate::{Gen, Piece};

/// What one case exercised, summed over a run (to show the run reached every decoder).
#[derive(Debug, Default)]
pub struct Reached {
    pub frames: u64,
    pub decoded_ok: u64,
    pub classified: u64,
    pub startup_packets: u64,
    pub scram: u64,
}

/// The decoders a frame of `code` may reach in pgate, frontend and backend alike (the
/// same byte means different messages on the two sides, and both are peer input).
fn decode_frame(code: u8, body: &[u8], g: &mut Gen, reached: &mut Reached) {
    let ok = |r: bool, reached: &mut Reached| reached.decoded_ok += u64::from(r);
    match code {
        QUERY => {
            if let Ok(text) = std::str::from_utf8(body.strip_suffix(&[0]).unwrap_or(body)) {
                classify(text, g, reached);
            }
            ok(!pgate::sql::effects(body).any(), reached);
        }
        PARSE => {
            if let Ok(p) = extended::decode_parse(body) {
                ok(true, reached);
                let _ = pgate::sql::effects(p.query);
                if let Ok(text) = std::str::from_utf8(p.query) {
                    classify(text, g, reached);
                }
            }
        }
        BIND => {
            if let Ok(b) = extended::decode_bind(body) {
                ok(extended::bind_parameters(b.rest).is_ok(), reached);
            }
        }
        EXECUTE => ok(extended::decode_execute(body).is_ok(), reached),
        DESCRIBE | CLOSE => ok(extended::decode_target(body, "Describe").is_ok(), reached),
        PASSWORD => {
            ok(messages::decode_password(body).is_ok(), reached);
            if let Ok((mechanism, data)) = messages::decode_sasl_initial_response(body) {
                ok(true, reached);
                scram_exchange(&mechanism, data, body, reached);
            }
        }
        _ => {}
    }
    // Server-side decoders on the same bytes.
    let _ = messages::ErrorFields::decode(body);
    let _ = messages::AuthRequest::decode(body);
    let _ = messages::decode_parameter_status(body);
    let _ = messages::decode_backend_key_data(body);
    let _ = messages::decode_ready_for_query(body);
    let _ = extended::decode_data_row(body);
    let _ = extended::rewrite_error(code, body, |t| t.replace("pgate_s", "s"));
    if let Ok(text) = std::str::from_utf8(body) {
        let _ = passthrough::parse_server_first(text);
        let _ = passthrough::recover_client_key("n=,r=abc", text, text, &[0; 32]);
    }
}

/// Statement classification costs up to milliseconds in a debug build; a fixed share of
/// the texts is classified, the rest only lexed (`effects`).
fn classify(text: &str, g: &mut Gen, reached: &mut Reached) {
    if g.chance(0.1) {
        let _ = pgate::sql::classify::classify(text);
        reached.classified += 1;
    }
}

/// One SCRAM verifier for the whole run: deriving one costs 4096 PBKDF2 rounds.
fn verifier() -> &'static ScramVerifier {
    static V: std::sync::OnceLock<ScramVerifier> = std::sync::OnceLock::new();
    V.get_or_init(|| ScramVerifier::from_password("fuzz"))
}

/// The server side of SCRAM on a mutated client-first, then on a mutated client-final.
fn scram_exchange(mechanism: &str, client_first: &[u8], garbage: &[u8], reached: &mut Reached) {
    reached.scram += 1;
    if let Ok((exchange, server_first)) = scram::ScramExchange::start(verifier(), "u", mechanism, client_first, None) {
        let nonce = server_first.split(',').next().unwrap_or_default();
        let mut client_final = format!("c=biws,{nonce},p=").into_bytes();
        client_final.extend_from_slice(garbage);
        let _ = exchange.finish_with_key(&client_final);
    }
}

/// A login-phase case: startup packets the way the handshake reads them, then the
/// messages that follow as frames.
pub fn startup_case(g: &mut Gen, pieces: &[Piece], reached: &mut Reached) {
    let stream: Vec<u8> = pieces.concat();
    let mut rest = &stream[..];
    while rest.len() >= 4 {
        let Ok(len) = startup::body_len([rest[0], rest[1], rest[2], rest[3]]) else { return };
        let Some(body) = rest.get(4..4 + len) else { return };
        reached.startup_packets += 1;
        match startup::parse(body) {
            Ok(pgate::protocol::StartupPacket::Startup(m)) => {
                let _ = pgate::params::from_startup(m.params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                let _ = m.protocol_options();
                let writes = g.split(&[rest[4 + len..].to_vec()]);
                return session_case(g, &writes, reached);
            }
            Ok(_) => rest = &rest[4 + len..],
            Err(_) => return,
        }
    }
}

/// A session-phase case: the writes through a [`pgate::protocol::FrameScanner`] as the
/// relay drives it, each whole frame decoded; the frames it reports must be the frames
/// `split_frame` cuts from the same bytes.
pub fn session_case(g: &mut Gen, writes: &[Vec<u8>], reached: &mut Reached) {
    let interest = |code: u8| match code {
        QUERY | PARSE | BIND | DESCRIBE | CLOSE | EXECUTE | FUNCTION_CALL | PASSWORD => Interest::Whole,
        COPY_DATA => Interest::None,
        _ => Interest::Header,
    };
    let mut scanner = frame::FrameScanner::new(frame::MAX_FRAME_LEN);
    let mut pending: Vec<u8> = Vec::new();
    let mut seen: Vec<(u8, usize)> = Vec::new();
    let mut failed = false;
    'writes: for write in writes {
        pending.extend_from_slice(write);
        loop {
            match scanner.next(&pending, interest) {
                Ok(Scan::Pass(n)) => drop(pending.drain(..n)),
                Ok(Scan::Header { code, total }) => seen.push((code, total)),
                Ok(Scan::Whole { code, total }) => {
                    seen.push((code, total));
                    let frame: Vec<u8> = pending.drain(..total).collect();
                    reached.frames += 1;
                    decode_frame(code, &frame[frame::HEADER_LEN..], g, reached);
                }
                Ok(Scan::NeedMore) => break,
                Err(_) => {
                    failed = true;
                    break 'writes;
                }
            }
        }
    }
    let mut whole = BytesMut::from(&writes.concat()[..]);
    let mut split = Vec::new();
    let split_failed = loop {
        match frame::split_frame(&mut whole, frame::MAX_FRAME_LEN) {
            Ok(Some(f)) => split.push((f.code, f.body.len() + frame::HEADER_LEN)),
            Ok(None) => break false,
            Err(_) => break true,
        }
    };
    // The scanner reports blind ('d') frames not at all, and a frame whose header arrived
    // but whose body did not; compare what both saw whole.
    let seen: Vec<_> = seen.into_iter().filter(|(c, _)| *c != COPY_DATA).collect();
    let split: Vec<_> = split.into_iter().filter(|(c, _)| *c != COPY_DATA).collect();
    // A frame whose header arrived but whose body did not is seen by the scanner only.
    let agree = seen == split || (seen.len() == split.len() + 1 && seen.starts_with(&split));
    assert!(agree, "scanner saw {seen:?}, split_frame {split:?}");
    assert_eq!(failed, split_failed, "scanner and split_frame disagree on an invalid header");
}
