//! Checks grafana/pgate.json: well-formed panels, sound PromQL, README coverage, every metric exported live.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The one data source every panel, target and variable names: the `datasource` variable.
fn datasource() -> Value {
    json!({"type": "prometheus", "uid": "${datasource}"})
}

/// The variables that filter the panels, and the label each one selects.
const FILTERS: [&str; 4] = ["instance", "backend", "database", "user"];

/// Labels the scraping Prometheus adds to every series.
const TARGET_LABELS: [&str; 2] = ["instance", "job"];

fn dashboard() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("grafana/pgate.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()))
}

/// Every panel: rows, the panels between them, and the panels nested in collapsed rows.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("a panels array") {
        out.push(panel);
        if let Some(nested) = panel["panels"].as_array() {
            out.extend(nested);
        }
    }
    out
}

fn title(panel: &Value) -> &str {
    panel["title"].as_str().unwrap_or("<untitled>")
}

/// One PromQL expression of the dashboard and where it is.
struct Query {
    place: String,
    expr: String,
    legend: String,
}

/// The targets' expressions of every panel.
fn panel_queries(dashboard: &Value) -> Vec<Query> {
    let mut out = Vec::new();
    for panel in panels(dashboard) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            out.push(Query {
                place: format!("panel \"{}\" target {}", title(panel), target["refId"]),
                expr: target["expr"].as_str().unwrap_or_default().to_owned(),
                legend: target["legendFormat"].as_str().unwrap_or_default().to_owned(),
            });
        }
    }
    out
}

/// The queries of the templating variables that ask Prometheus.
fn variable_queries(dashboard: &Value) -> Vec<Query> {
    let variables = dashboard["templating"]["list"].as_array().expect("templating.list");
    variables
        .iter()
        .filter(|v| v["type"] == "query")
        .map(|v| Query {
            place: format!("variable {}", v["name"]),
            expr: v["query"]["query"].as_str().or(v["query"].as_str()).unwrap_or_default().to_owned(),
            legend: String::new(),
        })
        .collect()
}

/// A metric of the README's table: its type and labels.
#[derive(Debug)]
struct Documented {
    kind: String,
    labels: Vec<String>,
}

/// The table of section "Metrics and health" of README.md.
fn readme_metrics() -> BTreeMap<String, Documented> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = readme.split("\n## Metrics and health").nth(1).expect("a Metrics and health section");
    let section = section.split("\n## ").next().unwrap();
    let mut out = BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with("| `pgate_")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let name = cells[1].trim_matches('`').to_owned();
        let labels = cells[3].split(',').map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect();
        assert!(["counter", "gauge", "histogram"].contains(&cells[2]), "README: {name} has type {}", cells[2]);
        assert!(out.insert(name.clone(), Documented { kind: cells[2].to_owned(), labels }).is_none(), "{name} twice");
    }
    assert!(out.len() > 40, "the README's metrics table was not found whole: {} rows", out.len());
    out
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b':'
}

/// The metric names in an expression (identifiers starting with `pgate_`), with their
/// byte ranges.
fn references(expr: &str) -> Vec<(usize, usize, &str)> {
    let bytes = expr.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if expr[i..].starts_with("pgate_") && (i == 0 || !is_ident(bytes[i - 1])) {
            let end = (i..bytes.len()).find(|&j| !is_ident(bytes[j])).unwrap_or(bytes.len());
            out.push((i, end, &expr[i..end]));
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

/// The family a series name belongs to: the metric itself, or the histogram whose
/// `_bucket`, `_sum` or `_count` series it is. A histogram's bare name is no series.
fn family<'a>(series: &'a str, documented: &BTreeMap<String, Documented>) -> Option<&'a str> {
    if let Some(metric) = documented.get(series) {
        return (metric.kind != "histogram").then_some(series);
    }
    let base = ["_bucket", "_sum", "_count"].iter().find_map(|suffix| series.strip_suffix(suffix))?;
    (documented.get(base)?.kind == "histogram").then_some(base)
}

/// The name of the function whose parentheses enclose byte `at` most closely ("" for an
/// aggregation's `by (...) (` or bare parentheses).
fn enclosing_function(expr: &str, at: usize) -> &str {
    let bytes = expr.as_bytes();
    let mut depth = 0;
    for i in (0..at).rev() {
        match bytes[i] {
            b')' => depth += 1,
            b'(' if depth > 0 => depth -= 1,
            b'(' => {
                let head = expr[..i].trim_end();
                let start = head.bytes().rposition(|b| !is_ident(b)).map_or(0, |p| p + 1);
                return &head[start..];
            }
            _ => {}
        }
    }
    ""
}

/// What follows a metric name: its label matchers (between braces) and its range (between
/// brackets), each empty when absent.
fn selector_and_range(rest: &str) -> (&str, &str) {
    let (matchers, rest) = match rest.strip_prefix('{') {
        Some(inner) => {
            let end = inner.find('}').expect("a closed selector");
            (&inner[..end], &inner[end + 1..])
        }
        None => ("", rest),
    };
    let range = rest.strip_prefix('[').map_or("", |inner| &inner[..inner.find(']').expect("a closed range")]);
    (matchers, range)
}

const AGGREGATIONS: [&str; 12] =
    ["sum", "min", "max", "avg", "count", "count_values", "group", "stddev", "stdvar", "topk", "bottomk", "quantile"];

/// The grouping of each aggregation in an expression: the labels of its `by (...)`, or
/// none for an aggregation without one.
fn groupings(expr: &str) -> Vec<Vec<&str>> {
    let bytes = expr.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !is_ident(bytes[i]) || (i > 0 && is_ident(bytes[i - 1])) {
            i += 1;
            continue;
        }
        let end = (i..bytes.len()).find(|&j| !is_ident(bytes[j])).unwrap_or(bytes.len());
        let word = &expr[i..end];
        let rest = expr[end..].trim_start();
        assert!(word != "without", "{expr}: group with by (...), not without");
        if AGGREGATIONS.contains(&word) {
            if let Some(labels) = rest.strip_prefix("by").map(str::trim_start).and_then(|r| r.strip_prefix('(')) {
                let labels = &labels[..labels.find(')').expect("a closed by")];
                out.push(labels.split(',').map(str::trim).filter(|l| !l.is_empty()).collect());
            } else if rest.starts_with('(') {
                out.push(Vec::new());
            }
        }
        i = end;
    }
    out
}

/// Every family the dashboard's panels and variables read.
fn dashboard_families(dashboard: &Value, documented: &BTreeMap<String, Documented>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for query in panel_queries(dashboard).iter().chain(&variable_queries(dashboard)) {
        for (_, _, name) in references(&query.expr) {
            let family = family(name, documented)
                .unwrap_or_else(|| panic!("{}: {name} is no metric of the README's table", query.place));
            out.insert(family.to_owned());
        }
    }
    out
}

#[test]
fn panels_targets_and_variables_are_well_formed() {
    let d = dashboard();
    assert!(d["schemaVersion"].as_u64().is_some_and(|v| v >= 36), "schemaVersion {}", d["schemaVersion"]);
    assert!(d["uid"].as_str().is_some_and(|u| !u.is_empty() && u.len() <= 40), "uid {}", d["uid"]);
    assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(d["id"].is_null(), "an importable dashboard carries no database id");
    let text = serde_json::to_string(&d).unwrap();
    assert!(!text.contains("DS_PROMETHEUS"), "one way to name the data source: the datasource variable");

    // Variables: the data source, then label_values queries on it for every filter.
    let variables = d["templating"]["list"].as_array().expect("templating.list");
    let named = |name: &str| variables.iter().find(|v| v["name"] == name);
    let ds = named("datasource").expect("a datasource variable");
    assert_eq!((&ds["type"], &ds["query"]), (&json!("datasource"), &json!("prometheus")));
    for name in FILTERS {
        let v = named(name).unwrap_or_else(|| panic!("a variable {name}"));
        assert_eq!(v["type"], "query", "variable {name}");
        assert_eq!(v["datasource"], datasource(), "variable {name}");
        let query = v["query"]["query"].as_str().unwrap_or_default();
        assert!(query.starts_with("label_values(") && query.ends_with(&format!(", {name})")), "{name}: {query}");
        assert_eq!(v["definition"].as_str(), Some(query), "variable {name}: definition and query differ");
        assert!(v["query"]["refId"].as_str().is_some_and(|r| !r.is_empty()), "variable {name}: refId");
        assert_eq!((&v["multi"], &v["includeAll"], &v["allValue"]), (&json!(true), &json!(true), &json!(".*")));
    }
    let defined: BTreeSet<&str> = variables.iter().filter_map(|v| v["name"].as_str()).collect();

    let all = panels(&d);
    let mut ids = BTreeSet::new();
    for panel in &all {
        let id = panel["id"].as_u64().unwrap_or_else(|| panic!("panel \"{}\" has no id", title(panel)));
        assert!(ids.insert(id), "panel id {id} twice (\"{}\")", title(panel));
        let grid = &panel["gridPos"];
        let [x, y, w, h] = ["x", "y", "w", "h"].map(|k| grid[k].as_u64());
        let fits = matches!((x, y, w, h), (Some(x), Some(_), Some(w), Some(h)) if w > 0 && h > 0 && x + w <= 24);
        assert!(fits, "panel \"{}\": gridPos {grid}", title(panel));
        assert!(!title(panel).is_empty() && title(panel) != "<untitled>");
        if panel["type"] == "row" {
            assert!(panel["targets"].is_null(), "row \"{}\" has targets", title(panel));
            let nested = panel["panels"].as_array().map_or(0, Vec::len);
            assert_eq!(panel["collapsed"] == true, nested > 0, "row \"{}\": collapsed holds its panels", title(panel));
            continue;
        }
        assert!(["timeseries", "stat"].contains(&panel["type"].as_str().unwrap_or_default()), "{}", title(panel));
        assert!(
            panel["description"].as_str().is_some_and(|s| !s.is_empty()),
            "\"{}\" has no description",
            title(panel)
        );
        assert_eq!(panel["datasource"], datasource(), "panel \"{}\"", title(panel));
        let targets = panel["targets"].as_array().unwrap_or_else(|| panic!("\"{}\" has no targets", title(panel)));
        assert!(!targets.is_empty(), "\"{}\" has no targets", title(panel));
        let mut ref_ids = BTreeSet::new();
        for target in targets {
            let ref_id = target["refId"].as_str().unwrap_or_default();
            assert!(!ref_id.is_empty(), "\"{}\": a target without refId", title(panel));
            assert!(ref_ids.insert(ref_id), "\"{}\": refId {ref_id} twice", title(panel));
            assert_eq!(target["datasource"], datasource(), "\"{}\" target {ref_id}", title(panel));
            assert!(target["expr"].as_str().is_some_and(|e| !e.trim().is_empty()), "\"{}\" {ref_id}", title(panel));
        }
    }

    // Every $variable an expression uses is defined (or one of Grafana's own).
    for query in panel_queries(&d).iter().chain(&variable_queries(&d)) {
        for (i, _) in query.expr.match_indices('$') {
            let name: String =
                query.expr[i + 1..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            let builtin = ["__rate_interval", "__interval", "__range"].contains(&name.as_str());
            assert!(builtin || defined.contains(name.as_str()), "{}: ${name} is not defined", query.place);
        }
    }

    // No two panels overlap: the top level as laid out, and each collapsed row's panels.
    let mut layouts = vec![d["panels"].as_array().unwrap().iter().collect::<Vec<_>>()];
    layouts.extend(all.iter().filter_map(|p| p["panels"].as_array()).map(|nested| nested.iter().collect()));
    for layout in layouts {
        let rect = |p: &Value| ["x", "y", "w", "h"].map(|k| p["gridPos"][k].as_u64().unwrap());
        for (i, a) in layout.iter().enumerate() {
            for b in &layout[i + 1..] {
                let ([ax, ay, aw, ah], [bx, by, bw, bh]) = (rect(a), rect(b));
                let apart = ax + aw <= bx || bx + bw <= ax || ay + ah <= by || by + bh <= ay;
                assert!(apart, "panels \"{}\" and \"{}\" overlap", title(a), title(b));
            }
        }
    }
}

#[test]
fn promql_uses_each_metric_as_its_type_allows() {
    let d = dashboard();
    let documented = readme_metrics();
    for query in panel_queries(&d) {
        let (place, expr) = (&query.place, query.expr.as_str());
        assert!(expr.is_ascii(), "{place}: {expr}");
        let refs = references(expr);
        assert!(!refs.is_empty(), "{place} reads no pgate metric: {expr}");
        let mut labels: BTreeSet<&str> = TARGET_LABELS.into();
        for &(start, end, name) in &refs {
            let family = family(name, &documented).unwrap_or_else(|| panic!("{place}: {name} is unknown"));
            let metric = &documented[family];
            labels.extend(metric.labels.iter().map(String::as_str));
            let function = enclosing_function(expr, start);
            let (matchers, range) = selector_and_range(&expr[end..]);
            if metric.kind == "gauge" {
                assert!(!["rate", "irate", "increase"].contains(&function), "{place}: {function}() of gauge {name}");
            } else {
                assert!(["rate", "increase"].contains(&function), "{place}: {name} is a counter: rate() or increase()");
                assert_eq!(range, "$__rate_interval", "{place}: the range of {function}({name})");
            }
            if metric.kind == "histogram" {
                labels.insert("le");
            }
            // Every selector narrows to the chosen instances and, for a pool's metric, pools.
            for label in FILTERS.iter().filter(|&&l| l == "instance" || metric.labels.iter().any(|m| m == l)) {
                let matcher = format!("{label}=~\"${label}\"");
                assert!(matchers.contains(&matcher), "{place}: {name} lacks {matcher}: {expr}");
            }
        }
        if expr.contains("histogram_quantile(") {
            assert!(refs.iter().all(|r| r.2.ends_with("_bucket")), "{place}: quantiles come from _bucket: {expr}");
        }
        let groupings = groupings(expr);
        for grouping in &groupings {
            for label in grouping {
                assert!(labels.contains(label), "{place}: by ({label}), a label none of its metrics has: {expr}");
            }
            if expr.contains("histogram_quantile(") {
                assert!(grouping.contains(&"le"), "{place}: histogram_quantile needs le kept: {expr}");
            }
        }
        // A legend names only labels that every aggregation keeps.
        for part in query.legend.split("{{").skip(1) {
            let label = part.split("}}").next().unwrap().trim();
            let kept = groupings.iter().all(|g| g.contains(&label)) && labels.contains(label);
            assert!(kept, "{place}: legend {{{{{label}}}}} is not a label the result keeps: {expr}");
        }
    }
}

#[test]
fn every_metric_of_the_readme_is_on_the_dashboard_and_nothing_else() {
    let documented = readme_metrics();
    let on_dashboard = dashboard_families(&dashboard(), &documented);
    let missing: Vec<&String> = documented.keys().filter(|m| !on_dashboard.contains(*m)).collect();
    assert!(missing.is_empty(), "metrics of the README on no panel: {missing:?}");
    let undocumented: Vec<&String> = on_dashboard.iter().filter(|m| !documented.contains_key(*m)).collect();
    assert!(undocumented.is_empty(), "the dashboard reads metrics the README does not list: {undocumented:?}");
}

/// One HTTP/1.1 GET with `Connection: close`: status code and body (`None` when nothing
/// listens yet).
async fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: pgate\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.ok()?;
    let response = String::from_utf8(response).expect("text");
    let (head, body) = response.split_once("\r\n\r\n").expect("headers end");
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status line");
    Some((status, body.to_owned()))
}

/// A scrape: the type of each family (from `# TYPE`) and the names of the series that have
/// samples.
struct Exposition {
    types: BTreeMap<String, String>,
    series: BTreeSet<String>,
}

fn parse(text: &str) -> Exposition {
    let mut types = BTreeMap::new();
    let mut series = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name type");
            types.insert(name.to_owned(), kind.to_owned());
        } else if !line.starts_with('#') && !line.is_empty() {
            let name = line.split(['{', ' ']).next().unwrap();
            series.insert(name.to_owned());
        }
    }
    Exposition { types, series }
}

/// What is wrong with the dashboard's series in a scrape: absent, or of another type than
/// the README says.
fn unexported(scrape: &Exposition, dashboard: &Value, documented: &BTreeMap<String, Documented>) -> Vec<String> {
    let mut problems = BTreeSet::new();
    for query in panel_queries(dashboard).iter().chain(&variable_queries(dashboard)) {
        for (_, _, name) in references(&query.expr) {
            let family = family(name, documented).expect("a documented metric");
            let documented_kind = &documented[family].kind;
            let problem = match scrape.types.get(family) {
                None => format!("{family}: no samples"),
                Some(kind) if kind != documented_kind => {
                    format!("{family}: exported as {kind}, the README says {documented_kind}")
                }
                Some(_) if !scrape.series.contains(name) => format!("{name}: no such series"),
                Some(_) => continue,
            };
            problems.insert(problem);
        }
    }
    problems.into_iter().collect()
}

/// `pgate run` as a child process (SIGHUP reloads only there), killed when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_on_the_dashboard_is_exported_by_a_live_pgate() {
    let documented = readme_metrics();
    let d = dashboard();
    fresh_database("grafana_dash");
    let data = &backends().data;
    data.psql("postgres", "DROP DATABASE IF EXISTS grafana_missing WITH (FORCE)").unwrap();
    let pki = certs::make_pki();
    let dir = tempfile::tempdir().unwrap();

    // The prometheus crate leaves a labelled family out of the exposition entirely (no
    // `# HELP`, no `# TYPE`) until it has a child, and logins, authentication failures, TLS
    // handshakes, cancels, access denials, reloads, connect errors and errors by class get
    // one only when such an event happens: the workload below causes each of them. TLS
    // towards clients, an audit log and a workspace are configured so that those families
    // can have samples; grafana_missing is granted but does not exist on the server.
    let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let (port, http) = (free().port(), free());
    let b = backends();
    let text = format!(
        "[listen]\naddress = \"127.0.0.1:{port}\"\n\n[metrics]\naddress = \"{http}\"\nprobe_interval = \"200ms\"\n\n\
         [tls]\nmode = \"prefer\"\ncert = \"{}\"\nkey = \"{}\"\n\n[audit]\nsink = \"{}\"\n{}\n\
         [[workspaces]]\nname = \"dashboards\"\nusers = [\"alice\"]\ndatabases = [\"grafana_dash\", \"grafana_missing\"]\n",
        pki.cert("server"),
        pki.key("server"),
        dir.path().join("audit.log").display(),
        routes_and_users(b.infra.port(), b.data.port())
    )
    .replace("databases = [\"akko\", \"aden\"]", "databases = [\"akko\", \"aden\", \"*\"]");
    let path = dir.path().join("pgate.toml");
    std::fs::write(&path, text).unwrap();
    let mut process =
        Command::new(env!("CARGO_BIN_EXE_pgate")).arg("--config").arg(&path).stderr(Stdio::piped()).spawn().unwrap();
    let stderr = process.stderr.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if std::env::var("PGATE_TEST_LOG").is_ok() {
                eprintln!("pgate: {line}");
            }
        }
    });
    let pgate = Child(process);
    let started = Instant::now();
    while get(http, "/readyz").await.map(|r| r.0) != Some(200) {
        assert!(started.elapsed() < Duration::from_secs(30), "pgate did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let conninfo = |user: &str, password: &str, db: &str| {
        format!("host=127.0.0.1 port={port} user={user} password={password} dbname={db} sslmode=disable")
    };
    let client = connect(&conninfo("alice", ALICE_PW, "grafana_dash")).await.unwrap();
    for sql in ["SELECT 1", "BEGIN", "SELECT 2", "COMMIT"] {
        client.simple_query(sql).await.unwrap();
    }
    for i in 0..3 {
        client.query("SELECT $1::int", &[&i]).await.unwrap();
    }
    let e = client.simple_query("SELECT 1/0").await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("22012"));
    // A cancel request for a running query.
    let token = client.cancel_token();
    let sleeper = tokio::spawn(async move {
        let result = client.simple_query("SELECT pg_sleep(30)").await;
        (client, result)
    });
    let sleeping = "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'";
    let started = Instant::now();
    while data.psql("postgres", sleeping).unwrap() != "1" {
        assert!(started.elapsed() < Duration::from_secs(10), "the query to cancel did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let (client, result) = sleeper.await.unwrap();
    assert_eq!(sqlstate(&result.unwrap_err()).as_deref(), Some("57014"));
    client.simple_query("SELECT 1").await.unwrap();

    // A wrong password, a login no workspace grants, a database the server lacks.
    assert!(connect(&conninfo("alice", "wrong", "grafana_dash")).await.is_err());
    assert!(connect(&conninfo("bob", BOB_PW, "grafana_dash")).await.is_err());
    assert!(connect(&conninfo("alice", ALICE_PW, "grafana_missing")).await.is_err());
    // A TLS session.
    let tls = format!("host=127.0.0.1 port={port} user=alice password={ALICE_PW} dbname=grafana_dash sslmode=require");
    let out = tool("psql").arg(tls).args(["-X", "-A", "-t", "-c", "SELECT 1"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // A reload.
    let pid = pgate.0.id().to_string();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());

    let started = Instant::now();
    loop {
        let (status, body) = get(http, "/metrics").await.expect("pgate still serves /metrics");
        assert_eq!(status, 200);
        let problems = unexported(&parse(&body), &d, &documented);
        if problems.is_empty() {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "series the dashboard reads: {problems:#?}\n{body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(client);
    drop(pgate);
}
