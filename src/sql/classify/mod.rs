//! The statement classifier: query text -> [`Classified`], with sqlparser's PostgreSQL syntax
//! tree where it parses and a keyword fallback where it does not; and a shared cache.
//!
//! A query string is split into statements first, by PostgreSQL's lexical rules (`scan`), so
//! one statement sqlparser rejects leaves the others parsed. Each statement is then
//! rewritten where PostgreSQL syntax is missing from sqlparser (`rewrite`), parsed, and
//! classified from the tree (`ast`, `walk`, `targets`, `settings`). What does not parse is
//! matched against a few fully understood shapes (`shapes`), else classified by keywords
//! (`fallback`, `keywords`) and marked unparsed.

mod ast;
mod cache;
mod fallback;
mod keywords;
mod names;
mod rewrite;
mod scan;
mod settings;
mod shapes;
mod targets;
mod walk;

#[cfg(test)]
mod tests;

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

pub use cache::ClassifierCache;

use super::statement::{Classified, Statement, Unparsed};

/// Statements longer than this are classified by keywords, not parsed, and marked
/// [`Unparsed::TooLong`]: parsing cost grows with length (a 778 KB INSERT takes over 100 ms).
pub const MAX_PARSED_LEN: usize = 64 * 1024;

/// Classifies a query string: one [`Statement`] per statement, in order.
pub fn classify(sql: &str) -> Classified {
    let statements =
        scan::split(sql).into_iter().filter_map(|range| sql.get(range)).flat_map(classify_statement).collect();
    Classified { statements }
}

/// One statement's text (no top-level semicolon in it).
fn classify_statement(sql: &str) -> Vec<Statement> {
    if sql.len() > MAX_PARSED_LEN {
        return vec![fallback::classify_long(sql)];
    }
    let tokens = scan::scan(sql);
    let text = rewrite::rewrite(sql, &tokens);
    with_stack_for(tokens.len(), || parse_and_classify(sql, &text, &tokens))
}

/// Stack a statement of `tokens` tokens may need.
const STACK_BASE: usize = 256 * 1024;
const STACK_PER_TOKEN: usize = 512;

/// Runs `f` where the stack has room for a syntax tree as deep as the statement is long.
/// sqlparser guards its own recursion, but walking and dropping the tree recurse too, and
/// left-nested operators (`1+1+1...`, 30 000 levels fit in 64 KiB) are not counted against
/// its recursion limit: without this a client could overflow a worker's stack and abort the
/// process. Short statements run where they are; long ones get a fresh stack.
fn with_stack_for<R>(tokens: usize, f: impl FnOnce() -> R) -> R {
    let needed = STACK_BASE.saturating_add(tokens.saturating_mul(STACK_PER_TOKEN));
    stacker::maybe_grow(needed, needed, f)
}

/// Parses the rewritten `text` of the statement `sql` and classifies it; the tree is dropped
/// here too, inside the grown stack.
fn parse_and_classify(sql: &str, text: &str, tokens: &[scan::Token]) -> Vec<Statement> {
    match Parser::parse_sql(&PostgreSqlDialect {}, text) {
        // One text may still hold several statements if sqlparser tokenizes it otherwise
        // than PostgreSQL does; each is classified, which errs on the side of more.
        Ok(parsed) if !parsed.is_empty() => {
            parsed.iter().map(|statement| ast::classify(statement, sql, tokens)).collect()
        }
        Ok(_) => vec![fallback::classify(sql, tokens, Unparsed::Syntax("no statement found".into()))],
        Err(error) => vec![
            shapes::recognize(sql, tokens)
                .unwrap_or_else(|| fallback::classify(sql, tokens, Unparsed::Syntax(error.to_string()))),
        ],
    }
}
