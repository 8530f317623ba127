//! SQL text analysis. On every query: a minimal lexer (`lexer`) and what a query may do to
//! its server session (`effects`), neither of which builds a tree. For workspaces' rules and
//! the audit log: the statement classifier (`classify`, sqlparser's syntax tree with a
//! keyword fallback) and what it says about a query (`statement`).

pub mod classify;
pub mod effects;
pub mod lexer;
pub mod skip;
pub mod statement;

pub use effects::{Effects, PinReason, effects};
