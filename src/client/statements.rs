//! The prepared statements of one client in transaction and statement pooling: its own
//! names, each standing for a pool-wide statement, and its unnamed statement.

use std::collections::HashMap;

use bytes::Bytes;

use crate::protocol::extended::parse_frame;
use crate::server::statements::global_name;

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
}

impl ClientStatements {
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
