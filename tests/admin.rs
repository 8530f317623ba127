//! The admin console (database `pgate`) through psql: every command, the column names of
//! every SHOW compared with PgBouncer's (1.25), who may log in, the extended protocol's
//! error, PAUSE under load, RESUME, RECONNECT, KILL_CLIENT, RELOAD of a broken file, and
//! SHUTDOWN (which lets paused requests go).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;

/// carol is the admin; alice and bob are ordinary users (alice in workspace `alpha`).
fn admin_config(head: &str) -> String {
    let workspaces = "\n[[workspaces]]\nname = \"alpha\"\nusers = [\"alice\", \"bob\"]\ndatabases = [\"*\"]\n";
    format!("{}{workspaces}", config_with_fallback(&format!("[admin]\nusers = [\"carol\"]\n{head}")))
}

/// Separates psql's unaligned fields: values may hold commas (lists, queries).
const SEP: &str = "\u{1f}";

/// One command through psql (`-X -A`, fields separated by [`SEP`], header line kept, no
/// footer) as `user`; the output lines, or psql's error output.
async fn psql_as(pgate: &Pgate, user: &str, password: &str, sql: &str) -> Result<Vec<String>, String> {
    let conninfo = format!("host=127.0.0.1 port={} user={user} dbname=pgate sslmode=disable", pgate.port());
    let mut command = tool("psql");
    command
        .arg(conninfo)
        .args(["-X", "-A", "-F", SEP, "-P", "footer=off", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10");
    let out = tokio::task::spawn_blocking(move || command.output()).await.unwrap().expect("psql runs");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

async fn admin(pgate: &Pgate, sql: &str) -> Vec<String> {
    psql_as(pgate, "carol", CAROL_PW, sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn admin_err(pgate: &Pgate, sql: &str) -> String {
    match psql_as(pgate, "carol", CAROL_PW, sql).await {
        Ok(out) => panic!("{sql} should fail, got {out:?}"),
        Err(e) => e,
    }
}

/// A SHOW as a header and rows of named fields.
struct Shown {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Shown {
    async fn of(pgate: &Pgate, view: &str) -> Shown {
        let lines = admin(pgate, &format!("SHOW {view}")).await;
        let split = |l: &str| l.split(SEP).map(str::to_owned).collect::<Vec<_>>();
        Shown { header: split(&lines[0]), rows: lines[1..].iter().map(|l| split(l)).collect() }
    }

    fn col(&self, name: &str) -> usize {
        self.header.iter().position(|h| h == name).unwrap_or_else(|| panic!("no column {name}"))
    }

    /// The rows whose `column` is `value`.
    fn rows_with(&self, column: &str, value: &str) -> Vec<&Vec<String>> {
        let at = self.col(column);
        self.rows.iter().filter(|r| r[at] == value).collect()
    }

    fn get<'a>(&self, row: &'a [String], column: &str) -> &'a str {
        &row[self.col(column)]
    }
}

// PgBouncer 1.25's columns (src/admin.c, src/stats.c), in order.
const POOLS: &str = "database,user,cl_active,cl_waiting,cl_active_cancel_req,cl_waiting_cancel_req,sv_active,\
sv_active_cancel,sv_being_canceled,sv_idle,sv_used,sv_tested,sv_login,maxwait,maxwait_us,pool_mode,load_balance_hosts";
const SOCKETS: &str = "type,user,database,replication,state,addr,port,local_addr,local_port,connect_time,\
request_time,wait,wait_us,close_needed,ptr,link,remote_pid,tls,application_name,prepared_statements,id";
const STATS: &str = "database,total_server_assignment_count,total_xact_count,total_query_count,total_received,\
total_sent,total_xact_time,total_query_time,total_wait_time,total_client_parse_count,total_server_parse_count,\
total_bind_count,avg_server_assignment_count,avg_xact_count,avg_query_count,avg_recv,avg_sent,avg_xact_time,\
avg_query_time,avg_wait_time,avg_client_parse_count,avg_server_parse_count,avg_bind_count";
const STATS_TOTALS: &str = "database,server_assignment_count,xact_count,query_count,bytes_received,bytes_sent,\
xact_time,query_time,wait_time,client_parse_count,server_parse_count,bind_count";
const DATABASES: &str = "name,host,port,database,force_user,pool_size,min_pool_size,reserve_pool_size,\
server_lifetime,pool_mode,load_balance_hosts,max_connections,current_connections,max_client_connections,\
current_client_connections,paused,disabled";
const USERS: &str = "name,pool_size,reserve_pool_size,pool_mode,max_user_connections,current_connections,\
max_user_client_connections,current_client_connections";
const CONFIG: &str = "key,value,default,changeable";
const LISTS: &str = "list,items";
const VERSION: &str = "version";
const WORKSPACES: &str = "name,users,identities,databases,classes,read_only,statement_rules,pinned_settings,\
max_client_connections,current_client_connections";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_show_has_pgbouncer_s_columns_and_live_numbers() {
    fresh_database("admin_show");
    let pgate = Pgate::start(&admin_config("[pool]\nsize = 3\n")).await;
    let alice = pgate.alice("admin_show").await;
    for i in 0..5 {
        alice.batch_execute(&format!("BEGIN; SELECT {i}; COMMIT")).await.unwrap();
    }
    alice.query("SELECT $1::int", &[&7i32]).await.unwrap();
    let pid = simple_row(&alice, "SELECT pg_backend_pid()").await[0].clone();
    // Give the janitor no chance to matter: totals are counted as they happen.
    for (view, expected) in [
        ("POOLS", POOLS),
        ("CLIENTS", SOCKETS),
        ("SERVERS", SOCKETS),
        ("STATS", STATS),
        ("STATS_TOTALS", STATS_TOTALS),
        ("DATABASES", DATABASES),
        ("USERS", USERS),
        ("CONFIG", CONFIG),
        ("LISTS", LISTS),
        ("VERSION", VERSION),
        ("WORKSPACES", WORKSPACES),
    ] {
        let shown = Shown::of(&pgate, view).await;
        assert_eq!(shown.header.join(","), expected, "SHOW {view}");
    }

    let pools = Shown::of(&pgate, "POOLS").await;
    let row = pools.rows_with("database", "admin_show");
    assert_eq!(row.len(), 1, "{:?}", pools.rows);
    assert_eq!(pools.get(row[0], "user"), "alice");
    assert_eq!(pools.get(row[0], "cl_active"), "1");
    assert_eq!(pools.get(row[0], "sv_idle"), "1", "one server, idle between transactions");
    assert_eq!(pools.get(row[0], "pool_mode"), "transaction");

    let totals = Shown::of(&pgate, "STATS_TOTALS").await;
    let row = totals.rows_with("database", "admin_show");
    let xacts: u64 = totals.get(row[0], "xact_count").parse().unwrap();
    let queries: u64 = totals.get(row[0], "query_count").parse().unwrap();
    assert!(xacts >= 7, "5 transactions, a prepared query and pg_backend_pid: {xacts}");
    assert!(queries >= xacts);
    assert!(totals.get(row[0], "bytes_received").parse::<u64>().unwrap() > 0);
    assert!(totals.get(row[0], "bytes_sent").parse::<u64>().unwrap() > 0);
    assert!(totals.get(row[0], "bind_count").parse::<u64>().unwrap() >= 1);
    let stats = Shown::of(&pgate, "STATS").await;
    assert_eq!(stats.get(stats.rows_with("database", "admin_show")[0], "total_xact_count"), xacts.to_string());

    let servers = Shown::of(&pgate, "SERVERS").await;
    let row = servers.rows_with("remote_pid", &pid);
    assert_eq!(row.len(), 1, "the server alice used: {:?}", servers.rows);
    assert_eq!(servers.get(row[0], "type"), "S");
    assert_eq!(servers.get(row[0], "state"), "idle");
    assert_eq!(servers.get(row[0], "database"), "admin_show");
    assert_eq!(servers.get(row[0], "port"), backends().data.port().to_string());

    let clients = Shown::of(&pgate, "CLIENTS").await;
    let mine = clients.rows_with("database", "admin_show");
    assert_eq!(mine.len(), 1);
    assert_eq!((clients.get(mine[0], "user"), clients.get(mine[0], "state")), ("alice", "idle"));
    assert_eq!(clients.rows_with("database", "pgate").len(), 1, "the admin sees itself");

    let databases = Shown::of(&pgate, "DATABASES").await;
    for name in ["akko", "rag", "admin_show", "pgate"] {
        assert_eq!(databases.rows_with("name", name).len(), 1, "{name}: {:?}", databases.rows);
    }
    let rag = databases.rows_with("name", "rag");
    assert_eq!(databases.get(rag[0], "database"), "lightrag");
    assert_eq!(databases.get(databases.rows_with("name", "akko")[0], "pool_size"), "3");

    let users = Shown::of(&pgate, "USERS").await;
    assert_eq!(users.get(users.rows_with("name", "alice")[0], "current_client_connections"), "1");

    let config = Shown::of(&pgate, "CONFIG").await;
    assert_eq!(config.get(config.rows_with("key", "max_client_conn")[0], "value"), "5000");
    assert_eq!(config.get(config.rows_with("key", "pool.size")[0], "value"), "3");
    assert_eq!(config.get(config.rows_with("key", "admin.users")[0], "value"), "carol");

    let lists = Shown::of(&pgate, "LISTS").await;
    let names: Vec<&str> = lists.rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(
        names,
        [
            "databases",
            "users",
            "peers",
            "pools",
            "peer_pools",
            "free_clients",
            "used_clients",
            "login_clients",
            "free_servers",
            "used_servers",
            "dns_names",
            "dns_zones",
            "dns_queries",
            "dns_pending"
        ]
    );
    assert!(lists.rows.iter().all(|r| r[1].parse::<u64>().is_ok()), "items are numbers: {:?}", lists.rows);

    assert!(Shown::of(&pgate, "VERSION").await.rows[0][0].starts_with("pgate "));
    let workspaces = Shown::of(&pgate, "WORKSPACES").await;
    assert_eq!(workspaces.get(workspaces.rows_with("name", "alpha")[0], "current_client_connections"), "1");

    // Lower case, a trailing semicolon, SHOW HELP.
    assert_eq!(admin(&pgate, "show lists;").await[0], format!("list{SEP}items"));
    assert!(admin(&pgate, "SHOW HELP").await.iter().any(|l| l == "KILL_CLIENT id"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_admins_get_the_console_and_only_simple_queries() {
    let pgate = Pgate::start(&admin_config("")).await;
    // A non-admin who proves who they are is told why; the workspaces do not matter here.
    let e = psql_as(&pgate, "alice", ALICE_PW, "SHOW POOLS").await.unwrap_err();
    assert!(e.contains("FATAL") && e.contains("\"alice\" is not an admin user (admin.users)"), "{e}");
    let e = pgate.connect("alice", ALICE_PW, "pgate").await.expect_err("refused");
    assert_eq!(sqlstate(&e).as_deref(), Some("28000"));
    let e = pgate.connect("carol", "wrong", "pgate").await.expect_err("refused");
    assert_eq!(sqlstate(&e).as_deref(), Some("28P01"));
    let e = pgate.connect("nobody", "x", "pgate").await.expect_err("refused");
    assert_eq!(sqlstate(&e).as_deref(), Some("28P01"));
    // Console logins count in pgate_logins_total like any: two non-admins, two bad passwords.
    let metrics = pgate.shared.metrics.render(&pgate.shared);
    let logins = |labels: &str| {
        let series = format!("pgate_logins_total{{{labels}}} ");
        metrics.lines().find_map(|l| l.strip_prefix(&series)).map(str::to_owned)
    };
    assert_eq!(logins(r#"method="scram-sha-256",result="denied""#).as_deref(), Some("2"), "{metrics}");
    assert_eq!(logins(r#"method="scram-sha-256",result="auth_failed""#).as_deref(), Some("2"), "{metrics}");
    // The admin is let in although no workspace lists carol.
    let console = pgate.connect("carol", CAROL_PW, "pgate").await.expect("admin logs in");

    let e = console.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("42601"));
    assert!(db_message(&e).contains("SHOW POOLS | CLIENTS"), "{}", db_message(&e));
    let e = admin_err(&pgate, "SHOW EVERYTHING").await;
    assert!(e.contains("no such view") && e.contains("KILL_CLIENT id"), "{e}");

    // tokio-postgres' query() is the extended protocol: a clear error, and the session
    // goes on.
    let e = console.query("SHOW POOLS", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("0A000"));
    assert!(db_message(&e).contains("the admin console speaks the simple query protocol (psql)"), "{}", db_message(&e));
    let version = simple_row(&console, "SHOW VERSION").await;
    assert!(version[0].starts_with("pgate "));
    let messages = console.simple_query("").await.unwrap();
    assert!(messages.iter().all(|m| !matches!(m, tokio_postgres::SimpleQueryMessage::Row(_))));
}

/// Clients looping short transactions; counts the ones that committed, keeps the errors.
struct Load {
    done: Arc<AtomicU64>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>>,
}

impl Load {
    async fn start(pgate: &Pgate, db: &str, clients: usize) -> Load {
        let done = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut tasks = Vec::new();
        for i in 0..clients {
            let client = pgate.alice(db).await;
            let (done, stop) = (done.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    client.batch_execute(&format!("BEGIN; SELECT {i}; SELECT pg_sleep(0.002); COMMIT")).await?;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            }));
        }
        Load { done, stop, tasks }
    }

    fn count(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    async fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.unwrap().expect("no transaction failed");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_holds_new_transactions_and_resume_releases_them() {
    fresh_database("admin_pause");
    let pgate = Pgate::start(&admin_config("[pool]\nsize = 2\nquery_wait_timeout = \"2s\"\n")).await;
    let load = Load::start(&pgate, "admin_pause", 6).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(load.count() > 10, "the load runs: {}", load.count());

    let started = Instant::now();
    assert_eq!(admin(&pgate, "PAUSE admin_pause").await, ["PAUSE"]);
    assert!(started.elapsed() < Duration::from_secs(5), "PAUSE waits for running transactions only");
    let paused_at = load.count();
    // Held longer than query_wait_timeout: a pause does not count against it.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(load.count(), paused_at, "no transaction runs while paused");
    assert_eq!(data_connections("admin_pause", "alice"), 0, "PAUSE let go of the servers");
    let pools = Shown::of(&pgate, "POOLS").await;
    let row = pools.rows_with("database", "admin_pause");
    assert_eq!(pools.get(row[0], "cl_waiting"), "6", "{:?}", pools.rows);
    assert_eq!(pools.get(row[0], "sv_active"), "0");
    let databases = Shown::of(&pgate, "DATABASES").await;
    assert_eq!(databases.get(databases.rows_with("name", "admin_pause")[0], "paused"), "1");
    // Other databases keep working.
    let other = pgate.alice("akko").await;
    assert_eq!(simple_row(&other, "SELECT count(*) FROM items").await, ["100"]);

    assert_eq!(admin(&pgate, "RESUME admin_pause").await, ["RESUME"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(load.count() > paused_at + 10, "released: {} after {paused_at}", load.count());
    load.finish().await;

    let e = admin_err(&pgate, "RESUME admin_pause").await;
    assert!(e.contains("database \"admin_pause\" is not paused"), "{e}");
    let e = admin_err(&pgate, "PAUSE pgate").await;
    assert!(e.contains("is the admin console itself"), "{e}");
    // PAUSE and RESUME of everything.
    assert_eq!(admin(&pgate, "PAUSE").await, ["PAUSE"]);
    let held = tokio::spawn(async move { simple_row(&other, "SELECT 1").await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!held.is_finished(), "held while pgate is paused");
    assert_eq!(admin(&pgate, "RESUME").await, ["RESUME"]);
    assert_eq!(tokio::time::timeout(Duration::from_secs(5), held).await.unwrap().unwrap(), ["1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_replaces_servers_as_they_come_free() {
    fresh_database("admin_reconnect");
    let pgate = Pgate::start(&admin_config("[pool]\nsize = 1\n")).await;
    let alice = pgate.alice("admin_reconnect").await;
    let first = simple_row(&alice, "SELECT pg_backend_pid()").await[0].clone();
    assert_eq!(simple_row(&alice, "SELECT pg_backend_pid()").await[0], first, "the pool reuses its server");

    // Idle servers go at once.
    assert_eq!(admin(&pgate, "RECONNECT admin_reconnect").await, ["RECONNECT"]);
    let second = simple_row(&alice, "SELECT pg_backend_pid()").await[0].clone();
    assert_ne!(second, first);

    // A server inside a transaction finishes it, then goes.
    alice.batch_execute("BEGIN").await.unwrap();
    assert_eq!(admin(&pgate, "RECONNECT").await, ["RECONNECT"]);
    let servers = Shown::of(&pgate, "SERVERS").await;
    let row = servers.rows_with("remote_pid", &second);
    assert_eq!((servers.get(row[0], "state"), servers.get(row[0], "close_needed")), ("active", "1"));
    assert_eq!(simple_row(&alice, "SELECT pg_backend_pid()").await[0], second, "same transaction, same server");
    alice.batch_execute("COMMIT").await.unwrap();
    let third = simple_row(&alice, "SELECT pg_backend_pid()").await[0].clone();
    assert_ne!(third, second);
    assert!(admin_err(&pgate, "RECONNECT pgate").await.contains("is the admin console itself"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_client_ends_that_session_with_57p01() {
    let pgate = Pgate::start(&admin_config("")).await;
    let (victim, connection) = connect_with_task(&pgate.conninfo("alice", ALICE_PW, "aden")).await;
    let bystander = pgate.alice("aden").await;
    simple_row(&victim, "SELECT 1").await;

    let clients = Shown::of(&pgate, "CLIENTS").await;
    let alice_rows = clients.rows_with("user", "alice");
    assert_eq!(alice_rows.len(), 2);
    let id = clients.get(alice_rows[0], "id").to_owned();
    assert_eq!(admin(&pgate, &format!("KILL_CLIENT {id}")).await, ["KILL_CLIENT"]);

    let ended = tokio::time::timeout(Duration::from_secs(5), connection).await.expect("the session ends").unwrap();
    let e = ended.expect_err("ended by the server");
    assert_eq!(sqlstate(&e).as_deref(), Some("57P01"), "{e}");
    assert!(db_message(&e).contains("KILL_CLIENT"), "{}", db_message(&e));
    assert!(victim.simple_query("SELECT 1").await.is_err());
    assert_eq!(simple_row(&bystander, "SELECT 2").await, ["2"], "the other client is untouched");
    let clients = Shown::of(&pgate, "CLIENTS").await;
    assert_eq!(clients.rows_with("user", "alice").len(), 1);
    assert!(admin_err(&pgate, "KILL_CLIENT 999999").await.contains("no client with id 999999"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_of_a_broken_file_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pgate.toml");
    let good = admin_config("").replace("[listen]\n", "[listen]\nmax_client_connections = 300\n");
    std::fs::write(&path, &good).unwrap();
    let pgate = Pgate::start_file(&path).await;
    let value = |shown: &Shown| shown.get(shown.rows_with("key", "max_client_conn")[0], "value").to_owned();
    assert_eq!(value(&Shown::of(&pgate, "CONFIG").await), "300");

    std::fs::write(&path, good.replace("max_client_connections = 300", "max_client_connections = \"many\"")).unwrap();
    let e = admin_err(&pgate, "RELOAD").await;
    assert!(e.contains("configuration reload failed") && e.contains("pgate.toml:"), "{e}");
    assert_eq!(value(&Shown::of(&pgate, "CONFIG").await), "300", "nothing changed");

    std::fs::write(&path, good.replace("max_client_connections = 300", "max_client_connections = 400")).unwrap();
    assert_eq!(admin(&pgate, "RELOAD").await, ["RELOAD"]);
    assert_eq!(value(&Shown::of(&pgate, "CONFIG").await), "400");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_pgate() {
    let mut pgate = Pgate::start(&admin_config("")).await;
    let idle = pgate.alice("akko").await;
    // A request PAUSE holds is let go by the drain (shutdown_timeout is 30 s).
    let waiting = pgate.alice("akko").await;
    assert_eq!(admin(&pgate, "PAUSE akko").await, ["PAUSE"]);
    let held = tokio::spawn(async move { simple_row(&waiting, "SELECT 1").await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!held.is_finished(), "held while paused");
    assert_eq!(admin(&pgate, "SHUTDOWN").await, ["SHUTDOWN"]);
    let ran = tokio::time::timeout(Duration::from_secs(5), held).await.expect("the held request ran at once");
    assert_eq!(ran.unwrap(), ["1"]);
    assert!(pgate.stopped_within(Duration::from_secs(10)).await, "pgate stopped");
    assert!(idle.simple_query("SELECT 1").await.is_err(), "its clients were told to go");
    assert!(pgate.connect("alice", ALICE_PW, "akko").await.is_err(), "nothing listens any more");
}
