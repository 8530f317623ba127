//! Classifications shared by all sessions: a bounded LRU keyed by the full query text (a
//! prepared statement or a driver's catalog query is parsed once), and one keyed by the
//! statement's shape — its text with every literal replaced — so simple queries that differ
//! only in their constants (`WHERE id = 42`, `WHERE id = 43`) are parsed once too.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use lru::LruCache;

use super::scan::{Tok, tokens};
use super::{MAX_PARSED_LEN, classify};
use crate::sql::statement::Classified;

pub struct ClassifierCache {
    pub(super) exact: Mutex<LruCache<String, Arc<Classified>>>,
    shapes: Mutex<LruCache<String, Arc<Classified>>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl ClassifierCache {
    /// A cache of at most `capacity` query strings and as many shapes (at least one each).
    /// Texts longer than [`MAX_PARSED_LEN`] are classified every time and not kept, so the
    /// cache holds at most 2 x `capacity` x 64 KiB of query text.
    pub fn new(capacity: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Self {
            exact: Mutex::new(LruCache::new(capacity)),
            shapes: Mutex::new(LruCache::new(capacity)),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The classification of `sql`, from the cache or classified now (outside the locks:
    /// two sessions missing the same text at once both classify it, which is harmless).
    pub fn classify(&self, sql: &str) -> Arc<Classified> {
        if let Some(found) = lock(&self.exact).get(sql) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Arc::clone(found);
        }
        let shape = (sql.len() <= MAX_PARSED_LEN).then(|| shape_of(sql)).flatten();
        if let Some(shape) = &shape
            && let Some(found) = lock(&self.shapes).get(shape)
        {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Arc::clone(found);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let classified = Arc::new(classify(sql));
        if sql.len() > MAX_PARSED_LEN {
            return classified;
        }
        // The text is kept as it is (a text that comes again hits without a scan), and its
        // shape when the constants do not matter to the classification. Texts that differ
        // only in constants then hit the shape and are not kept themselves: the exact cache
        // holds at most one text per shape.
        if let Some(shape) = shape
            && literals_do_not_matter(&classified)
        {
            lock(&self.shapes).put(shape, Arc::clone(&classified));
        }
        lock(&self.exact).put(sql.to_owned(), Arc::clone(&classified));
        classified
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    /// Query strings and shapes held.
    pub fn len(&self) -> usize {
        lock(&self.exact).len() + lock(&self.shapes).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
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

fn lock(cache: &Mutex<LruCache<String, Arc<Classified>>>) -> MutexGuard<'_, LruCache<String, Arc<Classified>>> {
    // A panic while holding the lock leaves a consistent LRU behind; keep serving.
    cache.lock().unwrap_or_else(|e| e.into_inner())
}

/// The text's tokens with every string and number literal replaced (comments dropped);
/// `None` when it has no literal (its text is its shape).
fn shape_of(sql: &str) -> Option<String> {
    let mut shape = String::with_capacity(sql.len());
    let mut literals = false;
    for token in tokens(sql) {
        let text = match token.kind {
            Tok::Str => "''",
            Tok::Number => "0",
            _ => token.text(sql),
        };
        literals |= matches!(token.kind, Tok::Str | Tok::Number);
        if !shape.is_empty() {
            shape.push(' ');
        }
        shape.push_str(text);
    }
    literals.then_some(shape)
}

/// Relations, functions and classes do not depend on constants; the settings a statement
/// changes (their values, `set_config`'s names) and COPY's file names do.
fn literals_do_not_matter(classified: &Classified) -> bool {
    classified.statements.iter().all(|s| s.settings.is_empty() && s.outside.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_share_a_shape_and_settings_do_not() {
        let cache = ClassifierCache::new(8);
        let a = cache.classify("SELECT abalance FROM pgbench_accounts WHERE aid = 42");
        let b = cache.classify("SELECT abalance FROM pgbench_accounts WHERE aid = 7 /* other */");
        assert!(Arc::ptr_eq(&a, &b), "one parse for both");
        assert_eq!((cache.hits(), cache.misses()), (1, 1));
        let one = cache.classify("SET search_path = 'alpha'");
        let other = cache.classify("SET search_path = 'beta'");
        assert_ne!(one, other, "a setting's value is part of its classification");
        let file = cache.classify("COPY t TO '/tmp/a'");
        assert!(!file.statements[0].outside.is_empty());
        assert_eq!(shape_of("SELECT $1"), None);
        assert_eq!(shape_of("SELECT 'a;b', E'x', $$y$$, 1.5e3").as_deref(), Some("SELECT '' , '' , '' , 0"));
    }
}
