//! A raw protocol client for the cases real drivers cannot produce: malformed packets,
//! cancel keys, login stalls. Logs in only as a trusted user (no password exchange).

use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct RawClient {
    pub stream: TcpStream,
    buf: BytesMut,
    pub pid: i32,
    pub secret: i32,
}

/// One backend message: type byte and body.
pub type Msg = (u8, Vec<u8>);

pub fn startup_packet(version: i32, params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = BytesMut::new();
    body.put_i32(version);
    for (k, v) in params {
        body.put_slice(k.as_bytes());
        body.put_u8(0);
        body.put_slice(v.as_bytes());
        body.put_u8(0);
    }
    body.put_u8(0);
    let mut packet = BytesMut::new();
    packet.put_i32(body.len() as i32 + 4);
    packet.put_slice(&body);
    packet.to_vec()
}

pub fn message(code: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![code];
    m.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

pub fn query(sql: &str) -> Vec<u8> {
    let mut body = sql.as_bytes().to_vec();
    body.push(0);
    message(b'Q', &body)
}

pub fn cancel_packet(pid: i32, secret: i32) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&16i32.to_be_bytes());
    p.extend_from_slice(&((1234 << 16) | 5678i32).to_be_bytes());
    p.extend_from_slice(&pid.to_be_bytes());
    p.extend_from_slice(&secret.to_be_bytes());
    p
}

/// The fields of an ErrorResponse body: (field type, value).
pub fn error_fields(body: &[u8]) -> Vec<(u8, String)> {
    let mut out = Vec::new();
    let mut rest = body;
    while let Some((&t, tail)) = rest.split_first() {
        if t == 0 {
            break;
        }
        let end = tail.iter().position(|&b| b == 0).unwrap();
        out.push((t, String::from_utf8_lossy(&tail[..end]).into_owned()));
        rest = &tail[end + 1..];
    }
    out
}

pub fn error_code(body: &[u8]) -> String {
    error_fields(body).into_iter().find(|(t, _)| *t == b'C').map(|(_, v)| v).unwrap_or_default()
}

impl RawClient {
    pub async fn connect(addr: std::net::SocketAddr) -> RawClient {
        RawClient { stream: TcpStream::connect(addr).await.unwrap(), buf: BytesMut::new(), pid: 0, secret: 0 }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Reads one message; `None` on EOF (also when the connection is reset).
    pub async fn recv(&mut self) -> Option<Msg> {
        loop {
            if self.buf.len() >= 5 {
                let len = i32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
                if self.buf.len() > len {
                    let code = self.buf[0];
                    self.buf.advance(5);
                    let body = self.buf.split_to(len - 4).to_vec();
                    return Some((code, body));
                }
            }
            match tokio::time::timeout(Duration::from_secs(10), self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return None,
                Ok(Ok(_)) => {}
                Err(_) => panic!("no message within 10s"),
            }
        }
    }

    /// Reads one raw byte (the answer to SSLRequest / GSSENCRequest).
    pub async fn recv_byte(&mut self) -> u8 {
        let mut b = [0u8; 1];
        self.stream.read_exact(&mut b).await.unwrap();
        b[0]
    }

    /// Reads messages up to and including ReadyForQuery (or EOF).
    pub async fn until_ready(&mut self) -> Vec<Msg> {
        let mut out = Vec::new();
        while let Some(m) = self.recv().await {
            let done = m.0 == b'Z';
            out.push(m);
            if done {
                break;
            }
        }
        out
    }

    /// True when the peer closed the connection (after draining what it sent).
    pub async fn closed(&mut self) -> bool {
        tokio::time::timeout(Duration::from_secs(10), async { while self.recv().await.is_some() {} }).await.is_ok()
    }

    /// Logs in as a user pgate trusts (no password exchange); remembers the cancel key.
    pub async fn login_trusted(addr: std::net::SocketAddr, user: &str, db: &str) -> RawClient {
        let mut c = RawClient::connect(addr).await;
        c.send(&startup_packet(3 << 16, &[("user", user), ("database", db)])).await;
        for (code, body) in c.until_ready().await {
            match code {
                b'K' => {
                    c.pid = i32::from_be_bytes(body[0..4].try_into().unwrap());
                    c.secret = i32::from_be_bytes(body[4..8].try_into().unwrap());
                }
                b'E' => panic!("login failed: {:?}", error_fields(&body)),
                _ => {}
            }
        }
        c
    }
}

pub fn parse(name: &str, sql: &str) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(name.as_bytes());
    body.push(0);
    body.extend_from_slice(sql.as_bytes());
    body.push(0);
    body.extend_from_slice(&0i16.to_be_bytes());
    message(b'P', &body)
}

/// Bind with text parameters and text results.
pub fn bind(portal: &str, statement: &str, params: &[&str]) -> Vec<u8> {
    let mut body = Vec::new();
    for name in [portal, statement] {
        body.extend_from_slice(name.as_bytes());
        body.push(0);
    }
    body.extend_from_slice(&0i16.to_be_bytes());
    body.extend_from_slice(&(params.len() as i16).to_be_bytes());
    for p in params {
        body.extend_from_slice(&(p.len() as i32).to_be_bytes());
        body.extend_from_slice(p.as_bytes());
    }
    body.extend_from_slice(&0i16.to_be_bytes());
    message(b'B', &body)
}

pub fn execute(portal: &str, max_rows: i32) -> Vec<u8> {
    let mut body = portal.as_bytes().to_vec();
    body.push(0);
    body.extend_from_slice(&max_rows.to_be_bytes());
    message(b'E', &body)
}

pub fn describe(kind: u8, name: &str) -> Vec<u8> {
    let mut body = vec![kind];
    body.extend_from_slice(name.as_bytes());
    body.push(0);
    message(b'D', &body)
}

pub fn close(kind: u8, name: &str) -> Vec<u8> {
    let mut body = vec![kind];
    body.extend_from_slice(name.as_bytes());
    body.push(0);
    message(b'C', &body)
}

pub fn sync() -> Vec<u8> {
    message(b'S', &[])
}

pub fn flush() -> Vec<u8> {
    message(b'H', &[])
}

/// The type bytes of some messages, as a string ("12CZ"), for order checks.
pub fn codes(msgs: &[Msg]) -> String {
    msgs.iter().map(|m| m.0 as char).collect()
}

/// The first column of every DataRow, as text.
pub fn first_column(msgs: &[Msg]) -> Vec<String> {
    msgs.iter()
        .filter(|m| m.0 == b'D')
        .map(|(_, body)| {
            let len = i32::from_be_bytes(body[2..6].try_into().unwrap());
            if len < 0 {
                String::from("NULL")
            } else {
                String::from_utf8_lossy(&body[6..6 + len as usize]).into_owned()
            }
        })
        .collect()
}

impl RawClient {
    /// Reads messages up to and including the `n`th ReadyForQuery.
    pub async fn until_ready_n(&mut self, n: usize) -> Vec<Msg> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.extend(self.until_ready().await);
        }
        out
    }
}
