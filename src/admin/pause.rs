//! PAUSE, RESUME and RECONNECT. A database names a route; what is paused is the pools of
//! its backend and server database (whichever client-facing name reached them), for every
//! user. Pools created while a pause is in force are paused as their first client arrives.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{AdminError, DATABASE};
use crate::pool::{Pool, PoolKey};
use crate::proxy::Shared;

/// How often PAUSE looks whether the servers have come free.
const PAUSE_POLL: Duration = Duration::from_millis(10);

/// What is paused: everything, and/or some (backend, server database) pairs.
#[derive(Debug, Default)]
pub struct Pauses {
    rules: Mutex<Rules>,
}

#[derive(Debug, Default)]
struct Rules {
    all: bool,
    routes: BTreeSet<(String, String)>,
}

impl Rules {
    fn covers(&self, key: &PoolKey) -> bool {
        self.all || self.routes.contains(&(key.backend.clone(), key.database.clone()))
    }
}

/// What a command applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Scope {
    All,
    Route { backend: String, database: String },
}

impl Scope {
    fn covers(&self, key: &PoolKey) -> bool {
        match self {
            Scope::All => true,
            Scope::Route { backend, database } => key.backend == *backend && key.database == *database,
        }
    }
}

/// The scope of `PAUSE db` and the like: the route of `db`.
fn scope(shared: &Shared, database: Option<&str>) -> Result<Scope, AdminError> {
    let Some(database) = database else { return Ok(Scope::All) };
    if database == DATABASE {
        return Err(AdminError::ConsoleDatabase { database: database.to_owned() });
    }
    let snapshot = shared.config.load();
    let route = crate::routing::route(&snapshot, database).map_err(|_| AdminError::NoSuchDatabase {
        database: database.to_owned(),
        known: snapshot.routed_names().join(", "),
    })?;
    Ok(Scope::Route { backend: route.backend.name.clone(), database: route.server_database })
}

impl Pauses {
    /// True when a pause covers the pool of `key`.
    pub fn covers(&self, key: &PoolKey) -> bool {
        self.lock().covers(key)
    }

    /// A pool that just got its first client: paused if a pause covers it.
    pub fn adopt(&self, pool: &Pool) {
        let rules = self.lock();
        if rules.covers(pool.key()) {
            pool.pause();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Rules> {
        self.rules.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// PAUSE [db]: new transactions wait; returns once the servers of the paused pools have
/// come free (running transactions finished; in session pooling, their clients left),
/// closing each as it does, so the backend can restart under a paused pgate.
pub async fn pause(shared: &Shared, database: Option<&str>) -> Result<(), AdminError> {
    let scope = scope(shared, database)?;
    let pools: Vec<Arc<Pool>> = {
        let mut rules = shared.console.pauses.lock();
        match &scope {
            Scope::All => rules.all = true,
            Scope::Route { backend, database } => {
                rules.routes.insert((backend.clone(), database.clone()));
            }
        }
        let pools: Vec<Arc<Pool>> = shared.pools.all().into_iter().filter(|p| scope.covers(p.key())).collect();
        pools.iter().for_each(|p| p.pause());
        pools
    };
    tracing::info!(
        database = database.unwrap_or("(all)"),
        pools = pools.len(),
        "PAUSE: waiting for servers to come free"
    );
    for pool in &pools {
        pool.reconnect();
    }
    while pools.iter().any(|p| p.server_counts().busy() > 0) {
        tokio::time::sleep(PAUSE_POLL).await;
    }
    tracing::info!(database = database.unwrap_or("(all)"), "PAUSE: done");
    Ok(())
}

/// RESUME [db]: undoes PAUSE (without a database: every pause).
pub fn resume(shared: &Shared, database: Option<&str>) -> Result<(), AdminError> {
    let scope = scope(shared, database)?;
    let mut rules = shared.console.pauses.lock();
    match &scope {
        Scope::All if !rules.all && rules.routes.is_empty() => {
            return Err(AdminError::NotPaused { what: "pgate".into() });
        }
        Scope::All => *rules = Rules::default(),
        Scope::Route { backend, database: server_db } => {
            if !rules.routes.remove(&(backend.clone(), server_db.clone())) {
                let name = database.unwrap_or_default();
                let what = if rules.all {
                    format!("database \"{name}\" on its own (all of pgate is: RESUME without a database)")
                } else {
                    format!("database \"{name}\"")
                };
                return Err(AdminError::NotPaused { what });
            }
        }
    }
    for pool in shared.pools.all() {
        if pool.is_paused() && !rules.covers(pool.key()) {
            pool.resume();
        }
    }
    tracing::info!(database = database.unwrap_or("(all)"), "RESUME");
    Ok(())
}

/// RECONNECT [db]: idle servers close now, busy ones when they come free; new ones open
/// as clients need them.
pub fn reconnect(shared: &Shared, database: Option<&str>) -> Result<(), AdminError> {
    let scope = scope(shared, database)?;
    let mut closed = 0;
    for pool in shared.pools.all().into_iter().filter(|p| scope.covers(p.key())) {
        closed += pool.reconnect();
    }
    tracing::info!(database = database.unwrap_or("(all)"), idle_closed = closed, "RECONNECT");
    Ok(())
}
