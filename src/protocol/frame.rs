//! Header-only framing: find message boundaries in a byte stream without decoding bodies.
//!
//! Every message after startup is `code:u8, length:i32 (includes itself), body`. The relay
//! only needs the boundaries and the codes; bodies are decoded only for the few codes a
//! caller declares interest in, so DataRows stream through untouched.

use bytes::{Bytes, BytesMut};

use super::ProtocolError;

/// Type byte plus length field.
pub const HEADER_LEN: usize = 5;

/// PostgreSQL's own ceiling for a message (MaxAllocSize, 1 GiB).
pub const MAX_FRAME_LEN: usize = 0x3fff_ffff;

/// One whole message: its type byte and its body (length field stripped).
#[derive(Debug, Clone)]
pub struct Frame {
    pub code: u8,
    pub body: Bytes,
}

/// Reads the header at the start of `buf`: the type byte and the frame's total length
/// (type byte, length field and body). `None` while fewer than five bytes are present.
pub fn peek_header(buf: &[u8], max_len: usize) -> Result<Option<(u8, usize)>, ProtocolError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let code = buf[0];
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if len < 4 || len > max_len {
        return Err(ProtocolError::InvalidLength { code, len, max: max_len });
    }
    Ok(Some((code, len + 1)))
}

/// Splits one whole frame off the front of `buf`, or returns `None` until it has arrived.
pub fn split_frame(buf: &mut BytesMut, max_len: usize) -> Result<Option<Frame>, ProtocolError> {
    let Some((code, total)) = peek_header(buf, max_len)? else {
        return Ok(None);
    };
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    let mut frame = buf.split_to(total);
    let body = frame.split_off(HEADER_LEN).freeze();
    Ok(Some(Frame { code, body }))
}

/// How much of a frame a caller needs to see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    /// Relay it blind.
    None,
    /// Report its type and length, then relay the body blind (it may not have arrived yet).
    Header,
    /// Report it only once the whole frame is buffered; the caller consumes it.
    Whole,
}

/// What the scanner found at the front of the unconsumed bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// This many bytes need no inspection: relay them.
    Pass(usize),
    /// A frame with `Interest::Header`; its bytes follow as `Pass`.
    Header { code: u8, total: usize },
    /// A whole frame with `Interest::Whole` of `total` bytes is at the front; the caller
    /// must consume exactly those bytes (relay or drop them).
    Whole { code: u8, total: usize },
    /// Nothing more can be said until more bytes arrive.
    NeedMore,
}

/// Walks a stream frame by frame across reads; remembers how much of a blind frame remains.
#[derive(Debug)]
pub struct FrameScanner {
    in_frame: usize,
    max_len: usize,
}

impl FrameScanner {
    pub fn new(max_len: usize) -> Self {
        Self { in_frame: 0, max_len }
    }

    /// True when the scanner sits on a frame boundary.
    pub fn at_boundary(&self) -> bool {
        self.in_frame == 0
    }

    /// Bytes of the current frame still to come before the next boundary.
    pub fn rest_of_frame(&self) -> usize {
        self.in_frame
    }

    /// Looks at the front of `buf` (the bytes not yet consumed by the caller).
    pub fn next(&mut self, buf: &[u8], interest: impl Fn(u8) -> Interest) -> Result<Scan, ProtocolError> {
        if buf.is_empty() {
            return Ok(Scan::NeedMore);
        }
        if self.in_frame > 0 {
            let n = self.in_frame.min(buf.len());
            self.in_frame -= n;
            return Ok(Scan::Pass(n));
        }
        let Some((code, total)) = peek_header(buf, self.max_len)? else {
            return Ok(Scan::NeedMore);
        };
        match interest(code) {
            Interest::None => {
                self.in_frame = total;
                self.next(buf, interest)
            }
            Interest::Header => {
                self.in_frame = total;
                Ok(Scan::Header { code, total })
            }
            Interest::Whole if buf.len() >= total => Ok(Scan::Whole { code, total }),
            Interest::Whole => Ok(Scan::NeedMore),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(code: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![code];
        v.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn blind_frames_pass_across_reads() {
        let mut stream = frame(b'D', &[7; 10]);
        stream.extend(frame(b'Z', b"I"));
        let mut scanner = FrameScanner::new(MAX_FRAME_LEN);
        let want = |c: u8| {
            if c == b'Z' { Interest::Whole } else { Interest::None }
        };
        // the first read ends in the middle of the DataRow
        assert_eq!(scanner.next(&stream[..8], want).unwrap(), Scan::Pass(8));
        assert!(!scanner.at_boundary());
        assert_eq!(scanner.next(&stream[8..], want).unwrap(), Scan::Pass(7));
        assert_eq!(scanner.next(&stream[15..], want).unwrap(), Scan::Whole { code: b'Z', total: 6 });
    }

    #[test]
    fn whole_frame_waits_for_its_body() {
        let stream = frame(b'Z', b"I");
        let mut scanner = FrameScanner::new(MAX_FRAME_LEN);
        let want = |_| Interest::Whole;
        assert_eq!(scanner.next(&stream[..5], want).unwrap(), Scan::NeedMore);
        assert_eq!(scanner.next(&stream[..3], want).unwrap(), Scan::NeedMore);
    }

    #[test]
    fn header_interest_reports_then_passes() {
        let stream = frame(b'S', b"");
        let mut scanner = FrameScanner::new(MAX_FRAME_LEN);
        let want = |_| Interest::Header;
        assert_eq!(scanner.next(&stream, want).unwrap(), Scan::Header { code: b'S', total: 5 });
        assert_eq!(scanner.next(&stream, want).unwrap(), Scan::Pass(5));
    }

    #[test]
    fn lengths_below_four_or_above_the_cap_are_errors() {
        let mut scanner = FrameScanner::new(100);
        assert!(scanner.next(&[b'Q', 0, 0, 0, 3], |_| Interest::None).is_err());
        assert!(scanner.next(&[b'Q', 0, 0, 1, 0], |_| Interest::None).is_err());
    }

    #[test]
    fn split_frame_takes_exactly_one() {
        let mut buf = BytesMut::from(&frame(b'Q', b"select 1\0")[..]);
        buf.extend_from_slice(&frame(b'X', b""));
        let f = split_frame(&mut buf, MAX_FRAME_LEN).unwrap().unwrap();
        assert_eq!((f.code, &f.body[..]), (b'Q', &b"select 1\0"[..]));
        assert_eq!(split_frame(&mut buf, MAX_FRAME_LEN).unwrap().unwrap().code, b'X');
        assert!(split_frame(&mut buf, MAX_FRAME_LEN).unwrap().is_none());
    }
}
