//! The SHOW views built from the configuration in force, with live counts beside it:
//! DATABASES, USERS, CONFIG (PgBouncer 1.25's columns) and WORKSPACES (pgate's own).

use std::collections::BTreeSet;
use std::time::Duration;

use super::DATABASE;
use super::table::{NULL, Table, Type, num, text};
use crate::config::{PoolSettings, RouteEntry, Snapshot, User};
use crate::pool::PoolKey;
use crate::proxy::Shared;

use Type::{Int4, Text};

/// One row of SHOW DATABASES: a client-facing name and where it leads.
struct Database {
    name: String,
    route: Option<RouteEntry>,
}

/// Routed names, then names the `"*"` backend serves that have pools now, then the console.
fn databases_of(shared: &Shared, snapshot: &Snapshot) -> Vec<Database> {
    let mut list: Vec<Database> =
        snapshot.routes.exact.iter().map(|(name, r)| Database { name: name.clone(), route: Some(r.clone()) }).collect();
    if let Some(fallback) = &snapshot.routes.fallback {
        let covered: BTreeSet<(&str, &str)> =
            snapshot.routes.exact.values().map(|r| (r.backend.name.as_str(), r.server_database.as_str())).collect();
        let mut seen = BTreeSet::new();
        for pool in shared.pools.all() {
            let key = pool.key();
            let db = key.database.as_str();
            if key.backend == fallback.name
                && !covered.contains(&(key.backend.as_str(), db))
                && !snapshot.routes.exact.contains_key(db)
                && seen.insert(db.to_owned())
            {
                let route = crate::routing::route(snapshot, db).ok();
                list.push(Database { name: db.to_owned(), route });
            }
        }
    }
    list.sort_by(|a, b| a.name.cmp(&b.name));
    list.push(Database { name: DATABASE.to_owned(), route: None });
    list
}

pub fn database_count(shared: &Shared) -> usize {
    databases_of(shared, &shared.config.load()).len()
}

pub fn databases(shared: &Shared) -> Table {
    let mut t = Table::new(&[
        ("name", Text),
        ("host", Text),
        ("port", Int4),
        ("database", Text),
        ("force_user", Text),
        ("pool_size", Int4),
        ("min_pool_size", Int4),
        ("reserve_pool_size", Int4),
        ("server_lifetime", Int4),
        ("pool_mode", Text),
        ("load_balance_hosts", Text),
        ("max_connections", Int4),
        ("current_connections", Int4),
        ("max_client_connections", Int4),
        ("current_client_connections", Int4),
        ("paused", Int4),
        ("disabled", Int4),
    ]);
    let snapshot = shared.config.load();
    let pools = shared.pools.all();
    let clients = shared.console.clients.all();
    let anyone = User::implicit("");
    for db in databases_of(shared, &snapshot) {
        let client_count = clients.iter().filter(|c| c.info.database == db.name).count();
        let Some(route) = db.route else {
            let port = snapshot.listen.address.rsplit(':').next().and_then(|p| p.parse::<u16>().ok());
            t.push(vec![
                text(&db.name),
                NULL,
                port.map(|p| p.to_string()),
                text(&db.name),
                NULL,
                num(0),
                num(0),
                num(0),
                num(0),
                text("statement"),
                NULL,
                num(0),
                num(0),
                num(0),
                num(client_count),
                num(0),
                num(0),
            ]);
            continue;
        };
        let settings = snapshot.pool_settings(&route, &anyone);
        let same = |key: &PoolKey| key.backend == route.backend.name && key.database == route.server_database;
        let servers: usize = pools.iter().filter(|p| same(p.key())).map(|p| p.stats().open).sum();
        let paused = shared.console.pauses.covers(&PoolKey {
            backend: route.backend.name.clone(),
            database: route.server_database.clone(),
            user: String::new(),
        });
        t.push(vec![
            text(&db.name),
            text(&route.backend.host),
            num(route.backend.port),
            text(&route.server_database),
            NULL,
            num(settings.size),
            num(settings.min_idle),
            num(0),
            num(settings.server_lifetime.as_secs()),
            text(settings.mode.to_string()),
            NULL,
            num(0),
            num(servers),
            num(0),
            num(client_count),
            num(u8::from(paused)),
            num(0),
        ]);
    }
    t
}

/// Configured users, then users connected now that the configuration does not list
/// (looked up with auth_query, or known by certificate).
fn user_names(shared: &Shared, snapshot: &Snapshot) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = snapshot.users.keys().cloned().collect();
    names.extend(shared.console.clients.all().iter().map(|c| c.info.user.clone()));
    names
}

pub fn user_count(shared: &Shared) -> usize {
    user_names(shared, &shared.config.load()).len()
}

pub fn users(shared: &Shared) -> Table {
    let mut t = Table::new(&[
        ("name", Text),
        ("pool_size", Text),
        ("reserve_pool_size", Text),
        ("pool_mode", Text),
        ("max_user_connections", Int4),
        ("current_connections", Int4),
        ("max_user_client_connections", Int4),
        ("current_client_connections", Int4),
    ]);
    let snapshot = shared.config.load();
    let pools = shared.pools.all();
    let clients = shared.console.clients.all();
    for name in user_names(shared, &snapshot) {
        let user = snapshot.users.get(&name);
        let server_user = user.map_or(name.as_str(), |u| u.server_user.as_str());
        let servers: usize = pools.iter().filter(|p| p.key().user == server_user).map(|p| p.stats().open).sum();
        let client_count = clients.iter().filter(|c| c.info.user == name).count();
        t.push(vec![
            text(&name),
            user.and_then(|u| u.pool.size).map(|n| n.to_string()),
            NULL,
            user.and_then(|u| u.pool.mode).map(|m| m.to_string()),
            num(0),
            num(servers),
            num(0),
            num(client_count),
        ]);
    }
    t
}

/// SHOW CONFIG: pgate's settings by their TOML keys, and the few PgBouncer names whose
/// meaning pgate shares (monitoring reads `max_client_conn` and `max_user_connections`).
/// `changeable`: whether RELOAD applies a change (pools: see `pool::reload`).
pub fn config(shared: &Shared) -> Table {
    let mut t = Table::new(&[("key", Text), ("value", Text), ("default", Text), ("changeable", Text)]);
    let s = shared.config.load();
    let p = s.default_pool_settings();
    let d = PoolSettings::default();
    let dur = |d: Duration| humantime::format_duration(d).to_string();
    let list = |items: Vec<String>| items.join(", ");
    let mut rows: Vec<(&str, String, String, bool)> = vec![
        ("listen.address", s.listen.address.clone(), "0.0.0.0:5432".into(), false),
        ("listen.max_client_connections", s.listen.max_client_connections.to_string(), "5000".into(), true),
        ("listen.login_timeout", dur(s.listen.login_timeout), "10s".into(), true),
        ("listen.shutdown_timeout", dur(s.listen.shutdown_timeout), "30s".into(), true),
        ("auth.method", s.auth.method.to_string(), "scram-sha-256".into(), true),
        ("auth.trust_networks", list(s.auth.trust_networks.iter().map(|n| n.to_string()).collect()), "".into(), true),
        ("auth.cert_networks", list(s.auth.cert_networks.iter().map(|n| n.to_string()).collect()), "".into(), true),
        ("auth.auth_user", s.auth.lookup.as_ref().map(|l| l.user.clone()).unwrap_or_default(), "".into(), true),
        ("auth.auth_query", s.auth.lookup.as_ref().map(|l| l.query.clone()).unwrap_or_default(), "".into(), true),
        ("admin.users", list(s.admin.users.iter().cloned().collect()), "".into(), true),
        ("pool.mode", p.mode.to_string(), d.mode.to_string(), true),
        ("pool.size", p.size.to_string(), d.size.to_string(), true),
        ("pool.min_idle", p.min_idle.to_string(), d.min_idle.to_string(), true),
        ("pool.query_wait_timeout", dur(p.query_wait_timeout), dur(d.query_wait_timeout), true),
        ("pool.server_idle_timeout", dur(p.server_idle_timeout), dur(d.server_idle_timeout), true),
        ("pool.server_lifetime", dur(p.server_lifetime), dur(d.server_lifetime), true),
        ("pool.connect_timeout", dur(p.connect_timeout), dur(d.connect_timeout), true),
        ("pool.server_check_delay", dur(p.server_check_delay), dur(d.server_check_delay), true),
        ("pool.reset_timeout", dur(p.reset_timeout), dur(d.reset_timeout), true),
        ("pool.idle_transaction_timeout", dur(p.idle_transaction_timeout), dur(d.idle_transaction_timeout), true),
        ("pool.client_idle_timeout", dur(p.client_idle_timeout), dur(d.client_idle_timeout), true),
        (
            "pool.max_prepared_statements",
            p.max_prepared_statements.to_string(),
            d.max_prepared_statements.to_string(),
            true,
        ),
        ("pool.on_session_state", p.on_session_state.to_string(), d.on_session_state.to_string(), true),
        ("tls.mode", s.tls.as_ref().map_or("disable".into(), |t| t.mode.to_string()), "disable".into(), true),
        ("audit.sink", s.audit.as_ref().map(|a| a.sink.to_string()).unwrap_or_default(), "".into(), true),
        ("audit.format", s.audit.as_ref().map(|a| a.format.to_string()).unwrap_or_default(), "".into(), true),
        ("workspaces", list(s.workspaces.list.iter().map(|w| w.name.clone()).collect()), "".into(), true),
        // PgBouncer's names, for tools that read them.
        ("max_client_conn", s.listen.max_client_connections.to_string(), "5000".into(), true),
        ("default_pool_size", p.size.to_string(), d.size.to_string(), true),
        ("min_pool_size", p.min_idle.to_string(), d.min_idle.to_string(), true),
        ("pool_mode", p.mode.to_string(), d.mode.to_string(), true),
        ("max_db_connections", "0".into(), "0".into(), false),
        ("max_user_connections", "0".into(), "0".into(), false),
    ];
    rows.sort_by_key(|(key, ..)| !key.contains('.'));
    for (key, value, default, changeable) in rows {
        t.push(vec![text(key), text(value), text(default), text(if changeable { "yes" } else { "no" })]);
    }
    t
}

/// SHOW WORKSPACES: each workspace's members, grants and clients now.
pub fn workspaces(shared: &Shared) -> Table {
    let mut t = Table::new(&[
        ("name", Text),
        ("users", Text),
        ("identities", Text),
        ("databases", Text),
        ("classes", Text),
        ("read_only", Int4),
        ("statement_rules", Int4),
        ("pinned_settings", Text),
        ("max_client_connections", Int4),
        ("current_client_connections", Int4),
    ]);
    let snapshot = shared.config.load();
    for w in &snapshot.workspaces.list {
        let pinned: Vec<String> = w.session.iter().map(|(n, v)| format!("{n}={v}")).collect();
        t.push(vec![
            text(&w.name),
            text(w.users.join(", ")),
            text(w.identities.join(", ")),
            text(w.describe_databases()),
            text(w.describe_classes()),
            num(u8::from(w.read_only)),
            num(u8::from(w.has_statement_rules())),
            text(pinned.join(", ")),
            w.max_client_connections.map(|n| n.to_string()),
            num(shared.workspace_clients.count(&w.name)),
        ]);
    }
    t
}
