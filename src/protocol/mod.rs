//! The PostgreSQL wire protocol as pgate needs it: named codes, header-only framing,
//! startup packets, and the few messages pgate builds or inspects.

pub mod codes;
pub mod extended;
pub mod frame;
pub mod messages;
mod reader;
pub mod startup;

pub use frame::{Frame, FrameScanner, Interest, Scan};
pub use reader::BodyReader;
pub use startup::{CancelKey, StartupMessage, StartupPacket};

/// A peer sent bytes that are not the protocol, or pgate could not encode a message.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("invalid length {len} for message type {:?} (limit {max})", *code as char)]
    InvalidLength { code: u8, len: usize, max: usize },
    #[error("invalid startup packet length {0} (must be 8 to 10000 bytes)")]
    BadStartupLength(usize),
    #[error("unsupported frontend protocol {major}.{minor}: pgate supports 3.0")]
    UnsupportedProtocol { major: u16, minor: u16 },
    #[error("invalid startup packet layout: {0}")]
    MalformedStartup(String),
    #[error("{what} is truncated")]
    Truncated { what: &'static str },
    #[error("{what} has bytes after its last field")]
    TrailingBytes { what: &'static str },
    #[error("{what} is not valid UTF-8")]
    NotUtf8 { what: &'static str },
    #[error("malformed {what}")]
    MalformedMessage { what: &'static str },
    #[error("unexpected message type {:?} {during}", *code as char)]
    Unexpected { code: u8, during: &'static str },
    #[error("cannot encode message: {0}")]
    Encode(String),
}
