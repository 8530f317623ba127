//! All pools of the proxy, created on first use (a `"*"` fallback makes the set open-ended).

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use super::{Origin, Pool, PoolKey};
use crate::config::PoolSettings;
use crate::metrics::{Metrics, PoolMetrics};
use crate::server::Target;

#[derive(Default)]
pub struct Pools {
    map: Mutex<HashMap<PoolKey, Arc<Pool>>>,
    /// Server connection ids, unique across pools (for logs).
    ids: Arc<AtomicU64>,
}

impl Pools {
    /// The pool for `key`; if it does not exist, `make` gives its settings, target and
    /// origin, and its label children go into `metrics`.
    pub fn get_or_create(
        &self,
        key: PoolKey,
        make: impl FnOnce() -> (PoolSettings, Target, Origin),
        metrics: &Metrics,
    ) -> Arc<Pool> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(key.clone())
            .or_insert_with(|| {
                let (settings, target, origin) = make();
                let children = PoolMetrics::new(&metrics.pools, &key);
                Pool::new(key, settings, target, origin, self.ids.clone(), children)
            })
            .clone()
    }

    pub fn all(&self) -> Vec<Arc<Pool>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }

    /// Closes every pool (shutdown).
    pub fn close_all(&self) {
        self.all().iter().for_each(|p| p.close());
    }
}
