//! What pgate reads of a client's statements when its workspace has rules or the audit log
//! is on: every statement is classified, checked against the workspace, and given an audit
//! ticket. A refused message still goes to the server, as a marker statement that fails
//! there, so a transaction block fails exactly as PostgreSQL would fail it; the server's
//! error is then replaced by the refusal.

mod rules;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

use super::ticket::{Ticket, TicketKind};
use crate::access::{Workspace, Workspaces};
use crate::audit::{Auditor, Event, Outcome, Parameters, Record, SessionContext, StatementRecord};
use crate::protocol::extended;
use crate::proxy::Shared;
use crate::sql::statement::{AuditClass, Classified, Kind, Statement};
pub use rules::DEFAULT_SEARCH_PATH;
use rules::add_search_path;

/// A statement's text and classification, kept by name for its Binds (protocol) or
/// EXECUTEs (SQL PREPARE).
#[derive(Debug)]
pub struct Prepared {
    text: Arc<str>,
    classified: Arc<Classified>,
}

/// A protocol statement, with when it was last checked.
#[derive(Debug)]
struct Checked {
    prepared: Arc<Prepared>,
    stamp: Stamp,
}

/// What a check depended on besides the statement: the configuration's workspaces and the
/// session's search_path. A Bind under the same stamp as its Parse needs no second check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    workspaces: usize,
    search_path: u64,
}

/// A bound portal: what it runs, with what.
#[derive(Debug)]
struct Portal {
    prepared: Arc<Prepared>,
    parameters: Parameters,
}

/// What to do with a client message.
pub enum Decision {
    /// Send it; the ticket (if any) rides on its reply entry.
    Run(Option<Ticket>),
    /// Send the marker instead; the ticket carries the denial's record.
    Refuse { marker: String, ticket: Ticket },
}

pub struct Inspector {
    shared: Arc<Shared>,
    /// The configuration's workspaces when `workspace` was looked up.
    workspaces: Arc<Workspaces>,
    workspace_name: Option<String>,
    workspace: Option<Arc<Workspace>>,
    auditor: Option<Arc<Auditor>>,
    context: Arc<SessionContext>,
    server_user: String,
    /// Every schema that may be on the search_path, in order.
    search_path: Vec<String>,
    protocol: HashMap<Bytes, Checked>,
    /// The last Parse's statement: drivers parse the same unnamed statement again and again.
    last_parsed: Option<Arc<Prepared>>,
    /// Counts changes of `search_path`, for [`Stamp`]s.
    search_path_version: u64,
    sql_prepared: HashMap<String, Arc<Prepared>>,
    portals: HashMap<Bytes, Portal>,
    /// Refusals waiting for their marker's error, by marker.
    refusals: HashMap<String, Bytes>,
    marker_prefix: String,
    next_marker: u64,
    next_statement: u64,
    /// Finished records, for the session to hand to the auditor.
    done: Vec<StatementRecord>,
}

const MARKER_TAG: &str = "pgate-refused-";

impl Inspector {
    pub fn new(
        shared: Arc<Shared>,
        workspace: Option<Arc<Workspace>>,
        context: Arc<SessionContext>,
        server_user: &str,
        search_path: &str,
    ) -> Self {
        let workspaces = shared.config.load().workspaces.clone();
        let auditor = shared.auditor.clone();
        let mut inspector = Self {
            shared,
            workspaces,
            workspace_name: workspace.as_ref().map(|w| w.name.clone()),
            workspace,
            auditor,
            context,
            server_user: server_user.to_owned(),
            search_path: Vec::new(),
            protocol: HashMap::new(),
            last_parsed: None,
            search_path_version: 0,
            sql_prepared: HashMap::new(),
            portals: HashMap::new(),
            refusals: HashMap::new(),
            marker_prefix: format!("{MARKER_TAG}{:016x}-", rand::random::<u64>()),
            next_marker: 0,
            next_statement: 0,
            done: Vec::new(),
        };
        add_search_path(&mut inspector.search_path, search_path, &inspector.server_user);
        inspector
    }

    pub fn context(&self) -> &Arc<SessionContext> {
        &self.context
    }

    pub fn auditor(&self) -> Option<&Arc<Auditor>> {
        self.auditor.as_ref()
    }

    /// A simple Query string. It has no bind parameters: with `log_parameter` on, pgaudit
    /// writes `<none>` for it, not `<not logged>`.
    pub fn query(&mut self, text: &[u8]) -> Decision {
        let text: Arc<str> = String::from_utf8_lossy(text).into();
        let classified = self.shared.classifier.classify(&text);
        self.decide(TicketKind::Query, &text, &classified, Parameters::None)
    }

    /// A Parse: checked now (even when pgate answers it itself), kept for its Binds.
    pub fn parse(&mut self, name: &[u8], query: &[u8]) -> Result<(), (String, Ticket)> {
        let prepared = self.prepared(query);
        if let Some((marker, ticket)) = self.refusal_of(&prepared, Parameters::NotLogged) {
            self.protocol.remove(name);
            return Err((marker, ticket));
        }
        let stamp = self.stamp();
        self.protocol.insert(Bytes::copy_from_slice(name), Checked { prepared, stamp });
        Ok(())
    }

    /// A Parse that would pass, without keeping anything (pgate answering Parses locally
    /// asks first).
    pub fn would_allow_parse(&mut self, query: &[u8]) -> bool {
        let prepared = self.prepared(query);
        self.refresh();
        self.audit_unavailable().is_none() && self.first_denial(&prepared.classified).is_none()
    }

    /// A Bind: the statement is checked again when the rules or the search_path changed
    /// since its Parse; the portal remembers it for the Execute.
    pub fn bind(&mut self, portal: &[u8], statement: &[u8], rest: &[u8]) -> Result<(), (String, Ticket)> {
        self.portals.remove(portal);
        self.refresh();
        let stamp = self.stamp();
        let Some(checked) = self.protocol.get(statement) else {
            // Never parsed through pgate: the server will say it does not exist.
            return Ok(());
        };
        let (prepared, fresh) = (checked.prepared.clone(), checked.stamp == stamp);
        let parameters = self.parameters(rest);
        if !fresh || self.audit_unavailable().is_some() {
            if let Some(refused) = self.refusal_of(&prepared, parameters.clone()) {
                return Err(refused);
            }
            if let Some(checked) = self.protocol.get_mut(statement) {
                checked.stamp = stamp;
            }
        }
        self.portals.insert(Bytes::copy_from_slice(portal), Portal { prepared, parameters });
        Ok(())
    }

    /// The statement of a Parse's query text: the last one again, or classified (cached).
    fn prepared(&mut self, query: &[u8]) -> Arc<Prepared> {
        if let Some(last) = &self.last_parsed
            && last.text.as_bytes() == query
        {
            return last.clone();
        }
        let text: Arc<str> = String::from_utf8_lossy(query).into();
        let classified = self.shared.classifier.classify(&text);
        let prepared = Arc::new(Prepared { text, classified });
        self.last_parsed = Some(prepared.clone());
        prepared
    }

    fn stamp(&self) -> Stamp {
        Stamp { workspaces: Arc::as_ptr(&self.workspaces) as usize, search_path: self.search_path_version }
    }

    /// An Execute: the ticket for the portal's statement (which now takes effect, so its
    /// settings count from here).
    pub fn execute(&mut self, portal: &[u8]) -> Option<Ticket> {
        let portal = self.portals.get(portal)?;
        let (prepared, parameters) = (portal.prepared.clone(), portal.parameters.clone());
        for statement in &prepared.classified.statements {
            self.after_allowed(statement, &prepared);
        }
        self.auditor.as_ref()?;
        let records = self.records_for(&prepared.text, &prepared.classified, &parameters);
        Some(Ticket::new(TicketKind::Execute, records))
    }

    /// A FunctionCall names a function by oid, which no rule can check.
    pub fn function_call(&mut self) -> Decision {
        self.refresh();
        let text: Arc<str> = "<function call protocol>".into();
        let mut statement = Statement::new(AuditClass::Function, "FUNCTION CALL");
        statement.unparsed =
            Some(crate::sql::statement::Unparsed::Syntax("the function-call protocol names functions by oid".into()));
        let classified = Arc::new(Classified { statements: vec![statement] });
        self.decide(TicketKind::FunctionCall, &text, &classified, Parameters::NotLogged)
    }

    pub fn close_statement(&mut self, name: &[u8]) {
        self.protocol.remove(name);
    }

    pub fn close_portal(&mut self, name: &[u8]) {
        self.portals.remove(name);
    }

    /// The refusal an error from the server stands for, if it is one of pgate's markers.
    pub fn refusal_for(&mut self, error_body: &[u8]) -> Option<Bytes> {
        let at = error_body.windows(MARKER_TAG.len()).position(|w| w == MARKER_TAG.as_bytes())?;
        let tail = &error_body[at..];
        let end = tail.iter().position(|&b| !(b.is_ascii_alphanumeric() || b == b'-')).unwrap_or(tail.len());
        let marker = std::str::from_utf8(&tail[..end]).ok()?;
        self.refusals.remove(marker)
    }

    /// Records finished since the last call, in session order.
    pub fn take_done(&mut self) -> Vec<Record> {
        // Statement ids follow the order the client sent its statements in, and the server
        // answers in that order; but a refusal the server skipped (after an earlier error in
        // its pipeline) is only added when the session flushes, behind records of later
        // statements that completed in the same read. Sorting puts it back in its place.
        self.done.sort_by_key(|r| r.statement_id);
        let context = &self.context;
        self.done
            .drain(..)
            .map(|r| Record { time: SystemTime::now(), context: context.clone(), event: Event::Statement(r) })
            .collect()
    }

    pub fn done_mut(&mut self) -> &mut Vec<StatementRecord> {
        &mut self.done
    }

    fn decide(
        &mut self,
        kind: TicketKind,
        text: &Arc<str>,
        classified: &Arc<Classified>,
        parameters: Parameters,
    ) -> Decision {
        let prepared = Arc::new(Prepared { text: text.clone(), classified: classified.clone() });
        if let Some((marker, ticket)) = self.refusal_of(&prepared, parameters.clone()) {
            return Decision::Refuse { marker, ticket };
        }
        for statement in &classified.statements {
            self.after_allowed(statement, &prepared);
        }
        let records = self.records_for(text, classified, &parameters);
        Decision::Run(Some(Ticket::new(kind, records)).filter(|_| self.auditor.is_some()))
    }

    /// Bookkeeping for an allowed statement that is being sent.
    fn after_allowed(&mut self, statement: &Statement, prepared: &Arc<Prepared>) {
        self.follow_settings(statement);
        match &statement.kind {
            Kind::Prepare { name } => {
                let own = Classified { statements: vec![statement.clone()] };
                let entry = Arc::new(Prepared { text: prepared.text.clone(), classified: Arc::new(own) });
                self.sql_prepared.insert(name.clone(), entry);
            }
            _ if statement.command.eq_ignore_ascii_case("DEALLOCATE") || statement.command == "DISCARD ALL" => {
                // Which one went is not worth guessing: forget all (an EXECUTE of a
                // statement pgate does not know is refused where rules exist).
                self.sql_prepared.clear();
            }
            _ => {}
        }
    }

    fn records_for(
        &mut self,
        text: &Arc<str>,
        classified: &Classified,
        parameters: &Parameters,
    ) -> Vec<Option<StatementRecord>> {
        let Some(auditor) = self.auditor.clone() else { return vec![] };
        let mut records = Vec::with_capacity(classified.statements.len());
        for statement in &classified.statements {
            let s = self.effective(statement).unwrap_or(statement);
            let record = auditor.logs(s.class).then(|| self.record_of(text, s, parameters));
            records.push(record);
        }
        for record in records.iter_mut().flatten() {
            self.next_statement += 1;
            record.statement_id = self.next_statement;
        }
        records
    }

    fn record(&mut self, text: &Arc<str>, statement: &Statement, parameters: &Parameters) -> StatementRecord {
        let mut record = self.record_of(text, statement, parameters);
        self.next_statement += 1;
        record.statement_id = self.next_statement;
        record
    }

    /// A record without its statement id.
    fn record_of(&self, text: &Arc<str>, statement: &Statement, parameters: &Parameters) -> StatementRecord {
        // pgaudit names the objects of READ and WRITE statements only with log_relation.
        let named = self.auditor.as_ref().is_some_and(|a| a.settings().log_relation)
            || !matches!(statement.class, AuditClass::Read | AuditClass::Write);
        let objects = match named {
            true => statement.relations.iter().map(|r| ("TABLE".to_owned(), qualified(&r.name))).collect(),
            false => Vec::new(),
        };
        let catalog_only = !statement.relations.is_empty()
            && statement.relations.iter().all(|r| match r.name.schema.as_deref() {
                Some(schema) => crate::access::is_catalog_schema(schema),
                None => r.name.name.starts_with("pg_"),
            });
        StatementRecord {
            statement_id: 0,
            substatement_id: 1,
            class: statement.class,
            command: statement.command.clone(),
            objects,
            text: text.clone(),
            parameters: parameters.clone(),
            outcome: Outcome::Ok,
            rows: None,
            duration: None,
            catalog_only,
        }
    }

    fn parameters(&self, rest: &[u8]) -> Parameters {
        let Some(auditor) = &self.auditor else { return Parameters::NotLogged };
        if !auditor.settings().log_parameter {
            return Parameters::NotLogged;
        }
        match extended::bind_parameters(rest) {
            Ok(values) if values.is_empty() => Parameters::None,
            Ok(values) => Parameters::Values(values),
            Err(_) => Parameters::NotLogged,
        }
    }
}

fn qualified(name: &crate::sql::statement::ObjectName) -> String {
    name.to_string()
}

/// The marker statement a refused Query or Parse becomes: it fails on the server at parse
/// time with an error that carries the marker.
pub fn marker_query(marker: &str) -> String {
    format!("SELECT '{marker}'::pg_catalog.int4")
}
