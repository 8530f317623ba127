//! The statement classifier: query text -> [`Classified`], with sqlparser's PostgreSQL syntax
//! tree where it parses and a keyword fallback where it does not; and a shared cache.
//!
//! A query string is split into statements first, by PostgreSQL's lexical rules (`scan`), so
//! one statement sqlparser rejects leaves the others parsed. Each statement is then
//! rewritten where PostgreSQL syntax is missing from sqlparser (`rewrite`), parsed, and
//! classified from the tree (`ast`, `walk`, `targets`, `settings`). What does not parse is
//! matched against a few fully understood shapes (`shapes`), else classified by keywords
//! (`fallback`, `keywords`) and marked unparsed.

mod ast;
mod fallback;
mod keywords;
mod names;
mod rewrite;
mod scan;
mod settings;
mod shapes;
mod targets;
mod walk;

#[cfg(test)]
mod tests;

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use lru::LruCache;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use super::statement::{Classified, Statement, Unparsed};

/// Statements longer than this are classified by keywords, not parsed, and marked
/// [`Unparsed::TooLong`]: parsing cost grows with length (a 778 KB INSERT takes over 100 ms).
pub const MAX_PARSED_LEN: usize = 64 * 1024;

/// Classifies a query string: one [`Statement`] per statement, in order.
pub fn classify(sql: &str) -> Classified {
    let statements =
        scan::split(sql).into_iter().filter_map(|range| sql.get(range)).flat_map(classify_statement).collect();
    Classified { statements }
}

/// One statement's text (no top-level semicolon in it).
fn classify_statement(sql: &str) -> Vec<Statement> {
    if sql.len() > MAX_PARSED_LEN {
        return vec![fallback::classify_long(sql)];
    }
    let tokens = scan::scan(sql);
    let text = rewrite::rewrite(sql, &tokens);
    with_stack_for(tokens.len(), || parse_and_classify(sql, &text, &tokens))
}

/// Stack a statement of `tokens` tokens may need.
const STACK_BASE: usize = 256 * 1024;
const STACK_PER_TOKEN: usize = 512;

/// Runs `f` where the stack has room for a syntax tree as deep as the statement is long.
/// sqlparser guards its own recursion, but walking and dropping the tree recurse too, and
/// left-nested operators (`1+1+1...`, 30 000 levels fit in 64 KiB) are not counted against
/// its recursion limit: without this a client could overflow a worker's stack and abort the
/// process. Short statements run where they are; long ones get a fresh stack.
fn with_stack_for<R>(tokens: usize, f: impl FnOnce() -> R) -> R {
    let needed = STACK_BASE.saturating_add(tokens.saturating_mul(STACK_PER_TOKEN));
    stacker::maybe_grow(needed, needed, f)
}

/// Parses the rewritten `text` of the statement `sql` and classifies it; the tree is dropped
/// here too, inside the grown stack.
fn parse_and_classify(sql: &str, text: &str, tokens: &[scan::Token]) -> Vec<Statement> {
    match Parser::parse_sql(&PostgreSqlDialect {}, text) {
        // One text may still hold several statements if sqlparser tokenizes it otherwise
        // than PostgreSQL does; each is classified, which errs on the side of more.
        Ok(parsed) if !parsed.is_empty() => {
            parsed.iter().map(|statement| ast::classify(statement, sql, tokens)).collect()
        }
        Ok(_) => vec![fallback::classify(sql, tokens, Unparsed::Syntax("no statement found".into()))],
        Err(error) => vec![
            shapes::recognize(sql, tokens)
                .unwrap_or_else(|| fallback::classify(sql, tokens, Unparsed::Syntax(error.to_string()))),
        ],
    }
}

/// Classifications shared by all sessions: a bounded LRU keyed by the full query text, so a
/// prepared statement or a driver's catalog query is parsed once, not on every execution.
pub struct ClassifierCache {
    entries: Mutex<LruCache<String, Arc<Classified>>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl ClassifierCache {
    /// A cache of at most `capacity` query strings (at least one). Texts longer than
    /// [`MAX_PARSED_LEN`] are classified every time and not kept, so the cache holds at most
    /// `capacity` x 64 KiB of query text.
    pub fn new(capacity: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Self { entries: Mutex::new(LruCache::new(capacity)), hits: AtomicU64::new(0), misses: AtomicU64::new(0) }
    }

    /// The classification of `sql`, from the cache or classified now (outside the lock:
    /// two sessions missing the same text at once both classify it, which is harmless).
    pub fn classify(&self, sql: &str) -> Arc<Classified> {
        if let Some(found) = self.lock().get(sql) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Arc::clone(found);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let classified = Arc::new(classify(sql));
        if sql.len() <= MAX_PARSED_LEN {
            self.lock().put(sql.to_owned(), Arc::clone(&classified));
        }
        classified
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    /// Query strings held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A panic elsewhere while holding the lock leaves the LRU consistent (its operations
    /// do not call out), so a poisoned lock is used as is.
    fn lock(&self) -> MutexGuard<'_, LruCache<String, Arc<Classified>>> {
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl std::fmt::Debug for ClassifierCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClassifierCache")
            .field("len", &self.len())
            .field("hits", &self.hits())
            .field("misses", &self.misses())
            .finish()
    }
}
