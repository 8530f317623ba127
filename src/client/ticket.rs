//! Audit tickets: the records of statements sent to a server, riding on the reply tracker's
//! entry for their message until the server says how they ended (CommandComplete, an error,
//! ReadyForQuery), so each record gets its outcome, rows and duration, in session order.

use std::collections::VecDeque;
use std::time::Instant;

use crate::audit::{Outcome, StatementRecord};
use crate::protocol::codes::backend;
use crate::protocol::messages::ErrorFields;

/// How the message carrying a ticket is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketKind {
    /// A simple Query: one CommandComplete per statement, an error ends the string.
    Query,
    /// An Execute: one CommandComplete, PortalSuspended or error.
    Execute,
    /// A FunctionCall: FunctionCallResponse, then ReadyForQuery.
    FunctionCall,
    /// A refused message sent on as a failing marker: its records are denials already.
    Refused,
}

#[derive(Debug)]
pub struct Ticket {
    kind: TicketKind,
    started: Instant,
    /// One slot per statement, in order; `None` for statements the log does not want.
    records: VecDeque<Option<StatementRecord>>,
}

impl Ticket {
    pub fn new(kind: TicketKind, records: Vec<Option<StatementRecord>>) -> Self {
        Self { kind, started: Instant::now(), records: records.into() }
    }

    /// Takes what one server message (addressed to this ticket's entry) finishes.
    pub fn on_reply(&mut self, code: u8, body: &[u8], done: &mut Vec<StatementRecord>) {
        match (self.kind, code) {
            (TicketKind::Refused, backend::ERROR_RESPONSE) => self.finish_all(done),
            (TicketKind::Refused, _) => {}
            (_, backend::COMMAND_COMPLETE) => self.finish_next(Outcome::Ok, rows_of(body), done),
            (_, backend::PORTAL_SUSPENDED | backend::EMPTY_QUERY_RESPONSE) => self.finish_next(Outcome::Ok, None, done),
            (_, backend::ERROR_RESPONSE) => {
                let sqlstate = ErrorFields::decode(body).map(|f| f.code).unwrap_or_else(|_| "XX000".into());
                self.finish_next(Outcome::Error { sqlstate }, None, done);
                // What came after the failed statement in the same string never ran.
                self.records.clear();
            }
            (TicketKind::FunctionCall, backend::READY_FOR_QUERY) => self.finish_next(Outcome::Ok, None, done),
            _ => {}
        }
    }

    /// The connection ended before the server answered: the statements may or may not have
    /// run. Refusals keep their outcome.
    pub fn abandon(mut self, done: &mut Vec<StatementRecord>) {
        if self.kind == TicketKind::Refused {
            return self.finish_all(done);
        }
        if let Some(first) = self.records.pop_front() {
            let lost = Outcome::Error { sqlstate: crate::protocol::codes::sqlstate::CONNECTION_FAILURE.into() };
            self.push(first, lost, None, done);
        }
    }

    /// The server skipped the message (an earlier error in its pipeline): nothing ran, but
    /// a refusal is still recorded.
    pub fn skipped(self, done: &mut Vec<StatementRecord>) {
        if self.kind == TicketKind::Refused {
            let mut this = self;
            this.finish_all(done);
        }
    }

    fn finish_next(&mut self, outcome: Outcome, rows: Option<u64>, done: &mut Vec<StatementRecord>) {
        if let Some(slot) = self.records.pop_front() {
            self.push(slot, outcome, rows, done);
        }
    }

    fn finish_all(&mut self, done: &mut Vec<StatementRecord>) {
        let elapsed = self.started.elapsed();
        for mut record in self.records.drain(..).flatten() {
            record.duration = Some(elapsed);
            done.push(record);
        }
    }

    fn push(
        &self,
        slot: Option<StatementRecord>,
        outcome: Outcome,
        rows: Option<u64>,
        done: &mut Vec<StatementRecord>,
    ) {
        if let Some(mut record) = slot {
            record.outcome = outcome;
            record.rows = rows;
            record.duration = Some(self.started.elapsed());
            done.push(record);
        }
    }
}

/// The row count at the end of a CommandComplete tag (`SELECT 5`, `INSERT 0 3`, `COPY 10`).
fn rows_of(body: &[u8]) -> Option<u64> {
    let tag = body.strip_suffix(b"\0").unwrap_or(body);
    let last = tag.rsplit(|&b| b == b' ').next()?;
    std::str::from_utf8(last).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Parameters;
    use crate::sql::statement::AuditClass;

    fn record(id: u64) -> StatementRecord {
        StatementRecord {
            statement_id: id,
            substatement_id: 1,
            class: AuditClass::Read,
            command: "SELECT".into(),
            objects: vec![],
            text: "SELECT 1; SELECT 2; SELECT 3".into(),
            parameters: Parameters::NotLogged,
            outcome: Outcome::Ok,
            rows: None,
            duration: None,
            catalog_only: false,
        }
    }

    fn error_body(code: &str) -> Vec<u8> {
        let mut out = bytes::BytesMut::new();
        ErrorFields { severity: "ERROR".into(), code: code.into(), message: "x".into(), detail: None, hint: None }
            .encode(&mut out);
        out[5..].to_vec()
    }

    #[test]
    fn a_query_string_finishes_statement_by_statement_and_stops_at_an_error() {
        let mut t = Ticket::new(TicketKind::Query, vec![Some(record(1)), None, Some(record(3)), Some(record(4))]);
        let mut done = Vec::new();
        t.on_reply(backend::COMMAND_COMPLETE, b"SELECT 5\0", &mut done);
        t.on_reply(backend::COMMAND_COMPLETE, b"SET\0", &mut done);
        t.on_reply(backend::ERROR_RESPONSE, &error_body("22012"), &mut done);
        t.on_reply(backend::READY_FOR_QUERY, b"I", &mut done);
        assert_eq!(done.len(), 2);
        assert_eq!((done[0].statement_id, done[0].rows, &done[0].outcome), (1, Some(5), &Outcome::Ok));
        assert_eq!(done[1].outcome, Outcome::Error { sqlstate: "22012".into() });
        assert_eq!(done[1].statement_id, 3);
    }

    #[test]
    fn refusals_are_recorded_even_when_skipped() {
        let mut denied = record(9);
        denied.outcome = Outcome::Denied { rule: "allow".into() };
        let mut done = Vec::new();
        Ticket::new(TicketKind::Refused, vec![Some(denied.clone())]).skipped(&mut done);
        Ticket::new(TicketKind::Execute, vec![Some(record(10))]).skipped(&mut done);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].outcome, Outcome::Denied { rule: "allow".into() });
        Ticket::new(TicketKind::Execute, vec![Some(record(11))]).abandon(&mut done);
        assert_eq!(done[1].outcome, Outcome::Error { sqlstate: "08006".into() });
        assert_eq!(rows_of(b"INSERT 0 3\0"), Some(3));
        assert_eq!(rows_of(b"BEGIN\0"), None);
    }
}
