//! What a server did for its clients between two ReadyForQuery messages the session counts:
//! when the request in flight and the open transaction began, and how many Parse and Bind
//! messages reached it. Kept on the connection (plain fields, no atomics), handed to the
//! pool's totals at each counted ReadyForQuery.

use std::time::{Duration, Instant};

use super::ServerState;
use crate::protocol::codes::frontend;

#[derive(Debug, Default)]
pub(super) struct Tally {
    /// When the server last went from waiting for requests to working on one.
    busy_since: Option<Instant>,
    /// When the transaction under way began (the server left `Idle`).
    xact_since: Option<Instant>,
    parses: u64,
    binds: u64,
}

/// One request finished (a ReadyForQuery), as the pool's totals count it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Finished {
    /// How long the server worked on the request.
    pub query: Duration,
    /// How long the transaction lasted, when this ReadyForQuery ended one.
    pub transaction: Option<Duration>,
    pub parses: u64,
    pub binds: u64,
}

impl Tally {
    /// Follows a state change caused by `sent` (a message that went to the server, if any).
    pub(super) fn on(&mut self, before: ServerState, after: ServerState, sent: Option<u8>) {
        let busy = |s: ServerState| matches!(s, ServerState::Busy { .. });
        if !busy(before) && busy(after) {
            let now = Instant::now();
            self.busy_since = Some(now);
            if before == ServerState::Idle {
                self.xact_since = Some(now);
            }
        }
        match sent {
            Some(frontend::PARSE) => self.parses += 1,
            Some(frontend::BIND) => self.binds += 1,
            _ => {}
        }
    }

    /// After a ReadyForQuery left the server in state `now_state`.
    pub(super) fn finish(&mut self, now_state: ServerState) -> Finished {
        let now = Instant::now();
        let query = self.busy_since.map_or(Duration::ZERO, |since| now - since);
        // A pipeline's next request has been in the server's hands since this reply.
        self.busy_since = matches!(now_state, ServerState::Busy { .. }).then_some(now);
        let transaction = match now_state {
            ServerState::Idle => self.xact_since.take().map(|since| now - since),
            _ => None,
        };
        let finished = Finished { query, transaction, parses: self.parses, binds: self.binds };
        (self.parses, self.binds) = (0, 0);
        finished
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transaction_ends_only_when_the_server_is_idle_again() {
        let mut t = Tally::default();
        let busy = ServerState::Busy { awaiting: 1, unsynced: false, tx: b'I' };
        t.on(ServerState::Idle, busy, Some(frontend::QUERY));
        let f = t.finish(ServerState::IdleInTransaction { failed: false });
        assert!(f.transaction.is_none());
        t.on(ServerState::IdleInTransaction { failed: false }, busy, Some(frontend::PARSE));
        t.on(busy, busy, Some(frontend::BIND));
        let f = t.finish(ServerState::Idle);
        assert!(f.transaction.is_some());
        assert_eq!((f.parses, f.binds), (1, 1));
        assert_eq!(t.finish(ServerState::Idle).transaction, None, "counted once");
    }
}
