//! What a pool was made for (a route's logins, or auth_query lookups) and how its target is
//! built from the configuration, at the first login and again at every reload.

use std::sync::Arc;

use crate::auth::derived::{DerivedKeys, ServerPassword};
use crate::config::{AuthLookup, Backend, PoolSettings, RouteEntry, User};
use crate::server::Target;

/// Who the pool serves; a reload works its settings and target out again from this.
#[derive(Debug, Clone)]
pub enum Origin {
    /// Logins of `user` to the client-facing database `database` (an alias, or a name the
    /// `"*"` backend takes as it is).
    Logins { database: String, user: Arc<User> },
    /// `auth_query` lookups as `auth_user`.
    Lookup,
}

/// Servers of the pool of (route, user), logged in as the user's server user.
pub fn login_target(route: &RouteEntry, user: &User, settings: &PoolSettings, keys: &Arc<DerivedKeys>) -> Target {
    Target {
        backend: route.backend.clone(),
        database: route.server_database.clone(),
        user: user.server_user.clone(),
        password: user.server_password.as_deref().map(|p| ServerPassword::new(p, &user.server_user)),
        password_key: "server_password or server_password_file for this user in [[users]]",
        keys: keys.clone(),
        connect_timeout: settings.connect_timeout,
        max_prepared_statements: settings.max_prepared_statements,
        passthrough: Default::default(),
    }
}

/// Servers of an `auth_query` pool, logged in as `auth_user`.
pub fn lookup_target(
    backend: &Arc<Backend>,
    database: String,
    lookup: &AuthLookup,
    settings: &PoolSettings,
    keys: &Arc<DerivedKeys>,
) -> Target {
    Target {
        backend: backend.clone(),
        database,
        user: lookup.user.clone(),
        password: lookup.password.as_deref().map(|p| ServerPassword::new(p, &lookup.user)),
        password_key: "auth.auth_password or auth.auth_password_file",
        keys: keys.clone(),
        connect_timeout: settings.connect_timeout,
        max_prepared_statements: settings.max_prepared_statements,
        passthrough: Default::default(),
    }
}
