//! A strict reader over one frame's body: every read is bounds-checked and the caller
//! asserts the body was consumed exactly (pgwire's decoders panic on short bodies).

use super::ProtocolError;

pub struct BodyReader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> BodyReader<'a> {
    /// `what` names the message in errors ("StartupMessage", "ParameterStatus", ...).
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Self { buf, what }
    }

    fn truncated(&self) -> ProtocolError {
        ProtocolError::Truncated { what: self.what }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        if self.buf.len() < n {
            return Err(self.truncated());
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub fn u8(&mut self) -> Result<u8, ProtocolError> {
        Ok(self.bytes(1)?[0])
    }

    pub fn i16(&mut self) -> Result<i16, ProtocolError> {
        let b = self.bytes(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    pub fn i32(&mut self) -> Result<i32, ProtocolError> {
        let b = self.bytes(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A NUL-terminated string, without its terminator.
    pub fn cstr(&mut self) -> Result<&'a [u8], ProtocolError> {
        let end = self.buf.iter().position(|&b| b == 0).ok_or_else(|| self.truncated())?;
        let s = &self.buf[..end];
        self.buf = &self.buf[end + 1..];
        Ok(s)
    }

    /// A NUL-terminated string that must be UTF-8.
    pub fn string(&mut self) -> Result<String, ProtocolError> {
        let what = self.what;
        let raw = self.cstr()?;
        String::from_utf8(raw.to_vec()).map_err(|_| ProtocolError::NotUtf8 { what })
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    /// Fails unless the body was consumed to the last byte.
    pub fn finish(self) -> Result<(), ProtocolError> {
        if self.buf.is_empty() { Ok(()) } else { Err(ProtocolError::TrailingBytes { what: self.what }) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_bodies_are_errors_not_panics() {
        let mut r = BodyReader::new(&[0, 1], "test");
        assert!(r.i32().is_err());
        let mut r = BodyReader::new(b"abc", "test");
        assert!(r.cstr().is_err());
    }

    #[test]
    fn finish_rejects_trailing_bytes() {
        let mut r = BodyReader::new(b"a\0b", "test");
        assert_eq!(r.cstr().unwrap(), b"a");
        assert!(r.finish().is_err());
    }
}
