//! Watching the pool during the chaos test: pgate's own count of the pool's servers (from
//! /metrics) and PostgreSQL's (pg_stat_activity over a direct connection), sampled every
//! 50 ms; how often and for how long PostgreSQL's count was above the pool size.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::POOL_SIZE;
use crate::common::process::{http_get, metric};
use crate::common::*;

const EVERY: Duration = Duration::from_millis(50);

/// What the samplers saw.
#[derive(Default)]
pub struct Seen {
    pub pgate_samples: u64,
    pub pgate_max: usize,
    /// The longest time between two of pgate's samples.
    pub pgate_gap: Duration,
    pub postgres_samples: u64,
    pub postgres_max: usize,
    /// Samples where PostgreSQL counted more than the pool size.
    pub postgres_over: u64,
    /// Stretches of consecutive samples over the size, and the longest one.
    pub postgres_episodes: u64,
    pub postgres_longest: Duration,
    /// pg_stat_activity for the pool at the sample with the highest count over the size.
    pub postgres_worst: String,
}

impl fmt::Display for Seen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pgate: {} samples, max {} servers, longest gap {:?}; PostgreSQL: {} samples, max {}, \
             {} samples over {POOL_SIZE} in {} stretches, longest {:?}",
            self.pgate_samples,
            self.pgate_max,
            self.pgate_gap,
            self.postgres_samples,
            self.postgres_max,
            self.postgres_over,
            self.postgres_episodes,
            self.postgres_longest
        )
    }
}

pub struct Watch {
    stop: Arc<AtomicBool>,
    pgate: tokio::task::JoinHandle<Seen>,
    postgres: tokio::task::JoinHandle<Seen>,
}

impl Watch {
    pub async fn start(metrics: SocketAddr, db: &str, user: &str) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let data = &backends().data;
        // Not through pgate: PostgreSQL's own view of the pool's servers.
        let direct = format!(
            "host=127.0.0.1 port={} user=alice password={ALICE_PW} dbname=postgres sslmode=disable",
            data.port()
        );
        let direct = connect(&direct).await.expect("a direct connection to the cluster");
        let count = format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}' AND usename = '{user}'");
        let rows = format!(
            "SELECT state, wait_event_type || ':' || wait_event, now() - state_change, left(query, 60) \
             FROM pg_stat_activity WHERE datname = '{db}' AND usename = '{user}' ORDER BY state_change"
        );
        let (flag, pool) = (stop.clone(), db.to_owned());
        let pgate = tokio::spawn(async move {
            let mut seen = Seen::default();
            let mut last = Instant::now();
            while !flag.load(Ordering::Relaxed) {
                let text = http_get(metrics, "/metrics").await.1;
                let servers = metric(&text, "pgate_servers", &[("database", pool.as_str())]) as usize;
                seen.pgate_samples += 1;
                seen.pgate_max = seen.pgate_max.max(servers);
                seen.pgate_gap = seen.pgate_gap.max(last.elapsed());
                last = Instant::now();
                tokio::time::sleep(EVERY).await;
            }
            seen
        });
        let flag = stop.clone();
        let postgres = tokio::spawn(async move {
            let mut seen = Seen::default();
            let mut over_since: Option<Instant> = None;
            while !flag.load(Ordering::Relaxed) {
                let row = direct.query_one(count.as_str(), &[]).await.expect("pg_stat_activity");
                let n = row.get::<_, i64>(0) as usize;
                seen.postgres_samples += 1;
                seen.postgres_max = seen.postgres_max.max(n);
                if n > POOL_SIZE {
                    seen.postgres_over += 1;
                    let since = *over_since.get_or_insert_with(|| {
                        seen.postgres_episodes += 1;
                        Instant::now()
                    });
                    seen.postgres_longest = seen.postgres_longest.max(since.elapsed() + EVERY);
                    if n == seen.postgres_max {
                        seen.postgres_worst = activity(&direct, &rows).await;
                    }
                } else {
                    over_since = None;
                }
                tokio::time::sleep(EVERY).await;
            }
            seen
        });
        Watch { stop, pgate, postgres }
    }

    pub async fn stop(self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        let postgres = self.postgres.await.unwrap();
        Seen {
            postgres_samples: postgres.postgres_samples,
            postgres_max: postgres.postgres_max,
            postgres_over: postgres.postgres_over,
            postgres_episodes: postgres.postgres_episodes,
            postgres_longest: postgres.postgres_longest,
            postgres_worst: postgres.postgres_worst,
            ..self.pgate.await.unwrap()
        }
    }
}

/// One line per server: state, wait event, time in that state, query.
async fn activity(direct: &tokio_postgres::Client, rows: &str) -> String {
    let Ok(rows) = direct.simple_query(rows).await else { return String::new() };
    let lines = rows.iter().filter_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => {
            Some((0..r.len()).map(|i| r.get(i).unwrap_or("-")).collect::<Vec<_>>().join(" | "))
        }
        _ => None,
    });
    lines.collect::<Vec<_>>().join("\n")
}

/// Waits (up to 30 s) until no client is connected and the pool has no active, logging-in
/// or waiting entries.
pub async fn settled(metrics: SocketAddr, db: &str) {
    let started = Instant::now();
    loop {
        let text = http_get(metrics, "/metrics").await.1;
        let pool = ("database", db);
        let busy = metric(&text, "pgate_client_connections", &[])
            + metric(&text, "pgate_servers", &[pool, ("state", "active")])
            + metric(&text, "pgate_servers", &[pool, ("state", "login")])
            + metric(&text, "pgate_pool_waiting_clients", &[pool]);
        if busy == 0.0 {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "pgate did not settle: {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
