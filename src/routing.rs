//! Database name -> route: which backend and which server database a client reaches.

use crate::config::{RouteEntry, Snapshot};

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("database \"{database}\" is not routed by pgate; known: {}", known.join(", "))]
    Unknown { database: String, known: Vec<String> },
}

/// Resolves a client's database name: an exact name or alias first, then the `"*"`
/// fallback backend (which gets the name unchanged).
pub fn route(snapshot: &Snapshot, database: &str) -> Result<RouteEntry, RouteError> {
    if let Some(entry) = snapshot.routes.exact.get(database) {
        return Ok(entry.clone());
    }
    match &snapshot.routes.fallback {
        Some(backend) => {
            Ok(RouteEntry { backend: backend.clone(), server_database: database.to_owned(), pool: Default::default() })
        }
        None => Err(RouteError::Unknown {
            database: database.to_owned(),
            known: snapshot.routed_names().into_iter().map(str::to_owned).collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn snapshot(text: &str) -> Snapshot {
        crate::config::parse(text, Path::new("t.toml")).unwrap()
    }

    #[test]
    fn exact_alias_fallback_and_unknown() {
        let s = snapshot(
            "[backends.infra]\nhost = \"h\"\ndatabases = [\"keycloak\"]\n\
             [backends.data]\nhost = \"d\"\ndatabases = [\"akko\", \"*\"]\n\
             [databases.rag]\nbackend = \"data\"\ndbname = \"lightrag\"\n",
        );
        assert_eq!(route(&s, "keycloak").unwrap().backend.name, "infra");
        assert_eq!(route(&s, "rag").unwrap().server_database, "lightrag");
        let other = route(&s, "anything").unwrap();
        assert_eq!((other.backend.name.as_str(), other.server_database.as_str()), ("data", "anything"));

        let s = snapshot("[backends.infra]\nhost = \"h\"\ndatabases = [\"keycloak\", \"airflow\"]\n");
        let err = route(&s, "nope").unwrap_err().to_string();
        assert_eq!(err, "database \"nope\" is not routed by pgate; known: airflow, keycloak");
    }
}
