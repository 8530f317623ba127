//! Which replies the server owes, in order: one entry per message sent that the server
//! answers, so pgate can hide the answers to messages it injected (a Parse or Close the
//! client never sent), answer messages it kept from the server (a Parse of a statement the
//! server already has, a Close of a shared statement), and stay in step when an error makes
//! the server skip the rest of an extended-protocol pipeline up to its Sync.

use std::collections::VecDeque;

use bytes::Bytes;

use super::ticket::Ticket;
use crate::protocol::codes::backend;

/// The client message an entry stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Parse,
    Bind,
    DescribeStatement,
    DescribePortal,
    Execute,
    Close,
    Sync,
    /// A simple Query or a FunctionCall: answered up to its ReadyForQuery.
    Query,
    /// CopyDone or CopyFail: no answer of its own; marks where a copy-in ends.
    CopyEnd,
}

/// What happens to the server's answer to an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// The client sent it: relay the answer.
    Relay,
    /// pgate injected it: drop its success reply (an error goes to the client, whose next
    /// message depended on it).
    Hide,
    /// pgate answered it without the server: send these bytes when its turn comes.
    Answer(Bytes),
}

/// What to undo when the server never carried a message out (it failed, or an earlier
/// error made the server skip it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Undo {
    /// The client's name for a statement: the Parse did not happen.
    ClientStatement(Bytes),
    /// The client has no unnamed statement after all.
    ClientUnnamed,
    /// The server does not have this pool statement after all.
    ServerStatement(u64),
    /// The server has no unnamed statement after all.
    ServerUnnamed,
}

#[derive(Debug)]
struct Entry {
    request: Request,
    fate: Fate,
    undo: Vec<Undo>,
    /// The pool statement it uses (Bind, Describe, Execute), to blame when it fails.
    statement: Option<u64>,
    /// The audit records of what it runs.
    ticket: Option<Box<Ticket>>,
}

/// What to do with one server message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Relay,
    Drop,
}

#[derive(Debug, thiserror::Error)]
#[error("server sent message {:?} that answers nothing pgate sent", *.0 as char)]
pub struct Unexpected(pub u8);

/// What the server does with the client's next messages, as far as replies go.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ServerMode {
    /// Every message gets its replies.
    #[default]
    InStep,
    /// Copy-in, until the client ends the copy or the server reports an error: the server
    /// ignores Syncs sent meanwhile.
    CopyIn,
    /// After an extended-protocol error: the server ignores every message up to a Sync.
    SkippingToSync,
}

#[derive(Debug, Default)]
pub struct Expectations {
    queue: VecDeque<Entry>,
    mode: ServerMode,
    /// Answers whose turn has come, for the caller to send.
    ready: Vec<Bytes>,
    /// Undo actions of entries the server skipped or failed.
    undone: Vec<Undo>,
    /// The statement of the last entry that failed with an error.
    failed_statement: Option<u64>,
    ignored_syncs: usize,
    /// Pool statements whose Parse the server accepted.
    confirmed: Vec<u64>,
    /// Tickets of entries that are gone (answered, skipped by the server, or never sent
    /// because it was skipping), for the inspector to close.
    retired: Vec<Ticket>,
}

impl Expectations {
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Notes a message sent to (or kept from) the server.
    pub fn push(&mut self, request: Request, fate: Fate, undo: Vec<Undo>) {
        self.push_using(request, fate, undo, None);
    }

    /// Notes a Sync, CopyDone or CopyFail sent by the client; `false` when the server will
    /// not answer it (a Sync inside copy-in mode is ignored by the server).
    pub fn push_marker(&mut self, request: Request) -> bool {
        match (request, self.mode) {
            (Request::Sync, ServerMode::CopyIn) => false,
            (Request::CopyEnd, ServerMode::CopyIn) => {
                self.mode = ServerMode::InStep;
                true
            }
            _ => {
                self.push(request, Fate::Relay, vec![]);
                true
            }
        }
    }

    /// Like [`Self::push`], for a message that uses pool statement `statement`.
    pub fn push_using(&mut self, request: Request, fate: Fate, undo: Vec<Undo>, statement: Option<u64>) {
        self.push_entry(Entry { request, fate, undo, statement, ticket: None });
    }

    /// A message the server answers, carrying the audit records of what it runs.
    pub fn push_ticketed(&mut self, request: Request, statement: Option<u64>, ticket: Option<Ticket>) {
        self.push_entry(Entry { request, fate: Fate::Relay, undo: vec![], statement, ticket: ticket.map(Box::new) });
    }

    fn push_entry(&mut self, entry: Entry) {
        if self.mode == ServerMode::SkippingToSync && !matches!(entry.request, Request::Sync | Request::CopyEnd) {
            // The server ignores it; a real server would not have answered or done it.
            self.undone.extend(entry.undo);
            self.retired.extend(entry.ticket.map(|t| *t));
            return;
        }
        self.queue.push_back(entry);
        self.release_answers();
    }

    /// The ticket of the request the next server message answers.
    pub fn head_ticket(&mut self) -> Option<&mut Ticket> {
        self.queue.front_mut().and_then(|e| e.ticket.as_deref_mut())
    }

    /// The ticket an error answering the head request belongs to: the head's own, or, when
    /// a Parse, Bind or Describe without one fails, the first ticket of its pipeline up to
    /// the Sync (the Execute that now never runs: its statement failed).
    pub fn ticket_for_error(&mut self) -> Option<&mut Ticket> {
        let extended = self.queue.front().is_some_and(|e| {
            e.ticket.is_none()
                && matches!(
                    e.request,
                    Request::Parse | Request::Bind | Request::DescribeStatement | Request::DescribePortal
                )
        });
        if !extended {
            return self.head_ticket();
        }
        self.queue.iter_mut().take_while(|e| e.request != Request::Sync).find_map(|e| e.ticket.as_deref_mut())
    }

    /// Tickets whose entries are gone since the last call.
    pub fn take_retired(&mut self) -> Vec<Ticket> {
        std::mem::take(&mut self.retired)
    }

    /// Every ticket still waiting for an answer (the connection is ending).
    pub fn drain_tickets(&mut self) -> Vec<Ticket> {
        let mut tickets = self.take_retired();
        tickets.extend(self.queue.iter_mut().filter_map(|e| e.ticket.take()).map(|t| *t));
        tickets
    }

    /// The pool statement of the entry the last error answered, once.
    pub fn take_failed_statement(&mut self) -> Option<u64> {
        self.failed_statement.take()
    }

    /// Answers pgate owes the client now, in order.
    pub fn take_ready(&mut self) -> Vec<Bytes> {
        std::mem::take(&mut self.ready)
    }

    /// Undo actions to apply now.
    pub fn take_undone(&mut self) -> Vec<Undo> {
        std::mem::take(&mut self.undone)
    }

    /// Classifies one server message by its type byte.
    pub fn on_server_message(&mut self, code: u8) -> Result<Verdict, Unexpected> {
        use backend::*;
        if matches!(code, NOTICE_RESPONSE | NOTIFICATION_RESPONSE | PARAMETER_STATUS) {
            return Ok(Verdict::Relay);
        }
        if code == ERROR_RESPONSE && self.mode == ServerMode::CopyIn {
            // An error ends copy-in mode on the server: a client need not send CopyDone
            // after it, and its next Sync is answered.
            self.mode = ServerMode::InStep;
        }
        let Some(head) = self.queue.front() else {
            return Err(Unexpected(code));
        };
        let (request, hidden) = (head.request, head.fate == Fate::Hide);
        let verdict = match (request, code) {
            (Request::Query, READY_FOR_QUERY) | (Request::Sync, READY_FOR_QUERY) => {
                if self.mode == ServerMode::SkippingToSync {
                    self.mode = ServerMode::InStep;
                }
                self.finish(false)
            }
            (Request::Query, COPY_IN_RESPONSE) => {
                self.enter_copy_in();
                Verdict::Relay
            }
            (Request::Query, _) => Verdict::Relay,
            (_, ERROR_RESPONSE) => {
                self.finish(true);
                self.skip_to_sync();
                Verdict::Relay
            }
            (Request::Parse, PARSE_COMPLETE)
            | (Request::Bind, BIND_COMPLETE)
            | (Request::Close, CLOSE_COMPLETE)
            | (Request::DescribeStatement | Request::DescribePortal, ROW_DESCRIPTION | NO_DATA)
            | (Request::Execute, COMMAND_COMPLETE | EMPTY_QUERY_RESPONSE | PORTAL_SUSPENDED) => {
                self.finish(false);
                if hidden { Verdict::Drop } else { Verdict::Relay }
            }
            (Request::DescribeStatement, PARAMETER_DESCRIPTION) => Verdict::Relay,
            (Request::Execute, COPY_IN_RESPONSE) => {
                self.enter_copy_in();
                Verdict::Relay
            }
            (Request::Execute, _) => Verdict::Relay,
            _ => return Err(Unexpected(code)),
        };
        self.release_answers();
        Ok(verdict)
    }

    /// Syncs sent between the head request and the end of its copy never reach the
    /// server's protocol: drop them (the caller learns how many from `ignored_syncs`).
    fn enter_copy_in(&mut self) {
        let end = self.queue.iter().skip(1).position(|e| e.request == Request::CopyEnd).map(|i| i + 1);
        let upto = end.unwrap_or(self.queue.len());
        let before = self.queue.len();
        let mut index = 0;
        self.queue.retain(|e| {
            index += 1;
            !(index > 1 && index <= upto && e.request == Request::Sync)
        });
        self.ignored_syncs += before - self.queue.len();
        match end {
            Some(_) => {
                let pos = self.queue.iter().position(|e| e.request == Request::CopyEnd).expect("marker kept");
                self.queue.remove(pos);
            }
            None => self.mode = ServerMode::CopyIn,
        }
    }

    /// Syncs already counted as sent that the server will ignore, once.
    pub fn take_ignored_syncs(&mut self) -> u32 {
        std::mem::take(&mut self.ignored_syncs) as u32
    }

    fn finish(&mut self, failed: bool) -> Verdict {
        let Some(mut entry) = self.queue.pop_front() else {
            return Verdict::Relay;
        };
        self.retired.extend(entry.ticket.take().map(|t| *t));
        if failed {
            self.failed_statement = entry.statement;
            self.undone.extend(entry.undo);
        } else if entry.request == Request::Parse
            && let Some(id) = entry.statement
        {
            self.confirmed.push(id);
        }
        Verdict::Relay
    }

    /// Pool statements a server accepted since the last call.
    pub fn take_confirmed(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.confirmed)
    }

    /// The server skips every message up to the next Sync: so do the answers pgate would
    /// have given, and the effects of those messages.
    fn skip_to_sync(&mut self) {
        while let Some(entry) = self.queue.front() {
            if entry.request == Request::Sync {
                return;
            }
            let entry = self.queue.pop_front().expect("front exists");
            self.undone.extend(entry.undo);
            self.retired.extend(entry.ticket.map(|t| *t));
        }
        self.mode = ServerMode::SkippingToSync;
    }

    /// Pops answers (sent now) and copy-end markers (nothing to wait for) off the head.
    fn release_answers(&mut self) {
        while let Some(head) = self.queue.front() {
            match (&head.fate, head.request) {
                (Fate::Answer(_), _) => {
                    if let Some(Entry { fate: Fate::Answer(bytes), .. }) = self.queue.pop_front() {
                        self.ready.push(bytes);
                    }
                }
                (_, Request::CopyEnd) => {
                    self.queue.pop_front();
                }
                _ => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backend::*;

    fn answer() -> Fate {
        Fate::Answer(Bytes::from_static(b"1\0\0\0\x04"))
    }

    #[test]
    fn answers_wait_their_turn() {
        let mut e = Expectations::default();
        e.push(Request::Bind, Fate::Relay, vec![]);
        e.push(Request::Parse, answer(), vec![]);
        e.push(Request::Sync, Fate::Relay, vec![]);
        assert!(e.take_ready().is_empty(), "the Bind's answer comes first");
        assert_eq!(e.on_server_message(BIND_COMPLETE).unwrap(), Verdict::Relay);
        assert_eq!(e.take_ready().len(), 1);
        assert_eq!(e.on_server_message(READY_FOR_QUERY).unwrap(), Verdict::Relay);
        assert!(e.is_empty());
    }

    #[test]
    fn injected_parse_is_hidden_but_its_error_is_not() {
        let mut e = Expectations::default();
        e.push(Request::Parse, Fate::Hide, vec![Undo::ServerStatement(7)]);
        e.push(Request::Bind, Fate::Relay, vec![]);
        e.push(Request::Sync, Fate::Relay, vec![]);
        assert_eq!(e.on_server_message(PARSE_COMPLETE).unwrap(), Verdict::Drop);
        assert_eq!(e.on_server_message(BIND_COMPLETE).unwrap(), Verdict::Relay);

        e.on_server_message(READY_FOR_QUERY).unwrap();
        e.push(Request::Parse, Fate::Hide, vec![Undo::ServerStatement(8)]);
        e.push(Request::Bind, Fate::Relay, vec![]);
        e.push(Request::Sync, Fate::Relay, vec![]);
        assert_eq!(e.on_server_message(ERROR_RESPONSE).unwrap(), Verdict::Relay);
        assert_eq!(e.take_undone(), vec![Undo::ServerStatement(8)]);
        assert_eq!(e.on_server_message(READY_FOR_QUERY).unwrap(), Verdict::Relay);
        assert!(e.is_empty());
    }

    #[test]
    fn an_error_skips_answers_and_undoes_effects_up_to_sync() {
        let mut e = Expectations::default();
        e.push(Request::Bind, Fate::Relay, vec![]);
        e.push(Request::Execute, Fate::Relay, vec![]);
        e.push(Request::Parse, answer(), vec![Undo::ClientStatement(Bytes::from_static(b"s1"))]);
        e.push(Request::Sync, Fate::Relay, vec![]);
        e.push(Request::Parse, answer(), vec![]);
        e.on_server_message(BIND_COMPLETE).unwrap();
        e.on_server_message(DATA_ROW).unwrap();
        assert_eq!(e.on_server_message(ERROR_RESPONSE).unwrap(), Verdict::Relay);
        assert!(e.take_ready().is_empty(), "a skipped Parse gets no ParseComplete");
        assert_eq!(e.take_undone(), vec![Undo::ClientStatement(Bytes::from_static(b"s1"))]);
        e.on_server_message(READY_FOR_QUERY).unwrap();
        assert_eq!(e.take_ready().len(), 1, "after Sync, the next pipeline's answer");
    }

    #[test]
    fn messages_sent_while_the_server_skips_are_undone_at_once() {
        let mut e = Expectations::default();
        e.push(Request::Execute, Fate::Relay, vec![]);
        e.on_server_message(ERROR_RESPONSE).unwrap();
        e.push(Request::Parse, answer(), vec![Undo::ServerUnnamed]);
        assert!(e.take_ready().is_empty());
        assert_eq!(e.take_undone(), vec![Undo::ServerUnnamed]);
        e.push(Request::Sync, Fate::Relay, vec![]);
        e.on_server_message(READY_FOR_QUERY).unwrap();
        assert!(e.is_empty());
    }

    #[test]
    fn an_error_ends_copy_in_so_the_next_sync_is_answered() {
        let mut e = Expectations::default();
        e.push(Request::Execute, Fate::Relay, vec![]);
        e.on_server_message(COPY_IN_RESPONSE).unwrap();
        assert!(!e.push_marker(Request::Sync), "a Sync inside copy-in is ignored");
        e.on_server_message(ERROR_RESPONSE).unwrap();
        // No CopyDone: the client goes straight to the Sync the server waits for.
        assert!(e.push_marker(Request::Sync));
        e.on_server_message(READY_FOR_QUERY).unwrap();
        assert!(e.is_empty());
    }

    #[test]
    fn syncs_sent_inside_a_copy_in_are_not_answered() {
        // tokio-postgres: Bind, Execute, Sync, then the data, CopyDone, Sync.
        let mut e = Expectations::default();
        e.push(Request::Bind, Fate::Relay, vec![]);
        e.push(Request::Execute, Fate::Relay, vec![]);
        assert!(e.push_marker(Request::Sync));
        e.on_server_message(BIND_COMPLETE).unwrap();
        e.on_server_message(COPY_IN_RESPONSE).unwrap();
        assert_eq!(e.take_ignored_syncs(), 1);
        assert!(e.push_marker(Request::CopyEnd));
        assert!(e.push_marker(Request::Sync));
        e.push(Request::Close, answer(), vec![]);
        assert!(e.push_marker(Request::Sync));
        e.on_server_message(COMMAND_COMPLETE).unwrap();
        assert!(e.take_ready().is_empty());
        e.on_server_message(READY_FOR_QUERY).unwrap();
        assert_eq!(e.take_ready().len(), 1, "CloseComplete after the copy's ReadyForQuery");
        e.on_server_message(READY_FOR_QUERY).unwrap();
        assert!(e.is_empty());

        // The whole copy already sent when CopyInResponse arrives.
        let mut e = Expectations::default();
        e.push(Request::Execute, Fate::Relay, vec![]);
        assert!(e.push_marker(Request::Sync));
        assert!(e.push_marker(Request::CopyEnd));
        assert!(e.push_marker(Request::Sync));
        e.on_server_message(COPY_IN_RESPONSE).unwrap();
        assert_eq!(e.take_ignored_syncs(), 1);
        e.on_server_message(COMMAND_COMPLETE).unwrap();
        e.on_server_message(READY_FOR_QUERY).unwrap();
        assert!(e.is_empty());
    }

    #[test]
    fn simple_queries_keep_going_after_errors() {
        let mut e = Expectations::default();
        e.push(Request::Query, Fate::Relay, vec![]);
        for code in [ROW_DESCRIPTION, DATA_ROW, COMMAND_COMPLETE, ERROR_RESPONSE] {
            assert_eq!(e.on_server_message(code).unwrap(), Verdict::Relay);
        }
        e.on_server_message(READY_FOR_QUERY).unwrap();
        assert!(e.on_server_message(DATA_ROW).is_err(), "nothing was asked");
    }
}
