//! `auth_query`: the secret of a user pgate's configuration does not list, fetched from the
//! route's backend as `auth_user` (through a small pool of its own), cached for a while.

use std::sync::Arc;

use crate::auth::lookup::{Cached, query_for, secret_of};
use crate::config::{AuthLookup, PoolMode, PoolSettings, RouteEntry, StoredPassword};
use crate::error::Error;
use crate::pool::{Origin, Pool, PoolKey, lookup_target};
use crate::proxy::Shared;
use crate::server::ServerError;

/// Servers kept for lookups per backend and database.
const LOOKUP_POOL_SIZE: usize = 2;

pub async fn fetch(
    shared: &Shared,
    route: &RouteEntry,
    lookup: &AuthLookup,
    user: &str,
) -> Result<Option<StoredPassword>, Error> {
    if let Cached::Fresh(secret) = shared.secrets.get(&route.backend.name, user, lookup.ttl) {
        return Ok(secret);
    }
    let pool = lookup_pool(shared, route, lookup);
    let mut server = pool.checkout().await.map_err(Error::LoginServer)?;
    let answer = Box::pin(server.query_internal(&query_for(&lookup.query, user))).await;
    let secret = match answer {
        Ok(answer) => secret_of(&answer.rows),
        Err(ServerError::Query(fields)) => {
            return Err(Error::AuthLookup { backend: route.backend.name.clone(), message: fields.message });
        }
        Err(e) => return Err(Error::LoginServer(crate::pool::PoolError::Server(e))),
    };
    shared.secrets.put(&route.backend.name, user, secret.clone());
    Ok(secret)
}

fn lookup_pool(shared: &Shared, route: &RouteEntry, lookup: &AuthLookup) -> Arc<Pool> {
    let database = lookup.dbname.clone().unwrap_or_else(|| route.server_database.clone());
    let key = PoolKey { backend: route.backend.name.clone(), database: database.clone(), user: lookup.user.clone() };
    let make = || {
        let settings = PoolSettings { mode: PoolMode::Transaction, size: LOOKUP_POOL_SIZE, ..PoolSettings::default() };
        let target = lookup_target(&route.backend, database, lookup, &settings, &shared.derived_keys);
        (settings, target, Origin::Lookup)
    };
    shared.pools.get_or_create(key, make, &shared.metrics)
}
