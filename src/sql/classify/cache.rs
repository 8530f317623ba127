//! Classifications shared by all sessions, by query text: a prepared statement or a
//! driver's catalog query is parsed once, not on every execution.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use lru::LruCache;

use super::{MAX_PARSED_LEN, classify};
use crate::sql::statement::Classified;

/// A bounded LRU of classifications keyed by the full query text.
pub struct ClassifierCache {
    pub(super) entries: Mutex<LruCache<String, Arc<Classified>>>,
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
