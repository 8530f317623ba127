//! A configuration reload, pool by pool: a pool whose settings and server target come out
//! the same keeps its servers and statistics; one that changed takes the new ones and has
//! its servers replaced as they come free (clients keep their sessions); one whose route or
//! user is gone is left to the sessions it has.

use std::sync::Arc;

use super::origin::{Origin, login_target, lookup_target};
use super::{Pool, PoolKey, Pools};
use crate::auth::derived::DerivedKeys;
use crate::config::{PoolSettings, Snapshot};
use crate::server::Target;

/// What a reload did to one pool (pools it left as they were are not listed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolChange {
    pub pool: PoolKey,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// New settings or target (each `name: old -> new`); servers are replaced as they come free.
    Replaced(Vec<String>),
    /// No longer reached by new logins (why); its sessions keep it.
    Left(String),
}

impl std::fmt::Display for PoolChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.outcome {
            Outcome::Replaced(changes) => {
                write!(f, "pool {}: {}; servers are replaced as they come free", self.pool, changes.join(", "))
            }
            Outcome::Left(why) => write!(f, "pool {}: {why}; its sessions keep it", self.pool),
        }
    }
}

impl Pools {
    /// Brings every pool in line with `next` (see the module's description).
    pub fn reconfigure(&self, next: &Snapshot, keys: &Arc<DerivedKeys>) -> Vec<PoolChange> {
        self.all()
            .iter()
            .filter_map(|pool| {
                let outcome = reconfigure_pool(pool, next, keys)?;
                Some(PoolChange { pool: pool.key().clone(), outcome })
            })
            .collect()
    }
}

fn reconfigure_pool(pool: &Pool, next: &Snapshot, keys: &Arc<DerivedKeys>) -> Option<Outcome> {
    let key = pool.key();
    let (settings, mut target) = match pool.origin() {
        Origin::Logins { database, user } => {
            let Ok(route) = crate::routing::route(next, database) else {
                return Some(Outcome::Left(format!("database \"{database}\" is no longer routed")));
            };
            // A user the new file drops keeps the pool it had (its logins now fail).
            let user = next.users.get(&user.name).unwrap_or(user);
            let now = PoolKey {
                backend: route.backend.name.clone(),
                database: route.server_database.clone(),
                user: user.server_user.clone(),
            };
            if now != *key {
                return Some(Outcome::Left(format!("database \"{database}\" now leads to pool {now}")));
            }
            let settings = next.pool_settings(&route, user);
            let target = login_target(&route, user, &settings, keys);
            (settings, target)
        }
        Origin::Lookup => {
            let lookup = next.auth.lookup.as_ref().filter(|l| l.user == key.user)?;
            let backend = next.backends.get(&key.backend)?;
            // Lookup pools have fixed settings; only where their servers log in can change.
            let settings = PoolSettings::clone(&pool.settings());
            let target = lookup_target(backend, key.database.clone(), lookup, &settings, keys);
            (settings, target)
        }
    };
    // Keys proven by logins (auth_query passthrough) stay with the pool.
    target.passthrough = pool.target().passthrough.clone();
    let changes = pool.reconfigure(settings, target);
    (!changes.is_empty()).then_some(Outcome::Replaced(changes))
}

impl Pool {
    /// Takes `target` (fresh TLS connector and keys, even when nothing else changed) and,
    /// when the settings or where servers go changed, `settings` too; servers open now are
    /// then replaced as they come free. Returns what changed.
    fn reconfigure(&self, settings: PoolSettings, target: Target) -> Vec<String> {
        let mut changes = settings_changes(&self.settings(), &settings);
        changes.extend(target_changes(&self.target(), &target));
        self.target.store(Arc::new(target));
        if !changes.is_empty() {
            self.settings.store(Arc::new(settings));
            self.reconnect();
        }
        changes
    }
}

/// `name: old -> new` for each setting that differs.
fn settings_changes(old: &PoolSettings, new: &PoolSettings) -> Vec<String> {
    let mut changes = Vec::new();
    let mut compare = |name: &str, old: String, new: String| {
        if old != new {
            changes.push(format!("{name}: {old} -> {new}"));
        }
    };
    let time = |d: std::time::Duration| humantime::format_duration(d).to_string();
    compare("mode", old.mode.to_string(), new.mode.to_string());
    compare("size", old.size.to_string(), new.size.to_string());
    compare("min_idle", old.min_idle.to_string(), new.min_idle.to_string());
    compare("query_wait_timeout", time(old.query_wait_timeout), time(new.query_wait_timeout));
    compare("server_idle_timeout", time(old.server_idle_timeout), time(new.server_idle_timeout));
    compare("server_lifetime", time(old.server_lifetime), time(new.server_lifetime));
    compare("connect_timeout", time(old.connect_timeout), time(new.connect_timeout));
    compare("server_check_delay", time(old.server_check_delay), time(new.server_check_delay));
    compare("reset_timeout", time(old.reset_timeout), time(new.reset_timeout));
    compare("idle_transaction_timeout", time(old.idle_transaction_timeout), time(new.idle_transaction_timeout));
    compare("client_idle_timeout", time(old.client_idle_timeout), time(new.client_idle_timeout));
    compare(
        "max_prepared_statements",
        old.max_prepared_statements.to_string(),
        new.max_prepared_statements.to_string(),
    );
    compare("on_session_state", old.on_session_state.to_string(), new.on_session_state.to_string());
    changes
}

/// What differs in where and how servers log in; passwords are never shown.
fn target_changes(old: &Target, new: &Target) -> Vec<String> {
    let mut changes = Vec::new();
    let (a, b) = (&old.backend, &new.backend);
    if (&a.host, a.port) != (&b.host, b.port) {
        changes.push(format!("backend address: {} -> {}", a.address(), b.address()));
    }
    if a.tls != b.tls {
        changes.push("backend tls settings".to_owned());
    }
    if old.database != new.database || old.user != new.user {
        changes.push(format!("server login: {}@{} -> {}@{}", old.user, old.database, new.user, new.database));
    }
    if old.password.as_ref().map(|p| p.plain()) != new.password.as_ref().map(|p| p.plain()) {
        changes.push("server password changed".to_owned());
    }
    changes
}
