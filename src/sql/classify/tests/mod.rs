//! Classifier tests: a table of statements and what each must classify as (`table`), real
//! clients' statements (`corpus`: LightRAG with Apache AGE, drivers' catalog queries), inputs
//! that must not panic, and the cache (`robust`).

mod corpus;
mod robust;
mod table;

use super::classify;
use crate::sql::statement::{Access, AuditClass, Kind, ObjectName, Outside, RelationUse, SettingChange, Statement};

/// What one statement must classify as: every field, unparsed only as yes / no.
#[derive(Debug, Clone, PartialEq)]
struct Expect {
    class: AuditClass,
    command: String,
    kind: Kind,
    relations: Vec<RelationUse>,
    functions: Vec<ObjectName>,
    settings: Vec<SettingChange>,
    outside: Vec<Outside>,
    unparsed: bool,
}

/// `schema.name` or `name`.
fn name(text: &str) -> ObjectName {
    match text.split_once('.') {
        Some((schema, name)) => ObjectName::new(Some(schema), name),
        None => ObjectName::new(None, text),
    }
}

fn st(class: AuditClass, command: &str) -> Expect {
    Expect {
        class,
        command: command.to_owned(),
        kind: Kind::Other,
        relations: Vec::new(),
        functions: Vec::new(),
        settings: Vec::new(),
        outside: Vec::new(),
        unparsed: false,
    }
}

impl Expect {
    fn rel(mut self, relation: &str, access: Access) -> Self {
        self.relations.push(RelationUse { name: name(relation), access });
        self
    }

    /// Read relations, in order.
    fn r(self, relations: &[&str]) -> Self {
        relations.iter().fold(self, |e, r| e.rel(r, Access::Read))
    }

    fn w(self, relation: &str) -> Self {
        self.rel(relation, Access::Write)
    }

    fn d(self, relation: &str) -> Self {
        self.rel(relation, Access::Define)
    }

    fn f(mut self, functions: &[&str]) -> Self {
        self.functions.extend(functions.iter().map(|f| name(f)));
        self
    }

    fn set(self, setting: &str, value: Option<&str>, local: bool) -> Self {
        self.change(SettingChange::Set { name: setting.into(), value: value.map(str::to_owned), local })
    }

    fn reset(self, setting: &str) -> Self {
        self.change(SettingChange::Reset { name: setting.into() })
    }

    fn change(mut self, change: SettingChange) -> Self {
        self.settings.push(change);
        self
    }

    fn out(mut self, outside: Outside) -> Self {
        self.outside.push(outside);
        self
    }

    fn kind(mut self, kind: Kind) -> Self {
        self.kind = kind;
        self
    }

    fn unparsed(mut self) -> Self {
        self.unparsed = true;
        self
    }
}

fn found(statement: &Statement) -> Expect {
    Expect {
        class: statement.class,
        command: statement.command.clone(),
        kind: statement.kind.clone(),
        relations: statement.relations.clone(),
        functions: statement.functions.clone(),
        settings: statement.settings.clone(),
        outside: statement.outside.clone(),
        unparsed: statement.unparsed.is_some(),
    }
}

/// Classifies every case and fails once, listing every mismatch.
fn check(cases: &[(&str, Vec<Expect>)]) {
    let mut failures = Vec::new();
    for (sql, expected) in cases {
        let classified = classify(sql);
        let actual: Vec<Expect> = classified.statements.iter().map(found).collect();
        if &actual != expected {
            failures.push(format!("{sql}\n  expected {expected:?}\n  found    {actual:?}\n  ({:?})", classified));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases differ:\n\n{}", failures.len(), cases.len(), failures.join("\n\n"));
}
