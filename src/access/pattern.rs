//! Name patterns of workspace rules: `schema.name`, where either part may hold `*`
//! wildcards (`alpha.*`, `public.lightrag_*`, `*.secrets`), matched against names folded as
//! PostgreSQL folds them.

use std::fmt;

use crate::sql::statement::ObjectName;

/// One `schema.name` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    schema: String,
    name: String,
}

impl Pattern {
    /// Parses `schema.name`; unquoted like SQL identifiers (so `Alpha.*` is `alpha.*`), or
    /// with double quotes to keep case (`"Alpha".*`).
    pub fn parse(text: &str) -> Result<Pattern, String> {
        let (schema, name) = split_qualified(text)
            .ok_or_else(|| format!("{text:?} is not schema.name (write *.name for any schema)"))?;
        if schema.is_empty() || name.is_empty() {
            return Err(format!("{text:?} has an empty part"));
        }
        Ok(Pattern { schema, name })
    }

    pub fn matches(&self, name: &ObjectName) -> bool {
        let Some(schema) = &name.schema else { return false };
        self.matches_parts(schema, &name.name)
    }

    pub fn matches_parts(&self, schema: &str, name: &str) -> bool {
        glob(&self.schema, schema) && glob(&self.name, name)
    }

    /// True when the pattern names exactly one object (no wildcard in the name part).
    pub fn is_exact_name(&self) -> bool {
        !self.name.contains('*')
    }

    /// The schema part, which may hold wildcards.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Whether some object of `schema` could match.
    pub fn covers_schema(&self, schema: &str) -> bool {
        glob(&self.schema, schema)
    }

    /// The pattern of everything in this pattern's schemas (`alpha.orders` -> `alpha.*`).
    pub fn whole_schema(&self) -> Pattern {
        Pattern { schema: self.schema.clone(), name: "*".into() }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// Splits at the first dot outside double quotes, folding unquoted parts to lower case.
fn split_qualified(text: &str) -> Option<(String, String)> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut chars = text.trim().chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                current.push('"');
            }
            '"' => quoted = !quoted,
            '.' if !quoted => parts.push(std::mem::take(&mut current)),
            c if quoted => current.push(c),
            c => current.extend(c.to_lowercase()),
        }
    }
    parts.push(current);
    match <[String; 2]>::try_from(parts) {
        Ok([schema, name]) if !quoted => Some((schema, name)),
        _ => None,
    }
}

/// `*` matches any run of characters, everything else itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(schema: &str, n: &str) -> ObjectName {
        ObjectName::new(Some(schema), n)
    }

    #[test]
    fn globs() {
        assert!(glob("*", ""));
        assert!(glob("lightrag_*", "lightrag_doc_chunks"));
        assert!(!glob("lightrag_*", "xlightrag_doc"));
        assert!(glob("*_to_xml*", "query_to_xmlschema"));
        assert!(glob("a*b*c", "aXbYc"));
        assert!(!glob("a*b*c", "aXbY"));
        assert!(glob("pg_ls_*", "pg_ls_dir"));
    }

    #[test]
    fn patterns_fold_like_identifiers() {
        let p = Pattern::parse("Alpha.*").unwrap();
        assert!(p.matches(&name("alpha", "orders")));
        assert!(!p.matches(&name("Alpha", "orders")));
        let quoted = Pattern::parse("\"Alpha\".\"Orders\"").unwrap();
        assert!(quoted.matches(&name("Alpha", "Orders")));
        assert!(quoted.is_exact_name());
        assert!(Pattern::parse("*.secrets").unwrap().matches(&name("public", "secrets")));
        assert!(!Pattern::parse("public.secrets").unwrap().matches(&ObjectName::new(None, "secrets")));
        for bad in ["secrets", "a.b.c", ".x", "x.", "\"a.b"] {
            assert!(Pattern::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Pattern::parse("public.lightrag_*").unwrap().whole_schema().to_string(), "public.*");
    }
}
