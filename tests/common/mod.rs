//! Test harness: real PostgreSQL clusters (started once per test binary and shared, or
//! per test when a test disrupts them), pgate in-process on a free port, and helpers
//! for tokio-postgres, psql, pgbench and raw sockets.
#![allow(dead_code)]

pub mod certs;
pub mod process;
pub mod raw;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use pgate::demo::cluster::{Cluster, ClusterSet};
use pgate::proxy::{Proxy, Shared};
use tokio::sync::oneshot;

pub const ALICE_PW: &str = "alice-secret";
pub const BOB_PW: &str = "bob-secret";
pub const CAROL_PW: &str = "carol-secret";

/// The clusters every test of a binary shares: `infra` (keycloak, airflow) and `data`
/// (akko, aden, lightrag). Roles exist on both: alice (SCRAM), bob (md5 on the server),
/// carol (cleartext password on the server), dave (trusted by the server, no password).
pub struct Backends {
    pub infra: Cluster<'static>,
    pub data: Cluster<'static>,
}

pub fn cluster_set() -> &'static ClusterSet {
    static SET: OnceLock<ClusterSet> = OnceLock::new();
    SET.get_or_init(|| ClusterSet::new().expect("PostgreSQL server binaries are needed for the tests"))
}

pub fn backends() -> &'static Backends {
    static BACKENDS: OnceLock<Backends> = OnceLock::new();
    BACKENDS.get_or_init(|| {
        let set = cluster_set();
        let infra = set.start_cluster("infra").expect("infra cluster");
        let data = set.start_cluster("data").expect("data cluster");
        prepare_roles(&infra);
        prepare_roles(&data);
        for db in ["keycloak", "airflow"] {
            infra.psql("postgres", &format!("CREATE DATABASE {db} OWNER alice")).unwrap();
        }
        for db in ["akko", "aden", "lightrag"] {
            data.psql("postgres", &format!("CREATE DATABASE {db} OWNER alice")).unwrap();
        }
        data.psql(
            "akko",
            "SET ROLE alice; CREATE TABLE items (id int PRIMARY KEY, name text); \
             INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 100) g",
        )
        .unwrap();
        Backends { infra, data }
    })
}

/// A cluster of its own, for a test that stops or breaks it; roles as in [`backends`] and
/// one database `akko` owned by alice.
pub fn private_cluster(name: &str) -> Cluster<'static> {
    let cluster = cluster_set().start_cluster(name).expect("private cluster");
    prepare_roles(&cluster);
    cluster.psql("postgres", "CREATE DATABASE akko OWNER alice").unwrap();
    cluster
}

/// Creates the test roles and the pg_hba lines that make each log in its own way.
pub fn prepare_roles(cluster: &Cluster) {
    cluster
        .psql(
            "postgres",
            &format!(
                "CREATE ROLE alice LOGIN CREATEDB PASSWORD '{ALICE_PW}';
                 SET password_encryption = 'md5';
                 CREATE ROLE bob LOGIN PASSWORD '{BOB_PW}';
                 RESET password_encryption;
                 CREATE ROLE carol LOGIN PASSWORD '{CAROL_PW}';
                 CREATE ROLE dave LOGIN;
                 GRANT pg_signal_backend TO alice;
                 GRANT pg_read_all_stats TO alice;"
            ),
        )
        .unwrap();
    prepend_hba(
        cluster.data_dir(),
        "host all bob 127.0.0.1/32 md5\nhost all carol 127.0.0.1/32 password\nhost all dave 127.0.0.1/32 trust\n",
    );
    cluster.psql("postgres", "SELECT pg_reload_conf()").unwrap();
}

fn prepend_hba(data_dir: &Path, lines: &str) {
    let path = data_dir.join("pg_hba.conf");
    let old = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("{lines}{old}")).unwrap();
}

/// The `[backends]`, `[databases]` and `[[users]]` sections for two clusters.
pub fn routes_and_users(infra_port: u16, data_port: u16) -> String {
    let bob_secret = postgres_protocol::password::scram_sha_256(BOB_PW.as_bytes());
    format!(
        r#"
[backends.infra]
host = "127.0.0.1"
port = {infra_port}
databases = ["keycloak", "airflow"]

[backends.data]
host = "127.0.0.1"
port = {data_port}
databases = ["akko", "aden"]

[databases.rag]
backend = "data"
dbname = "lightrag"

[[users]]
name = "alice"
password = "{ALICE_PW}"

[[users]]
name = "bob"
password = "{bob_secret}"
server_password = "{BOB_PW}"

[[users]]
name = "carol"
password = "{CAROL_PW}"

[[users]]
name = "dave"
"#
    )
}

/// A full configuration over the shared clusters; `head` holds [listen]/[pool]/[auth]
/// tables (the listen address is always a free port on 127.0.0.1).
pub fn config(head: &str) -> String {
    let b = backends();
    format!("{}\n{}", with_listen(head), routes_and_users(b.infra.port(), b.data.port()))
}

/// A configuration with one backend `main` on `port` for databases akko and `*`.
pub fn single_backend_config(head: &str, port: u16) -> String {
    format!(
        "{}\n[backends.main]\nhost = \"127.0.0.1\"\nport = {port}\ndatabases = [\"*\"]\n\n\
         [[users]]\nname = \"alice\"\npassword = \"{ALICE_PW}\"\n",
        with_listen(head)
    )
}

/// The listen and metrics addresses on free ports (a `[metrics]` table in `head` keeps its
/// own settings).
fn with_listen(head: &str) -> String {
    let head = if head.contains("[metrics]") {
        head.to_owned()
    } else {
        format!("[metrics]\naddress = \"127.0.0.1:0\"\n{head}")
    };
    if head.contains("[listen]") {
        head.replace("[listen]", "[listen]\naddress = \"127.0.0.1:0\"")
    } else {
        format!("[listen]\naddress = \"127.0.0.1:0\"\n{head}")
    }
}

/// pgate running in this test's runtime.
pub struct Pgate {
    pub addr: SocketAddr,
    /// Where /metrics, /healthz and /readyz are served (`None`: metrics are off).
    pub metrics_addr: Option<SocketAddr>,
    pub shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<()>>,
}

impl Pgate {
    pub async fn start(config_text: &str) -> Pgate {
        init_logging();
        let snapshot = pgate::config::parse(config_text, Path::new("test.toml")).expect("test config is valid");
        Self::launch(snapshot).await
    }

    /// pgate running on a configuration file (for RELOAD); the listen address in the file
    /// should be `127.0.0.1:0`.
    pub async fn start_file(path: &Path) -> Pgate {
        init_logging();
        let snapshot = pgate::config::load(path).expect("test config file is valid");
        Self::launch(snapshot).await
    }

    async fn launch(snapshot: pgate::config::Snapshot) -> Pgate {
        let proxy = Proxy::bind(snapshot).await.expect("bind");
        let addr = proxy.local_addr().unwrap();
        let metrics_addr = proxy.metrics_addr();
        let shared = proxy.shared();
        let (tx, rx) = oneshot::channel();
        let done = tokio::spawn(proxy.run(async {
            let _ = rx.await;
        }));
        Pgate { addr, metrics_addr, shared, stop: Some(tx), done: Some(done) }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// A libpq-style key/value connection string.
    pub fn conninfo(&self, user: &str, password: &str, db: &str) -> String {
        format!("host=127.0.0.1 port={} user={user} password='{password}' dbname={db} sslmode=disable", self.port())
    }

    pub async fn connect(
        &self,
        user: &str,
        password: &str,
        db: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        connect(&self.conninfo(user, password, db)).await
    }

    pub async fn alice(&self, db: &str) -> tokio_postgres::Client {
        self.connect("alice", ALICE_PW, db).await.expect("alice connects")
    }

    /// Waits up to `timeout` for pgate to stop on its own (an admin's SHUTDOWN); true if it did.
    pub async fn stopped_within(&mut self, timeout: Duration) -> bool {
        let Some(done) = self.done.as_mut() else { return true };
        let stopped = tokio::time::timeout(timeout, done).await.is_ok();
        if stopped {
            self.done = None;
        }
        stopped
    }

    /// Starts the drain without waiting for it (see [`Self::stop`]).
    pub fn begin_stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    /// True once the proxy's run has returned.
    pub fn finished(&self) -> bool {
        self.done.as_ref().is_none_or(|d| d.is_finished())
    }

    /// Stops accepting, drains and waits for the proxy to finish.
    pub async fn stop(mut self) {
        self.begin_stop();
        if let Some(done) = self.done.take() {
            let _ = tokio::time::timeout(Duration::from_secs(40), done).await;
        }
    }
}

/// Connects with tokio-postgres and drives the connection on a task.
pub async fn connect(conninfo: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(conninfo, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// Like [`connect`], also returning the connection task, to abort it (a client that
/// vanishes without Terminate) or to read how it ended.
pub async fn connect_with_task(
    conninfo: &str,
) -> (tokio_postgres::Client, tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>) {
    let (client, connection) = tokio_postgres::connect(conninfo, tokio_postgres::NoTls).await.expect("connect");
    (client, tokio::spawn(connection))
}

/// The SQLSTATE of a tokio-postgres error, if the server (or pgate) sent one.
pub fn sqlstate(e: &tokio_postgres::Error) -> Option<String> {
    e.code().map(|c| c.code().to_owned())
}

pub fn db_message(e: &tokio_postgres::Error) -> String {
    e.as_db_error().map(|d| d.message().to_owned()).unwrap_or_else(|| e.to_string())
}

/// Runs a client tool (psql, pgbench) from the PostgreSQL installation.
pub fn tool(name: &str) -> std::process::Command {
    std::process::Command::new(cluster_set().binaries().tool(name))
}

/// Counts the server connections a backend has open for `user`.
pub fn backend_connections(cluster: &Cluster, user: &str) -> i64 {
    cluster
        .psql("postgres", &format!("SELECT count(*) FROM pg_stat_activity WHERE usename = '{user}'"))
        .unwrap()
        .parse()
        .unwrap()
}

/// Creates (again) a database on the data cluster for one test, so counts of server
/// connections by database are not disturbed by other tests.
pub fn fresh_database(name: &str) {
    let data = &backends().data;
    data.psql("postgres", &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).unwrap();
    data.psql("postgres", &format!("CREATE DATABASE {name} OWNER alice")).unwrap();
}

/// Server connections on the data cluster for (database, user).
pub fn data_connections(db: &str, user: &str) -> i64 {
    backends()
        .data
        .psql(
            "postgres",
            &format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}' AND usename = '{user}'"),
        )
        .unwrap()
        .parse()
        .unwrap()
}

/// Samples [`data_connections`] on a thread until stopped; returns the largest count seen.
pub struct ConnectionWatch {
    stop: Arc<std::sync::atomic::AtomicBool>,
    handle: std::thread::JoinHandle<i64>,
}

impl ConnectionWatch {
    pub fn start(db: &str, user: &str) -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (db, user, flag) = (db.to_owned(), user.to_owned(), stop.clone());
        let handle = std::thread::spawn(move || {
            let mut max = 0;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                max = max.max(data_connections(&db, &user));
                std::thread::sleep(Duration::from_millis(20));
            }
            max
        });
        Self { stop, handle }
    }

    pub fn max(self) -> i64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle.join().unwrap()
    }
}

/// The data-backend config with `*` as fallback, so per-test databases are routed.
pub fn config_with_fallback(head: &str) -> String {
    config(head).replace("databases = [\"akko\", \"aden\"]", "databases = [\"akko\", \"aden\", \"*\"]")
}

/// The first row of a simple query, as text.
pub async fn simple_row(client: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    let messages = client.simple_query(sql).await.expect("simple query");
    for m in messages {
        if let tokio_postgres::SimpleQueryMessage::Row(row) = m {
            return (0..row.len()).map(|i| row.get(i).unwrap_or("").to_owned()).collect();
        }
    }
    panic!("no row from {sql}");
}

/// `PGATE_TEST_LOG=debug cargo test ...` shows pgate's logs for a failing test.
fn init_logging() {
    if let Ok(filter) = std::env::var("PGATE_TEST_LOG") {
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    }
}

/// A cluster of its own with TLS on (the `server` certificate of `pki`) that refuses
/// plaintext connections over TCP; roles as in [`backends`], database `akko`.
pub fn tls_cluster(name: &str, pki: &certs::Pki) -> Cluster<'static> {
    let cluster = private_cluster(name);
    let data = cluster.data_dir();
    for (from, to) in [("server.crt", "server.crt"), ("server.key", "server.key"), ("ca.crt", "root.crt")] {
        std::fs::copy(pki.path(from), data.join(to)).unwrap();
        let status = std::process::Command::new("chown").arg("postgres:").arg(data.join(to)).status().unwrap();
        assert!(status.success() || !running_as_root());
    }
    let conf = data.join("postgresql.conf");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\nssl_ca_file = 'root.crt'\n");
    std::fs::write(&conf, text).unwrap();
    prepend_hba(data, "hostnossl all all 127.0.0.1/32 reject\n");
    cluster.psql("postgres", "SELECT pg_reload_conf()").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    cluster
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}
