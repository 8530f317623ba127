//! The prepared statements of one client in transaction and statement pooling: its own
//! names, each standing for a pool-wide statement, and its unnamed statement.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::protocol::extended::parse_frame;
use crate::server::statements::global_name;
use crate::sql::Effects;

/// A client statement: the pool-wide id and the Parse that makes it on a server.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub id: u64,
    pub parse: Bytes,
}

impl Prepared {
    pub fn new(id: u64, definition: &[u8]) -> Self {
        Self { id, parse: parse_frame(global_name(id).as_bytes(), definition) }
    }
}

#[derive(Debug, Default)]
pub struct ClientStatements {
    named: HashMap<Bytes, Prepared>,
    /// The definition of the client's unnamed statement, while it has one.
    pub unnamed: Option<Bytes>,
    /// What running a statement may do to the session, by client name ("" is the unnamed
    /// statement), for the statements that may do something: a prepared `SET` acts when it
    /// is executed, maybe transactions after its Parse. Kept in every pool mode; a stale
    /// entry only costs a probe.
    effects: HashMap<Bytes, Arc<Effects>>,
}

impl ClientStatements {
    /// Notes what the statement just parsed as `name` may do when it runs.
    pub fn note_effects(&mut self, name: &[u8], effects: &Effects) {
        if effects.any() {
            self.effects.insert(Bytes::copy_from_slice(name), Arc::new(effects.clone()));
        } else if !self.effects.is_empty() {
            self.effects.remove(name);
        }
    }

    /// True when some statement may do something to the session when it runs.
    pub fn any_effects(&self) -> bool {
        !self.effects.is_empty()
    }

    /// What running statement `name` may do to the session.
    pub fn effects_of(&self, name: &[u8]) -> Option<&Arc<Effects>> {
        if self.effects.is_empty() { None } else { self.effects.get(name) }
    }

    pub fn get(&self, name: &[u8]) -> Option<&Prepared> {
        self.named.get(name)
    }

    pub fn insert(&mut self, name: Bytes, prepared: Prepared) {
        self.named.insert(name, prepared);
    }

    pub fn remove(&mut self, name: &[u8]) -> Option<Prepared> {
        self.named.remove(name)
    }

    /// The client's name for pool statement `id`, for error messages.
    pub fn name_of(&self, id: u64) -> Option<&Bytes> {
        self.named.iter().find(|(_, p)| p.id == id).map(|(name, _)| name)
    }

    /// DEALLOCATE ALL / DISCARD ALL.
    pub fn clear(&mut self) {
        self.named.clear();
        self.unnamed = None;
    }
}
