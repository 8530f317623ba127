//! What a reload from one configuration to another would change, and when each change takes effect.

use std::fmt::{self, Display};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::secret::StoredPassword;
use super::snapshot::{AuthLookup, Snapshot, TlsSettings, User};
use crate::access::{Rules, Workspace};
use crate::audit::AuditSettings;
use crate::audit::config::{ClassSet, FsyncPolicy};
use crate::sql::statement::AuditClass;

/// When a change takes effect under pgate's reload semantics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// A reload leaves it as it was.
    NeedsRestart,
    /// Logins after the reload see it; sessions logged in before keep what they had.
    NextLogin,
    /// Every session, from its next statement on.
    NextStatement,
    /// A route that is gone: new logins to it are refused, sessions on it stay.
    RouteRemoved,
    /// The pool's servers are closed as they come free and reopened with the new settings.
    PoolReplaced,
    /// The (route, user) now leads to another pool (backend, server database or server
    /// user): new logins go there; sessions on the old pool keep it until they leave.
    PoolMoved,
    /// The readiness prober reads its settings at every round.
    NextProbe,
}

impl Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Effect::NeedsRestart => "not applied by a reload; restart pgate",
            Effect::NextLogin => "applies to the next login; existing sessions keep theirs",
            Effect::NextStatement => "applies to every session's next statement",
            Effect::RouteRemoved => "new logins get 3D000; existing sessions stay",
            Effect::PoolReplaced => "its servers are replaced as they come free; clients keep their sessions",
            Effect::PoolMoved => "new logins go to the new pool; sessions on the old one keep it until they leave",
            Effect::NextProbe => "applies from the next backend probe",
        })
    }
}

/// One difference: what changed (never a secret's value) and when it takes effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub what: String,
    pub effect: Effect,
}

impl Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.what, self.effect)
    }
}

/// Every difference between a running configuration and the next one, in the file's order
/// of tables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigDiff {
    pub changes: Vec<Change>,
}

impl ConfigDiff {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Adds a change unless the same one is there already (several routes or users can
    /// lead to one pool).
    fn push(&mut self, what: impl Into<String>, effect: Effect) {
        let change = Change { what: what.into(), effect };
        if !self.changes.contains(&change) {
            self.changes.push(change);
        }
    }

    /// A setting with one value: `name a -> b` when it differs.
    fn setting<T: PartialEq + Display>(&mut self, name: &str, running: T, next: T, effect: Effect) {
        if running != next {
            self.push(format!("{name} {running} -> {next}"), effect);
        }
    }

    /// A secret setting: whether it was set, removed or changed, never its value.
    fn secret<T: PartialEq>(&mut self, name: &str, running: Option<T>, next: Option<T>, effect: Effect) {
        if let Some(what) = secret_change(name, running, next) {
            self.push(what, effect);
        }
    }

    /// An entity (a user, route, workspace, pool) whose differing fields go on one line.
    fn entity(&mut self, name: &str, fields: Fields, effect: Effect) {
        if !fields.0.is_empty() {
            self.push(format!("{name} ({})", fields.0.join(", ")), effect);
        }
    }
}

impl Display for ConfigDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.changes.is_empty() {
            return writeln!(f, "no changes");
        }
        for change in &self.changes {
            writeln!(f, "{change}")?;
        }
        Ok(())
    }
}

/// The differing fields of one entity, as `name a -> b` (secrets as `name changed`).
#[derive(Default)]
struct Fields(Vec<String>);

impl Fields {
    fn value<T: PartialEq + Display>(&mut self, name: &str, running: T, next: T) {
        if running != next {
            self.0.push(format!("{name} {running} -> {next}"));
        }
    }

    fn secret<T: PartialEq>(&mut self, name: &str, running: Option<T>, next: Option<T>) {
        self.0.extend(secret_change(name, running, next));
    }
}

fn secret_change<T: PartialEq>(name: &str, running: Option<T>, next: Option<T>) -> Option<String> {
    match (running, next) {
        (None, Some(_)) => Some(format!("{name} set")),
        (Some(_), None) => Some(format!("{name} removed")),
        (Some(a), Some(b)) if a != b => Some(format!("{name} changed")),
        _ => None,
    }
}

/// What a reload from `running` to `next` would change.
pub fn diff(running: &Snapshot, next: &Snapshot) -> ConfigDiff {
    let mut d = ConfigDiff::default();
    listen(&mut d, running, next);
    metrics(&mut d, running, next);
    auth(&mut d, running, next);
    d.setting("admin.users", list(&running.admin.users), list(&next.admin.users), Effect::NextLogin);
    tls(&mut d, running.tls.as_ref(), next.tls.as_ref());
    audit(&mut d, running.audit.as_ref(), next.audit.as_ref());
    backends(&mut d, running, next);
    routes(&mut d, running, next);
    users(&mut d, running, next);
    workspaces(&mut d, &running.workspaces.list, &next.workspaces.list);
    pools::pools(&mut d, running, next);
    d
}

fn listen(d: &mut ConfigDiff, r: &Snapshot, n: &Snapshot) {
    let (r, n) = (&r.listen, &n.listen);
    // The listening socket is bound once, at start.
    d.setting("listen.address", &r.address, &n.address, Effect::NeedsRestart);
    d.setting("listen.max_client_connections", r.max_client_connections, n.max_client_connections, Effect::NextLogin);
    d.setting("listen.login_timeout", duration(r.login_timeout), duration(n.login_timeout), Effect::NextLogin);
    d.setting("listen.shutdown_timeout", duration(r.shutdown_timeout), duration(n.shutdown_timeout), Effect::NextLogin);
}

fn metrics(d: &mut ConfigDiff, r: &Snapshot, n: &Snapshot) {
    let (r, n) = (&r.metrics, &n.metrics);
    // The HTTP endpoint is bound once, at start; `enabled = false` is an address of none.
    let address = |a: &Option<String>| a.clone().unwrap_or_else(|| "off".into());
    d.setting("metrics.address", address(&r.address), address(&n.address), Effect::NeedsRestart);
    d.setting("metrics.probe_interval", duration(r.probe_interval), duration(n.probe_interval), Effect::NextProbe);
    d.setting("metrics.probe_timeout", duration(r.probe_timeout), duration(n.probe_timeout), Effect::NextProbe);
}

fn auth(d: &mut ConfigDiff, r: &Snapshot, n: &Snapshot) {
    let (r, n) = (&r.auth, &n.auth);
    d.setting("auth.method", r.method, n.method, Effect::NextLogin);
    d.setting("auth.trust_networks", list(&r.trust_networks), list(&n.trust_networks), Effect::NextLogin);
    d.setting("auth.cert_networks", list(&r.cert_networks), list(&n.cert_networks), Effect::NextLogin);
    match (&r.lookup, &n.lookup) {
        (None, None) => {}
        (None, Some(l)) => d.push(format!("auth_query turned on (as {})", l.user), Effect::NextLogin),
        (Some(_), None) => d.push("auth_query turned off", Effect::NextLogin),
        (Some(a), Some(b)) => lookup(d, a, b),
    }
}

fn lookup(d: &mut ConfigDiff, r: &AuthLookup, n: &AuthLookup) {
    let dbname = |l: &AuthLookup| l.dbname.clone().unwrap_or_else(|| "the client's database".into());
    d.setting("auth.auth_query", &r.query, &n.query, Effect::NextLogin);
    d.setting("auth.auth_user", &r.user, &n.user, Effect::NextLogin);
    d.secret("auth.auth_password", r.password.as_ref(), n.password.as_ref(), Effect::NextLogin);
    d.setting("auth.auth_dbname", dbname(r), dbname(n), Effect::NextLogin);
    d.setting("auth.auth_query_ttl", duration(r.ttl), duration(n.ttl), Effect::NextLogin);
}

/// Client-facing TLS: a reload rebuilds it and re-reads its files, for new logins.
fn tls(d: &mut ConfigDiff, r: Option<&TlsSettings>, n: Option<&TlsSettings>) {
    let (r, n) = match (r, n) {
        (None, None) => return,
        (None, Some(n)) => return d.push(format!("tls enabled (mode {})", n.mode), Effect::NextLogin),
        (Some(_), None) => return d.push("tls disabled", Effect::NextLogin),
        (Some(r), Some(n)) => (r, n),
    };
    let e = Effect::NextLogin;
    d.setting("tls.mode", r.mode, n.mode, e);
    d.setting("tls.cert", r.cert.display().to_string(), n.cert.display().to_string(), e);
    d.secret("tls.key", Some(&r.key), Some(&n.key), e);
    d.setting("tls.client_ca", path(&r.client_ca), path(&n.client_ca), e);
    d.setting("tls.crl", path(&r.crl), path(&n.crl), e);
    d.setting("tls.min_version", r.min_version, n.min_version, e);
    if r.identity_map != n.identity_map {
        d.push("tls.identity_map changed", e);
    }
}

/// The audit log's writer and queue are made at start; its other settings are read by
/// every statement.
fn audit(d: &mut ConfigDiff, r: Option<&AuditSettings>, n: Option<&AuditSettings>) {
    let (r, n) = match (r, n) {
        (None, None) => return,
        (None, Some(n)) => return d.push(format!("[audit] added (sink {})", n.sink), Effect::NeedsRestart),
        (Some(r), None) => return d.push(format!("[audit] removed (sink {})", r.sink), Effect::NeedsRestart),
        (Some(r), Some(n)) => (r, n),
    };
    d.setting("audit.queue_size", r.queue_size, n.queue_size, Effect::NeedsRestart);
    let e = Effect::NextStatement;
    d.setting("audit.sink", &r.sink, &n.sink, e);
    d.setting("audit.format", r.format, n.format, e);
    d.setting("audit.log", classes(r.log), classes(n.log), e);
    d.setting("audit.log_catalog", r.log_catalog, n.log_catalog, e);
    d.setting("audit.log_relation", r.log_relation, n.log_relation, e);
    d.setting("audit.log_parameter", r.log_parameter, n.log_parameter, e);
    d.setting("audit.log_parameter_max_size", r.log_parameter_max_size, n.log_parameter_max_size, e);
    d.setting("audit.log_rows", r.log_rows, n.log_rows, e);
    d.setting("audit.log_statement_once", r.log_statement_once, n.log_statement_once, e);
    d.setting("audit.on_full", r.on_full, n.on_full, e);
    d.setting("audit.fsync", fsync(r.fsync), fsync(n.fsync), e);
    d.setting("audit.on_error", r.on_error, n.on_error, e);
}

/// Backends that come or go; a changed backend shows in its pools.
fn backends(d: &mut ConfigDiff, r: &Snapshot, n: &Snapshot) {
    for (name, b) in &n.backends {
        if !r.backends.contains_key(name) {
            d.push(format!("backend {name} added ({})", b.address()), Effect::NextLogin);
        }
    }
    for (name, b) in &r.backends {
        if !n.backends.contains_key(name) {
            d.push(format!("backend {name} removed ({})", b.address()), Effect::NextLogin);
        }
    }
}

fn routes(d: &mut ConfigDiff, r: &Snapshot, n: &Snapshot) {
    let (r, n) = (&r.routes, &n.routes);
    for (alias, route) in &n.exact {
        match r.exact.get(alias) {
            None => d.push(
                format!("route {alias} added (-> {}, database {})", route.backend.name, route.server_database),
                Effect::NextLogin,
            ),
            Some(old) => {
                let mut f = Fields::default();
                f.value("backend", &old.backend.name, &route.backend.name);
                f.value("database", &old.server_database, &route.server_database);
                d.entity(&format!("route {alias}"), f, Effect::NextLogin);
            }
        }
    }
    for alias in r.exact.keys().filter(|a| !n.exact.contains_key(*a)) {
        d.push(format!("route {alias} removed"), Effect::RouteRemoved);
    }
    match (&r.fallback, &n.fallback) {
        (None, None) => {}
        (None, Some(b)) => d.push(format!("route * added (-> {})", b.name), Effect::NextLogin),
        (Some(b), None) => d.push(format!("route * (-> {}) removed", b.name), Effect::RouteRemoved),
        (Some(a), Some(b)) => d.setting("route * backend", &a.name, &b.name, Effect::NextLogin),
    }
}

/// `[[users]]`: logins read them; a user's pool overrides show in its pools.
fn users(d: &mut ConfigDiff, r: &Snapshot, n: &Snapshot) {
    for name in sorted(n.users.keys()) {
        match r.users.get(name) {
            None => d.push(format!("user {name} added"), Effect::NextLogin),
            Some(old) => d.entity(&format!("user {name}"), user_fields(old, &n.users[name]), Effect::NextLogin),
        }
    }
    for name in sorted(r.users.keys()).into_iter().filter(|u| !n.users.contains_key(*u)) {
        d.push(format!("user {name} removed"), Effect::NextLogin);
    }
}

fn user_fields(r: &User, n: &User) -> Fields {
    let method = |u: &User| u.auth.map_or_else(|| "[auth] method".to_owned(), |m| m.to_string());
    let mut f = Fields::default();
    // Compared as written: a plain password's SCRAM verifier gets a fresh salt at each load.
    f.secret("password", r.password.as_ref().map(PasswordRef), n.password.as_ref().map(PasswordRef));
    f.value("auth", method(r), method(n));
    f.value("server user", &r.server_user, &n.server_user);
    f.secret("server password", r.server_password.as_ref(), n.server_password.as_ref());
    f
}

/// A stored password compared by what it holds.
struct PasswordRef<'a>(&'a StoredPassword);

impl PartialEq for PasswordRef<'_> {
    fn eq(&self, other: &Self) -> bool {
        match (self.0, other.0) {
            (StoredPassword::Scram(a), StoredPassword::Scram(b)) => a == b,
            (StoredPassword::Md5(a), StoredPassword::Md5(b)) => a == b,
            (StoredPassword::Plain(a), StoredPassword::Plain(b)) => a == b,
            _ => false,
        }
    }
}

/// Membership and databases decide logins; rules and pinned settings are checked at every
/// statement.
fn workspaces(d: &mut ConfigDiff, r: &[Arc<Workspace>], n: &[Arc<Workspace>]) {
    let find = |list: &[Arc<Workspace>], name: &str| list.iter().find(|w| w.name == name).cloned();
    for w in n {
        match find(r, &w.name) {
            None => d.push(format!("workspace {} added", w.name), Effect::NextLogin),
            Some(old) => {
                d.entity(&format!("workspace {}", w.name), workspace_login(&old, w), Effect::NextLogin);
                d.entity(&format!("workspace {} rules", w.name), workspace_rules(&old, w), Effect::NextStatement);
            }
        }
    }
    for w in r.iter().filter(|w| find(n, &w.name).is_none()) {
        d.push(format!("workspace {} removed", w.name), Effect::NextLogin);
    }
    // A login that names no workspace gets the first one (in file order) that admits it.
    let kept = |a: &[Arc<Workspace>], b: &[Arc<Workspace>]| {
        a.iter().filter(|w| find(b, &w.name).is_some()).map(|w| w.name.clone()).collect::<Vec<_>>()
    };
    let (before, after) = (kept(r, n), kept(n, r));
    if before != after {
        d.push(format!("workspace order {} -> {}", before.join(", "), after.join(", ")), Effect::NextLogin);
    }
}

fn workspace_login(r: &Workspace, n: &Workspace) -> Fields {
    let limit = |w: &Workspace| w.max_client_connections.map_or("none".to_owned(), |l| l.to_string());
    let mut f = Fields::default();
    f.value("users", list(&r.users), list(&n.users));
    f.value("identities", list(&r.identities), list(&n.identities));
    f.value("databases", format!("[{}]", r.describe_databases()), format!("[{}]", n.describe_databases()));
    f.value("max_client_connections", limit(r), limit(n));
    f
}

fn workspace_rules(r: &Workspace, n: &Workspace) -> Fields {
    let pinned = |w: &Workspace| list(w.session.iter().map(|(name, v)| format!("{name} = {v:?}")));
    let mut f = Fields::default();
    f.value("classes", format!("[{}]", r.describe_classes()), format!("[{}]", n.describe_classes()));
    f.value("read_only", r.read_only, n.read_only);
    f.value("relations", rules(&r.relations), rules(&n.relations));
    f.value("functions", rules(&r.functions), rules(&n.functions));
    f.value("pinned settings", pinned(r), pinned(n));
    f.value("unparsed", r.unparsed, n.unparsed);
    f
}

fn duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

fn path(p: &Option<PathBuf>) -> String {
    p.as_ref().map_or_else(|| "none".to_owned(), |p| p.display().to_string())
}

/// `[a, b]`, in the given order.
fn list<T: Display>(items: impl IntoIterator<Item = T>) -> String {
    format!("[{}]", items.into_iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", "))
}

fn sorted<'a>(names: impl Iterator<Item = &'a String>) -> Vec<&'a String> {
    let mut names: Vec<_> = names.collect();
    names.sort();
    names
}

fn rules(r: &Rules) -> String {
    format!("allow {} deny {}", list(&r.allow), list(&r.deny))
}

fn classes(set: ClassSet) -> String {
    list(AuditClass::ALL.into_iter().filter(|c| set.contains(*c)).map(AuditClass::name))
}

fn fsync(policy: FsyncPolicy) -> String {
    match policy {
        FsyncPolicy::Always => "always".into(),
        FsyncPolicy::Interval(every) => format!("interval {}", duration(every)),
        FsyncPolicy::Never => "never".into(),
    }
}

mod pools;
#[cfg(test)]
mod tests;
