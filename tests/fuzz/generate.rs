//! A seeded generator of frontend byte streams: valid startup packets, login messages and
//! session pipelines, then mutated (wrong, huge and negative lengths, truncation, unknown
//! codes, bit flips, SSLRequests mid-stream, garbage bodies) and split across writes.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// Codes of the frontend messages (the tests' own copy: they describe the wire, not pgate).
const FRONTEND: &[u8] = b"BCdcfDEHFPpQSX";
const PROTOCOL_3_0: i32 = 3 << 16;
const CANCEL_REQUEST: i32 = (1234 << 16) | 5678;
const SSL_REQUEST: i32 = (1234 << 16) | 5679;
const GSSENC_REQUEST: i32 = (1234 << 16) | 5680;

/// Statements that are cheap on a real server and touch what pgate inspects: transaction
/// control, session state, COPY, multi-statement strings, comments and quotes.
const SQL: &[&str] = &[
    "SELECT 1",
    "select $1::int",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "SET search_path = public",
    "SET LOCAL statement_timeout = 1000",
    "RESET ALL",
    "SELECT 1; SELECT 2",
    "PREPARE p AS SELECT 1",
    "DEALLOCATE ALL",
    "LISTEN chan",
    "SELECT pg_advisory_unlock_all()",
    "COPY (SELECT 1) TO STDOUT",
    "COPY items FROM STDIN",
    "CREATE TEMP TABLE t (a int)",
    "SELECT '; -- not a comment' AS x /* comment */",
    "SELECT $$dollar;quoted$$",
    "DISCARD ALL",
    "SHOW server_version",
    "",
    "SELEC broken",
    "SELECT 'ünïcödé' AS ñ, pg_temp.名前",
    "SELECT * FROM テーブル WHERE 列 = $1",
];

/// Characters of 2, 3 and 4 bytes in UTF-8, put into statements at random places.
const WIDE: &[char] = &['¡', 'ß', '䇨', '€', '😀', '\u{10ffff}'];

const PARAMS: &[(&str, &str)] = &[
    ("application_name", "fuzz"),
    ("options", "-c search_path=public"),
    ("client_encoding", "UTF8"),
    ("DateStyle", "ISO"),
];

pub struct Gen {
    rng: StdRng,
}

/// One message or startup packet, kept apart until the stream is assembled.
pub type Piece = Vec<u8>;

pub fn message(code: u8, body: &[u8]) -> Piece {
    let mut m = vec![code];
    m.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

pub fn packet(version: i32, rest: &[u8]) -> Piece {
    let mut p = ((rest.len() + 8) as i32).to_be_bytes().to_vec();
    p.extend_from_slice(&version.to_be_bytes());
    p.extend_from_slice(rest);
    p
}

pub fn ssl_request() -> Piece {
    packet(SSL_REQUEST, &[])
}

pub fn startup(user: &str, database: &str, extra: &[(&str, &str)]) -> Piece {
    let mut rest = Vec::new();
    for (k, v) in [("user", user), ("database", database)].iter().chain(extra) {
        for s in [k, v] {
            rest.extend_from_slice(s.as_bytes());
            rest.push(0);
        }
    }
    rest.push(0);
    packet(PROTOCOL_3_0, &rest)
}

fn cstr(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(s);
    out.push(0);
}

impl Gen {
    pub fn new(seed: u64) -> Self {
        Self { rng: StdRng::seed_from_u64(seed) }
    }

    pub fn below(&mut self, n: usize) -> usize {
        self.rng.random_range(0..n.max(1))
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = self.below(max + 1);
        (0..n).map(|_| self.rng.random()).collect()
    }

    pub fn sql(&mut self) -> Vec<u8> {
        let mut text = String::from(*self.pick(SQL));
        if self.chance(0.2) {
            // At a character boundary: the text stays UTF-8 and reaches the SQL scanners.
            let at = self.below(text.len() + 1);
            if text.is_char_boundary(at) {
                text.insert(at, *self.pick(WIDE));
            }
        }
        let mut text = text.into_bytes();
        if self.chance(0.2) && !text.is_empty() {
            let at = self.below(text.len());
            text[at] = self.rng.random();
        }
        text
    }

    /// A startup-phase packet: StartupMessage, SSLRequest, GSSENCRequest or CancelRequest.
    pub fn startup_packet(&mut self, user: &str, database: &str) -> Piece {
        match self.below(8) {
            0 => ssl_request(),
            1 => packet(GSSENC_REQUEST, &[]),
            2 => {
                let mut key = self.rng.random::<i32>().to_be_bytes().to_vec();
                key.extend_from_slice(&self.rng.random::<i32>().to_be_bytes());
                packet(CANCEL_REQUEST, &key)
            }
            3 => packet(PROTOCOL_3_0 | self.below(3) as i32, &self.bytes(40)),
            _ => {
                let n = self.below(PARAMS.len() + 1);
                startup(user, database, &PARAMS[..n])
            }
        }
    }

    /// A PasswordMessage, SASLInitialResponse or SASLResponse (all 'p').
    pub fn password_message(&mut self) -> Piece {
        let mut body = Vec::new();
        match self.below(3) {
            0 => cstr(&mut body, format!("md5{:032x}", self.rng.random::<u128>()).as_bytes()),
            1 => {
                cstr(&mut body, self.pick(&["SCRAM-SHA-256", "SCRAM-SHA-256-PLUS", "PLAIN"]).as_bytes());
                let data = format!("n,,n=,r={:x}", self.rng.random::<u64>()).into_bytes();
                let len = if self.chance(0.2) { -1 } else { data.len() as i32 };
                body.extend_from_slice(&len.to_be_bytes());
                body.extend_from_slice(&data);
            }
            _ => body.extend_from_slice(format!("c=biws,r={:x},p=AAAA", self.rng.random::<u64>()).as_bytes()),
        }
        message(b'p', &body)
    }

    /// One valid frontend message of the session phase.
    pub fn session_message(&mut self) -> Piece {
        let mut body = Vec::new();
        let names: &[&[u8]] = &[b"", b"s1", b"pgate_s1", b"p1"];
        let code = match self.below(16) {
            0..=3 => {
                cstr(&mut body, &self.sql());
                b'Q'
            }
            4 => {
                let name = *self.pick(names);
                cstr(&mut body, name);
                cstr(&mut body, &self.sql());
                let types = self.below(3) as i16;
                body.extend_from_slice(&types.to_be_bytes());
                (0..types).for_each(|_| body.extend_from_slice(&23i32.to_be_bytes()));
                b'P'
            }
            5 => {
                let name = *self.pick(names);
                cstr(&mut body, name);
                let name = *self.pick(names);
                cstr(&mut body, name);
                body.extend_from_slice(&1i16.to_be_bytes());
                body.extend_from_slice(&(self.below(2) as i16).to_be_bytes());
                body.extend_from_slice(&1i16.to_be_bytes());
                body.extend_from_slice(&1i32.to_be_bytes());
                body.push(b'1');
                body.extend_from_slice(&0i16.to_be_bytes());
                b'B'
            }
            6 => {
                body.push(*self.pick(b"SP"));
                let name = *self.pick(names);
                cstr(&mut body, name);
                b'D'
            }
            7 => {
                let name = *self.pick(names);
                cstr(&mut body, name);
                body.extend_from_slice(&(self.below(3) as i32).to_be_bytes());
                b'E'
            }
            8 => {
                body.push(*self.pick(b"SP"));
                let name = *self.pick(names);
                cstr(&mut body, name);
                b'C'
            }
            9 => b'H',
            10 => {
                body = self.bytes(30);
                b'd'
            }
            11 => b'c',
            12 => {
                cstr(&mut body, b"fuzz says no");
                b'f'
            }
            13 => {
                // FunctionCall: oid, no argument formats, one argument, result format.
                body.extend_from_slice(&1598i32.to_be_bytes()); // random()
                body.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
                b'F'
            }
            _ => b'S',
        };
        message(code, &body)
    }

    /// A valid pipeline of `n` session messages, ending in Sync or a Query most times.
    pub fn pipeline(&mut self, n: usize) -> Vec<Piece> {
        let mut out: Vec<Piece> = (0..n).map(|_| self.session_message()).collect();
        if self.chance(0.8) {
            out.push(message(b'S', &[]));
        }
        out
    }

    /// Applies `count` mutations to a list of pieces.
    pub fn mutate(&mut self, pieces: &mut Vec<Piece>, count: usize) {
        for _ in 0..count {
            if pieces.is_empty() {
                pieces.push(self.bytes(20));
                continue;
            }
            let i = self.below(pieces.len());
            let piece = &mut pieces[i];
            // Where the length word sits: after the type byte, or first in startup packets.
            let len_at = usize::from(piece.first().is_some_and(|c| FRONTEND.contains(c)) && piece.len() >= 5);
            match self.below(11) {
                0 | 1 if piece.len() >= len_at + 4 => {
                    let len: i32 = match self.below(6) {
                        0 => self.rng.random_range(0..4),
                        1 => i32::MAX,
                        2 => -self.rng.random_range(1..=i32::MAX),
                        3 => 0x4000_0000 + self.rng.random_range(0..1000),
                        4 => self.rng.random_range(10_000..11_000),
                        _ => (piece.len() as i32).saturating_add(self.rng.random_range(-8..8)),
                    };
                    piece[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
                }
                2 => {
                    let keep = self.below(piece.len());
                    piece.truncate(keep);
                }
                3 if !piece.is_empty() => piece[0] = self.rng.random(),
                4 if !piece.is_empty() => {
                    let at = self.below(piece.len());
                    piece[at] ^= 1 << self.below(8);
                }
                5 => pieces.insert(i, ssl_request()),
                6 if piece.len() > len_at + 4 => {
                    // A garbage body under a valid length.
                    let start = len_at + 4;
                    for b in &mut piece[start..] {
                        *b = self.rng.random();
                    }
                }
                7 => {
                    let copy = piece.clone();
                    pieces.insert(i, copy);
                }
                8 => {
                    pieces.remove(i);
                }
                9 => {
                    let j = self.below(pieces.len());
                    pieces.swap(i, j);
                }
                _ => pieces.insert(i, self.bytes(16)),
            }
        }
    }

    /// A whole stream cut at random places into writes.
    pub fn split(&mut self, pieces: &[Piece]) -> Vec<Vec<u8>> {
        let stream: Vec<u8> = pieces.concat();
        let mut writes = Vec::new();
        let mut rest = &stream[..];
        while !rest.is_empty() {
            let n = if self.chance(0.3) { 1 + self.below(8) } else { 1 + self.below(rest.len()) };
            let (head, tail) = rest.split_at(n.min(rest.len()));
            writes.push(head.to_vec());
            rest = tail;
        }
        writes
    }
}

/// The total of a default run, over all layers.
pub const DEFAULT_TOTAL: usize = 100_000;

/// A layer's number of cases and the seed: the layer's `default` share of
/// [`DEFAULT_TOTAL`], scaled to `PGATE_FUZZ_CASES`; `PGATE_FUZZ_SEED` or a fixed seed, so
/// `cargo test` runs the same slice every time.
pub fn share(default: usize) -> (usize, u64) {
    let total = std::env::var("PGATE_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_TOTAL);
    let seed = std::env::var("PGATE_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x5eed_f00d);
    let cases = (default as u128 * total as u128 / DEFAULT_TOTAL as u128) as usize;
    (cases.max(1), seed)
}
