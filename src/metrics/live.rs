//! Families read from the live state at scrape time, not counted on the hot path: servers
//! by state and pool limits (from each pool's `PoolStats`), clients queued for a server,
//! backends up, connected clients, readiness, the configuration in force, and the audit
//! log's counters and queue (from `AuditStats`).

use std::time::SystemTime;

use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};

use crate::proxy::Shared;

/// One family being built.
struct Family(MetricFamily);

impl Family {
    fn new(name: &str, help: &str, kind: MetricType) -> Family {
        let mut family = MetricFamily::default();
        family.set_name(name.into());
        family.set_help(help.into());
        family.set_field_type(kind);
        Family(family)
    }

    fn gauge(name: &str, help: &str) -> Family {
        Family::new(name, help, MetricType::GAUGE)
    }

    fn counter(name: &str, help: &str) -> Family {
        Family::new(name, help, MetricType::COUNTER)
    }

    fn add(&mut self, labels: &[(&str, &str)], value: f64) {
        let pairs = labels
            .iter()
            .map(|(name, value)| {
                let mut pair = LabelPair::default();
                pair.set_name((*name).into());
                pair.set_value((*value).into());
                pair
            })
            .collect();
        let mut metric = Metric::from_label(pairs);
        match self.0.get_field_type() {
            MetricType::COUNTER => {
                let mut counter = Counter::default();
                counter.set_value(value);
                metric.set_counter(counter);
            }
            _ => {
                let mut gauge = Gauge::default();
                gauge.set_value(value);
                metric.set_gauge(gauge);
            }
        }
        self.0.mut_metric().push(metric);
    }

    fn done(self, out: &mut Vec<MetricFamily>) {
        // The text format needs at least one sample for a family to be valid.
        if !self.0.get_metric().is_empty() {
            out.push(self.0);
        }
    }
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Every live family, read now.
pub(super) fn families(shared: &Shared) -> Vec<MetricFamily> {
    let mut out = Vec::new();
    pools(shared, &mut out);
    proxy(shared, &mut out);
    audit(shared, &mut out);
    out
}

fn pools(shared: &Shared, out: &mut Vec<MetricFamily>) {
    let mut servers = Family::gauge(
        "pgate_servers",
        "Server connections by state: active (checked out), idle, used (idle past server_check_delay), tested (being reset or checked), login (being opened).",
    );
    let mut size = Family::gauge("pgate_pool_size", "The pool's size: the most servers it opens (with its mode).");
    let mut min_idle = Family::gauge("pgate_pool_min_idle", "Idle servers the pool keeps open (min_idle).");
    let mut wait_limit =
        Family::gauge("pgate_pool_query_wait_timeout_seconds", "How long a client may wait for a server.");
    let mut waiting =
        Family::gauge("pgate_pool_waiting_clients", "Clients queued for a server because the pool is at its size.");
    let mut longest = Family::gauge("pgate_pool_longest_wait_seconds", "How long the first queued client has waited.");
    let mut pools = shared.pools.all();
    pools.sort_by(|a, b| {
        (&a.key().backend, &a.key().database, &a.key().user).cmp(&(&b.key().backend, &b.key().database, &b.key().user))
    });
    for pool in pools {
        let key = pool.key();
        let labels =
            [("backend", key.backend.as_str()), ("database", key.database.as_str()), ("user", key.user.as_str())];
        let stats = pool.stats();
        for (state, n) in [
            ("active", stats.active),
            ("idle", stats.idle),
            ("used", stats.used),
            ("tested", stats.tested),
            ("login", stats.login),
        ] {
            servers.add(&[labels[0], labels[1], labels[2], ("state", state)], n as f64);
        }
        let settings = pool.settings();
        let mode = settings.mode.to_string();
        size.add(&[labels[0], labels[1], labels[2], ("mode", mode.as_str())], settings.size as f64);
        min_idle.add(&labels, settings.min_idle as f64);
        wait_limit.add(&labels, settings.query_wait_timeout.as_secs_f64());
        waiting.add(&labels, stats.waiting as f64);
        longest.add(&labels, stats.longest_wait.as_secs_f64());
    }
    for family in [servers, size, min_idle, wait_limit, waiting, longest] {
        family.done(out);
    }
}

fn proxy(shared: &Shared, out: &mut Vec<MetricFamily>) {
    let config = shared.config.load();
    let mut up = Family::gauge("pgate_backend_up", "1 when the last probe of the backend succeeded.");
    let mut reached =
        Family::gauge("pgate_backend_last_reached_timestamp_seconds", "When a probe last reached the backend.");
    for name in config.backends.keys() {
        let reach = shared.readiness.reach(name);
        up.add(&[("backend", name)], if reach.up { 1.0 } else { 0.0 });
        if let Some((_, at)) = reach.last_ok {
            reached.add(&[("backend", name)], unix_seconds(at));
        }
    }
    up.done(out);
    reached.done(out);

    let mut clients = Family::gauge("pgate_client_connections", "Client connections open (logged in or logging in).");
    clients.add(&[], shared.client_count() as f64);
    clients.done(out);
    let mut limit = Family::gauge("pgate_client_connections_limit", "listen.max_client_connections.");
    limit.add(&[], config.listen.max_client_connections as f64);
    limit.done(out);

    let draining = shared.is_shutting_down();
    let ready = shared.readiness.check(&config, draining).is_ok();
    let mut family = Family::gauge("pgate_ready", "1 when /readyz answers 200.");
    family.add(&[], if ready { 1.0 } else { 0.0 });
    family.done(out);
    let mut family = Family::gauge("pgate_draining", "1 once shutdown has begun.");
    family.add(&[], if draining { 1.0 } else { 0.0 });
    family.done(out);

    let mut hash =
        Family::gauge("pgate_config_hash", "The first 48 bits of the SHA-256 of the configuration file in force.");
    hash.add(&[], config.hash as f64);
    hash.done(out);
    let mut loaded =
        Family::gauge("pgate_config_loaded_timestamp_seconds", "When the configuration in force was read.");
    loaded.add(&[], unix_seconds(config.loaded_at));
    loaded.done(out);
    let mut started = Family::gauge("pgate_start_time_seconds", "When this pgate process started.");
    started.add(&[], unix_seconds(shared.started));
    started.done(out);
}

fn audit(shared: &Shared, out: &mut Vec<MetricFamily>) {
    let Some(auditor) = &shared.auditor else { return };
    let stats = auditor.stats();
    let mut records = Family::counter(
        "pgate_audit_records_total",
        "Audit records by what became of them: written, dropped (queue full with on_full = drop, or closed), refused (sink failing with on_error = deny), lost (sink failing with on_error = continue, or not written by shutdown).",
    );
    for (result, n) in
        [("written", stats.written), ("dropped", stats.dropped), ("refused", stats.refused), ("lost", stats.lost)]
    {
        records.add(&[("result", result)], n as f64);
    }
    records.done(out);
    let mut errors =
        Family::counter("pgate_audit_sink_errors_total", "Failed writes, reopens and fsyncs of the audit sink.");
    errors.add(&[], stats.sink_errors as f64);
    errors.done(out);
    let mut depth = Family::gauge("pgate_audit_queue_depth", "Audit records queued or being written.");
    depth.add(&[], stats.queued as f64);
    depth.done(out);
    let mut capacity = Family::gauge("pgate_audit_queue_capacity", "The audit queue's size (audit.queue_size).");
    capacity.add(&[], stats.capacity as f64);
    capacity.done(out);
    let mut failing = Family::gauge("pgate_audit_sink_failing", "1 while the audit sink fails.");
    failing.add(&[], if stats.failing { 1.0 } else { 0.0 });
    failing.done(out);
}
