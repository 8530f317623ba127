//! RawConfig -> Snapshot: every check that can fail happens here, with the file line.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::model::{AuthMethod, RawConfig, RawPool, RawTls, RawUser, SslMode};
use super::secret::{ScramVerifier, StoredPassword, expand_env, read_secret_file};
use super::snapshot::{
    Admin, Auth, AuthLookup, Backend, BackendTlsSettings, DEFAULT_AUTH_QUERY, Listen, MetricsSettings, PoolSettings,
    RouteEntry, RouteTable, Snapshot, TlsSettings, User,
};
use super::{ConfigError, Source};

pub(super) fn build(raw: RawConfig, src: &Source) -> Result<Snapshot, ConfigError> {
    let listen = Listen {
        address: raw.listen.address.clone(),
        max_client_connections: raw.listen.max_client_connections,
        login_timeout: raw.listen.login_timeout,
        shutdown_timeout: raw.listen.shutdown_timeout,
    };
    if listen.max_client_connections == 0 {
        return Err(src.invalid(None, "listen.max_client_connections must be at least 1"));
    }
    check_pool(&raw.pool, "[pool]", src)?;
    let auth = Auth {
        method: raw.auth.method,
        trust_networks: raw.auth.trust_networks.clone(),
        cert_networks: raw.auth.cert_networks.clone(),
        lookup: build_lookup(&raw.auth, src)?,
    };
    let tls = build_tls(raw.tls.as_ref(), src)?;
    let backends = build_backends(&raw.backends, src)?;
    let routes = build_routes(&raw, &backends, src)?;
    let users = build_users(raw.users, &auth, src)?;
    let auth = lookup_password(auth, &users, src)?;
    let admin = build_admin(&raw.admin, &routes, src)?;
    check_cert_auth(&auth, &users, tls.as_ref(), src)?;
    let workspaces = Arc::new(build_workspaces(&raw.workspaces, &routes, src)?);
    let audit = raw
        .audit
        .as_ref()
        .map(crate::audit::build)
        .transpose()
        .map_err(|e| src.invalid(None, format!("[audit] {e}")))?;
    let metrics = build_metrics(&raw.metrics, src)?;
    let snapshot = Snapshot {
        source: src.path.clone(),
        listen,
        auth,
        admin,
        tls,
        backends,
        routes,
        users,
        workspaces,
        audit,
        metrics,
        hash: text_hash(&src.text),
        loaded_at: std::time::SystemTime::now(),
        pool_defaults: raw.pool,
    };
    check_effective_pools(&snapshot, src)?;
    Ok(snapshot)
}

fn build_metrics(raw: &super::model::RawMetrics, src: &Source) -> Result<MetricsSettings, ConfigError> {
    let address = raw.address.trim();
    if raw.probe_interval.is_zero() || raw.probe_timeout.is_zero() {
        return Err(src.invalid(None, "metrics.probe_interval and metrics.probe_timeout must be above zero"));
    }
    Ok(MetricsSettings {
        address: (raw.enabled && !address.is_empty()).then(|| address.to_owned()),
        probe_interval: raw.probe_interval,
        probe_timeout: raw.probe_timeout,
    })
}

/// The first 48 bits of the text's SHA-256.
fn text_hash(text: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(text.as_bytes());
    digest[..6].iter().fold(0, |hash, &b| hash << 8 | u64::from(b))
}

/// `[admin] users`; the console's database name cannot also be a route (the console would
/// shadow it).
fn build_admin(raw: &super::model::RawAdmin, routes: &RouteTable, src: &Source) -> Result<Admin, ConfigError> {
    let console = crate::admin::DATABASE;
    if let Some(entry) = routes.exact.get(console) {
        return Err(src.invalid(
            None,
            format!(
                "database \"{console}\" (backend {}) is the admin console's name; route it under another name: \
                 [databases.<alias>] backend = \"{}\", dbname = \"{console}\"",
                entry.backend.name, entry.backend.name
            ),
        ));
    }
    let mut admin = Admin::default();
    for user in &raw.users {
        let line = Some(user.span().start);
        let name = user.get_ref();
        if name.is_empty() {
            return Err(src.invalid(line, "admin.users has an empty name"));
        }
        if !admin.users.insert(name.clone()) {
            return Err(src.invalid(line, format!("admin.users lists \"{name}\" twice")));
        }
    }
    Ok(admin)
}

/// Client-facing TLS: the mode's needs are checked and the files are read now, so a bad
/// certificate is a configuration error, not a failure at the first client.
fn build_tls(raw: Option<&RawTls>, src: &Source) -> Result<Option<TlsSettings>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    let mode = raw.mode.unwrap_or(if raw.cert.is_some() { SslMode::Prefer } else { SslMode::Disable });
    if mode == SslMode::Disable {
        return Ok(None);
    }
    let (Some(cert), Some(key)) = (raw.cert.clone(), raw.key.clone()) else {
        return Err(src.invalid(None, format!("tls.mode {mode:?} needs tls.cert and tls.key")));
    };
    if mode >= SslMode::VerifyCa && raw.client_ca.is_none() {
        return Err(src.invalid(None, format!("tls.mode {mode:?} needs tls.client_ca to verify client certificates")));
    }
    if raw.crl.is_some() && raw.client_ca.is_none() {
        return Err(src.invalid(None, "tls.crl needs tls.client_ca"));
    }
    let settings = TlsSettings {
        mode,
        cert,
        key,
        client_ca: raw.client_ca.clone(),
        crl: raw.crl.clone(),
        min_version: raw.min_version,
        identity_map: raw.identity_map.clone(),
    };
    crate::tls::ClientTls::load(&settings).map_err(|e| src.invalid(None, format!("tls: {e}")))?;
    Ok(Some(settings))
}

/// `auth_user` logs into the backends to look users up: its password comes from
/// `auth_password(_file)`, or, as PgBouncer's auth_file would give it, from its own
/// `[[users]]` entry's `server_password(_file)`.
fn lookup_password(mut auth: Auth, users: &HashMap<String, Arc<User>>, src: &Source) -> Result<Auth, ConfigError> {
    let Some(lookup) = auth.lookup.as_mut() else { return Ok(auth) };
    if lookup.password.is_none() {
        lookup.password = users.get(&lookup.user).and_then(|u| u.server_password.clone());
    }
    if lookup.password.is_none() {
        return Err(src.invalid(
            None,
            format!(
                "auth.auth_user \"{}\" has no password: set auth.auth_password or auth.auth_password_file, \
                 or give [[users]] \"{}\" a server_password",
                lookup.user, lookup.user
            ),
        ));
    }
    Ok(auth)
}

fn build_lookup(raw: &super::model::RawAuth, src: &Source) -> Result<Option<AuthLookup>, ConfigError> {
    let Some(user) = raw.auth_user.clone() else {
        if raw.auth_query.is_some() {
            return Err(src.invalid(None, "auth.auth_query needs auth.auth_user, the role that runs it"));
        }
        return Ok(None);
    };
    let query = raw.auth_query.clone().unwrap_or_else(|| DEFAULT_AUTH_QUERY.to_owned());
    if !query.contains("$1") {
        return Err(src.invalid(None, "auth.auth_query must take the user name as $1"));
    }
    let password =
        secret(raw.auth_password.as_deref(), raw.auth_password_file.as_deref(), "[auth]", "auth_password", None, src)?;
    Ok(Some(AuthLookup { query, user, password, dbname: raw.auth_dbname.clone(), ttl: raw.auth_query_ttl }))
}

/// Certificate authentication needs client certificates to be verified.
fn check_cert_auth(
    auth: &Auth,
    users: &HashMap<String, Arc<User>>,
    tls: Option<&TlsSettings>,
    src: &Source,
) -> Result<(), ConfigError> {
    let wants_cert = auth.method == AuthMethod::Cert
        || !auth.cert_networks.is_empty()
        || users.values().any(|u| u.auth == Some(AuthMethod::Cert));
    if wants_cert && tls.and_then(|t| t.client_ca.as_ref()).is_none() {
        return Err(src.invalid(None, "certificate authentication needs [tls] with client_ca"));
    }
    Ok(())
}

fn check_pool(pool: &RawPool, place: &str, src: &Source) -> Result<(), ConfigError> {
    if pool.size == Some(0) {
        return Err(src.invalid(None, format!("{place}: pool size must be at least 1")));
    }
    Ok(())
}

fn build_backends(
    raw: &BTreeMap<String, super::model::RawBackend>,
    src: &Source,
) -> Result<BTreeMap<String, Arc<Backend>>, ConfigError> {
    let mut backends = BTreeMap::new();
    for (name, b) in raw {
        if b.host.trim().is_empty() {
            return Err(src.invalid(None, format!("backends.{name}.host is empty")));
        }
        check_pool(&b.pool, &format!("backends.{name}.pool"), src)?;
        let tls = BackendTlsSettings {
            mode: b.tls.mode.unwrap_or(SslMode::Prefer),
            root_cert: b.tls.root_cert.clone(),
            cert: b.tls.cert.clone(),
            key: b.tls.key.clone(),
            crl: b.tls.crl.clone(),
            min_version: b.tls.min_version,
        };
        let connector =
            crate::tls::connector::build(&tls).map_err(|e| src.invalid(None, format!("backends.{name}.tls: {e}")))?;
        let backend =
            Backend { name: name.clone(), host: b.host.clone(), port: b.port, pool: b.pool.clone(), tls, connector };
        backends.insert(name.clone(), Arc::new(backend));
    }
    Ok(backends)
}

fn build_routes(
    raw: &RawConfig,
    backends: &BTreeMap<String, Arc<Backend>>,
    src: &Source,
) -> Result<RouteTable, ConfigError> {
    let mut table = RouteTable::default();
    for (name, b) in &raw.backends {
        let backend = &backends[name];
        for db in &b.databases {
            let line = Some(db.span().start);
            let db = db.get_ref();
            if db == "*" {
                if let Some(other) = &table.fallback {
                    return Err(src.invalid(
                        line,
                        format!(
                            "backends {} and {name} both claim \"*\"; only one backend can be the fallback",
                            other.name
                        ),
                    ));
                }
                table.fallback = Some(backend.clone());
                continue;
            }
            check_db_name(db, line, src)?;
            if let Some(prev) = table.exact.get(db) {
                return Err(
                    src.invalid(line, format!("database \"{db}\" is routed to both {} and {name}", prev.backend.name))
                );
            }
            let entry = RouteEntry { backend: backend.clone(), server_database: db.clone(), pool: RawPool::default() };
            table.exact.insert(db.clone(), entry);
        }
    }
    for (alias, spanned) in &raw.databases {
        let line = Some(spanned.span().start);
        let d = spanned.get_ref();
        check_db_name(alias, line, src)?;
        let backend_name = d.backend.get_ref();
        let backend = backends.get(backend_name).ok_or_else(|| {
            let known: Vec<_> = backends.keys().map(String::as_str).collect();
            src.invalid(
                Some(d.backend.span().start),
                format!("databases.{alias}: no backend named \"{backend_name}\" (backends: {})", known.join(", ")),
            )
        })?;
        if let Some(prev) = table.exact.get(alias) {
            return Err(src.invalid(
                line,
                format!("databases.{alias}: \"{alias}\" is already listed by backend {}", prev.backend.name),
            ));
        }
        check_pool(&d.pool, &format!("databases.{alias}.pool"), src)?;
        let server_database = d.dbname.clone().unwrap_or_else(|| alias.clone());
        let entry = RouteEntry { backend: backend.clone(), server_database, pool: d.pool.clone() };
        table.exact.insert(alias.clone(), entry);
    }
    Ok(table)
}

fn check_db_name(name: &str, line: Option<usize>, src: &Source) -> Result<(), ConfigError> {
    if name.is_empty() || name.len() > 63 {
        return Err(src.invalid(line, format!("database name {name:?} must be 1 to 63 bytes")));
    }
    Ok(())
}

fn build_users(
    raw: Vec<toml::Spanned<RawUser>>,
    auth: &Auth,
    src: &Source,
) -> Result<HashMap<String, Arc<User>>, ConfigError> {
    let mut users = HashMap::new();
    for spanned in raw {
        let line = Some(spanned.span().start);
        let u = spanned.into_inner();
        let place = format!("user \"{}\"", u.name);
        if u.name.is_empty() {
            return Err(src.invalid(line, "a [[users]] entry has an empty name"));
        }
        let password = secret(u.password.as_deref(), u.password_file.as_deref(), &place, "password", line, src)?;
        if let Some(p) = &password
            && StoredPassword::looks_like_broken_scram(p)
        {
            return Err(src.invalid(
                line,
                format!("{place}: password starts with SCRAM-SHA-256$ but is not a valid SCRAM secret"),
            ));
        }
        let password = password.map(|p| StoredPassword::parse(&p));
        if auth.method == AuthMethod::ScramSha256 && matches!(password, Some(StoredPassword::Md5(_))) {
            return Err(src.invalid(
                line,
                format!("{place}: an md5 secret cannot answer scram-sha-256; give a SCRAM secret (pgate scram-secret) or the plain password"),
            ));
        }
        let server_password = secret(
            u.server_password.as_deref(),
            u.server_password_file.as_deref(),
            &place,
            "server_password",
            line,
            src,
        )?
        .or_else(|| match &password {
            Some(StoredPassword::Plain(p)) => Some(p.clone()),
            _ => None,
        });
        check_pool(&u.pool, &format!("{place} pool"), src)?;
        let scram = match &password {
            Some(StoredPassword::Scram(v)) => Some(v.clone()),
            Some(StoredPassword::Plain(p)) => Some(ScramVerifier::from_password(p)),
            _ => None,
        };
        let user = User {
            auth: u.auth,
            scram,
            server_user: u.server_user.unwrap_or_else(|| u.name.clone()),
            name: u.name.clone(),
            password,
            server_password,
            pool: u.pool,
        };
        if users.insert(u.name.clone(), Arc::new(user)).is_some() {
            return Err(src.invalid(line, format!("{place} is defined twice")));
        }
    }
    Ok(users)
}

fn build_workspaces(
    raw: &[toml::Spanned<crate::access::RawWorkspace>],
    routes: &RouteTable,
    src: &Source,
) -> Result<crate::access::Workspaces, ConfigError> {
    let mut workspaces = crate::access::Workspaces::default();
    for spanned in raw {
        let line = Some(spanned.span().start);
        let ws = crate::access::build(spanned.get_ref()).map_err(|e| src.invalid(line, e))?;
        if workspaces.get(&ws.name).is_some() {
            return Err(src.invalid(line, format!("workspace \"{}\" is defined twice", ws.name)));
        }
        for db in ws.databases.iter().flatten() {
            if routes.fallback.is_none() && !routes.exact.contains_key(db) {
                return Err(src.invalid(
                    line,
                    format!("workspace \"{}\" grants database \"{db}\", which no backend routes", ws.name),
                ));
            }
        }
        workspaces.list.push(Arc::new(ws));
    }
    Ok(workspaces)
}

/// A secret given inline (with `${ENV}` expansion) or by file; not both.
fn secret(
    inline: Option<&str>,
    file: Option<&std::path::Path>,
    place: &str,
    field: &str,
    line: Option<usize>,
    src: &Source,
) -> Result<Option<String>, ConfigError> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(src.invalid(line, format!("{place}: give {field} or {field}_file, not both"))),
        (Some(v), None) => expand_env(v).map(Some).map_err(|e| src.invalid(line, format!("{place}: {field}: {e}"))),
        (None, Some(path)) => read_secret_file(path).map(Some).map_err(|e| src.invalid(line, format!("{place}: {e}"))),
        (None, None) => Ok(None),
    }
}

/// Checks the settings each pool would run with, so a bad override fails at load time.
fn check_effective_pools(s: &Snapshot, src: &Source) -> Result<(), ConfigError> {
    let any_user = User::implicit("");
    let fallback = s.routes.fallback.iter().map(|b| RouteEntry {
        backend: b.clone(),
        server_database: String::new(),
        pool: RawPool::default(),
    });
    for route in s.routes.exact.values().cloned().chain(fallback) {
        for user in s.users.values().map(Arc::as_ref).chain([&any_user]) {
            let p: PoolSettings = s.pool_settings(&route, user);
            if p.min_idle > p.size {
                return Err(src.invalid(
                    None,
                    format!(
                        "pool for backend {}: min_idle ({}) is larger than size ({})",
                        route.backend.name, p.min_idle, p.size
                    ),
                ));
            }
        }
    }
    Ok(())
}
