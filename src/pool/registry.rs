//! All pools of the proxy, created on first use (a `"*"` fallback makes the set open-ended).

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use super::{Pool, PoolKey};
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
    /// The pool for `key`; created with `settings` and `target` if it does not exist, with
    /// its label children in `metrics`.
    pub fn get_or_create(&self, key: PoolKey, settings: PoolSettings, target: Target, metrics: &Metrics) -> Arc<Pool> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(key.clone())
            .or_insert_with(|| {
                let children = PoolMetrics::new(&metrics.pools, &key);
                Pool::new(key, settings, target, self.ids.clone(), children)
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
