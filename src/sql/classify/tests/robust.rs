//! Inputs that must not panic (garbage, deep nesting, huge statements), the size cap, the
//! cache, and a timing probe to run by hand.

use std::sync::Arc;
use std::time::Instant;

use super::super::{ClassifierCache, MAX_PARSED_LEN, classify};
use crate::sql::statement::{AuditClass, Outside, SettingChange, Unparsed};

/// A small deterministic generator, so a failure can be replayed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() as usize) % items.len()]
    }
}

const FRAGMENTS: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "(",
    ")",
    ";",
    "'",
    "\"",
    "$$",
    "$a$",
    "--",
    "/*",
    "*/",
    "E'\\'",
    "U&\"",
    "t",
    "a.b",
    ",",
    "AS",
    "WITH",
    "DELETE",
    "INSERT INTO",
    "VALUES",
    "SET",
    "RESET",
    "COPY",
    "TO",
    "PROGRAM",
    "TABLE",
    "VARIADIC",
    ") AS (",
    "x int",
    "set_config(",
    "1",
    "$1",
    "::",
    "<=>",
    "<+>",
    "é",
    "\u{0}",
    "\n",
    " ",
    "ALL",
    "DO",
    "GRANT",
    "ROLE",
    "EXPLAIN",
    "PREPARE",
    "p",
    "EXECUTE",
    "[",
    "]",
    "&&",
    "CREATE",
    "EXTENSION",
    "CASCADE",
    "ALTER",
];

#[test]
fn random_fragments_never_panic() {
    let mut random = Lcg(7);
    for _ in 0..3000 {
        let len = 1 + random.next() % 24;
        let sql: Vec<&str> = (0..len).map(|_| random.pick(FRAGMENTS)).collect();
        let sql = sql.join(if random.next().is_multiple_of(2) { " " } else { "" });
        let classified = classify(&sql);
        for statement in &classified.statements {
            assert!(!statement.command.is_empty() || statement.unparsed.is_some(), "{sql:?}: {statement:?}");
        }
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut random = Lcg(11);
    for _ in 0..2000 {
        let bytes: Vec<u8> = (0..random.next() % 64).map(|_| (random.next() % 128) as u8).collect();
        let _ = classify(&String::from_utf8_lossy(&bytes));
    }
    for sql in ["'", "\"", "$", "$$", "$a$", "/*", "--", "E'\\", "U&", "(", ")", "))((", ";", "\u{feff}", "é.ü"] {
        let _ = classify(sql);
    }
}

#[test]
fn deep_nesting_is_unparsed_not_a_crash() {
    for depth in [10, 60, 500, 5000] {
        let parens = format!("SELECT {}1{}", "(".repeat(depth), ")".repeat(depth));
        let subqueries = format!("SELECT * FROM {}t{}", "(SELECT * FROM ".repeat(depth), ")".repeat(depth));
        for sql in [parens, subqueries] {
            let classified = classify(&sql);
            let [statement] = classified.statements.as_slice() else { panic!("one statement: {classified:?}") };
            assert_eq!(statement.class, AuditClass::Read);
            assert_eq!(statement.unparsed.is_some(), depth > 40, "depth {depth}");
        }
    }
}

/// Left-nested operators escape sqlparser's recursion limit: 32 000 levels in 64 KiB must
/// still not overflow a small thread stack while the tree is walked and dropped.
#[test]
fn long_operator_chains_fit_a_small_stack() {
    let worker = std::thread::Builder::new().stack_size(1 << 20);
    let handle = worker
        .spawn(|| {
            let sums = classify(&format!("SELECT {}1 FROM t", "1+".repeat(32_000)));
            let conditions = classify(&format!("SELECT 1 FROM t WHERE {}true", "a AND ".repeat(10_000)));
            (sums, conditions)
        })
        .expect("a thread");
    let (sums, conditions) = handle.join().expect("no stack overflow");
    assert_eq!(sums.statements[0].relations.len(), 1);
    assert!(sums.statements[0].unparsed.is_none());
    assert!(conditions.statements[0].unparsed.is_none());
}

/// Inputs built to make a careless classifier quadratic or deeply recursive.
fn adversarial() -> Vec<(&'static str, String)> {
    let ctes: Vec<String> = (0..1000).map(|i| format!("c{i} AS (SELECT 1)")).collect();
    let calls: Vec<String> = (0..6000).map(|i| format!("f{i}()")).collect();
    vec![
        ("one relation 20 000 times", format!("SELECT * FROM {}", vec!["a"; 20_000].join(", "))),
        ("6 000 functions in FROM", format!("SELECT * FROM {}", calls.join(", "))),
        ("10 000 unclosed `) AS (`", format!("SELECT 1 FROM f(1{}", ") AS (".repeat(10_000))),
        (
            "1 000 CTEs seen by 2 000 subqueries",
            format!("WITH {} SELECT {}1", ctes.join(", "), "(SELECT 1 FROM c1), ".repeat(2_000)),
        ),
        ("EXPLAIN 200 000 times (too long to parse)", "EXPLAIN ".repeat(200_000)),
        ("PREPARE p AS 7 000 times", "PREPARE p AS ".repeat(7_000)),
        ("60 000 open parentheses", "(".repeat(60_000)),
    ]
}

#[test]
fn adversarial_inputs_finish() {
    for (what, sql) in adversarial() {
        let classified = classify(&sql);
        assert!(!classified.statements.is_empty(), "{what}");
    }
}

#[test]
fn only_the_over_long_statement_is_unparsed() {
    let long = format!("INSERT INTO t VALUES {}", vec!["(1, 'abc')"; 8000].join(", "));
    assert!(long.len() > MAX_PARSED_LEN);
    let sql = format!("SET x = 1; {long}; SELECT * FROM u");
    let classified = classify(&sql);
    let [set, insert, select] = classified.statements.as_slice() else { panic!("{classified:?}") };
    assert_eq!((set.class, set.unparsed.is_none()), (AuditClass::MiscSet, true));
    assert_eq!((insert.class, insert.command.as_str()), (AuditClass::Write, "INSERT"));
    assert_eq!(insert.unparsed, Some(Unparsed::TooLong(long.len())));
    assert!(insert.relations.is_empty());
    assert_eq!((select.class, select.relations.len()), (AuditClass::Read, 1));
}

/// Past the first `MAX_PARSED_LEN` bytes, the words that change a classification still count.
#[test]
fn what_lies_beyond_the_parsed_size_still_counts() {
    let filler = format!("'{}'", "x".repeat(MAX_PARSED_LEN));
    let columns = vec!["a"; 40_000].join(", ");
    let cases = [
        (format!("WITH a AS (SELECT {filler}) DELETE FROM t"), AuditClass::Write, "SELECT", vec![], vec![]),
        (format!("SELECT {filler} INTO t"), AuditClass::Ddl, "SELECT INTO", vec![], vec![]),
        (
            format!("SELECT {filler}, set_config($1, $2, false)"),
            AuditClass::Read,
            "SELECT",
            vec![SettingChange::Unknown],
            vec![],
        ),
        (format!("COPY t ({columns}) FROM PROGRAM 'x'"), AuditClass::Write, "COPY", vec![], vec![Outside::CopyProgram]),
    ];
    for (sql, class, command, settings, outside) in cases {
        let classified = classify(&sql);
        let [statement] = classified.statements.as_slice() else { panic!("one statement") };
        let found = (statement.class, statement.command.as_str(), &statement.settings, &statement.outside);
        assert_eq!(found, (class, command, &settings, &outside), "{}", &sql[..40]);
        assert_eq!(statement.unparsed, Some(Unparsed::TooLong(sql.len())));
    }
}

#[test]
fn long_identifiers_are_cut_as_postgresql_cuts_them() {
    let name = "a".repeat(70);
    let classified = classify(&format!("SELECT * FROM s.{name}"));
    assert_eq!(classified.statements[0].relations[0].name.name, "a".repeat(63));
    let quoted = format!("SELECT * FROM \"{}é\"", "b".repeat(62));
    assert_eq!(classify(&quoted).statements[0].relations[0].name.name, "b".repeat(62));
}

#[test]
fn cache_counts_hits_and_returns_the_same_classification() {
    let cache = ClassifierCache::new(8);
    let first = cache.classify("SELECT * FROM t WHERE id = $1");
    let second = cache.classify("SELECT * FROM t WHERE id = $1");
    assert!(Arc::ptr_eq(&first, &second));
    assert_eq!((cache.hits(), cache.misses(), cache.len()), (1, 1, 1));
    assert_eq!(*first, classify("SELECT * FROM t WHERE id = $1"));
    // Keyed by the exact text.
    cache.classify("select * from t where id = $1");
    assert_eq!((cache.hits(), cache.misses(), cache.len()), (1, 2, 2));
}

#[test]
fn cache_is_bounded_and_evicts_the_least_recently_used() {
    let cache = ClassifierCache::new(3);
    // Columns, not constants: texts that differ only in constants share one shape.
    for i in 0..10 {
        cache.classify(&format!("SELECT c{i}"));
    }
    assert_eq!(cache.len(), 3);
    cache.classify("SELECT c9");
    cache.classify("SELECT c0");
    assert_eq!((cache.hits(), cache.misses()), (1, 11));
    assert_eq!(ClassifierCache::new(0).classify("SELECT 1").statements.len(), 1);
}

#[test]
fn cache_does_not_keep_over_long_texts() {
    let cache = ClassifierCache::new(4);
    let long = format!("SELECT '{}'", "x".repeat(MAX_PARSED_LEN));
    cache.classify(&long);
    cache.classify(&long);
    assert_eq!((cache.len(), cache.hits(), cache.misses()), (0, 0, 2));
}

#[test]
fn cache_is_shared_across_threads_and_survives_a_poisoned_lock() {
    let cache = Arc::new(ClassifierCache::new(64));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let cache = Arc::clone(&cache);
            std::thread::spawn(move || {
                for i in 0..50 {
                    assert_eq!(cache.classify(&format!("SELECT c{}", i % 10)).statements.len(), 1, "thread {t}");
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().expect("no panic"));
    assert_eq!(cache.hits() + cache.misses(), 200);
    assert_eq!(cache.len(), 10);

    let poisoner = Arc::clone(&cache);
    let _ = std::thread::spawn(move || {
        let _guard = poisoner.exact.lock();
        panic!("poison the lock");
    })
    .join();
    assert!(cache.exact.is_poisoned());
    assert_eq!(cache.classify("SELECT c1").statements.len(), 1);
    assert_eq!(cache.len(), 10);
}

/// `cargo test --release --lib classify::tests::robust::timing -- --ignored --nocapture`
#[test]
#[ignore = "prints timings; run by hand with --release"]
fn timing() {
    let statements = [
        "SELECT id, content FROM lightrag_vdb_chunks WHERE workspace = $1 ORDER BY content_vector <=> $2::vector LIMIT $3",
        "INSERT INTO lightrag_doc_chunks (workspace, id, tokens, content) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (workspace, id) DO UPDATE SET tokens = EXCLUDED.tokens, content = EXCLUDED.content",
        "SELECT * FROM cypher('g', $$ MATCH (n:base {entity_id: 'x'}) RETURN n $$) AS (n agtype)",
        super::corpus::ASYNCPG_INTRO_LOOKUP_TYPES,
    ];
    for sql in statements {
        let rounds = 2000;
        let started = Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(classify(std::hint::black_box(sql)));
        }
        let miss = started.elapsed() / rounds;
        let cache = ClassifierCache::new(16);
        cache.classify(sql);
        let started = Instant::now();
        for _ in 0..rounds * 50 {
            std::hint::black_box(cache.classify(std::hint::black_box(sql)));
        }
        let hit = started.elapsed() / (rounds * 50);
        println!("{:>5} chars: miss (classify) {miss:?}, hit {hit:?}", sql.len());
    }
    // Simple queries with constants: a hit by shape costs a scan of the text.
    let cache = ClassifierCache::new(16);
    let rounds = 100_000;
    let started = Instant::now();
    for i in 0..rounds {
        std::hint::black_box(cache.classify(&format!("SELECT abalance FROM pgbench_accounts WHERE aid = {i};")));
    }
    println!("pgbench -S simple: {:?} per statement (shape hits: {})", started.elapsed() / rounds, cache.hits());
    for (what, sql) in adversarial() {
        let started = Instant::now();
        std::hint::black_box(classify(&sql));
        println!("{what} ({} bytes): {:?}", sql.len(), started.elapsed());
    }
}
