//! The pools of a `check --diff`: what each (route, user) pair would get before and after,
//! and whether that is the same pool changed or another pool.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{ConfigDiff, Effect, Fields, duration, path};
use crate::config::model::{AuthMethod, RawPool};
use crate::config::snapshot::{Backend, BackendTlsSettings, PoolSettings, RouteEntry, Snapshot, User};

/// The facts a pool's servers are opened with, for one (route, user).
struct PoolFacts {
    settings: PoolSettings,
    backend: Arc<Backend>,
    database: String,
    server_user: String,
    /// Compared, never printed.
    server_password: Option<String>,
}

impl PoolFacts {
    /// `backend/database/user`, as the admin console and metrics name pools.
    fn name(&self) -> String {
        format!("{}/{}/{}", self.backend.name, self.database, self.server_user)
    }
}

/// Pools are listed for what their (route, user) pairs get; pools that come or go with a
/// route or user are told by that route or user.
pub(super) fn pools(d: &mut ConfigDiff, r: &Snapshot, n: &Snapshot) {
    let (before, after) = (pool_facts(r), pool_facts(n));
    let mut replaced: Vec<(String, Fields, Effect)> = before
        .iter()
        .filter_map(|(key, old)| {
            let new = after.get(key)?;
            // pgate keys pools by backend, server database and server user: another one of
            // those is another pool, not a changed one.
            let moved = (&old.backend.name, &old.database, &old.server_user)
                != (&new.backend.name, &new.database, &new.server_user);
            let effect = if moved { Effect::PoolMoved } else { Effect::PoolReplaced };
            Some((old.name(), pool_fields(old, new), effect))
        })
        .collect();
    // By pool name, not by the route alias that leads there.
    replaced.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, fields, effect) in replaced {
        d.entity(&format!("pool {name}"), fields, effect);
    }
}

/// Users not in `[[users]]` (known by a certificate or by `auth_query`) get pools too;
/// their settings are those of no user override, under this placeholder name.
const UNLISTED: &str = "*";

/// Every pool a snapshot would create: each route (the fallback under the placeholder
/// database `*`) for each configured user, and for unlisted users when some can log in.
fn pool_facts(s: &Snapshot) -> BTreeMap<(String, String), PoolFacts> {
    let fallback = s.routes.fallback.iter().map(|b| {
        let route = RouteEntry { backend: b.clone(), server_database: "*".into(), pool: RawPool::default() };
        ("*".to_owned(), route)
    });
    let routes: Vec<(String, RouteEntry)> =
        s.routes.exact.iter().map(|(alias, route)| (alias.clone(), route.clone())).chain(fallback).collect();
    let mut users: Vec<Arc<User>> = s.users.values().cloned().collect();
    if admits_unlisted_users(s) {
        users.push(Arc::new(User::implicit(UNLISTED)));
    }
    let mut out = BTreeMap::new();
    for (alias, route) in &routes {
        for user in &users {
            let facts = PoolFacts {
                settings: s.pool_settings(route, user),
                backend: route.backend.clone(),
                database: route.server_database.clone(),
                server_user: user.server_user.clone(),
                server_password: user.server_password.clone(),
            };
            out.insert((alias.clone(), user.name.clone()), facts);
        }
    }
    out
}

fn admits_unlisted_users(s: &Snapshot) -> bool {
    s.auth.lookup.is_some() || s.auth.method == AuthMethod::Cert || !s.auth.cert_networks.is_empty()
}

fn pool_fields(r: &PoolFacts, n: &PoolFacts) -> Fields {
    let mut f = Fields::default();
    pool_settings(&mut f, &r.settings, &n.settings);
    f.value("backend", &r.backend.name, &n.backend.name);
    f.value("host", &r.backend.host, &n.backend.host);
    f.value("port", r.backend.port, n.backend.port);
    backend_tls(&mut f, &r.backend.tls, &n.backend.tls);
    f.value("database", &r.database, &n.database);
    f.value("server user", &r.server_user, &n.server_user);
    f.secret("server password", r.server_password.as_ref(), n.server_password.as_ref());
    f
}

fn pool_settings(f: &mut Fields, r: &PoolSettings, n: &PoolSettings) {
    f.value("mode", r.mode, n.mode);
    f.value("size", r.size, n.size);
    f.value("min_idle", r.min_idle, n.min_idle);
    f.value("query_wait_timeout", duration(r.query_wait_timeout), duration(n.query_wait_timeout));
    f.value("server_idle_timeout", duration(r.server_idle_timeout), duration(n.server_idle_timeout));
    f.value("server_lifetime", duration(r.server_lifetime), duration(n.server_lifetime));
    f.value("connect_timeout", duration(r.connect_timeout), duration(n.connect_timeout));
    f.value("server_check_delay", duration(r.server_check_delay), duration(n.server_check_delay));
    f.value("reset_timeout", duration(r.reset_timeout), duration(n.reset_timeout));
    f.value("idle_transaction_timeout", duration(r.idle_transaction_timeout), duration(n.idle_transaction_timeout));
    f.value("client_idle_timeout", duration(r.client_idle_timeout), duration(n.client_idle_timeout));
    f.value("max_prepared_statements", r.max_prepared_statements, n.max_prepared_statements);
    f.value("on_session_state", r.on_session_state, n.on_session_state);
}

fn backend_tls(f: &mut Fields, r: &BackendTlsSettings, n: &BackendTlsSettings) {
    f.value("tls.mode", r.mode, n.mode);
    f.value("tls.root_cert", path(&r.root_cert), path(&n.root_cert));
    f.value("tls.cert", path(&r.cert), path(&n.cert));
    f.secret("tls.key", r.key.as_ref(), n.key.as_ref());
    f.value("tls.crl", path(&r.crl), path(&n.crl));
    f.value("tls.min_version", r.min_version, n.min_version);
}
