//! The protocol state of one server connection, with its one transition function.

use crate::protocol::codes::{frontend, tx_status};

/// Where a server connection stands between pgate and PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    /// ReadyForQuery('I') arrived and nothing is in flight: it may serve another client.
    Idle,
    /// Nothing in flight, but a transaction is open (`failed`: in an aborted one).
    IdleInTransaction { failed: bool },
    /// Requests are in flight: `awaiting` ReadyForQuery messages are due (one per Query,
    /// FunctionCall and Sync sent), and `unsynced` extended-protocol messages were sent
    /// after the last Sync. `tx` is the last transaction status seen.
    Busy { awaiting: u32, unsynced: bool, tx: u8 },
    /// The connection failed or lost step with the protocol; it can only be closed.
    Broken,
}

/// What happened on the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerEvent {
    /// A client message of this type went to the server.
    Sent(u8),
    /// ReadyForQuery with this transaction status arrived.
    Ready(u8),
    /// This many Syncs counted as sent will get no ReadyForQuery (the server ignores a
    /// Sync that arrives in copy-in mode).
    SyncsIgnored(u32),
    /// pgate read everything in flight up to a ReadyForQuery of its own with this
    /// transaction status (rescuing a server its client left mid-request).
    Drained(u8),
    /// I/O failed or the server sent something impossible.
    Failed,
}

impl ServerState {
    pub fn on(self, event: ServerEvent) -> ServerState {
        use ServerState::*;
        let (awaiting, unsynced, tx) = match self {
            Broken => return Broken,
            Idle => (0, false, tx_status::IDLE),
            IdleInTransaction { failed: false } => (0, false, tx_status::IN_TRANSACTION),
            IdleInTransaction { failed: true } => (0, false, tx_status::FAILED),
            Busy { awaiting, unsynced, tx } => (awaiting, unsynced, tx),
        };
        match event {
            ServerEvent::Failed => Broken,
            ServerEvent::Drained(status) => Busy { awaiting: 1, unsynced: false, tx }.on(ServerEvent::Ready(status)),
            ServerEvent::SyncsIgnored(n) => Busy { awaiting: awaiting.saturating_sub(n), unsynced, tx },
            ServerEvent::Sent(code) => match code {
                frontend::QUERY | frontend::FUNCTION_CALL => Busy { awaiting: awaiting + 1, unsynced, tx },
                frontend::SYNC => Busy { awaiting: awaiting + 1, unsynced: false, tx },
                frontend::PARSE
                | frontend::BIND
                | frontend::EXECUTE
                | frontend::DESCRIBE
                | frontend::CLOSE
                | frontend::FLUSH => Busy { awaiting, unsynced: true, tx },
                // CopyData / CopyDone / CopyFail belong to a request already counted.
                _ if awaiting > 0 || unsynced => Busy { awaiting, unsynced, tx },
                _ => self,
            },
            ServerEvent::Ready(_) if awaiting == 0 => Broken,
            ServerEvent::Ready(status) => {
                let awaiting = awaiting - 1;
                match (awaiting, unsynced, status) {
                    (0, false, tx_status::IDLE) => Idle,
                    (0, false, tx_status::FAILED) => IdleInTransaction { failed: true },
                    (0, false, _) => IdleInTransaction { failed: false },
                    _ => Busy { awaiting, unsynced, tx: status },
                }
            }
        }
    }

    /// The transaction status a client should be told if asked now.
    pub fn tx_status(self) -> u8 {
        match self {
            ServerState::Idle | ServerState::Broken => tx_status::IDLE,
            ServerState::IdleInTransaction { failed: false } => tx_status::IN_TRANSACTION,
            ServerState::IdleInTransaction { failed: true } => tx_status::FAILED,
            ServerState::Busy { tx, .. } => tx,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ServerEvent::*;
    use super::ServerState::*;
    use super::*;
    use crate::protocol::codes::frontend::*;

    fn run(events: &[ServerEvent]) -> ServerState {
        events.iter().fold(Idle, |s, e| s.on(*e))
    }

    #[test]
    fn simple_query_round_trip() {
        assert_eq!(run(&[Sent(QUERY), Ready(b'I')]), Idle);
        assert_eq!(run(&[Sent(QUERY), Ready(b'T')]), IdleInTransaction { failed: false });
    }

    #[test]
    fn pipeline_releases_only_after_the_last_sync() {
        let s = run(&[Sent(PARSE), Sent(BIND), Sent(EXECUTE), Sent(SYNC), Sent(BIND), Sent(EXECUTE), Sent(SYNC)]);
        assert_eq!(s, Busy { awaiting: 2, unsynced: false, tx: b'I' });
        let s = s.on(Ready(b'I'));
        assert!(matches!(s, Busy { awaiting: 1, .. }));
        assert_eq!(s.on(Ready(b'I')), Idle);
    }

    #[test]
    fn messages_after_sync_keep_the_server() {
        let s = run(&[Sent(PARSE), Sent(SYNC), Sent(BIND), Sent(FLUSH), Ready(b'I')]);
        assert_eq!(s, Busy { awaiting: 0, unsynced: true, tx: b'I' });
    }

    #[test]
    fn unexpected_ready_for_query_breaks() {
        assert_eq!(run(&[Ready(b'I')]), Broken);
        assert_eq!(run(&[Sent(QUERY), Failed, Ready(b'I')]), Broken);
    }

    #[test]
    fn stray_copy_data_while_idle_changes_nothing() {
        assert_eq!(run(&[Sent(COPY_DATA)]), Idle);
    }
}
