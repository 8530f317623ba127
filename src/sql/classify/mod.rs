//! The statement classifier: query text -> [`Classified`], with sqlparser's PostgreSQL syntax
//! tree where it parses and a keyword fallback where it does not; and a shared cache.
//!
//! A query string is split at its top-level semicolons first (by PostgreSQL's lexical rules),
//! so one statement sqlparser rejects leaves the others parsed. Each statement is then
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

/// Statements longer than this are classified by their first keywords only: parsing cost
/// grows with length (a 778 KB INSERT takes over 100 ms).
pub const MAX_PARSED_LEN: usize = 64 * 1024;

/// Classifies a query string: one [`Statement`] per statement, in order.
pub fn classify(sql: &str) -> Classified {
    let tokens = scan::scan(sql);
    let statements =
        scan::split(sql, &tokens).into_iter().filter_map(|range| sql.get(range)).flat_map(classify_statement).collect();
    Classified { statements }
}

/// One statement's text (no top-level semicolon in it).
fn classify_statement(sql: &str) -> Vec<Statement> {
    let tokens = scan::scan(sql);
    if sql.len() > MAX_PARSED_LEN {
        return vec![fallback::classify(sql, &tokens, Unparsed::TooLong(sql.len()))];
    }
    let text = rewrite::rewrite(sql, &tokens);
    match Parser::parse_sql(&PostgreSqlDialect {}, &text) {
        // One text may still hold several statements if sqlparser tokenizes it otherwise
        // than PostgreSQL does; each is classified, which errs on the side of more.
        Ok(parsed) if !parsed.is_empty() => {
            parsed.iter().map(|statement| ast::classify(statement, sql, &tokens)).collect()
        }
        Ok(_) => vec![fallback::classify(sql, &tokens, Unparsed::Syntax("no statement found".into()))],
        Err(error) => vec![
            shapes::recognize(sql, &tokens)
                .unwrap_or_else(|| fallback::classify(sql, &tokens, Unparsed::Syntax(error.to_string()))),
        ],
    }
}
