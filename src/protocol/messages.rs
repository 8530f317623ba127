//! The few messages pgate builds or inspects. Encoding uses pgwire's typed messages;
//! decoding of peer bytes goes through [`BodyReader`] on one validated frame.

use bytes::{BufMut, Bytes, BytesMut};
use pgwire::messages::Message;
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::copy::CopyFail;
use pgwire::messages::extendedquery::{Execute, Sync};
use pgwire::messages::response::{ErrorResponse, ReadyForQuery, TransactionStatus};
use pgwire::messages::simplequery::Query;
use pgwire::messages::startup::{
    Authentication, BackendKeyData, NegotiateProtocolVersion, ParameterStatus, Password, SASLInitialResponse,
    SASLResponse, SecretKey, Startup,
};
use pgwire::messages::terminate::Terminate;

use super::codes::{auth as auth_code, tx_status};
use super::{BodyReader, CancelKey, ProtocolError};

fn put<M: Message>(buf: &mut BytesMut, msg: &M) -> Result<(), ProtocolError> {
    msg.encode(buf).map_err(|e| ProtocolError::Encode(e.to_string()))
}

/// The identifying fields of an ErrorResponse or NoticeResponse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorFields {
    pub severity: String,
    pub code: String,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl ErrorFields {
    pub fn encode(&self, buf: &mut BytesMut) {
        let mut fields = vec![
            (b'S', self.severity.clone()),
            (b'V', self.severity.clone()),
            (b'C', self.code.clone()),
            (b'M', self.message.clone()),
        ];
        fields.extend(self.detail.clone().map(|d| (b'D', d)));
        fields.extend(self.hint.clone().map(|h| (b'H', h)));
        // An ErrorResponse has no practical size limit; encoding cannot fail.
        let _ = put(buf, &ErrorResponse::new(fields));
    }

    /// Reads the fields of an ErrorResponse body (from a server).
    pub fn decode(body: &[u8]) -> Result<Self, ProtocolError> {
        let mut r = BodyReader::new(body, "ErrorResponse");
        let mut fields = ErrorFields {
            severity: String::new(),
            code: String::new(),
            message: String::new(),
            detail: None,
            hint: None,
        };
        loop {
            let field = r.u8()?;
            if field == 0 {
                break;
            }
            let value = String::from_utf8_lossy(r.cstr()?).into_owned();
            match field {
                b'V' => fields.severity = value,
                b'S' if fields.severity.is_empty() => fields.severity = value,
                b'C' => fields.code = value,
                b'M' => fields.message = value,
                b'D' => fields.detail = Some(value),
                b'H' => fields.hint = Some(value),
                _ => {}
            }
        }
        r.finish()?;
        Ok(fields)
    }
}

pub fn authentication_ok(buf: &mut BytesMut) {
    let _ = put(buf, &Authentication::Ok);
}

pub fn authentication_cleartext(buf: &mut BytesMut) {
    let _ = put(buf, &Authentication::CleartextPassword);
}

pub fn authentication_md5(buf: &mut BytesMut, salt: [u8; 4]) {
    let _ = put(buf, &Authentication::MD5Password(salt.to_vec()));
}

pub fn authentication_sasl(buf: &mut BytesMut, mechanisms: &[&str]) {
    let mechanisms = mechanisms.iter().map(|m| m.to_string()).collect();
    let _ = put(buf, &Authentication::SASL(mechanisms));
}

pub fn authentication_sasl_continue(buf: &mut BytesMut, data: &[u8]) {
    let _ = put(buf, &Authentication::SASLContinue(Bytes::copy_from_slice(data)));
}

pub fn authentication_sasl_final(buf: &mut BytesMut, data: &[u8]) {
    let _ = put(buf, &Authentication::SASLFinal(Bytes::copy_from_slice(data)));
}

pub fn parameter_status(buf: &mut BytesMut, name: &str, value: &str) {
    let _ = put(buf, &ParameterStatus::new(name.to_owned(), value.to_owned()));
}

pub fn backend_key_data(buf: &mut BytesMut, key: CancelKey) {
    let _ = put(buf, &BackendKeyData::new(key.pid, SecretKey::I32(key.secret)));
}

pub fn ready_for_query(buf: &mut BytesMut, status: u8) {
    let status = match status {
        tx_status::IN_TRANSACTION => TransactionStatus::Transaction,
        tx_status::FAILED => TransactionStatus::Error,
        _ => TransactionStatus::Idle,
    };
    let _ = put(buf, &ReadyForQuery::new(status));
}

/// Tells a client asking for protocol 3.x (x > 0) that 3.0 is what it gets.
pub fn negotiate_protocol_version(buf: &mut BytesMut, unsupported_options: Vec<String>) {
    let _ = put(buf, &NegotiateProtocolVersion::new(0, unsupported_options));
}

pub fn query(buf: &mut BytesMut, sql: &str) -> Result<(), ProtocolError> {
    put(buf, &Query::new(sql.to_owned()))
}

pub fn terminate(buf: &mut BytesMut) {
    let _ = put(buf, &Terminate::new());
}

pub fn execute(buf: &mut BytesMut, portal: &str) -> Result<(), ProtocolError> {
    put(buf, &Execute::new(Some(portal.to_owned()), 0))
}

pub fn sync(buf: &mut BytesMut) {
    let _ = put(buf, &Sync::new());
}

/// Ends a copy-in with an error; outside copy-in mode PostgreSQL ignores it.
pub fn copy_fail(buf: &mut BytesMut, reason: &str) -> Result<(), ProtocolError> {
    put(buf, &CopyFail::new(reason.to_owned()))
}

pub fn startup_message<'a>(
    buf: &mut BytesMut,
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<(), ProtocolError> {
    let mut startup = Startup::new();
    for (k, v) in params {
        startup.parameters.insert(k.to_owned(), v.to_owned());
    }
    put(buf, &startup)
}

pub fn cancel_request(buf: &mut BytesMut, key: CancelKey) {
    let _ = put(buf, &CancelRequest::new(key.pid, SecretKey::I32(key.secret)));
}

pub fn password_message(buf: &mut BytesMut, password: &str) -> Result<(), ProtocolError> {
    put(buf, &Password::new(password.to_owned()))
}

pub fn sasl_initial_response(buf: &mut BytesMut, mechanism: &str, data: &[u8]) -> Result<(), ProtocolError> {
    put(buf, &SASLInitialResponse::new(mechanism.to_owned(), Some(Bytes::copy_from_slice(data))))
}

pub fn sasl_response(buf: &mut BytesMut, data: &[u8]) -> Result<(), ProtocolError> {
    put(buf, &SASLResponse::new(Bytes::copy_from_slice(data)))
}

/// The SSLRequest / GSSENCRequest / CancelRequest packets pgate sends to servers.
pub fn ssl_request(buf: &mut BytesMut) {
    buf.put_i32(8);
    buf.put_i32(super::codes::startup::SSL_REQUEST);
}

/// What a server asks for in an Authentication message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthRequest {
    Ok,
    Cleartext,
    Md5 {
        salt: [u8; 4],
    },
    Sasl {
        mechanisms: Vec<String>,
    },
    SaslContinue(Vec<u8>),
    SaslFinal(Vec<u8>),
    /// Kerberos, GSS, SSPI: methods pgate does not speak to servers.
    Unsupported(i32),
}

impl AuthRequest {
    pub fn decode(body: &[u8]) -> Result<Self, ProtocolError> {
        let mut r = BodyReader::new(body, "Authentication");
        let request = match r.i32()? {
            auth_code::OK => AuthRequest::Ok,
            auth_code::CLEARTEXT_PASSWORD => AuthRequest::Cleartext,
            auth_code::MD5_PASSWORD => {
                let s = r.bytes(4)?;
                AuthRequest::Md5 { salt: [s[0], s[1], s[2], s[3]] }
            }
            auth_code::SASL => {
                let mut mechanisms = Vec::new();
                loop {
                    let m = r.string()?;
                    if m.is_empty() {
                        break;
                    }
                    mechanisms.push(m);
                }
                AuthRequest::Sasl { mechanisms }
            }
            auth_code::SASL_CONTINUE => AuthRequest::SaslContinue(r.rest().to_vec()),
            auth_code::SASL_FINAL => AuthRequest::SaslFinal(r.rest().to_vec()),
            other => AuthRequest::Unsupported(other),
        };
        if !matches!(request, AuthRequest::Unsupported(_)) {
            r.finish()?;
        }
        Ok(request)
    }
}

/// Name and value of a ParameterStatus body.
pub fn decode_parameter_status(body: &[u8]) -> Result<(String, String), ProtocolError> {
    let mut r = BodyReader::new(body, "ParameterStatus");
    let name = r.string()?;
    let value = r.string()?;
    r.finish()?;
    Ok((name, value))
}

pub fn decode_backend_key_data(body: &[u8]) -> Result<CancelKey, ProtocolError> {
    let mut r = BodyReader::new(body, "BackendKeyData");
    let key = CancelKey { pid: r.i32()?, secret: r.i32()? };
    r.finish()?;
    Ok(key)
}

/// The transaction status byte of a ReadyForQuery body.
pub fn decode_ready_for_query(body: &[u8]) -> Result<u8, ProtocolError> {
    let mut r = BodyReader::new(body, "ReadyForQuery");
    let status = r.u8()?;
    r.finish()?;
    match status {
        tx_status::IDLE | tx_status::IN_TRANSACTION | tx_status::FAILED => Ok(status),
        _ => Err(ProtocolError::MalformedMessage { what: "ReadyForQuery" }),
    }
}

/// The password of a PasswordMessage body (cleartext or md5 response).
pub fn decode_password(body: &[u8]) -> Result<&[u8], ProtocolError> {
    let mut r = BodyReader::new(body, "PasswordMessage");
    let password = r.cstr()?;
    r.finish()?;
    Ok(password)
}

/// Mechanism and initial data of a SASLInitialResponse body.
pub fn decode_sasl_initial_response(body: &[u8]) -> Result<(String, &[u8]), ProtocolError> {
    let mut r = BodyReader::new(body, "SASLInitialResponse");
    let mechanism = r.string()?;
    let len = r.i32()?;
    let data = if len < 0 { &[][..] } else { r.bytes(len as usize)? };
    r.finish()?;
    Ok((mechanism, data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frame::split_frame;

    #[test]
    fn error_fields_round_trip() {
        let fields = ErrorFields {
            severity: "FATAL".into(),
            code: "3D000".into(),
            message: "no such database".into(),
            detail: None,
            hint: Some("try akko".into()),
        };
        let mut buf = BytesMut::new();
        fields.encode(&mut buf);
        let frame = split_frame(&mut buf, 1 << 20).unwrap().unwrap();
        assert_eq!(frame.code, b'E');
        assert_eq!(ErrorFields::decode(&frame.body).unwrap(), fields);
    }

    #[test]
    fn authentication_bodies_decode_strictly() {
        assert_eq!(AuthRequest::decode(&[0, 0, 0, 0]).unwrap(), AuthRequest::Ok);
        assert!(AuthRequest::decode(&[0, 0, 0, 5, 1, 2]).is_err());
        assert!(AuthRequest::decode(&[0, 0]).is_err());
        let mut sasl = vec![0, 0, 0, 10];
        sasl.extend_from_slice(b"SCRAM-SHA-256\0\0");
        assert_eq!(AuthRequest::decode(&sasl).unwrap(), AuthRequest::Sasl { mechanisms: vec!["SCRAM-SHA-256".into()] });
    }

    #[test]
    fn ready_for_query_needs_a_known_status() {
        assert_eq!(decode_ready_for_query(b"T").unwrap(), b'T');
        assert!(decode_ready_for_query(b"").is_err());
        assert!(decode_ready_for_query(b"Q").is_err());
        assert!(decode_ready_for_query(b"II").is_err());
    }

    #[test]
    fn sasl_initial_response_rejects_overlong_lengths() {
        let mut body = b"SCRAM-SHA-256\0".to_vec();
        body.extend_from_slice(&100i32.to_be_bytes());
        body.extend_from_slice(b"short");
        assert!(decode_sasl_initial_response(&body).is_err());
    }
}
