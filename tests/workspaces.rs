//! Workspaces against real PostgreSQL: login grants, the escape table (a READ-only workspace
//! on schema alpha whose server role is a superuser, so pgate is the only guard), what the
//! workspace may still do, row-level security on pinned `pgate.workspace` with shared
//! servers, and rules tightened by a reload.

mod common;

use std::sync::Arc;

use common::*;
use futures::future::join_all;
use tokio_postgres::SimpleQueryMessage;

const ESC_PW: &str = "esc-secret";
const ROOT_PW: &str = "esc-root-secret";

/// The escape database: schema alpha (the workspace's), beta and public (not), a procedure
/// and a function with side effects, and a superuser role for pgate's server logins.
fn escape_database(db: &str) {
    fresh_database(db);
    let data = &backends().data;
    data.psql(
        "postgres",
        &format!(
            "SELECT pg_advisory_xact_lock(4711); \
             DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'esc_root') THEN \
             CREATE ROLE esc_root SUPERUSER LOGIN PASSWORD '{ROOT_PW}'; END IF; END$$"
        ),
    )
    .unwrap();
    data.psql(
        db,
        "CREATE SCHEMA alpha; CREATE SCHEMA beta;
         CREATE TABLE alpha.orders (id int PRIMARY KEY, amount int);
         INSERT INTO alpha.orders VALUES (1, 10), (2, 20), (3, 30);
         CREATE TABLE beta.secrets (s text); INSERT INTO beta.secrets VALUES ('TOPSECRET-beta');
         CREATE TABLE public.secrets (s text); INSERT INTO public.secrets VALUES ('TOPSECRET-public');
         CREATE TABLE public.log (entry text);
         CREATE FUNCTION public.evil() RETURNS int LANGUAGE sql AS 'INSERT INTO public.log VALUES (''evil''); SELECT 1';
         CREATE PROCEDURE public.evil_proc() LANGUAGE sql AS 'DELETE FROM alpha.orders';",
    )
    .unwrap();
}

/// READ on schema alpha only; search_path pinned to alpha.
fn escape_config(db: &str, mode: &str, allow: &str) -> String {
    config_with_fallback(&format!("[pool]\nmode = \"{mode}\"\nsize = 3\n")).replace(
        "[[users]]\nname = \"alice\"",
        &format!(
            "[[users]]\nname = \"esc\"\npassword = \"{ESC_PW}\"\nserver_user = \"esc_root\"\nserver_password = \"{ROOT_PW}\"\n\n\
             [[workspaces]]\nname = \"alpha\"\nusers = [\"esc\"]\ndatabases = [\"{db}\"]\n{allow}\n\
             relations = {{ allow = [\"alpha.*\"] }}\nsession = {{ search_path = \"alpha\" }}\n\n\
             [[workspaces]]\nname = \"everyone\"\nusers = [\"alice\", \"bob\", \"carol\", \"dave\"]\ndatabases = [\"*\"]\n\n\
             [[users]]\nname = \"alice\""
        ),
    )
}

/// Statements a READ-only workspace on schema alpha must be refused, each with 42501.
const ESCAPES: &[&str] = &[
    "DELETE FROM alpha.orders",
    "UPDATE alpha.orders SET amount = 0",
    "INSERT INTO alpha.orders VALUES (99, 1)",
    "MERGE INTO alpha.orders o USING (SELECT 1 AS id) s ON o.id = s.id WHEN MATCHED THEN DELETE",
    "TRUNCATE alpha.orders",
    "WITH d AS (DELETE FROM alpha.orders RETURNING *) SELECT * FROM d",
    "WITH u AS (UPDATE alpha.orders SET amount = 0 RETURNING id) SELECT count(*) FROM u",
    "SELECT * INTO alpha.stolen FROM alpha.orders",
    "CREATE TABLE alpha.stolen AS SELECT * FROM alpha.orders",
    "CREATE TEMP TABLE stolen AS SELECT * FROM beta.secrets",
    "COPY alpha.orders TO PROGRAM 'touch /tmp/pgate-escape-program'",
    "COPY alpha.orders TO '/tmp/pgate-escape-file'",
    "COPY alpha.orders FROM STDIN",
    "COPY (SELECT * FROM beta.secrets) TO STDOUT",
    "EXPLAIN ANALYZE DELETE FROM alpha.orders",
    "EXPLAIN (ANALYZE, FORMAT JSON) UPDATE alpha.orders SET amount = 0",
    "DO $$BEGIN DELETE FROM alpha.orders; END$$",
    "DO LANGUAGE plpgsql $x$BEGIN PERFORM 1; END$x$",
    "CALL public.evil_proc()",
    "SELECT public.evil()",
    "SELECT * FROM alpha.orders WHERE amount > public.evil()",
    "SELECT pg_read_file('/etc/passwd')",
    "SELECT pg_catalog.pg_read_file('/etc/hostname')",
    "SELECT lo_import('/etc/passwd')",
    "SELECT pg_ls_dir('.')",
    "SELECT pg_terminate_backend(pg_backend_pid())",
    "SELECT pg_reload_conf()",
    "SELECT query_to_xml('DELETE FROM alpha.orders RETURNING 1', true, true, '')",
    "SELECT * FROM beta.secrets",
    "SELECT * FROM \"beta\".\"secrets\"",
    "SELECT * FROM BETA.SECRETS",
    "SELECT * FROM public.secrets",
    "SELECT * FROM pg_authid",
    "SELECT rolpassword FROM pg_catalog.pg_authid",
    "SELECT * FROM pg_shadow",
    "SELECT * FROM alpha.orders WHERE id IN (SELECT 1 FROM beta.secrets)",
    "SELECT (SELECT s FROM beta.secrets LIMIT 1)",
    "SELECT * FROM alpha.orders o JOIN LATERAL (SELECT * FROM beta.secrets) s ON true",
    "SELECT * FROM alpha.orders ORDER BY (SELECT count(*) FROM beta.secrets)",
    "SELECT id FROM alpha.orders UNION SELECT 1 FROM beta.secrets",
    "WITH x AS (SELECT * FROM beta.secrets) SELECT * FROM x",
    "SELECT * FROM alpha.orders WHERE EXISTS (SELECT FROM public.secrets)",
    "SELECT 1; DELETE FROM alpha.orders",
    "SELECT 1 /* ; */ ; DELETE FROM alpha.orders",
    "SELECT $$ ; $$; DELETE FROM alpha.orders",
    "SELECT * FROM alpha.orders -- ;\n; DELETE FROM alpha.orders",
    "SELECT * FROM alpha.orders; SELECT * FROM beta.secrets",
    "SET ROLE esc_root",
    "SET SESSION AUTHORIZATION esc_root",
    "RESET ROLE",
    "SET search_path = beta",
    "SET search_path TO beta, alpha",
    "SET LOCAL search_path = public",
    "RESET search_path",
    "SET search_path TO DEFAULT",
    "SELECT set_config('search_path', 'beta', false)",
    "SELECT set_config('pgate.workspace', 'beta', false)",
    "SET pgate.workspace = 'beta'",
    "SELECT set_config(current_user || '.x', 'y', false)",
    "DROP TABLE alpha.orders",
    "ALTER TABLE alpha.orders ADD COLUMN x int",
    "GRANT ALL ON alpha.orders TO PUBLIC",
    "CREATE ROLE escaped SUPERUSER LOGIN",
    "ALTER ROLE esc_root PASSWORD 'changed'",
    "CREATE FUNCTION alpha.f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    "CREATE EXTENSION IF NOT EXISTS dblink",
    "VACUUM alpha.orders",
    "LISTEN escape",
    "LOCK TABLE alpha.orders",
    "PREPARE esc_sql AS DELETE FROM alpha.orders",
    "EXECUTE never_prepared_here",
    "SET default_transaction_read_only = off",
    "ALTER SYSTEM SET work_mem = '1GB'",
    "CHECKPOINT",
    "SET standard_conforming_strings = off",
    "SET client_encoding = 'SJIS'",
    "SELECT 'x\\' ; ' ; DELETE FROM alpha.orders; --'",
];

/// Runs every escape over the simple protocol; each must fail with 42501 and return no row.
async fn escapes_simple(client: &tokio_postgres::Client) -> Vec<String> {
    let mut failures = Vec::new();
    for sql in ESCAPES {
        match client.simple_query(sql).await {
            Ok(rows) => failures.push(format!("simple: {sql:?} ran ({} messages)", rows.len())),
            Err(e) if sqlstate(&e).as_deref() == Some("42501") => {}
            Err(e) => failures.push(format!("simple: {sql:?} failed otherwise: {:?} {}", sqlstate(&e), db_message(&e))),
        }
    }
    failures
}

/// The same over Parse/Bind/Execute (tokio-postgres prepares every query).
async fn escapes_extended(client: &tokio_postgres::Client) -> Vec<String> {
    let mut failures = Vec::new();
    for sql in ESCAPES {
        match client.query(*sql, &[]).await {
            Ok(rows) => failures.push(format!("extended: {sql:?} ran ({} rows)", rows.len())),
            Err(e) if sqlstate(&e).as_deref() == Some("42501") => {}
            Err(e) => {
                failures.push(format!("extended: {sql:?} failed otherwise: {:?} {}", sqlstate(&e), db_message(&e)))
            }
        }
    }
    failures
}

/// And through SQL PREPARE / EXECUTE, for the statements PREPARE takes.
async fn escapes_sql_prepare(client: &tokio_postgres::Client) -> Vec<String> {
    let mut failures = Vec::new();
    let preparable = ESCAPES.iter().filter(|s| {
        let head = s.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
        ["SELECT", "INSERT", "UPDATE", "DELETE", "MERGE", "WITH"].contains(&head.as_str()) && !s.contains(';')
    });
    for (i, sql) in preparable.enumerate() {
        let prepare = format!("PREPARE esc_{i} AS {sql}");
        match client.simple_query(&prepare).await {
            Ok(_) => failures.push(format!("prepare: {prepare:?} was accepted")),
            Err(e) if sqlstate(&e).as_deref() == Some("42501") => {}
            Err(e) => {
                failures.push(format!("prepare: {prepare:?} failed otherwise: {:?} {}", sqlstate(&e), db_message(&e)))
            }
        }
        if client.simple_query(&format!("EXECUTE esc_{i}")).await.is_ok() {
            failures.push(format!("execute: esc_{i} ({sql}) ran"));
        }
    }
    failures
}

/// What a superuser finds afterwards: nothing changed.
fn assert_nothing_changed(db: &str) {
    let data = &backends().data;
    let check = |sql: &str| data.psql(db, sql).unwrap();
    assert_eq!(check("SELECT count(*), sum(amount) FROM alpha.orders"), "3|60");
    assert_eq!(check("SELECT count(*) FROM alpha.orders WHERE amount = 0"), "0");
    assert_eq!(check("SELECT count(*) FROM pg_tables WHERE tablename = 'stolen'"), "0");
    assert_eq!(check("SELECT count(*) FROM public.log"), "0", "public.evil() never ran");
    assert_eq!(check("SELECT count(*) FROM pg_proc WHERE proname = 'f'"), "0");
    assert_eq!(check("SELECT count(*) FROM pg_roles WHERE rolname = 'escaped'"), "0");
    assert_eq!(check("SELECT count(*) FROM pg_extension WHERE extname = 'dblink'"), "0");
    assert_eq!(check("SELECT count(*) FROM information_schema.columns WHERE table_name = 'orders'"), "2");
    assert_eq!(check("SELECT s FROM beta.secrets"), "TOPSECRET-beta");
    assert!(!std::path::Path::new("/tmp/pgate-escape-program").exists());
    assert!(!std::path::Path::new("/tmp/pgate-escape-file").exists());
    // The role's password still works (ALTER ROLE never ran).
    let rolpassword =
        data.psql("postgres", "SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = 'esc_root'");
    assert_eq!(rolpassword.unwrap(), "t");
}

async fn escape_table(mode: &str) {
    let db = format!("ws_escape_{mode}");
    escape_database(&db);
    let pgate = Pgate::start(&escape_config(&db, mode, "allow = [\"READ\"]")).await;
    let client = pgate.connect("esc", ESC_PW, &db).await.expect("esc logs in");
    let mut failures = escapes_simple(&client).await;
    failures.extend(escapes_extended(&client).await);
    failures.extend(escapes_sql_prepare(&client).await);
    assert!(failures.is_empty(), "{mode} pooling: {} escapes not refused:\n{}", failures.len(), failures.join("\n"));
    // The session is still usable after all those refusals.
    assert_eq!(simple_row(&client, "SELECT count(*) FROM alpha.orders").await, ["3"]);
    drop(client);
    pgate.stop().await;
    assert_nothing_changed(&db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escape_table_transaction_pooling() {
    escape_table("transaction").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escape_table_session_pooling() {
    escape_table("session").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escape_table_statement_pooling() {
    escape_table("statement").await;
}

#[test]
fn the_escape_table_is_long_enough() {
    assert!(ESCAPES.len() >= 60, "{} escapes", ESCAPES.len());
}

/// What the READ workspace may still do, including drivers' catalog queries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workspace_can_still_work() {
    let db = "ws_positive";
    escape_database(db);
    let pgate = Pgate::start(&escape_config(db, "transaction", "allow = [\"READ\", \"MISC\"]")).await;
    let client = pgate.connect("esc", ESC_PW, db).await.unwrap();
    let one = |sql: &'static str| {
        let client = &client;
        async move { simple_row(client, sql).await }
    };
    assert_eq!(one("SELECT count(*) FROM alpha.orders").await, ["3"]);
    assert_eq!(one("SELECT count(*) FROM orders").await, ["3"], "unqualified, on the pinned search_path");
    assert_eq!(one("SHOW search_path").await, ["alpha"]);
    assert_eq!(one("SELECT current_setting('pgate.workspace')").await, ["alpha"]);
    assert_eq!(one("SELECT lower('X'), length(now()::text) > 0").await, ["x", "t"]);
    assert_eq!(one("SELECT count(*) > 0 FROM pg_catalog.pg_class").await, ["t"]);
    assert_eq!(one("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'alpha'").await, ["1"]);
    client.batch_execute("BEGIN; SELECT 1 FROM alpha.orders; COMMIT").await.unwrap();
    client.batch_execute("BEGIN READ ONLY; SAVEPOINT s; ROLLBACK TO SAVEPOINT s; RELEASE s; ROLLBACK").await.unwrap();
    // Extended protocol with parameters and a typed result (tokio-postgres looks types up in
    // the catalogs too).
    let row = client.query_one("SELECT amount FROM alpha.orders WHERE id = $1", &[&2i32]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 20);
    let stmt = client.prepare("SELECT id FROM alpha.orders WHERE amount > $1 ORDER BY id").await.unwrap();
    let ids: Vec<i32> = client.query(&stmt, &[&15i32]).await.unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(ids, [2, 3]);
    client.batch_execute("PREPARE ok_sql AS SELECT count(*) FROM alpha.orders").await.unwrap();
    assert_eq!(one("EXECUTE ok_sql").await, ["3"]);
    for sql in ["DEALLOCATE ALL", "DISCARD ALL", "RESET ALL"] {
        client.batch_execute(sql).await.unwrap();
    }
    assert_eq!(one("SHOW search_path").await, ["alpha"], "pinned settings come back after DISCARD ALL / RESET ALL");
    assert_eq!(one("SELECT current_setting('pgate.workspace')").await, ["alpha"]);
    // Startup options cannot change how PostgreSQL reads query text either.
    let info = format!(
        "{} options='-c standard_conforming_strings=off -c search_path=beta'",
        pgate.conninfo("esc", ESC_PW, db)
    );
    let sneaky = connect(&info).await.unwrap();
    assert_eq!(simple_row(&sneaky, "SHOW standard_conforming_strings").await, ["on"]);
    assert_eq!(simple_row(&sneaky, "SHOW search_path").await, ["alpha"]);
}

/// A denial inside a transaction block fails the transaction exactly as PostgreSQL would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denial_fails_the_transaction_block() {
    let db = "ws_txfail";
    escape_database(db);
    let pgate = Pgate::start(&escape_config(db, "transaction", "allow = [\"READ\"]")).await;
    let client = pgate.connect("esc", ESC_PW, db).await.unwrap();
    client.batch_execute("BEGIN").await.unwrap();
    let denied = client.batch_execute("DELETE FROM alpha.orders").await.unwrap_err();
    assert_eq!(sqlstate(&denied).as_deref(), Some("42501"));
    let message = db_message(&denied);
    assert!(message.contains("workspace \"alpha\"") && message.contains("WRITE"), "{message}");
    let after = client.batch_execute("SELECT 1").await.unwrap_err();
    assert_eq!(sqlstate(&after).as_deref(), Some("25P02"), "the transaction is aborted");
    client.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(simple_row(&client, "SELECT count(*) FROM alpha.orders").await, ["3"]);
    // Extended protocol inside a transaction: the pipeline fails at the refused Parse.
    client.batch_execute("BEGIN").await.unwrap();
    let denied = client.query("SELECT * FROM beta.secrets", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&denied).as_deref(), Some("42501"));
    assert!(db_message(&denied).contains("beta.secrets"), "{}", db_message(&denied));
    let after = client.query("SELECT 1", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&after).as_deref(), Some("25P02"));
    client.batch_execute("ROLLBACK").await.unwrap();
}

/// Logins: no workspace, a database the workspace does not grant, choosing a workspace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_need_a_workspace_grant() {
    let db = "ws_logins";
    escape_database(db);
    let config = escape_config(db, "transaction", "allow = [\"READ\"]").replace(
        "users = [\"alice\", \"bob\", \"carol\", \"dave\"]\ndatabases = [\"*\"]",
        "users = [\"alice\"]\ndatabases = [\"akko\"]\nmax_client_connections = 2",
    );
    let pgate = Pgate::start(&config).await;
    let e = pgate.connect("bob", BOB_PW, "akko").await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("28000"));
    assert!(db_message(&e).contains("\"bob\" is in no workspace"), "{}", db_message(&e));
    let e = pgate.connect("alice", ALICE_PW, "keycloak").await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("28000"));
    assert!(db_message(&e).contains("keycloak") && db_message(&e).contains("everyone"), "{}", db_message(&e));
    let e = pgate.connect("esc", ESC_PW, "akko").await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("28000"), "alpha grants {db} only");
    // Naming a workspace the user is not in.
    let info = format!("{} options='-c pgate.workspace=alpha'", pgate.conninfo("alice", ALICE_PW, "akko"));
    let e = connect(&info).await.unwrap_err();
    assert!(db_message(&e).contains("not a member of workspace \"alpha\""), "{}", db_message(&e));
    let info = format!("{} options='-c pgate.workspace=everyone'", pgate.conninfo("alice", ALICE_PW, "akko"));
    let alice = connect(&info).await.unwrap();
    assert_eq!(simple_row(&alice, "SELECT current_setting('pgate.workspace')").await, ["everyone"]);
    let _second = pgate.alice("akko").await;
    let e = pgate.connect("alice", ALICE_PW, "akko").await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("53300"), "the workspace's max_client_connections");
}

/// Two workspaces share one table under row-level security keyed on the pinned
/// pgate.workspace; their clients share one pool's servers in transaction pooling and still
/// see only their own rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_level_security_on_the_pinned_workspace_with_shared_servers() {
    let db = "ws_rls";
    fresh_database(db);
    let data = &backends().data;
    data.psql(
        "postgres",
        "SELECT pg_advisory_xact_lock(4711); DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tenant') \
         THEN CREATE ROLE tenant LOGIN PASSWORD 'tenant-pw'; END IF; END$$",
    )
    .unwrap();
    data.psql(
        db,
        "CREATE TABLE public.notes (workspace text NOT NULL DEFAULT current_setting('pgate.workspace', true), note text);
         ALTER TABLE public.notes ENABLE ROW LEVEL SECURITY;
         CREATE POLICY by_workspace ON public.notes
           USING (workspace = current_setting('pgate.workspace', true))
           WITH CHECK (workspace = current_setting('pgate.workspace', true));
         GRANT SELECT, INSERT ON public.notes TO tenant;",
    )
    .unwrap();
    let users = "[[users]]\nname = \"ra\"\npassword = \"ra-pw\"\nserver_user = \"tenant\"\nserver_password = \"tenant-pw\"\n\n\
                 [[users]]\nname = \"rb\"\npassword = \"rb-pw\"\nserver_user = \"tenant\"\nserver_password = \"tenant-pw\"\n\n";
    let workspaces = format!(
        "[[workspaces]]\nname = \"alpha\"\nusers = [\"ra\"]\ndatabases = [\"{db}\"]\nallow = [\"READ\", \"WRITE\"]\n\
         relations = {{ allow = [\"public.notes\"] }}\nsession = {{ search_path = \"public\" }}\n\n\
         [[workspaces]]\nname = \"beta\"\nusers = [\"rb\"]\ndatabases = [\"{db}\"]\nallow = [\"READ\", \"WRITE\"]\n\
         relations = {{ allow = [\"public.notes\"] }}\nsession = {{ search_path = \"public\" }}\n\n"
    );
    let config = config_with_fallback("[pool]\nmode = \"transaction\"\nsize = 2\n")
        .replace("[[users]]\nname = \"alice\"", &format!("{users}{workspaces}[[users]]\nname = \"alice\""));
    let pgate = Pgate::start(&config).await;
    let clients: Vec<(&str, tokio_postgres::Client)> = join_all((0..8).map(|i| {
        let (user, pw, ws) = if i % 2 == 0 { ("ra", "ra-pw", "alpha") } else { ("rb", "rb-pw", "beta") };
        let info = pgate.conninfo(user, pw, db);
        async move { (ws, connect(&info).await.expect("tenant logs in")) }
    }))
    .await;
    let pids = Arc::new(std::sync::Mutex::new(std::collections::HashMap::<i32, Vec<&str>>::new()));
    let work = clients.iter().enumerate().map(|(i, (ws, c))| {
        let pids = pids.clone();
        async move {
            for j in 0..25 {
                c.execute("INSERT INTO notes (note) VALUES ($1)", &[&format!("{ws} {i} {j}")]).await?;
                let rows = c.simple_query("SELECT workspace, pg_backend_pid() FROM notes").await?;
                for m in rows {
                    if let SimpleQueryMessage::Row(r) = m {
                        assert_eq!(r.get(0), Some(*ws), "a {ws} client saw another workspace's row");
                        let pid: i32 = r.get(1).unwrap().parse().unwrap();
                        pids.lock().unwrap().entry(pid).or_default().push(ws);
                    }
                }
                let denied = c.simple_query("SELECT set_config('pgate.workspace', 'other', true)").await.unwrap_err();
                assert_eq!(sqlstate(&denied).as_deref(), Some("42501"));
            }
            Ok::<_, tokio_postgres::Error>(())
        }
    });
    for r in join_all(work).await {
        r.expect("tenant work succeeds");
    }
    let shared = pids.lock().unwrap().values().filter(|ws| ws.contains(&"alpha") && ws.contains(&"beta")).count();
    assert!(shared >= 1, "the two workspaces never shared a server: {:?}", pids.lock().unwrap().keys());
    assert_eq!(
        data.psql(db, "SELECT workspace, count(*) FROM notes GROUP BY 1 ORDER BY 1").unwrap(),
        "alpha|100\nbeta|100"
    );
}

/// A statement prepared while the rules allowed it is checked again at its next Bind, after a
/// reload tightened them; so is a SQL PREPAREd one at its EXECUTE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_prepared_before_a_reload_are_checked_again() {
    for mode in ["transaction", "session"] {
        let db = format!("ws_reload_{mode}");
        escape_database(&db);
        let loose =
            escape_config(&db, mode, "allow = [\"ALL\"]").replace("relations = { allow = [\"alpha.*\"] }\n", "");
        let pgate = Pgate::start(&loose).await;
        let client = pgate.connect("esc", ESC_PW, &db).await.unwrap();
        let read_beta = client.prepare("SELECT s FROM beta.secrets").await.unwrap();
        let delete = client.prepare("DELETE FROM alpha.orders WHERE id = $1").await.unwrap();
        client.batch_execute("PREPARE del_sql AS DELETE FROM alpha.orders WHERE id = 3").await.unwrap();
        assert_eq!(client.query(&read_beta, &[]).await.unwrap().len(), 1, "allowed before the reload");
        let tight = escape_config(&db, mode, "allow = [\"READ\"]");
        let snapshot = pgate::config::parse(&tight, std::path::Path::new("tight.toml")).unwrap();
        pgate.shared.apply_config(snapshot);
        for result in [client.query(&read_beta, &[]).await, client.query(&delete, &[&1i32]).await] {
            let e = result.unwrap_err();
            assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{mode}: {}", db_message(&e));
        }
        let e = client.simple_query("EXECUTE del_sql").await.unwrap_err();
        assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{mode}: {}", db_message(&e));
        assert_eq!(simple_row(&client, "SELECT count(*) FROM alpha.orders").await, ["3"]);
        drop(client);
        pgate.stop().await;
    }
}

/// Every escape the server will prepare (one statement: Parse does not run it) is prepared
/// while the workspace may do anything, then executed after a reload made it READ-only on
/// alpha: each must be refused at its Bind, and nothing may change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_escape_prepared_before_a_reload_is_refused_after_it() {
    let db = "ws_reload_all";
    escape_database(db);
    let loose =
        escape_config(db, "transaction", "allow = [\"ALL\"]").replace("relations = { allow = [\"alpha.*\"] }\n", "");
    let pgate = Pgate::start(&loose).await;
    let client = pgate.connect("esc", ESC_PW, db).await.unwrap();
    let mut prepared = Vec::new();
    for sql in ESCAPES {
        // Several statements, or one the server cannot parse (a table that does not exist
        // yet): no statement to run later.
        if let Ok(statement) = client.prepare(sql).await {
            prepared.push((*sql, statement));
        }
    }
    assert!(prepared.len() >= 50, "only {} escapes could be prepared", prepared.len());
    let tight = escape_config(db, "transaction", "allow = [\"READ\"]");
    pgate.shared.apply_config(pgate::config::parse(&tight, std::path::Path::new("tight.toml")).unwrap());
    let mut failures = Vec::new();
    for (sql, statement) in &prepared {
        match client.query(statement, &[]).await {
            Ok(rows) => failures.push(format!("{sql:?} ran ({} rows)", rows.len())),
            Err(e) if sqlstate(&e).as_deref() == Some("42501") => {}
            Err(e) => failures.push(format!("{sql:?} failed otherwise: {:?} {}", sqlstate(&e), db_message(&e))),
        }
    }
    assert!(
        failures.is_empty(),
        "{} prepared escapes not refused after the reload:\n{}",
        failures.len(),
        failures.join("\n")
    );
    drop(client);
    pgate.stop().await;
    assert_nothing_changed(db);
}
