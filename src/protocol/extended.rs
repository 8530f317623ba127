//! The extended-protocol messages pgate rewrites (Parse, Bind, Describe, Close carry
//! statement names), the replies it answers itself, and DataRow / ErrorResponse reading for
//! its own queries. Bodies are read strictly; rewritten frames reuse the original bytes
//! after the name, so query text and parameters are never re-encoded.

use bytes::{BufMut, Bytes, BytesMut};
use pgwire::messages::Message;
use pgwire::messages::response::ErrorResponse;

use super::codes::{backend, frontend};
use super::{BodyReader, ProtocolError};

/// Describe and Close name either a prepared statement or a portal.
pub const STATEMENT: u8 = b'S';
pub const PORTAL: u8 = b'P';

/// A Parse body: the statement name, and everything after it (query text, terminator and
/// parameter types), which identifies the statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parse<'a> {
    pub name: &'a [u8],
    pub query: &'a [u8],
    pub definition: &'a [u8],
}

pub fn decode_parse(body: &[u8]) -> Result<Parse<'_>, ProtocolError> {
    let mut r = BodyReader::new(body, "Parse");
    let name = r.cstr()?;
    let definition = &body[name.len() + 1..];
    let query = r.cstr()?;
    let types = r.i16()?;
    if types < 0 {
        return Err(ProtocolError::MalformedMessage { what: "Parse" });
    }
    r.bytes(4 * types as usize)?;
    r.finish()?;
    Ok(Parse { name, query, definition })
}

/// Builds a Parse frame for `name` over an existing definition.
pub fn parse_frame(name: &[u8], definition: &[u8]) -> Bytes {
    frame(frontend::PARSE, &[name, b"\0", definition])
}

/// A Bind body: portal, statement, and the parameter formats and values after them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bind<'a> {
    pub portal: &'a [u8],
    pub statement: &'a [u8],
    pub rest: &'a [u8],
}

pub fn decode_bind(body: &[u8]) -> Result<Bind<'_>, ProtocolError> {
    let mut r = BodyReader::new(body, "Bind");
    let portal = r.cstr()?;
    let statement = r.cstr()?;
    let rest = r.rest();
    // The counts and lengths after the names are the server's to check; a message too
    // short to hold them still reaches the server, which rejects it.
    Ok(Bind { portal, statement, rest })
}

pub fn bind_frame(portal: &[u8], statement: &[u8], rest: &[u8]) -> Bytes {
    frame(frontend::BIND, &[portal, b"\0", statement, b"\0", rest])
}

/// One bound parameter value as text: text-format values as they are, binary ones as
/// `\x` hex (what the audit log shows); NULL as `None`.
pub fn bind_parameters(rest: &[u8]) -> Result<Vec<Option<String>>, ProtocolError> {
    let mut r = BodyReader::new(rest, "Bind");
    let formats: Vec<i16> = (0..r.i16()?.max(0)).map(|_| r.i16()).collect::<Result<_, _>>()?;
    let count = r.i16()?.max(0) as usize;
    let mut values = Vec::with_capacity(count);
    for i in 0..count {
        let len = r.i32()?;
        if len < 0 {
            values.push(None);
            continue;
        }
        let bytes = r.bytes(len as usize)?;
        let binary = match formats.as_slice() {
            [] => false,
            [one] => *one == 1,
            all => all.get(i).copied() == Some(1),
        };
        values.push(Some(if binary {
            let mut hex = String::with_capacity(2 + 2 * bytes.len());
            hex.push_str("\\x");
            for b in bytes {
                hex.push_str(&format!("{b:02x}"));
            }
            hex
        } else {
            String::from_utf8_lossy(bytes).into_owned()
        }));
    }
    Ok(values)
}

/// An Execute body: the portal and the row limit.
pub fn decode_execute(body: &[u8]) -> Result<&[u8], ProtocolError> {
    let mut r = BodyReader::new(body, "Execute");
    let portal = r.cstr()?;
    r.i32()?;
    r.finish()?;
    Ok(portal)
}

/// The body of a Describe or Close: `S` or `P` and a name.
pub fn decode_target<'a>(body: &'a [u8], what: &'static str) -> Result<(u8, &'a [u8]), ProtocolError> {
    let mut r = BodyReader::new(body, what);
    let kind = r.u8()?;
    let name = r.cstr()?;
    r.finish()?;
    match kind {
        STATEMENT | PORTAL => Ok((kind, name)),
        _ => Err(ProtocolError::MalformedMessage { what }),
    }
}

pub fn target_frame(code: u8, kind: u8, name: &[u8]) -> Bytes {
    frame(code, &[&[kind], name, b"\0"])
}

pub fn parse_complete() -> Bytes {
    frame(backend::PARSE_COMPLETE, &[])
}

pub fn close_complete() -> Bytes {
    frame(backend::CLOSE_COMPLETE, &[])
}

fn frame(code: u8, parts: &[&[u8]]) -> Bytes {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut out = BytesMut::with_capacity(len + 5);
    out.put_u8(code);
    out.put_u32(len as u32 + 4);
    for p in parts {
        out.put_slice(p);
    }
    out.freeze()
}

/// The text-format columns of a DataRow (NULL as `None`).
pub fn decode_data_row(body: &[u8]) -> Result<Vec<Option<String>>, ProtocolError> {
    let mut r = BodyReader::new(body, "DataRow");
    let n = r.i16()?;
    let mut columns = Vec::with_capacity(n.max(0) as usize);
    for _ in 0..n {
        let len = r.i32()?;
        columns.push(if len < 0 { None } else { Some(String::from_utf8_lossy(r.bytes(len as usize)?).into_owned()) });
    }
    r.finish()?;
    Ok(columns)
}

/// Rewrites the text fields of an ErrorResponse or NoticeResponse with `edit`, keeping
/// every field; returns the whole new frame.
pub fn rewrite_error(code: u8, body: &[u8], edit: impl Fn(&str) -> String) -> Result<Bytes, ProtocolError> {
    let mut r = BodyReader::new(body, "ErrorResponse");
    let mut fields = Vec::new();
    loop {
        let field = r.u8()?;
        if field == 0 {
            break;
        }
        fields.push((field, edit(&String::from_utf8_lossy(r.cstr()?))));
    }
    r.finish()?;
    let mut out = BytesMut::new();
    ErrorResponse::new(fields).encode(&mut out).map_err(|e| ProtocolError::Encode(e.to_string()))?;
    out[0] = code;
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_keeps_its_definition_bytes() {
        let body = b"s1\0SELECT $1\0\0\x01\0\0\0\x17";
        let p = decode_parse(body).unwrap();
        assert_eq!((p.name, p.query), (&b"s1"[..], &b"SELECT $1"[..]));
        let f = parse_frame(b"pgate_s1", p.definition);
        assert_eq!(decode_parse(&f[5..]).unwrap().definition, p.definition);
        assert!(decode_parse(b"s1\0SELECT 1\0\0\x02\0\0\0\x17").is_err(), "two types announced, one given");
        assert!(decode_parse(b"s1\0SELECT 1").is_err());
    }

    #[test]
    fn bind_and_targets() {
        let b = decode_bind(b"\0s1\0\0\0\0\0\0\0").unwrap();
        assert_eq!((b.portal, b.statement), (&b""[..], &b"s1"[..]));
        let f = bind_frame(b"", b"pgate_s9", b.rest);
        assert_eq!(decode_bind(&f[5..]).unwrap().statement, b"pgate_s9");
        assert_eq!(decode_target(b"Ss1\0", "Close").unwrap(), (STATEMENT, &b"s1"[..]));
        assert!(decode_target(b"Xs1\0", "Close").is_err());
    }

    #[test]
    fn bound_parameters_as_text() {
        // formats: one code (binary) for all; two values: 2 bytes, NULL.
        let rest = b"\0\x01\0\x01\0\x02\0\0\0\x02\x01\xff\xff\xff\xff\xff\0\0";
        assert_eq!(bind_parameters(rest).unwrap(), vec![Some("\\x01ff".to_owned()), None]);
        let text = b"\0\0\0\x01\0\0\0\x03abc\0\0";
        assert_eq!(bind_parameters(text).unwrap(), vec![Some("abc".to_owned())]);
        assert!(bind_parameters(b"\0\0\0\x01\0\0\0\x09ab").is_err());
        assert_eq!(decode_execute(b"p1\0\0\0\0\0").unwrap(), b"p1");
        assert!(decode_execute(b"p1\0\0").is_err());
    }

    #[test]
    fn data_rows_and_error_rewrites() {
        let row = decode_data_row(b"\0\x02\0\0\0\x01a\xff\xff\xff\xff").unwrap();
        assert_eq!(row, vec![Some("a".to_owned()), None]);
        assert!(decode_data_row(b"\0\x01\0\0\0\x05ab").is_err());
        let f =
            rewrite_error(b'E', b"SERROR\0Mprepared statement \"pgate_s3\" x\0\0", |t| t.replace("pgate_s3", "mine"))
                .unwrap();
        assert!(f.windows(4).any(|w| w == b"mine"));
        assert_eq!(f[0], b'E');
    }
}
