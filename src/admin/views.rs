//! The SHOW views built from live state: POOLS, CLIENTS, SERVERS, STATS, STATS_TOTALS,
//! LISTS, VERSION, HELP. Column names, order and types are PgBouncer 1.25's where pgate has
//! the same concept; columns for what pgate does not have (cancel request queues,
//! replication, peers, DNS) hold PgBouncer's value for "none" (0, `none`, empty).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::clients::{ClientEntry, ClientState};
use super::commands::{COMMAND_LIST, View};
use super::table::{Cell, NULL, Table, Type, num, text};
use crate::pool::{Pool, PoolKey, TotalsSnapshot};
use crate::proxy::Shared;

use Type::{Int4, Numeric, Text};

pub fn pools(shared: &Shared) -> Table {
    let mut t = Table::new(&[
        ("database", Text),
        ("user", Text),
        ("cl_active", Int4),
        ("cl_waiting", Int4),
        ("cl_active_cancel_req", Int4),
        ("cl_waiting_cancel_req", Int4),
        ("sv_active", Int4),
        ("sv_active_cancel", Int4),
        ("sv_being_canceled", Int4),
        ("sv_idle", Int4),
        ("sv_used", Int4),
        ("sv_tested", Int4),
        ("sv_login", Int4),
        ("maxwait", Int4),
        ("maxwait_us", Int4),
        ("pool_mode", Text),
        ("load_balance_hosts", Text),
    ]);
    let pools = sorted_pools(shared);
    let labels = Labels::of(&pools);
    let clients = ClientsByPool::of(&shared.console.clients.all());
    for pool in &pools {
        let c = clients.get(pool);
        let s = pool.server_counts();
        t.push(vec![
            text(labels.database(pool.key())),
            text(&pool.key().user),
            num(c.active),
            num(c.waiting),
            num(0),
            num(0),
            num(s.active),
            num(0),
            num(0),
            num(s.idle),
            num(s.used),
            num(s.tested),
            num(s.login),
            num(c.max_wait.as_secs()),
            num(c.max_wait.subsec_micros()),
            text(pool.settings().mode.to_string()),
            NULL,
        ]);
    }
    t
}

/// The columns SHOW CLIENTS and SHOW SERVERS share.
const SOCKET_COLUMNS: [(&str, Type); 21] = [
    ("type", Text),
    ("user", Text),
    ("database", Text),
    ("replication", Text),
    ("state", Text),
    ("addr", Text),
    ("port", Int4),
    ("local_addr", Text),
    ("local_port", Int4),
    ("connect_time", Text),
    ("request_time", Text),
    ("wait", Int4),
    ("wait_us", Int4),
    ("close_needed", Int4),
    ("ptr", Text),
    ("link", Text),
    ("remote_pid", Int4),
    ("tls", Text),
    ("application_name", Text),
    ("prepared_statements", Int4),
    ("id", Int4),
];

pub fn clients(shared: &Shared) -> Table {
    let mut t = Table::new(&SOCKET_COLUMNS);
    for c in shared.console.clients.all() {
        let info = &c.info;
        let waited = c.waited();
        t.push(vec![
            text("C"),
            text(&info.user),
            text(&info.database),
            text("none"),
            text(c.state().name()),
            text(info.peer.ip().to_string()),
            num(info.peer.port()),
            info.local.map(|a| a.ip().to_string()),
            info.local.map(|a| a.port().to_string()),
            text(timestamp(c.connected_at)),
            text(timestamp(c.since())),
            num(waited.as_secs()),
            num(waited.subsec_micros()),
            num(0),
            text(client_ptr(&c)),
            text(c.server_id().map(server_ptr).unwrap_or_default()),
            num(0),
            text(info.tls.unwrap_or_default()),
            text(&info.application_name),
            NULL,
            num(c.id),
        ]);
    }
    t
}

pub fn servers(shared: &Shared) -> Table {
    let mut t = Table::new(&SOCKET_COLUMNS);
    let pools = sorted_pools(shared);
    let labels = Labels::of(&pools);
    let clients: HashMap<u64, Arc<ClientEntry>> = shared.console.clients.all().into_iter().map(|c| (c.id, c)).collect();
    for pool in &pools {
        let mut servers = pool.servers();
        servers.sort_by_key(|s| s.facts.id);
        for server in servers {
            let f = &server.facts;
            // Where this server was opened (a reload may have pointed the pool elsewhere since).
            let (host, port) = f.backend_addr.rsplit_once(':').unwrap_or((&f.backend_addr, ""));
            let client =
                f.link().filter(|_| server.state == crate::pool::ServerUse::Active).and_then(|id| clients.get(&id));
            t.push(vec![
                text("S"),
                text(&pool.key().user),
                text(labels.database(pool.key())),
                text("none"),
                text(server.state.name()),
                text(host),
                Some(port.to_owned()),
                f.local.map(|a| a.ip().to_string()),
                f.local.map(|a| a.port().to_string()),
                text(timestamp(f.connected_at)),
                text(timestamp(f.request_time())),
                num(0),
                num(0),
                num(u8::from(server.close_needed)),
                text(server_ptr(f.id)),
                text(client.map(|c| client_ptr(c)).unwrap_or_default()),
                num(f.pid()),
                text(f.tls.unwrap_or_default()),
                text(client.map(|c| c.info.application_name.clone()).unwrap_or_default()),
                NULL,
                num(f.id),
            ]);
        }
    }
    t
}

/// SHOW STATS: totals since each pool was created, and averages over the last complete
/// stats period, per database.
pub fn stats(shared: &Shared) -> Table {
    let mut columns = vec![("database", Text)];
    columns.extend(TOTAL_NAMES.iter().map(|n| (*n, Numeric)));
    columns.extend(AVERAGE_NAMES.iter().map(|n| (*n, Numeric)));
    let mut t = Table::new(&columns);
    for (database, db) in by_database(shared) {
        let mut row = vec![text(database)];
        row.extend(totals_cells(&db.totals));
        row.extend(db.averages().into_iter().map(num));
        t.push(row);
    }
    t
}

pub fn stats_totals(shared: &Shared) -> Table {
    let mut columns = vec![("database", Text)];
    columns.extend(TOTALS_ONLY_NAMES.iter().map(|n| (*n, Numeric)));
    let mut t = Table::new(&columns);
    for (database, db) in by_database(shared) {
        let mut row = vec![text(database)];
        row.extend(totals_cells(&db.totals));
        t.push(row);
    }
    t
}

const TOTAL_NAMES: [&str; 11] = [
    "total_server_assignment_count",
    "total_xact_count",
    "total_query_count",
    "total_received",
    "total_sent",
    "total_xact_time",
    "total_query_time",
    "total_wait_time",
    "total_client_parse_count",
    "total_server_parse_count",
    "total_bind_count",
];

const TOTALS_ONLY_NAMES: [&str; 11] = [
    "server_assignment_count",
    "xact_count",
    "query_count",
    "bytes_received",
    "bytes_sent",
    "xact_time",
    "query_time",
    "wait_time",
    "client_parse_count",
    "server_parse_count",
    "bind_count",
];

const AVERAGE_NAMES: [&str; 11] = [
    "avg_server_assignment_count",
    "avg_xact_count",
    "avg_query_count",
    "avg_recv",
    "avg_sent",
    "avg_xact_time",
    "avg_query_time",
    "avg_wait_time",
    "avg_client_parse_count",
    "avg_server_parse_count",
    "avg_bind_count",
];

fn totals_cells(s: &TotalsSnapshot) -> Vec<Cell> {
    [
        s.assignments,
        s.transactions,
        s.queries,
        s.received,
        s.sent,
        s.transaction_us,
        s.query_us,
        s.wait_us,
        s.client_parses,
        s.server_parses,
        s.binds,
    ]
    .into_iter()
    .map(num)
    .collect()
}

/// One database's pools summed: totals, and the last stats period of each pool.
#[derive(Default)]
struct DatabaseStats {
    totals: TotalsSnapshot,
    periods: Vec<(TotalsSnapshot, Duration)>,
}

impl DatabaseStats {
    /// Counts and bytes per second; times per transaction, query and assignment (µs).
    fn averages(&self) -> [u64; 11] {
        let rate = |f: fn(&TotalsSnapshot) -> u64| -> u64 {
            let per_second: f64 = self
                .periods
                .iter()
                .filter(|(_, d)| !d.is_zero())
                .map(|(delta, d)| f(delta) as f64 / d.as_secs_f64())
                .sum();
            per_second as u64
        };
        let mean = |time: fn(&TotalsSnapshot) -> u64, count: fn(&TotalsSnapshot) -> u64| -> u64 {
            let (t, n) = self.periods.iter().fold((0, 0), |(t, n), (delta, _)| (t + time(delta), n + count(delta)));
            t.checked_div(n).unwrap_or(0)
        };
        [
            rate(|s| s.assignments),
            rate(|s| s.transactions),
            rate(|s| s.queries),
            rate(|s| s.received),
            rate(|s| s.sent),
            mean(|s| s.transaction_us, |s| s.transactions),
            mean(|s| s.query_us, |s| s.queries),
            mean(|s| s.wait_us, |s| s.assignments),
            rate(|s| s.client_parses),
            rate(|s| s.server_parses),
            rate(|s| s.binds),
        ]
    }
}

fn by_database(shared: &Shared) -> Vec<(String, DatabaseStats)> {
    let pools = sorted_pools(shared);
    let labels = Labels::of(&pools);
    let mut out: Vec<(String, DatabaseStats)> = Vec::new();
    for pool in &pools {
        let database = labels.database(pool.key());
        let at = match out.iter().position(|(d, _)| *d == database) {
            Some(at) => at,
            None => {
                out.push((database, DatabaseStats::default()));
                out.len() - 1
            }
        };
        let db = &mut out[at].1;
        db.totals.add(&pool.live().totals.snapshot());
        db.periods.extend(pool.live().last_period());
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

pub fn lists(shared: &Shared) -> Table {
    let mut t = Table::new(&[("list", Text), ("items", Int4)]);
    let registered = shared.console.clients.len();
    let pools = shared.pools.all();
    let servers: usize = pools
        .iter()
        .map(|p| {
            let s = p.server_counts();
            s.active + s.idle + s.used + s.tested + s.login
        })
        .sum();
    let lists = [
        ("databases", super::catalog::database_count(shared)),
        ("users", super::catalog::user_count(shared)),
        ("peers", 0),
        ("pools", pools.len()),
        ("peer_pools", 0),
        ("free_clients", 0),
        ("used_clients", registered),
        ("login_clients", shared.client_count().saturating_sub(registered)),
        ("free_servers", 0),
        ("used_servers", servers),
        ("dns_names", 0),
        ("dns_zones", 0),
        ("dns_queries", 0),
        ("dns_pending", 0),
    ];
    for (list, items) in lists {
        t.push(vec![text(list), num(items)]);
    }
    t
}

pub fn version() -> Table {
    let mut t = Table::new(&[("version", Text)]);
    t.push(vec![text(format!("pgate {}", env!("CARGO_PKG_VERSION")))]);
    t
}

pub fn help() -> Table {
    let mut t = Table::new(&[("command", Text)]);
    let shows = View::ALL.iter().map(|(name, _)| format!("SHOW {}", name.to_ascii_uppercase()));
    let rest = COMMAND_LIST.split("; ").skip(1).map(str::to_owned);
    for command in shows.chain(rest) {
        t.push(vec![text(command)]);
    }
    t
}

/// Pools in a stable order: database, user, backend.
fn sorted_pools(shared: &Shared) -> Vec<Arc<Pool>> {
    let mut pools = shared.pools.all();
    pools.sort_by(|a, b| {
        let (a, b) = (a.key(), b.key());
        (&a.database, &a.user, &a.backend).cmp(&(&b.database, &b.user, &b.backend))
    });
    pools
}

/// The `database` column of pools: the server database's name, written `name@backend`
/// when two backends have a database of that name, so rows stay unique per label (as
/// Prometheus exporters need).
pub struct Labels(HashMap<String, usize>);

impl Labels {
    pub fn of(pools: &[Arc<Pool>]) -> Self {
        let mut backends: HashMap<String, Vec<&str>> = HashMap::new();
        for pool in pools {
            let list = backends.entry(pool.key().database.clone()).or_default();
            if !list.contains(&pool.key().backend.as_str()) {
                list.push(&pool.key().backend);
            }
        }
        Labels(backends.into_iter().map(|(db, list)| (db, list.len())).collect())
    }

    pub fn database(&self, key: &PoolKey) -> String {
        match self.0.get(&key.database) {
            Some(&n) if n > 1 => format!("{}@{}", key.database, key.backend),
            _ => key.database.clone(),
        }
    }
}

/// Clients of each pool by state.
#[derive(Default, Clone, Copy)]
struct PoolClients {
    /// Active and idle, as PgBouncer's cl_active counts them.
    active: usize,
    waiting: usize,
    max_wait: Duration,
}

struct ClientsByPool(HashMap<*const Pool, PoolClients>);

impl ClientsByPool {
    fn of(clients: &[Arc<ClientEntry>]) -> Self {
        let mut map: HashMap<*const Pool, PoolClients> = HashMap::new();
        for c in clients {
            let Some(pool) = &c.info.pool else { continue };
            let entry = map.entry(Arc::as_ptr(pool)).or_default();
            match c.state() {
                ClientState::Waiting => {
                    entry.waiting += 1;
                    entry.max_wait = entry.max_wait.max(c.waited());
                }
                ClientState::Active | ClientState::Idle => entry.active += 1,
            }
        }
        ClientsByPool(map)
    }

    fn get(&self, pool: &Arc<Pool>) -> PoolClients {
        self.0.get(&Arc::as_ptr(pool)).copied().unwrap_or_default()
    }
}

/// A client's `ptr`: its session id, as the audit log's `session=` writes it.
fn client_ptr(c: &ClientEntry) -> String {
    format!("{:x}", c.info.session)
}

/// A server's `ptr`: its connection id, as pgate's logs write it.
fn server_ptr(id: u64) -> String {
    format!("s{id}")
}

/// `2026-11-22 10:15:03 UTC`.
pub fn timestamp(time: SystemTime) -> String {
    let rfc = humantime::format_rfc3339_seconds(time).to_string();
    format!("{} UTC", rfc.trim_end_matches('Z').replacen('T', " ", 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_read_like_pgbouncer_s() {
        let t = humantime::parse_rfc3339("2026-11-22T10:15:03Z").unwrap();
        assert_eq!(timestamp(t), "2026-11-22 10:15:03 UTC");
    }

    #[test]
    fn averages_are_rates_and_means_over_the_last_period() {
        let delta = TotalsSnapshot { queries: 120, query_us: 1200, transactions: 60, ..Default::default() };
        let db = DatabaseStats { totals: delta, periods: vec![(delta, Duration::from_secs(60))] };
        let [_, xacts, queries, _, _, xact_time, query_time, ..] = db.averages();
        assert_eq!((xacts, queries, xact_time, query_time), (1, 2, 0, 10));
    }
}
