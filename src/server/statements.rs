//! The prepared statements a server connection holds on behalf of its pool: pool-wide
//! statements (`pgate_s<id>`) in an LRU of bounded size, those that must be closed before
//! reuse (their cached plan went stale), and the unnamed statement's definition.

use std::collections::HashSet;
use std::num::NonZeroUsize;

use bytes::Bytes;
use lru::LruCache;

/// The server-side name of pool statement `id`.
pub fn global_name(id: u64) -> String {
    format!("pgate_s{id}")
}

/// The id of a server-side name made by [`global_name`].
pub fn parse_global_name(name: &str) -> Option<u64> {
    name.strip_prefix("pgate_s")?.parse().ok()
}

#[derive(Debug)]
pub struct ServerStatements {
    cache: LruCache<u64, ()>,
    stale: HashSet<u64>,
    /// The definition (query and parameter types) of the last unnamed Parse, while the
    /// unnamed statement exists.
    pub unnamed: Option<Bytes>,
}

/// What making room for a statement requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// The server has it and it is good to use.
    Present,
    /// It must be prepared; first close these (evicted or stale) statements.
    Prepare { close: [Option<u64>; 2] },
}

impl ServerStatements {
    pub fn new(capacity: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity.max(1)).expect("at least 1");
        Self { cache: LruCache::new(capacity), stale: HashSet::new(), unnamed: None }
    }

    /// Marks `id` as used and says what must happen for the server to have it.
    pub fn admit(&mut self, id: u64) -> Admit {
        let stale = self.stale.remove(&id).then_some(id);
        if stale.is_none() && self.cache.get(&id).is_some() {
            return Admit::Present;
        }
        let evicted = match self.cache.push(id, ()) {
            Some((old, ())) if old != id => Some(old),
            _ => None,
        };
        Admit::Prepare { close: [stale, evicted] }
    }

    pub fn contains(&mut self, id: u64) -> bool {
        !self.stale.contains(&id) && self.cache.get(&id).is_some()
    }

    /// The server does not have `id` after all (its Parse failed or was skipped).
    pub fn remove(&mut self, id: u64) {
        self.cache.pop(&id);
        self.stale.remove(&id);
    }

    /// `id` still exists on the server but its plan is stale: close it before reuse.
    pub fn mark_stale(&mut self, id: u64) {
        if self.cache.contains(&id) {
            self.stale.insert(id);
        }
    }

    /// Replaces what is known with the server's own list (after DEALLOCATE / DISCARD).
    pub fn rebuild(&mut self, names: impl IntoIterator<Item = u64>) {
        self.cache.clear();
        self.stale.clear();
        for id in names {
            self.cache.push(id, ());
        }
    }

    /// Forgets every statement, the unnamed one too (after DISCARD ALL).
    pub fn clear(&mut self) {
        self.rebuild([]);
        self.unnamed = None;
    }

    pub fn len(&self) -> usize {
        self.cache.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_evicts_the_least_recently_used() {
        let mut s = ServerStatements::new(2);
        assert_eq!(s.admit(1), Admit::Prepare { close: [None, None] });
        assert_eq!(s.admit(2), Admit::Prepare { close: [None, None] });
        assert_eq!(s.admit(1), Admit::Present);
        assert_eq!(s.admit(3), Admit::Prepare { close: [None, Some(2)] });
        assert!(!s.contains(2));
    }

    #[test]
    fn stale_statements_are_closed_then_prepared_again() {
        let mut s = ServerStatements::new(4);
        s.admit(5);
        s.mark_stale(5);
        assert!(!s.contains(5));
        assert_eq!(s.admit(5), Admit::Prepare { close: [Some(5), None] });
        assert_eq!(s.admit(5), Admit::Present);
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(parse_global_name(&global_name(42)), Some(42));
        assert_eq!(parse_global_name("s1"), None);
    }
}
