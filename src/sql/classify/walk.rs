//! The walk over one statement's syntax tree: every relation and function it names, in
//! order, with CTE names scoped as PostgreSQL scopes them, and `set_config` calls.

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;
use std::ptr;
use std::rc::Rc;

use sqlparser::ast::{
    Expr, Function, FunctionArguments, ObjectName as SqlName, Query, Select, SetExpr, Statement as SqlStatement,
    TableFactor, Visit, Visitor,
};

use super::names::{expr_name, fold, is_keyword_as_relation, object_name};
use super::settings::{set_config, set_config_call};
use super::targets::note_statement;
use crate::sql::statement::{Access, ObjectName, RelationUse, SettingChange};

/// What the walk found.
#[derive(Debug, Default)]
pub(super) struct Walk {
    pub relations: Vec<RelationUse>,
    pub functions: Vec<ObjectName>,
    pub settings: Vec<SettingChange>,
    /// Some part inserts, updates, deletes, merges, truncates or copies into a table.
    pub writes: bool,
    /// `SELECT ... INTO`: creates a table.
    pub select_into: bool,
    /// Something the walk cannot name exactly; the statement is then treated as unparsed.
    pub problem: Option<String>,
    // Sets beside the lists keep a statement of thousands of names linear.
    seen_relations: HashSet<RelationUse>,
    seen_functions: HashSet<ObjectName>,
    /// Names that the statement writes or defines rather than reads, by address: the tree
    /// visits them as relations like any other.
    targets: HashMap<*const SqlName, Access>,
    /// Set-returning functions in FROM, which the tree visits as relations.
    table_functions: HashSet<*const SqlName>,
    scopes: Vec<Scope>,
}

/// The CTE names a query's body can see: the first `len` of `names`, the enclosing
/// queries' first, then this query's own. Subqueries share their parent's list.
#[derive(Debug)]
struct Scope {
    names: Rc<Vec<Rc<str>>>,
    len: usize,
    /// Where this query's own CTE names start.
    outer: usize,
    /// This query's CTE bodies, by address, in order.
    ctes: Vec<*const Query>,
    recursive: bool,
}

impl Scope {
    /// How many names the body of `query` sees if it is one of this scope's CTEs: the
    /// earlier CTEs (all of them in WITH RECURSIVE) and the enclosing ones; else all.
    fn visible_in(&self, query: &Query) -> usize {
        match self.ctes.iter().position(|&cte| ptr::eq(cte, query)) {
            Some(_) if self.recursive => self.len,
            Some(i) => self.outer + i,
            None => self.len,
        }
    }

    fn sees(&self, name: &str) -> bool {
        self.names.iter().take(self.len).any(|cte| **cte == *name)
    }
}

/// Walks `statement` (and the statements inside it).
pub(super) fn walk(statement: &SqlStatement) -> Walk {
    let mut walk = Walk::default();
    let _ = statement.visit(&mut walk);
    walk
}

impl Walk {
    /// `name` is written or defined, not read, where the tree visits it.
    pub fn target(&mut self, name: &SqlName, access: Access) {
        self.targets.insert(ptr::from_ref(name), access);
    }

    /// A relation the tree does not visit by itself.
    pub fn relation(&mut self, name: &SqlName, access: Access) {
        if is_keyword_as_relation(name) {
            self.problem.get_or_insert_with(|| format!("a keyword where a relation name should be: {name}"));
        }
        match object_name(name) {
            Some(name) => self.push_relation(name, access),
            None => self.unnamable(name),
        }
    }

    pub fn push_relation(&mut self, name: ObjectName, access: Access) {
        let use_ = RelationUse { name, access };
        if self.seen_relations.insert(use_.clone()) {
            self.relations.push(use_);
        }
    }

    pub fn function(&mut self, name: &SqlName) {
        match object_name(name) {
            Some(name) => self.push_function(name),
            None => self.unnamable(name),
        }
    }

    pub fn push_function(&mut self, name: ObjectName) {
        if self.seen_functions.insert(name.clone()) {
            self.functions.push(name);
        }
    }

    fn unnamable(&mut self, name: &SqlName) {
        self.problem.get_or_insert_with(|| format!("cannot resolve the name {name}"));
    }

    fn is_cte(&self, name: &SqlName) -> bool {
        let [part] = name.0.as_slice() else { return false };
        let Some(ident) = part.as_ident() else { return false };
        self.scopes.last().is_some_and(|scope| scope.sees(&fold(ident)))
    }

    fn enter_query(&mut self, query: &Query) {
        let (mut names, len) = match self.scopes.last() {
            Some(parent) => (Rc::clone(&parent.names), parent.visible_in(query)),
            None => (Rc::default(), 0),
        };
        let mut ctes = Vec::new();
        let mut recursive = false;
        let mut own = 0;
        if let Some(with) = &query.with {
            recursive = with.recursive;
            let mut extended: Vec<Rc<str>> = names.iter().take(len).cloned().collect();
            for cte in &with.cte_tables {
                extended.push(fold(&cte.alias.name).into());
                ctes.push(ptr::from_ref::<Query>(&cte.query));
            }
            own = ctes.len();
            names = Rc::new(extended);
        }
        self.scopes.push(Scope { names, len: len + own, outer: len, ctes, recursive });
        if has_table_shorthand(&query.body) {
            self.problem.get_or_insert_with(|| "TABLE name inside a query".into());
        }
    }
}

/// `TABLE name` where sqlparser keeps it as bare strings (quoting lost): the start of a
/// statement is rewritten before parsing, other places are not trusted.
fn has_table_shorthand(body: &SetExpr) -> bool {
    match body {
        SetExpr::Table(_) => true,
        SetExpr::SetOperation { left, right, .. } => has_table_shorthand(left) || has_table_shorthand(right),
        _ => false,
    }
}

/// Without parentheses (CURRENT_TIMESTAMP, CURRENT_USER), `ARRAY(subquery)` and `ROW(..)`
/// it is SQL syntax, not a function call.
fn is_call(function: &Function) -> bool {
    let keyword = |word: &str| match function.name.0.as_slice() {
        [part] => part.as_ident().is_some_and(|i| i.quote_style.is_none() && i.value.eq_ignore_ascii_case(word)),
        _ => false,
    };
    match &function.args {
        FunctionArguments::None => false,
        FunctionArguments::Subquery(_) => !keyword("array"),
        FunctionArguments::List(_) => !keyword("row"),
    }
}

impl Visitor for Walk {
    type Break = ();

    fn pre_visit_statement(&mut self, statement: &SqlStatement) -> ControlFlow<()> {
        note_statement(self, statement);
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        self.enter_query(query);
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &Query) -> ControlFlow<()> {
        self.scopes.pop();
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<()> {
        if let Some(into) = &select.into {
            self.select_into = true;
            for target in &into.targets {
                match expr_name(target) {
                    Some(name) => self.push_relation(name, Access::Define),
                    None => self.problem = Some(format!("cannot resolve the SELECT INTO target {target}")),
                }
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        match factor {
            TableFactor::Table { name, args: Some(args), .. } => {
                self.table_functions.insert(ptr::from_ref(name));
                self.settings.extend(set_config_call(name, &args.args));
            }
            TableFactor::Function { name, args, .. } => {
                self.function(name);
                self.settings.extend(set_config_call(name, args));
            }
            TableFactor::UNNEST { .. } => self.push_function(ObjectName::new(None, "unnest")),
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, name: &SqlName) -> ControlFlow<()> {
        if self.table_functions.contains(&ptr::from_ref(name)) {
            self.function(name);
            return ControlFlow::Continue(());
        }
        // DML and DDL targets never resolve to a CTE in PostgreSQL.
        match self.targets.get(&ptr::from_ref(name)) {
            Some(&access) => self.relation(name, access),
            None if self.is_cte(name) => {}
            None => self.relation(name, Access::Read),
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        if let Expr::Function(function) = expr
            && is_call(function)
        {
            self.function(&function.name);
            if let Some(change) = set_config(function) {
                self.settings.push(change);
            }
        }
        ControlFlow::Continue(())
    }
}
