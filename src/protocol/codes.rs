//! Named PostgreSQL protocol codes: message type bytes and startup request codes.

/// Type bytes of messages a client (frontend) sends.
pub mod frontend {
    pub const BIND: u8 = b'B';
    pub const CLOSE: u8 = b'C';
    pub const COPY_DATA: u8 = b'd';
    pub const COPY_DONE: u8 = b'c';
    pub const COPY_FAIL: u8 = b'f';
    pub const DESCRIBE: u8 = b'D';
    pub const EXECUTE: u8 = b'E';
    pub const FLUSH: u8 = b'H';
    pub const FUNCTION_CALL: u8 = b'F';
    pub const PARSE: u8 = b'P';
    /// PasswordMessage, SASLInitialResponse and SASLResponse share this byte.
    pub const PASSWORD: u8 = b'p';
    pub const QUERY: u8 = b'Q';
    pub const SYNC: u8 = b'S';
    pub const TERMINATE: u8 = b'X';
}

/// Type bytes of messages a server (backend) sends.
pub mod backend {
    pub const AUTHENTICATION: u8 = b'R';
    pub const BACKEND_KEY_DATA: u8 = b'K';
    pub const BIND_COMPLETE: u8 = b'2';
    pub const CLOSE_COMPLETE: u8 = b'3';
    pub const COMMAND_COMPLETE: u8 = b'C';
    pub const COPY_BOTH_RESPONSE: u8 = b'W';
    pub const COPY_DATA: u8 = b'd';
    pub const COPY_DONE: u8 = b'c';
    pub const COPY_IN_RESPONSE: u8 = b'G';
    pub const COPY_OUT_RESPONSE: u8 = b'H';
    pub const DATA_ROW: u8 = b'D';
    pub const EMPTY_QUERY_RESPONSE: u8 = b'I';
    pub const ERROR_RESPONSE: u8 = b'E';
    pub const NEGOTIATE_PROTOCOL_VERSION: u8 = b'v';
    pub const NO_DATA: u8 = b'n';
    pub const NOTICE_RESPONSE: u8 = b'N';
    pub const NOTIFICATION_RESPONSE: u8 = b'A';
    pub const PARAMETER_DESCRIPTION: u8 = b't';
    pub const PARAMETER_STATUS: u8 = b'S';
    pub const PARSE_COMPLETE: u8 = b'1';
    pub const PORTAL_SUSPENDED: u8 = b's';
    pub const READY_FOR_QUERY: u8 = b'Z';
    pub const ROW_DESCRIPTION: u8 = b'T';
}

/// Sub-codes of the Authentication ('R') message.
pub mod auth {
    pub const OK: i32 = 0;
    pub const KERBEROS_V5: i32 = 2;
    pub const CLEARTEXT_PASSWORD: i32 = 3;
    pub const MD5_PASSWORD: i32 = 5;
    pub const GSS: i32 = 7;
    pub const GSS_CONTINUE: i32 = 8;
    pub const SSPI: i32 = 9;
    pub const SASL: i32 = 10;
    pub const SASL_CONTINUE: i32 = 11;
    pub const SASL_FINAL: i32 = 12;
}

/// Codes in the version field of untyped startup-phase packets.
pub mod startup {
    /// Protocol 3.0; minor versions above 0 are negotiated down.
    pub const PROTOCOL_3_0: i32 = 3 << 16;
    pub const CANCEL_REQUEST: i32 = (1234 << 16) | 5678;
    pub const SSL_REQUEST: i32 = (1234 << 16) | 5679;
    pub const GSSENC_REQUEST: i32 = (1234 << 16) | 5680;
    /// The answers to SSLRequest / GSSENCRequest.
    pub const ACCEPT: u8 = b'S';
    pub const REFUSE: u8 = b'N';
    /// First byte of a TLS record carrying a handshake (PostgreSQL 17 direct TLS).
    pub const TLS_HANDSHAKE_RECORD: u8 = 0x16;
}

/// Transaction status byte carried by ReadyForQuery.
pub mod tx_status {
    pub const IDLE: u8 = b'I';
    pub const IN_TRANSACTION: u8 = b'T';
    pub const FAILED: u8 = b'E';
}

/// SQLSTATE codes pgate reports itself (see the README for what each means to a client).
pub mod sqlstate {
    pub const PROTOCOL_VIOLATION: &str = "08P01";
    pub const CONNECTION_FAILURE: &str = "08006";
    pub const SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION: &str = "08001";
    pub const INVALID_AUTHORIZATION_SPECIFICATION: &str = "28000";
    pub const INVALID_PASSWORD: &str = "28P01";
    pub const INVALID_CATALOG_NAME: &str = "3D000";
    pub const TOO_MANY_CONNECTIONS: &str = "53300";
    pub const ADMIN_SHUTDOWN: &str = "57P01";
    pub const QUERY_CANCELED: &str = "57014";
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
    pub const CONNECTION_EXCEPTION: &str = "08000";
    pub const INTERNAL_ERROR: &str = "XX000";
    /// A workspace rule refused the statement.
    pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
    /// The audit log cannot be written (audit.on_error = "deny").
    pub const IO_ERROR: &str = "58030";
    /// An admin console command pgate does not know, or with wrong arguments.
    pub const SYNTAX_ERROR: &str = "42601";
    /// An admin console command naming a client that is not connected.
    pub const UNDEFINED_OBJECT: &str = "42704";
    /// An admin console command that does not fit the current state (RESUME of what is not paused).
    pub const OBJECT_NOT_IN_PREREQUISITE_STATE: &str = "55000";
    /// RELOAD found the configuration file invalid.
    pub const CONFIG_FILE_ERROR: &str = "F0000";
    /// A client idle inside a transaction past `idle_transaction_timeout`.
    pub const IDLE_IN_TRANSACTION_SESSION_TIMEOUT: &str = "25P03";
    /// A client idle past `client_idle_timeout`.
    pub const IDLE_SESSION_TIMEOUT: &str = "57P05";
}
