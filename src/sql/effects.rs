//! What a query string may do to its server session beyond its transaction: change
//! settings, create state that ties the client to that server (LISTEN, session advisory
//! locks, temporary tables, WITH HOLD cursors, SQL PREPARE, SET SESSION AUTHORIZATION),
//! release such state, or wipe prepared statements.
//!
//! Decided from statement words only, so it is cheap on every query. It decides when pgate
//! asks the server for the truth (the probe after the transaction); it is not the truth.

use super::lexer::{Token, tokens};

/// Session state that pins a client to its server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PinReason {
    Listen,
    AdvisoryLock,
    TemporaryTable,
    HoldCursor,
    SqlPrepare,
    SessionAuthorization,
}

impl PinReason {
    pub const ALL: [PinReason; 6] = [
        PinReason::Listen,
        PinReason::AdvisoryLock,
        PinReason::TemporaryTable,
        PinReason::HoldCursor,
        PinReason::SqlPrepare,
        PinReason::SessionAuthorization,
    ];

    /// The name used in logs, metrics and messages.
    pub fn name(self) -> &'static str {
        match self {
            PinReason::Listen => "LISTEN",
            PinReason::AdvisoryLock => "session advisory lock",
            PinReason::TemporaryTable => "temporary table",
            PinReason::HoldCursor => "WITH HOLD cursor",
            PinReason::SqlPrepare => "SQL PREPARE",
            PinReason::SessionAuthorization => "SET SESSION AUTHORIZATION",
        }
    }

    pub fn from_name(name: &str) -> Option<PinReason> {
        PinReason::ALL.into_iter().find(|r| r.name() == name)
    }
}

/// The effects of one query string (all its statements together).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effects {
    /// Session settings may have changed (SET, RESET, set_config, DISCARD).
    pub settings: bool,
    /// Pinning state may have been created; the first reason seen.
    pub creates: Option<PinReason>,
    /// Pinning state may have been released (UNLISTEN, unlock, DROP, CLOSE, DEALLOCATE).
    pub releases: bool,
    /// DEALLOCATE ALL or DISCARD ALL: the server's prepared statements are gone.
    pub drops_statements: bool,
    /// DISCARD ALL: settings are back to the server's defaults.
    pub discard_all: bool,
    /// RESET, RESET ALL or SET ... TO DEFAULT: a setting may be back at the server's
    /// default, where a dedicated connection would be back at the client's startup value.
    pub resets: bool,
    /// Names of custom settings (`myapp.tenant`) set or reset: PostgreSQL lists these
    /// nowhere, so pgate must ask for them by name.
    pub custom_settings: Vec<String>,
}

impl Effects {
    pub fn any(&self) -> bool {
        *self != Effects::default()
    }

    pub fn merge(&mut self, other: Effects) {
        self.settings |= other.settings;
        self.creates = self.creates.or(other.creates);
        self.releases |= other.releases;
        self.drops_statements |= other.drops_statements;
        self.discard_all |= other.discard_all;
        self.resets |= other.resets;
        for name in other.custom_settings {
            if !self.custom_settings.contains(&name) {
                self.custom_settings.push(name);
            }
        }
    }
}

/// Scans a query string.
pub fn effects(sql: &[u8]) -> Effects {
    if !has_cue(sql) {
        return Effects::default();
    }
    lexed_effects(sql)
}

/// Every word `Statement` reacts to starts with one of these, in some case, as does the last
/// part of a qualified name: a query string where no word or name part starts with one has
/// no effects. Most queries have none, and looking costs a fraction of lexing (which also
/// checks UTF-8 and splits qualified names).
fn cues_starting_with(byte: u8) -> &'static [&'static [u8]] {
    match byte.to_ascii_lowercase() {
        b's' => &[b"set"],
        b'r' => &[b"reset"],
        b'd' => &[b"discard", b"deallocate", b"declare", b"drop"],
        b'p' => &[b"prepare", b"pg_advisory", b"pg_temp"],
        b'l' => &[b"listen"],
        b'u' => &[b"unlisten"],
        b'c' => &[b"close"],
        b't' => &[b"temp"],
        _ => &[],
    }
}

/// Looks at every byte that may start a word or a name part: after anything but an ASCII
/// letter or underscore. That is every place the lexer may start one (it skips digits,
/// and every quoted or commented span ends in a symbol), and more.
fn has_cue(sql: &[u8]) -> bool {
    let mut in_word = false;
    for (at, &byte) in sql.iter().enumerate() {
        let class = BYTE_CLASS[byte as usize];
        if class == CUE_LETTER
            && !in_word
            && cues_starting_with(byte).iter().any(|cue| starts_with_ignoring_case(&sql[at..], cue))
        {
            return true;
        }
        in_word = class != NOT_IN_WORD;
    }
    false
}

/// `has_cue` runs on every query: one table lookup per byte tells a letter a cue starts
/// with, another letter or `_`, and anything else.
const NOT_IN_WORD: u8 = 0;
const WORD: u8 = 1;
const CUE_LETTER: u8 = 2;
const BYTE_CLASS: [u8; 256] = {
    let mut table = [NOT_IN_WORD; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        if b.is_ascii_alphabetic() || b == b'_' {
            table[byte] = WORD;
        }
        if matches!(b.to_ascii_lowercase(), b's' | b'r' | b'd' | b'p' | b'l' | b'u' | b'c' | b't') {
            table[byte] = CUE_LETTER;
        }
        byte += 1;
    }
    table
};

fn starts_with_ignoring_case(text: &[u8], prefix: &[u8]) -> bool {
    text.get(..prefix.len()).is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

fn lexed_effects(sql: &[u8]) -> Effects {
    let mut out = Effects::default();
    let mut statement = Statement::default();
    for token in tokens(sql) {
        match token {
            Token::Semicolon => out.merge(std::mem::take(&mut statement).finish()),
            Token::Word(word) => statement.word(word, &mut out),
            Token::Str(text) => statement.string(text),
        }
    }
    out.merge(statement.finish());
    out
}

/// What one statement's words say so far; its first three words decide its kind.
#[derive(Default)]
struct Statement<'a> {
    head: [&'a str; 3],
    words: usize,
    previous: &'a str,
    with_hold: bool,
    says_default: bool,
    set_config: bool,
    /// String literals with a dot: maybe custom setting names for set_config.
    dotted: Vec<&'a [u8]>,
}

fn is(word: &str, keyword: &str) -> bool {
    word.eq_ignore_ascii_case(keyword)
}

impl<'a> Statement<'a> {
    /// Notes a word; effects that words anywhere in a statement have go straight to `out`.
    fn word(&mut self, word: &'a str, out: &mut Effects) {
        if self.words < 3 {
            self.head[self.words] = word;
        }
        self.words += 1;
        self.with_hold |= is(self.previous, "with") && is(word, "hold");
        self.says_default |= is(word, "default");
        self.previous = word;
        // Bytes, not str: a word may have a multibyte character across byte 8.
        if word.len() > 8 && word.as_bytes()[..8].eq_ignore_ascii_case(b"pg_temp.") {
            out.creates = out.creates.or(Some(PinReason::TemporaryTable));
        }
        let name = word.rsplit('.').next().unwrap_or(word);
        if is(name, "temp") || is(name, "temporary") {
            out.creates = out.creates.or(Some(PinReason::TemporaryTable));
        } else if ["pg_advisory_lock", "pg_try_advisory_lock", "pg_advisory_lock_shared", "pg_try_advisory_lock_shared"]
            .iter()
            .any(|f| is(name, f))
        {
            out.creates = out.creates.or(Some(PinReason::AdvisoryLock));
        } else if ["pg_advisory_unlock", "pg_advisory_unlock_shared", "pg_advisory_unlock_all"]
            .iter()
            .any(|f| is(name, f))
        {
            out.releases = true;
        } else if is(name, "set_config") {
            self.set_config = true;
        }
    }

    fn string(&mut self, text: &'a [u8]) {
        if text.contains(&b'.') {
            self.dotted.push(text);
        }
    }

    fn finish(self) -> Effects {
        let mut e = Effects::default();
        let [first, second, third] = self.head;
        let kw = |w: &str, k: &str| is(w, k);
        if kw(first, "set") && (kw(second, "local") || kw(second, "transaction")) {
        } else if kw(first, "set") && kw(second, "session") && kw(third, "authorization") {
            e.settings = true;
            e.creates = Some(PinReason::SessionAuthorization);
        } else if kw(first, "set") || kw(first, "reset") {
            e.settings = true;
            e.resets = kw(first, "reset") || self.says_default;
            let name = if kw(second, "session") { third } else { second };
            if name.contains('.') {
                e.custom_settings.push(name.to_ascii_lowercase());
            }
        } else if kw(first, "discard") {
            e.releases = true;
            if kw(second, "all") {
                e.settings = true;
                e.drops_statements = true;
                e.discard_all = true;
            }
        } else if kw(first, "deallocate") {
            e.releases = true;
            e.drops_statements = kw(second, "all") || kw(third, "all");
        } else if kw(first, "prepare") && !kw(second, "transaction") {
            e.creates = Some(PinReason::SqlPrepare);
        } else if kw(first, "listen") {
            e.creates = Some(PinReason::Listen);
        } else if kw(first, "declare") && self.with_hold {
            e.creates = Some(PinReason::HoldCursor);
        } else if kw(first, "unlisten") || kw(first, "close") || kw(first, "drop") {
            e.releases = true;
        }
        if self.set_config {
            e.settings = true;
            let names = self.dotted.iter().map(|s| String::from_utf8_lossy(s).to_ascii_lowercase());
            e.custom_settings.extend(names);
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fx(sql: &str) -> Effects {
        effects(sql.as_bytes())
    }

    #[test]
    fn a_multibyte_character_across_byte_eight_is_no_panic() {
        // Found by the protocol fuzzer: '䇨' spans bytes 6..9 of the word.
        assert!(!fx("SELECT Jp\u{a1}kP\u{41e8}J").any());
        assert!(fx("CREATE TABLE pg_temp.t\u{41e8} (a int)").creates.is_some());
    }

    #[test]
    fn the_cue_scan_skips_only_queries_without_effects() {
        let with_effects = [
            "SET search_path = a",
            "select 1; RESET ALL",
            "SELECT pg_catalog.set_config('a.b', 'c', false)",
            "select pg_catalog.PG_ADVISORY_LOCK(1)",
            "SELECT pg_advisory_unlock_all()",
            "LISTEN jobs",
            "UNLISTEN *",
            "CREATE TEMP TABLE x (a int)",
            "SELECT * INTO TEMPORARY t FROM u",
            "create table pg_temp.t (a int)",
            "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
            "PREPARE p AS SELECT 1",
            "DISCARD ALL",
            "DEALLOCATE p",
            "close c",
            "DROP TABLE t",
            "/* x */ sEt work_mem = 1",
        ];
        for sql in with_effects {
            assert!(has_cue(sql.as_bytes()), "{sql}");
            assert!(fx(sql).any(), "{sql}");
        }
        for sql in ["SELECT abalance FROM pgbench_accounts WHERE aid = 1", "UPDATE t SET x = 1", "", "s", "pg_advisor"]
        {
            assert_eq!(fx(sql), lexed_effects(sql.as_bytes()), "{sql}");
        }
        assert!(!has_cue(b"SELECT abalance FROM pgbench_accounts WHERE aid = 1"));
        assert!(!has_cue(b"pg_advisor"));
    }

    #[test]
    fn the_cue_scan_agrees_with_lexing_on_every_three_word_query() {
        let words = [
            "set",
            "SeT",
            "reset",
            "temp",
            "pg_temp.t",
            "select",
            "pg_advisory_lock(1)",
            "pg_advisory_unlock",
            "x.y",
            "'a.b'",
            ";",
            "default",
            "local",
            "session",
            "authorization",
            "with",
            "hold",
            "declare",
            "listen",
            "unlisten",
            "drop",
            "close",
            "prepare",
            "transaction",
            "discard",
            "all",
            "deallocate",
            "--",
            "/*",
            "*/",
            "\"set\"",
            "set_config(",
            "$$",
            "e'",
            "a.temp",
            "pg_catalog.pg_advisory_lock(1)",
            "x.set_config('a.b'",
            "q.close",
            "\u{41e8}set",
            "1set",
            "_temp",
            "$1set",
        ];
        for a in words {
            for b in words {
                for c in words {
                    let sql = format!("{a} {b} {c}");
                    assert_eq!(fx(&sql), lexed_effects(sql.as_bytes()), "{sql}");
                }
            }
        }
    }

    #[test]
    fn the_byte_table_marks_exactly_the_letters_cues_start_with() {
        for byte in 0..=255u8 {
            assert_eq!(BYTE_CLASS[byte as usize] == CUE_LETTER, !cues_starting_with(byte).is_empty(), "{byte}");
        }
    }

    #[test]
    fn the_cue_scan_agrees_with_lexing_on_random_strings_of_sql_bytes() {
        // Pieces that make words, name parts, quotes, comments and dollar quotes meet.
        let pieces: [&[u8]; 24] = [
            b"set",
            b"TEMP",
            b"listen",
            b"un",
            b"pg_",
            b"advisory_lock",
            b"temp.",
            b"a",
            b"1",
            b"_",
            b"$",
            b".",
            b" ",
            b";",
            b"'",
            b"\"",
            b"--",
            b"\n",
            b"/*",
            b"*/",
            b"e'",
            b"$q$",
            b"\xc3\xa9",
            b"(",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..200_000 {
            let mut sql = Vec::new();
            for _ in 0..1 + seed % 8 {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                sql.extend_from_slice(pieces[(seed >> 33) as usize % pieces.len()]);
            }
            assert_eq!(effects(&sql), lexed_effects(&sql), "{:?}", String::from_utf8_lossy(&sql));
        }
    }

    #[test]
    fn ordinary_queries_have_no_effects() {
        for sql in [
            "SELECT abalance FROM pgbench_accounts WHERE aid = 1",
            "UPDATE t SET x = 1 WHERE id = 2",
            "INSERT INTO t (settings, temp_c) VALUES ('set', 'temp')",
            "SELECT pg_advisory_xact_lock(1)",
            "BEGIN; SET LOCAL work_mem = '1MB'; COMMIT",
            "PREPARE TRANSACTION 'x'",
        ] {
            assert!(!fx(sql).any(), "{sql}: {:?}", fx(sql));
        }
    }

    #[test]
    fn settings_and_pins_are_seen() {
        assert!(fx("SET search_path = a").settings);
        assert!(fx("select 1; RESET ALL").settings);
        assert!(fx("select 1; RESET ALL").resets);
        assert!(fx("SET work_mem = DEFAULT").resets);
        assert!(fx("set session work_mem to default").resets);
        assert!(!fx("SET work_mem = '64MB'").resets);
        assert!(!fx("SET LOCAL work_mem TO DEFAULT").resets);
        assert!(fx("SELECT set_config('a.b', 'c', false)").settings);
        assert_eq!(fx("SELECT pg_catalog.set_config('App.Tenant', 'x', false)").custom_settings, ["app.tenant"]);
        assert_eq!(fx("SET SESSION myapp.x TO 1; RESET other.y").custom_settings, ["myapp.x", "other.y"]);
        assert_eq!(fx("select pg_catalog.pg_advisory_lock(1)").creates, Some(PinReason::AdvisoryLock));
        assert_eq!(fx("LISTEN jobs").creates, Some(PinReason::Listen));
        assert_eq!(fx("select pg_advisory_lock(42)").creates, Some(PinReason::AdvisoryLock));
        assert_eq!(fx("CREATE TEMP TABLE x (a int)").creates, Some(PinReason::TemporaryTable));
        assert_eq!(fx("SELECT * INTO TEMPORARY t FROM u").creates, Some(PinReason::TemporaryTable));
        assert_eq!(fx("DECLARE c CURSOR WITH HOLD FOR SELECT 1").creates, Some(PinReason::HoldCursor));
        assert_eq!(fx("DECLARE c CURSOR FOR SELECT 1").creates, None);
        assert_eq!(fx("PREPARE p AS SELECT 1").creates, Some(PinReason::SqlPrepare));
        assert_eq!(fx("SET SESSION AUTHORIZATION bob").creates, Some(PinReason::SessionAuthorization));
    }

    #[test]
    fn releases_and_wipes() {
        assert!(fx("UNLISTEN *").releases);
        assert!(fx("SELECT pg_advisory_unlock_all()").releases);
        let d = fx("DISCARD ALL");
        assert!(d.discard_all && d.drops_statements && d.settings);
        assert!(fx("DEALLOCATE ALL").drops_statements);
        assert!(fx("DEALLOCATE PREPARE ALL").drops_statements);
        assert!(!fx("DEALLOCATE p").drops_statements);
    }
}
