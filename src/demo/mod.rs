//! `pgate demo`: two throwaway PostgreSQL clusters (infra and data) with sample databases,
//! a restricted analyst in a workspace (reads of one schema, row-level security on a shared
//! table), an audit log, and pgate in front of them on 127.0.0.1, until Ctrl-C. The cluster
//! code (`cluster`) is also what the test harness uses.

pub mod cluster;

use std::path::Path;

use anyhow::Context;

use crate::proxy::Proxy;
use cluster::{Cluster, ClusterSet};

const DEMO_USER: &str = "demo";
const DEMO_PASSWORD: &str = "demo";
/// In workspace "alpha": may read schema alpha and its rows of the shared table, nothing else.
const ANALYST: &str = "analyst";
const ANALYST_PASSWORD: &str = "analyst";

const INFRA_SQL: &str = "
CREATE TABLE realm (id serial PRIMARY KEY, name text NOT NULL);
INSERT INTO realm (name) VALUES ('platform'), ('analytics');";

const DATA_SQL: &str = "
CREATE TABLE orders (id serial PRIMARY KEY, customer text, amount numeric(10,2), created_at timestamptz);
INSERT INTO orders (customer, amount, created_at)
  SELECT 'customer ' || (g % 50), (g * 7 % 1000) / 10.0, now() - g * interval '1 hour'
  FROM generate_series(1, 1000) g;
CREATE SCHEMA alpha;
CREATE TABLE alpha.reports (id serial PRIMARY KEY, title text);
INSERT INTO alpha.reports (title) VALUES ('weekly revenue'), ('churn by region');
-- One table shared by two workspaces; PostgreSQL shows each only its rows, keyed on the
-- setting pgate pins on every server session of a workspace's members.
CREATE TABLE shared_notes (workspace text NOT NULL, note text);
INSERT INTO shared_notes VALUES ('alpha', 'alpha: quarterly plan'), ('beta', 'beta: secret merger');
ALTER TABLE shared_notes ENABLE ROW LEVEL SECURITY;
CREATE POLICY by_workspace ON shared_notes USING (workspace = current_setting('pgate.workspace', true));";

/// Run as a superuser on the data cluster's first database, after DATA_SQL.
const ANALYST_SQL: &str = "
CREATE ROLE analyst LOGIN PASSWORD 'analyst';
GRANT USAGE ON SCHEMA alpha TO analyst;
GRANT SELECT ON ALL TABLES IN SCHEMA alpha TO analyst;
GRANT SELECT ON orders, shared_notes TO analyst;";

/// Runs the demo until Ctrl-C, then stops and removes the clusters.
pub async fn run(port: u16) -> anyhow::Result<()> {
    let set = tokio::task::spawn_blocking(ClusterSet::new).await??;
    println!("starting two PostgreSQL clusters under {} ...", set.root().display());
    let infra = prepare(&set, "infra", &["keycloak", "airflow"], INFRA_SQL)?;
    let data = prepare(&set, "data", &["akko", "aden"], DATA_SQL)?;
    data.psql("akko", ANALYST_SQL)?;
    let config_path = set.root().join("pgate-demo.toml");
    let audit_path = set.root().join("audit.log");
    std::fs::write(&config_path, demo_config(port, &infra, &data, &audit_path))?;
    let snapshot = crate::config::load(&config_path)?;
    let proxy = Proxy::bind(snapshot).await.context("is another PostgreSQL or pgate on that port? try --port 6432")?;
    let metrics = proxy.metrics_addr().map_or("off".to_owned(), |a| a.to_string());
    print_welcome(port, &config_path, &audit_path, &metrics);
    let signals = crate::proxy::stop_signals();
    proxy.run_until(signals.clone().wait(1), signals.wait(2)).await;
    println!("stopping the clusters and removing {} ...", set.root().display());
    drop((infra, data));
    Ok(())
}

fn prepare<'a>(set: &'a ClusterSet, name: &str, databases: &[&str], sample_sql: &str) -> anyhow::Result<Cluster<'a>> {
    let cluster = set.start_cluster(name)?;
    cluster.psql("postgres", &format!("CREATE ROLE {DEMO_USER} LOGIN PASSWORD '{DEMO_PASSWORD}'"))?;
    for db in databases {
        cluster.psql("postgres", &format!("CREATE DATABASE {db} OWNER {DEMO_USER}"))?;
    }
    cluster.psql(databases[0], &format!("SET ROLE {DEMO_USER}; {sample_sql}"))?;
    Ok(cluster)
}

fn demo_config(port: u16, infra: &Cluster, data: &Cluster, audit: &Path) -> String {
    format!(
        r#"# Written by `pgate demo`; removed when it stops.
[listen]
address = "127.0.0.1:{port}"

[metrics]                  # a free port; `pgate demo` prints it
address = "127.0.0.1:0"

[pool]
size = 10

[backends.infra]
host = "127.0.0.1"
port = {infra_port}
databases = ["keycloak", "airflow"]

[backends.data]
host = "127.0.0.1"
port = {data_port}
databases = ["akko", "aden", "*"]

[databases.analytics]      # an alias: clients say "analytics", the data backend has "akko"
backend = "data"
dbname = "akko"

[[users]]
name = "{DEMO_USER}"
password = "{DEMO_PASSWORD}"

[[users]]
name = "{ANALYST}"
password = "{ANALYST_PASSWORD}"

[[workspaces]]             # a service workspace: every database, every statement
name = "ops"
users = ["{DEMO_USER}"]
databases = ["*"]

[[workspaces]]             # an analyst: reads schema alpha (and its rows of shared_notes)
name = "alpha"
users = ["{ANALYST}"]
databases = ["akko", "analytics"]
allow = ["READ", "MISC"]
relations = {{ allow = ["alpha.*", "public.shared_notes"] }}
session = {{ search_path = "alpha" }}     # unqualified names resolve in alpha only

[audit]
sink = "{audit}"
format = "pgaudit"
"#,
        infra_port = infra.port(),
        data_port = data.port(),
        audit = audit.display(),
    )
}

fn print_welcome(port: u16, config: &Path, audit: &Path, metrics: &str) {
    let url = |db: &str| format!("postgresql://{DEMO_USER}:{DEMO_PASSWORD}@127.0.0.1:{port}/{db}");
    let analyst = format!("postgresql://{ANALYST}:{ANALYST_PASSWORD}@127.0.0.1:{port}/akko");
    println!(
        "
pgate is listening on 127.0.0.1:{port} in front of two PostgreSQL clusters (config: {config}).
Try:
  psql \"{akko}\" -c \"SELECT customer, sum(amount) FROM orders GROUP BY 1 ORDER BY 2 DESC LIMIT 5\"
  psql \"{analytics}\" -c \"SELECT count(*) FROM orders\"          # alias of akko
  psql \"{keycloak}\" -c \"SELECT * FROM realm\"                    # routed to the infra cluster
  psql \"{nope}\"                                                 # ends on the data fallback: no such database
  pgbench -i -q \"{aden}\" && pgbench -c 20 -T 10 -S \"{aden}\"

The analyst is in workspace \"alpha\": reads of schema alpha, and only alpha's rows of a
table shared with another workspace (row-level security on the pinned pgate.workspace):
  psql \"{analyst}\" -c \"SELECT * FROM reports\"                # allowed: alpha.reports
  psql \"{analyst}\" -c \"SELECT * FROM public.shared_notes\"    # allowed: alpha's rows only
  psql \"{analyst}\" -c \"SELECT * FROM public.orders\"          # denied: 42501, not in the workspace
  psql \"{analyst}\" -c \"DELETE FROM alpha.reports\"            # denied: the workspace may only read
  tail {audit}                                   # the audit log, one line per statement
  curl -s http://{metrics}/metrics | grep pgate_transactions_total   # metrics (also /readyz)

Press Ctrl-C to stop; the clusters and their files are removed.",
        audit = audit.display(),
        config = config.display(),
        akko = url("akko"),
        analytics = url("analytics"),
        keycloak = url("keycloak"),
        nope = url("nope"),
        aden = url("aden"),
    );
}
