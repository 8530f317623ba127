//! SQL text analysis: a minimal lexer (`lexer`) and what a query may do to its server
//! session (`effects`). Nothing here parses SQL into a tree.

pub mod effects;
pub mod lexer;

pub use effects::{Effects, PinReason, effects};
