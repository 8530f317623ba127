//! A scripted server: speaks just enough of the backend protocol for pgate (startup,
//! simple and extended queries, Sync, Terminate) and, while `chaos` is on, misbehaves on
//! purpose per connection: errors for everything, garbage bytes, hanging up mid-request,
//! slow replies, or a reply that never comes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::generate::message;

const SSL_REQUEST: i32 = (1234 << 16) | 5679;
const CANCEL_REQUEST: i32 = (1234 << 16) | 5678;

#[derive(Debug, Clone, Copy)]
enum Script {
    Faithful,
    ErrorsOnly,
    Garbage,
    HangUp,
    Slow,
    Stall,
}

/// The server's shared state, for the test's checks.
#[derive(Default)]
pub struct Scripted {
    /// Misbehave (on connections' next requests); off: answer faithfully.
    pub chaos: AtomicBool,
    /// Server connections open now (startup done, not closed).
    pub open: AtomicUsize,
    pub accepted: AtomicUsize,
}

impl Scripted {
    /// Listens on a free port; serves until the runtime ends.
    pub async fn start(seed: u64) -> (Arc<Scripted>, u16) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Scripted::default());
        state.chaos.store(true, Ordering::SeqCst);
        let shared = state.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            while let Ok((stream, _)) = listener.accept().await {
                n += 1;
                let rng = StdRng::seed_from_u64(seed ^ n);
                tokio::spawn(serve(stream, shared.clone(), rng));
            }
        });
        (state, port)
    }
}

struct Conn {
    stream: TcpStream,
    buf: BytesMut,
}

impl Conn {
    /// One length-prefixed startup packet's version code; `None` on EOF.
    async fn startup(&mut self) -> Option<i32> {
        let len = loop {
            if self.buf.len() >= 4 {
                let len = i32::from_be_bytes(self.buf[..4].try_into().ok()?) as usize;
                if self.buf.len() >= len {
                    break len;
                }
            }
            if self.stream.read_buf(&mut self.buf).await.ok()? == 0 {
                return None;
            }
        };
        let code = i32::from_be_bytes(self.buf[4..8].try_into().ok()?);
        self.buf.advance(len);
        Some(code)
    }

    /// One message's code and body; `None` on EOF or a frame this server cannot read.
    async fn message(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if self.buf.len() >= 5 {
                let len = i32::from_be_bytes(self.buf[1..5].try_into().ok()?);
                let len = usize::try_from(len).ok().filter(|l| *l >= 4)?;
                if self.buf.len() > len {
                    let code = self.buf[0];
                    self.buf.advance(5);
                    return Some((code, self.buf.split_to(len - 4).to_vec()));
                }
            }
            if self.stream.read_buf(&mut self.buf).await.ok()? == 0 {
                return None;
            }
        }
    }
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn error() -> Vec<u8> {
    let mut body = Vec::new();
    for (field, value) in [(b'S', "ERROR"), (b'V', "ERROR"), (b'C', "42000"), (b'M', "scripted error")] {
        body.push(field);
        body.extend(cstr(value));
    }
    body.push(0);
    message(b'E', &body)
}

fn greeting() -> Vec<u8> {
    let mut out = message(b'R', &0i32.to_be_bytes());
    for (k, v) in [("server_version", "15.0"), ("client_encoding", "UTF8"), ("DateStyle", "ISO, MDY")] {
        out.extend(message(b'S', &[cstr(k), cstr(v)].concat()));
    }
    out.extend(message(b'K', &[7i32.to_be_bytes(), 9i32.to_be_bytes()].concat()));
    out.extend(message(b'Z', b"I"));
    out
}

/// The text of `SELECT '...'`, if the query is just that.
fn quoted_literal(query: &[u8]) -> Option<&[u8]> {
    let rest = query.strip_prefix(b"SELECT '")?;
    let end = rest.iter().position(|&b| b == b'\'')?;
    Some(&rest[..end])
}

/// A RowDescription of one text column.
fn one_text_column() -> Vec<u8> {
    let mut body = 1i16.to_be_bytes().to_vec();
    body.extend(cstr("?column?"));
    body.extend(0i32.to_be_bytes()); // table
    body.extend(0i16.to_be_bytes()); // column
    body.extend(25i32.to_be_bytes()); // text
    body.extend((-1i16).to_be_bytes()); // variable length
    body.extend((-1i32).to_be_bytes()); // no modifier
    body.extend(0i16.to_be_bytes()); // text format
    message(b'T', &body)
}

fn data_row(value: &[u8]) -> Vec<u8> {
    let mut body = 1i16.to_be_bytes().to_vec();
    body.extend((value.len() as i32).to_be_bytes());
    body.extend_from_slice(value);
    message(b'D', &body)
}

/// The faithful answer to one message; `None` for a Terminate.
fn answer(code: u8, body: &[u8], failed: &mut bool) -> Option<Vec<u8>> {
    let done = |tag: &str| message(b'C', &cstr(tag));
    let skip = *failed && !matches!(code, b'S' | b'Q' | b'F');
    Some(match code {
        b'X' => return None,
        _ if skip => Vec::new(),
        b'Q' if body.iter().all(|&b| b == 0 || b == b' ') => [message(b'I', &[]), message(b'Z', b"I")].concat(),
        b'Q' => match quoted_literal(body) {
            // `SELECT 'text'`: one row with that text (pgate's marker query, among others).
            Some(text) => [one_text_column(), data_row(text), done("SELECT 1"), message(b'Z', b"I")].concat(),
            None => [done("SELECT 0"), message(b'Z', b"I")].concat(),
        },
        b'F' => [error(), message(b'Z', b"I")].concat(),
        b'P' => message(b'1', &[]),
        b'B' => message(b'2', &[]),
        b'D' if body.first() == Some(&b'S') => [message(b't', &[0, 0]), message(b'n', &[])].concat(),
        b'D' => message(b'n', &[]),
        b'E' => done("SELECT 0"),
        b'C' => message(b'3', &[]),
        b'S' => {
            *failed = false;
            message(b'Z', b"I")
        }
        // Flush, and copy messages outside a copy: nothing to say.
        _ => Vec::new(),
    })
}

async fn serve(stream: TcpStream, state: Arc<Scripted>, mut rng: StdRng) {
    state.accepted.fetch_add(1, Ordering::SeqCst);
    let mut c = Conn { stream, buf: BytesMut::new() };
    let mut code = c.startup().await;
    if code == Some(SSL_REQUEST) {
        if c.stream.write_all(b"N").await.is_err() {
            return;
        }
        code = c.startup().await;
    }
    if code.is_none() || code == Some(CANCEL_REQUEST) {
        return;
    }
    if c.stream.write_all(&greeting()).await.is_err() {
        return;
    }
    state.open.fetch_add(1, Ordering::SeqCst);
    let script = match rng.random_range(0..10) {
        0 => Script::ErrorsOnly,
        1 => Script::Garbage,
        2 => Script::HangUp,
        3 => Script::Slow,
        4 => Script::Stall,
        _ => Script::Faithful,
    };
    let mut failed = false;
    while let Some((code, body)) = c.message().await {
        let chaos = state.chaos.load(Ordering::SeqCst) && rng.random_bool(0.3);
        let reply = match (chaos, script) {
            (false, _) | (true, Script::Faithful) => answer(code, &body, &mut failed),
            (true, Script::ErrorsOnly) if !failed && code != b'S' => {
                failed = !matches!(code, b'Q' | b'F');
                let ready = if failed { Vec::new() } else { message(b'Z', b"I") };
                Some([error(), ready].concat())
            }
            (true, Script::ErrorsOnly) => answer(code, &body, &mut failed),
            (true, Script::Garbage) => {
                let n = rng.random_range(1..64);
                let junk: Vec<u8> = (0..n).map(|_| rng.random()).collect();
                let _ = c.stream.write_all(&junk).await;
                break;
            }
            (true, Script::HangUp) => break,
            (true, Script::Slow) => {
                tokio::time::sleep(Duration::from_millis(rng.random_range(1..50))).await;
                answer(code, &body, &mut failed)
            }
            (true, Script::Stall) => {
                // Never answers again; pgate must still end its client's connection.
                while c.message().await.is_some() {}
                break;
            }
        };
        let Some(reply) = reply else { break };
        if !reply.is_empty() && c.stream.write_all(&reply).await.is_err() {
            break;
        }
    }
    state.open.fetch_sub(1, Ordering::SeqCst);
}
