//! The `pgate` binary: command-line parsing and process setup only (no protocol logic).

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use pgate::config::{self, Snapshot};
use pgate::proxy::Proxy;

#[derive(Parser)]
#[command(name = "pgate", version, about = "PostgreSQL proxy and connection pooler")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Configuration file.
    #[arg(long, short, global = true, default_value = "config/pgate.toml", env = "PGATE_CONFIG")]
    config: PathBuf,
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "PGATE_LOG_FORMAT")]
    log_format: LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy (the default).
    Run,
    /// Validate the configuration and print the routing table and pools.
    Check {
        /// A running configuration: also print what a reload from it to this one would change.
        #[arg(long, value_name = "RUNNING.toml")]
        diff: Option<PathBuf>,
    },
    /// Read a password on stdin and print its SCRAM-SHA-256 secret for the config.
    ScramSecret,
    /// Start two throwaway PostgreSQL clusters and pgate in front of them.
    Demo {
        /// Port for pgate to listen on (127.0.0.1).
        #[arg(long, default_value_t = 5432)]
        port: u16,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command.unwrap_or(Command::Run) {
        Command::Run => run(&cli.config),
        Command::Check { diff } => check(&cli.config, diff.as_deref()),
        Command::ScramSecret => scram_secret(),
        Command::Demo { port } => demo(port),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the runtime")
}

fn run(path: &Path) -> anyhow::Result<()> {
    let snapshot = config::load(path)?;
    raise_fd_limit();
    let config = path.display().to_string();
    on_worker(async move {
        let proxy = Proxy::bind(snapshot).await?;
        tracing::info!(address = %proxy.local_addr()?, %config, "pgate listening");
        tokio::spawn(pgate::reload::on_sighup(proxy.shared()));
        tokio::spawn(pgate::proxy::reopen_audit_on_sigusr1(proxy.shared()));
        // A first SIGTERM or SIGINT drains; one during the drain (however it began) stops
        // at once.
        let signals = pgate::proxy::stop_signals();
        proxy.run_until(signals.clone().wait(1), signals.next()).await;
        Ok(())
    })
}

/// Every client and server is a socket: the soft limit on open files (often 1024) would
/// refuse clients long before `max_client_connections`, so it is raised to the hard limit,
/// as operators expect of a connection pooler.
fn raise_fd_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open file limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open file limit"),
    }
}

/// Runs `work` as a task on the runtime's workers, not on the main thread: the accept loop
/// then spawns clients onto its own worker's queue instead of waking another thread for
/// every connection.
fn on_worker<F>(work: F) -> anyhow::Result<()>
where
    F: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let runtime = runtime()?;
    runtime.block_on(runtime.spawn(work)).context("the proxy task failed")?
}

fn check(path: &Path, running: Option<&Path>) -> anyhow::Result<()> {
    let snapshot = config::load(path)?;
    // The running file is validated too (a diff against a file pgate would refuse means
    // nothing), before anything is printed.
    let running = match running {
        Some(p) => Some((p, config::load(p).context("the running configuration is invalid")?)),
        None => None,
    };
    print!("{}", describe(&snapshot));
    if let Some((running_path, running)) = running {
        println!("changes from {}:", running_path.display());
        for line in config::diff(&running, &snapshot).to_string().lines() {
            println!("  {line}");
        }
    }
    Ok(())
}

/// The routing table and pools of a configuration, as `pgate check` prints them.
fn describe(s: &Snapshot) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "{}: OK", s.source.display());
    let _ = writeln!(
        out,
        "listen {} (max {} clients, login timeout {})",
        s.listen.address,
        s.listen.max_client_connections,
        humantime::format_duration(s.listen.login_timeout)
    );
    match &s.metrics.address {
        Some(address) => {
            let _ = writeln!(
                out,
                "metrics on http://{address} (/metrics, /healthz, /readyz; backends probed every {}, timeout {})",
                humantime::format_duration(s.metrics.probe_interval),
                humantime::format_duration(s.metrics.probe_timeout)
            );
        }
        None => {
            let _ = writeln!(out, "metrics off");
        }
    }
    let trust: Vec<String> = s.auth.trust_networks.iter().map(|n| n.to_string()).collect();
    let _ = writeln!(out, "auth {}, trust networks: [{}]", s.auth.method, trust.join(", "));
    match &s.tls {
        Some(t) => {
            let _ = writeln!(
                out,
                "tls {} (certificate {}, client CA {})",
                t.mode,
                t.cert.display(),
                t.client_ca.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "none".into())
            );
        }
        None => {
            let _ = writeln!(out, "tls disabled");
        }
    }
    if let Some(lookup) = &s.auth.lookup {
        let _ = writeln!(out, "auth_query as {}: {}", lookup.user, lookup.query);
    }
    let _ = writeln!(out, "routes:");
    for (name, r) in &s.routes.exact {
        let _ = writeln!(
            out,
            "  {name:<16} -> {} ({}) database {}",
            r.backend.name,
            r.backend.address(),
            r.server_database
        );
    }
    if let Some(b) = &s.routes.fallback {
        let _ = writeln!(out, "  {:<16} -> {} ({}) database of the same name", "*", b.name, b.address());
    }
    let mut users: Vec<_> = s.users.values().collect();
    users.sort_by(|a, b| a.name.cmp(&b.name));
    let _ = writeln!(out, "users:");
    for u in &users {
        let password = if u.password.is_some() { "set" } else { "none (trust networks only)" };
        let server = if u.server_password.is_some() { "set" } else { "none" };
        let _ = writeln!(
            out,
            "  {:<16} password {password}; server user {}, server password {server}",
            u.name, u.server_user
        );
    }
    describe_workspaces(&mut out, s);
    match &s.audit {
        Some(a) => {
            let _ = writeln!(
                out,
                "audit: {} in {} format, on_full {}, on_error {}",
                a.sink, a.format, a.on_full, a.on_error
            );
        }
        None => {
            let _ = writeln!(out, "audit: off");
        }
    }
    let _ = writeln!(out, "pools (per backend, before database and user overrides):");
    for b in s.backends.values() {
        let route = config::RouteEntry { backend: b.clone(), server_database: String::new(), pool: Default::default() };
        let anyone = config::User::implicit("");
        let p = s.pool_settings(&route, &anyone);
        let _ = writeln!(
            out,
            "  {:<16} mode {}, size {}, min_idle {}, query_wait_timeout {}, server_idle_timeout {}, server_lifetime {}, connect_timeout {}, idle_transaction_timeout {}, client_idle_timeout {}, tls {}",
            b.name,
            p.mode,
            p.size,
            p.min_idle,
            humantime::format_duration(p.query_wait_timeout),
            humantime::format_duration(p.server_idle_timeout),
            humantime::format_duration(p.server_lifetime),
            humantime::format_duration(p.connect_timeout),
            off_or(p.idle_transaction_timeout),
            off_or(p.client_idle_timeout),
            b.tls.mode
        );
    }
    out
}

/// A timeout where zero turns the check off.
fn off_or(d: std::time::Duration) -> String {
    if d.is_zero() { "off".into() } else { humantime::format_duration(d).to_string() }
}

/// Each workspace's grants: members, databases, classes, rules, pinned settings.
fn describe_workspaces(out: &mut String, s: &Snapshot) {
    use std::fmt::Write;
    if s.workspaces.is_empty() {
        let _ = writeln!(out, "workspaces: none (every authenticated login is admitted; no statement rules)");
        return;
    }
    let _ = writeln!(out, "workspaces (a login no workspace grants is refused):");
    for w in &s.workspaces.list {
        let patterns = |p: &[pgate::access::Pattern]| p.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ");
        let _ = writeln!(out, "  {}", w.name);
        let _ = writeln!(
            out,
            "    members: users [{}], certificate identities [{}]",
            w.users.join(", "),
            w.identities.join(", ")
        );
        let _ = writeln!(out, "    databases: {}", w.describe_databases());
        let rules = if w.has_statement_rules() { "" } else { " (no statement rules)" };
        let _ = writeln!(
            out,
            "    classes: {}{rules}{}",
            w.describe_classes(),
            if w.read_only { ", read-only" } else { "" }
        );
        let _ = writeln!(
            out,
            "    relations: allow [{}], deny [{}]",
            patterns(&w.relations.allow),
            patterns(&w.relations.deny)
        );
        let _ = writeln!(
            out,
            "    functions: allow [{}], deny [{}]",
            patterns(&w.functions.allow),
            patterns(&w.functions.deny)
        );
        let pinned: Vec<String> = w.session.iter().map(|(n, v)| format!("{n} = {v:?}")).collect();
        let _ = writeln!(out, "    pinned settings: {}", pinned.join(", "));
        let limit = w.max_client_connections.map_or("none".to_owned(), |n| n.to_string());
        let _ = writeln!(out, "    max clients: {limit}; unparsed statements: {}", w.unparsed);
    }
}

fn scram_secret() -> anyhow::Result<()> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("cannot read the password from stdin")?;
    let password = line.trim_end_matches(['\r', '\n']);
    anyhow::ensure!(!password.is_empty(), "no password on stdin; try: echo -n 'secret' | pgate scram-secret");
    println!("{}", postgres_protocol::password::scram_sha_256(password.as_bytes()));
    Ok(())
}

fn demo(port: u16) -> anyhow::Result<()> {
    raise_fd_limit();
    on_worker(pgate::demo::run(port))
}
