//! Startup-phase packets from clients: SSLRequest, GSSENCRequest, CancelRequest and
//! StartupMessage, parsed strictly (length, version, NUL-terminated pairs, UTF-8).

use super::codes::startup as code;
use super::{BodyReader, ProtocolError};

/// PostgreSQL's limit for a startup packet (MAX_STARTUP_PACKET_LENGTH).
pub const MAX_STARTUP_PACKET: usize = 10_000;

/// A cancel key: the process id and secret handed out in BackendKeyData.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CancelKey {
    pub pid: i32,
    pub secret: i32,
}

/// A StartupMessage: the minor version the client asked for and its parameters in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartupMessage {
    pub minor_version: u16,
    pub params: Vec<(String, String)>,
}

impl StartupMessage {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// `_pq_.*` names are protocol extensions this proxy does not implement.
    pub fn protocol_options(&self) -> Vec<String> {
        self.params.iter().filter(|(k, _)| k.starts_with("_pq_.")).map(|(k, _)| k.clone()).collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupPacket {
    SslRequest,
    GssEncRequest,
    Cancel(CancelKey),
    Startup(StartupMessage),
}

/// Checks the length word that opens a startup packet; returns the body length.
pub fn body_len(length_word: [u8; 4]) -> Result<usize, ProtocolError> {
    let len = u32::from_be_bytes(length_word) as usize;
    if !(8..=MAX_STARTUP_PACKET).contains(&len) {
        return Err(ProtocolError::BadStartupLength(len));
    }
    Ok(len - 4)
}

/// Parses the body of a startup packet (everything after the length word).
pub fn parse(body: &[u8]) -> Result<StartupPacket, ProtocolError> {
    let mut r = BodyReader::new(body, "startup packet");
    let version = r.i32()?;
    let packet = match version {
        code::SSL_REQUEST => StartupPacket::SslRequest,
        code::GSSENC_REQUEST => StartupPacket::GssEncRequest,
        code::CANCEL_REQUEST => StartupPacket::Cancel(CancelKey { pid: r.i32()?, secret: r.i32()? }),
        v if v >> 16 == 3 => return parse_startup(r, (v & 0xffff) as u16),
        v => {
            return Err(ProtocolError::UnsupportedProtocol { major: (v >> 16) as u16, minor: (v & 0xffff) as u16 });
        }
    };
    r.finish()?;
    Ok(packet)
}

fn parse_startup(mut r: BodyReader<'_>, minor_version: u16) -> Result<StartupPacket, ProtocolError> {
    let mut params = Vec::new();
    loop {
        let name = r.string()?;
        if name.is_empty() {
            break;
        }
        let value = r.string()?;
        if params.iter().any(|(k, _)| *k == name) {
            return Err(ProtocolError::MalformedStartup(format!("parameter \"{name}\" is given twice")));
        }
        params.push((name, value));
    }
    r.finish()?;
    Ok(StartupPacket::Startup(StartupMessage { minor_version, params }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn startup_body(pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut b = code::PROTOCOL_3_0.to_be_bytes().to_vec();
        for (k, v) in pairs {
            b.extend_from_slice(k.as_bytes());
            b.push(0);
            b.extend_from_slice(v.as_bytes());
            b.push(0);
        }
        b.push(0);
        b
    }

    #[test]
    fn parses_a_startup_message() {
        let body = startup_body(&[("user", "alice"), ("database", "akko")]);
        let StartupPacket::Startup(m) = parse(&body).unwrap() else { panic!() };
        assert_eq!(m.get("user"), Some("alice"));
        assert_eq!(m.get("database"), Some("akko"));
        assert_eq!(m.minor_version, 0);
    }

    #[test]
    fn rejects_missing_terminator_and_trailing_bytes() {
        let mut body = startup_body(&[("user", "alice")]);
        body.pop();
        assert!(parse(&body).is_err());
        let mut body = startup_body(&[("user", "alice")]);
        body.push(b'x');
        assert!(parse(&body).is_err());
    }

    #[test]
    fn recognises_requests_and_rejects_old_protocols() {
        assert_eq!(parse(&code::SSL_REQUEST.to_be_bytes()).unwrap(), StartupPacket::SslRequest);
        assert_eq!(parse(&code::GSSENC_REQUEST.to_be_bytes()).unwrap(), StartupPacket::GssEncRequest);
        let mut cancel = code::CANCEL_REQUEST.to_be_bytes().to_vec();
        cancel.extend_from_slice(&7i32.to_be_bytes());
        cancel.extend_from_slice(&9i32.to_be_bytes());
        assert_eq!(parse(&cancel).unwrap(), StartupPacket::Cancel(CancelKey { pid: 7, secret: 9 }));
        assert!(matches!(parse(&(2i32 << 16).to_be_bytes()), Err(ProtocolError::UnsupportedProtocol { major: 2, .. })));
    }

    #[test]
    fn length_word_is_bounded() {
        assert!(body_len(7u32.to_be_bytes()).is_err());
        assert!(body_len(10_001u32.to_be_bytes()).is_err());
        assert_eq!(body_len(8u32.to_be_bytes()).unwrap(), 4);
    }
}
