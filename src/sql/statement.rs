//! What the classifier says about a query string: per statement its pgaudit class, command
//! tag, the relations and functions it touches, the settings it changes and what reaches
//! outside the database. Shared by access rules (`access`) and the audit log (`audit`).

use std::fmt;

/// pgaudit's statement classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AuditClass {
    /// SELECT, COPY ... TO.
    Read,
    /// INSERT, UPDATE, DELETE, MERGE, TRUNCATE, COPY ... FROM.
    Write,
    /// CALL, DO.
    Function,
    /// GRANT, REVOKE, CREATE / ALTER / DROP ROLE.
    Role,
    /// Every other DDL.
    Ddl,
    /// Transaction control, DISCARD, FETCH, CHECKPOINT, VACUUM, LISTEN, ...
    Misc,
    /// SET, RESET, SET ROLE, SET SESSION AUTHORIZATION.
    MiscSet,
}

impl AuditClass {
    pub const ALL: [AuditClass; 7] = [
        AuditClass::Read,
        AuditClass::Write,
        AuditClass::Function,
        AuditClass::Role,
        AuditClass::Ddl,
        AuditClass::Misc,
        AuditClass::MiscSet,
    ];

    /// The name pgaudit uses (and the configuration).
    pub fn name(self) -> &'static str {
        match self {
            AuditClass::Read => "READ",
            AuditClass::Write => "WRITE",
            AuditClass::Function => "FUNCTION",
            AuditClass::Role => "ROLE",
            AuditClass::Ddl => "DDL",
            AuditClass::Misc => "MISC",
            AuditClass::MiscSet => "MISC_SET",
        }
    }

    pub fn from_name(name: &str) -> Option<AuditClass> {
        AuditClass::ALL.into_iter().find(|c| c.name().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for AuditClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A possibly schema-qualified name, as PostgreSQL would see it: unquoted identifiers
/// lower-cased, quoted ones kept exactly.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectName {
    pub schema: Option<String>,
    pub name: String,
}

impl ObjectName {
    pub fn new(schema: Option<&str>, name: &str) -> Self {
        Self { schema: schema.map(str::to_owned), name: name.to_owned() }
    }
}

impl fmt::Display for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(schema) => write!(f, "{schema}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// How a statement uses a relation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Access {
    Read,
    /// Inserted into, updated, deleted from, truncated, copied into.
    Write,
    /// Created, altered, dropped, granted on (DDL and ROLE statements).
    Define,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RelationUse {
    pub name: ObjectName,
    pub access: Access,
}

/// A change to a session setting that the statement makes when it runs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SettingChange {
    /// `SET [SESSION|LOCAL] name ...` or `set_config('name', ..)`; `value` is the new value
    /// as text when it is a literal (`None`: DEFAULT, or not known before it runs).
    Set { name: String, value: Option<String>, local: bool },
    /// `RESET name`, or `SET name TO DEFAULT`.
    Reset { name: String },
    /// `RESET ALL` (and `DISCARD ALL`, which also resets every setting).
    ResetAll,
    /// `set_config(<not a literal>, ...)`: any setting may change.
    Unknown,
    /// `SET ROLE`, `RESET ROLE`, `SET SESSION AUTHORIZATION`, `RESET SESSION AUTHORIZATION`.
    Identity,
    /// `BEGIN READ WRITE`, `SET TRANSACTION READ WRITE`, `SET SESSION CHARACTERISTICS AS
    /// TRANSACTION READ WRITE`: turns off read-only for a transaction or the session.
    ReadWrite,
}

/// Ways a statement reaches outside the database (files, programs, other servers, other
/// sessions, the server process).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outside {
    /// `COPY ... PROGRAM`.
    CopyProgram,
    /// `COPY ... TO / FROM 'file'` (a file on the database server).
    CopyFile,
}

/// Why a statement was classified by keywords instead of a syntax tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unparsed {
    /// The parser does not understand it; the parser's message.
    Syntax(String),
    /// Longer than the size parsed (`MAX_PARSED_LEN`); classified by its first keywords.
    TooLong(usize),
}

impl fmt::Display for Unparsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unparsed::Syntax(message) => write!(f, "pgate could not parse it: {message}"),
            Unparsed::TooLong(len) => write!(f, "it is {len} bytes long, more than pgate parses"),
        }
    }
}

/// What kind of statement it is, where access rules treat kinds apart.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Kind {
    Other,
    /// BEGIN, START TRANSACTION, COMMIT, ROLLBACK, SAVEPOINT, RELEASE, PREPARE TRANSACTION,
    /// COMMIT / ROLLBACK PREPARED, ABORT, END: never refused by class rules.
    Transaction,
    /// SHOW, DEALLOCATE, DISCARD, CLOSE (a cursor): never refused by class rules.
    Harmless,
    /// `PREPARE name AS <statement>`: the statement's own classification is this one's
    /// (class, relations, functions); the name is noted so EXECUTE finds it.
    Prepare {
        name: String,
    },
    /// `EXECUTE name`: classified as the statement prepared under that name, which only the
    /// session knows.
    Execute {
        name: String,
    },
}

/// One statement of a query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub class: AuditClass,
    /// The command tag, as pgaudit and PostgreSQL write it: `SELECT`, `INSERT`,
    /// `CREATE TABLE`, `ALTER ROLE`, `COPY`, `EXPLAIN`, `DO`, `SET`, ...
    pub command: String,
    pub kind: Kind,
    /// Relations read and written, each once per access, in order of appearance. CTE names
    /// and set-returning functions are not relations.
    pub relations: Vec<RelationUse>,
    /// Functions called (including set-returning functions in FROM, and CALL targets).
    pub functions: Vec<ObjectName>,
    pub settings: Vec<SettingChange>,
    pub outside: Vec<Outside>,
    /// Set when the statement was classified by its keywords only; access rules with
    /// statement rules deny such statements unless the workspace says `unparsed = "allow"`.
    pub unparsed: Option<Unparsed>,
}

impl Statement {
    /// A statement of `class` with nothing else known yet.
    pub fn new(class: AuditClass, command: impl Into<String>) -> Self {
        Self {
            class,
            command: command.into(),
            kind: Kind::Other,
            relations: Vec::new(),
            functions: Vec::new(),
            settings: Vec::new(),
            outside: Vec::new(),
            unparsed: None,
        }
    }
}

/// A whole query string (a simple Query, or the text of a Parse), classified.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Classified {
    /// In order; an empty query string has none.
    pub statements: Vec<Statement>,
}

impl Classified {
    /// True when some statement was classified by keywords only.
    pub fn any_unparsed(&self) -> bool {
        self.statements.iter().any(|s| s.unparsed.is_some())
    }
}
