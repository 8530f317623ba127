//! The statements audit tests send (simple queries, extended queries, pipelines, failing
//! and refused statements), each checked as the client sees it, and the records each should
//! leave, in the order the client sent them.

use futures::future::join_all;
use serde_json::{Value, json};
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::common::sqlstate;
use crate::support::{Expected, int4_param};

pub const BY_ID: &str = "SELECT v FROM aud.t WHERE id = $1";
const BETWEEN: &str = "SELECT id, v FROM aud.t WHERE id BETWEEN $1 AND $2";
/// Fails at Execute: the division reads a column, so no plan can fold it at Bind.
const DIVIDE: &str = "SELECT v, 1/(id - $1) FROM aud.t WHERE id = $1";
const DELETE_BY_ID: &str = "DELETE FROM aud.t WHERE id = $1";
const SECRET: &str = "SELECT x FROM public.secret";

/// The rows of a simple query that must succeed.
pub async fn simple_rows(client: &Client, sql: &str) -> u64 {
    let messages = client.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    messages.iter().filter(|m| matches!(m, SimpleQueryMessage::Row(_))).count() as u64
}

/// A statement that must fail with `code`; its error message.
pub fn failed_with<T: std::fmt::Debug>(result: Result<T, tokio_postgres::Error>, code: &str, sql: &str) -> String {
    let e = result.expect_err(sql);
    assert_eq!(sqlstate(&e).as_deref(), Some(code), "{sql}: {e:?}");
    crate::common::db_message(&e)
}

/// Statements run on one client and checked there, with the records they should leave.
pub struct Script<'a> {
    client: &'a Client,
    /// What a simple query's parameters field says: `<none>` with `log_parameter` (it has
    /// none, as pgaudit writes it), else `<not logged>`.
    simple_parameters: Value,
    pub expected: Vec<Expected>,
}

impl<'a> Script<'a> {
    pub fn new(client: &'a Client, log_parameter: bool) -> Self {
        let simple_parameters = json!(if log_parameter { "<none>" } else { "<not logged>" });
        Self { client, simple_parameters, expected: Vec::new() }
    }

    /// The record of a simple query.
    fn push_simple(&mut self, expected: Expected) {
        self.expected.push(expected.with_parameters(self.simple_parameters.clone()));
    }

    /// A simple query returning `rows` rows.
    pub async fn simple(&mut self, sql: &str, rows: u64) {
        assert_eq!(simple_rows(self.client, sql).await, rows, "{sql}");
        self.push_simple(Expected::ok("READ", "SELECT", Some(rows), sql));
    }

    /// A simple query the server fails with division by zero.
    pub async fn divide_by_zero(&mut self) {
        let sql = "SELECT 1/0";
        failed_with(self.client.simple_query(sql).await, "22012", sql);
        self.push_simple(Expected::error("READ", "SELECT", "22012", sql));
    }

    /// A simple query string of two statements: the first succeeds, the second fails.
    pub async fn two_statements(&mut self, k: i32) {
        let sql = format!("SELECT {k}; SELECT 1/0");
        failed_with(self.client.simple_query(&sql).await, "22012", &sql);
        self.push_simple(Expected::ok("READ", "SELECT", Some(1), &sql));
        self.push_simple(Expected::error("READ", "SELECT", "22012", &sql));
    }

    /// A simple DELETE: the workspace does not allow WRITE.
    pub async fn denied_delete(&mut self, k: i32) {
        let sql = format!("DELETE FROM aud.t WHERE id = {k}");
        let message = failed_with(self.client.simple_query(&sql).await, "42501", &sql);
        assert!(message.contains("(rule allow)"), "{message}");
        self.push_simple(Expected::denied("WRITE", "DELETE", "allow", &sql));
    }

    /// A simple SELECT of a table outside `relations.allow`.
    pub async fn denied_relation(&mut self) {
        let message = failed_with(self.client.simple_query(SECRET).await, "42501", SECRET);
        assert!(message.contains("public.secret"), "{message}");
        self.push_simple(Expected::denied("READ", "SELECT", "relations.allow", SECRET));
    }

    /// An extended query with two parameters (prepared, bound, executed, closed).
    pub async fn between(&mut self, low: i32, high: i32) {
        let rows = self.client.query(BETWEEN, &[&low, &high]).await.expect(BETWEEN);
        let count = (high.min(100) - low + 1) as u64;
        assert_eq!(rows.len() as u64, count);
        let parameters = json!([int4_param(low), int4_param(high)]);
        self.expected.push(Expected::ok("READ", "SELECT", Some(count), BETWEEN).with_parameters(parameters));
    }

    /// An extended query the server fails at Execute.
    pub async fn divide_at_execute(&mut self, k: i32) {
        failed_with(self.client.query(DIVIDE, &[&k]).await, "22012", DIVIDE);
        let parameters = json!([int4_param(k)]);
        self.expected.push(Expected::error("READ", "SELECT", "22012", DIVIDE).with_parameters(parameters));
    }

    /// An extended DELETE, refused at its Parse (so no parameters are known).
    pub async fn denied_extended_delete(&mut self, k: i32) {
        failed_with(self.client.query(DELETE_BY_ID, &[&k]).await, "42501", DELETE_BY_ID);
        self.expected.push(Expected::denied("WRITE", "DELETE", "allow", DELETE_BY_ID));
    }

    /// `ids.len()` executions of one prepared statement in flight at once.
    pub async fn pipeline(&mut self, statement: &tokio_postgres::Statement, ids: &[i32]) {
        let params: Vec<[&(dyn tokio_postgres::types::ToSql + Sync); 1]> = ids.iter().map(|id| [id as _]).collect();
        let results = join_all(params.iter().map(|p| self.client.query(statement, p))).await;
        for (id, result) in ids.iter().zip(results) {
            let rows = result.expect("pipelined SELECT");
            assert_eq!(rows.len(), 1);
            assert_eq!(rows[0].get::<_, String>(0), format!("v{id}"));
            let parameters = json!([int4_param(*id)]);
            self.expected.push(Expected::ok("READ", "SELECT", Some(1), BY_ID).with_parameters(parameters));
        }
    }
}

/// The load test's client `c`: a marker statement naming it, then a mix of every kind of
/// statement until at least `n` records are expected. Returns them in the order sent.
pub async fn load_client(client: &Client, c: usize, n: usize) -> Vec<Expected> {
    let mut s = Script::new(client, true);
    s.simple(&marker(c), 1).await;
    // Parse only: no record until it is executed.
    let by_id = client.prepare(BY_ID).await.expect("prepare");
    let mut step = 0;
    while s.expected.len() < n {
        let k = 1 + ((c * 7 + step) % 100) as i32;
        match step % 16 {
            0 | 3 | 12 => {
                s.simple(&format!("SELECT id FROM aud.t WHERE id <= {}", k % 10 + 1), (k % 10 + 1) as u64).await
            }
            1 | 7 | 13 => s.pipeline(&by_id, &[k, k % 97 + 1, k % 89 + 1, k % 83 + 1]).await,
            2 | 9 => s.between(k, k + 2).await,
            4 => s.divide_by_zero().await,
            5 => s.denied_delete(k).await,
            6 => s.denied_relation().await,
            8 => s.two_statements(k).await,
            10 => s.divide_at_execute(k).await,
            11 => s.denied_extended_delete(k).await,
            14 => s.simple(&format!("SELECT {k}"), 1).await,
            _ => s.pipeline(&by_id, &[k]).await,
        }
        step += 1;
    }
    s.expected
}

/// The first statement of load client `c`, which tells its session apart.
pub fn marker(c: usize) -> String {
    format!("SELECT 'client-{c}'")
}

/// The script every pool mode runs: the records it should leave.
pub async fn mode_script(client: &Client) -> Vec<Expected> {
    let mut s = Script::new(client, false);
    s.simple("SELECT id FROM aud.t WHERE id <= 3", 3).await;
    let rows = client.query(BY_ID, &[&2i32]).await.expect(BY_ID);
    assert_eq!(rows.len(), 1);
    s.expected.push(Expected::ok("READ", "SELECT", Some(1), BY_ID));
    // A refused statement refuses the whole string; only the refused one is recorded,
    // since the SELECT before it never ran.
    let refused = "SELECT 1; DELETE FROM aud.t";
    failed_with(client.simple_query(refused).await, "42501", refused);
    s.push_simple(Expected::denied("WRITE", "DELETE", "allow", refused));
    s.divide_by_zero().await;
    failed_with(client.query(DIVIDE, &[&3i32]).await, "22012", DIVIDE);
    s.expected.push(Expected::error("READ", "SELECT", "22012", DIVIDE));
    failed_with(client.query(SECRET, &[]).await, "42501", SECRET);
    s.expected.push(Expected::denied("READ", "SELECT", "relations.allow", SECRET));
    s.two_statements(4).await;
    let set = "SET application_name = 'audit-modes'";
    client.simple_query(set).await.expect(set);
    s.push_simple(Expected::ok("MISC_SET", "SET", None, set));
    s.simple("SELECT v FROM aud.t WHERE id = 5", 1).await;
    s.expected
}
