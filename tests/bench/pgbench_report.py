"""The report of pgbench.sh: throughput, CPU per transaction, idle clients, logins, targets."""

import statistics, sys

sys.dont_write_bytecode = True  # no __pycache__ beside the scripts
from bench_common import print_problems  # noqa: E402

results, idle, problems, clk, duration, rounds, pool, jobs, logins, scrapes = sys.argv[1:]
clk = int(clk)

# (workload, target) -> list of dict(tps, tx, user/system/cpu ticks (-1: unknown), status, aborted,
# clients, message)
runs = {}
workloads = []
for line in open(results):
    w, t, _r, tps, tx, user, system, status, aborted, clients, message = line.rstrip("\n").split("\t")
    user, system = int(user), int(system)
    runs.setdefault((w, t), []).append(dict(tps=float(tps), tx=int(tx), user=user, system=system,
                                            cpu=user + system if user >= 0 else -1, status=status,
                                            aborted=int(aborted), clients=int(clients), message=message))
    if w not in workloads and not w.startswith(("rules-", "metrics-")):
        workloads.append(w)

def ok_runs(w, t):
    return [r for r in runs.get((w, t), []) if r["status"] == "ok"]

def err_runs(w, t):
    return [r for r in runs.get((w, t), []) if r["status"] == "error"]

def skipped(w, t):
    rs = runs.get((w, t), [])
    return rs[0]["message"] if rs and rs[0]["status"] == "skipped" else None

def tps(w, t):
    """Median tps over the runs without errors (None if there is none)."""
    rs = ok_runs(w, t)
    return statistics.median(r["tps"] for r in rs) if rs else None

def tps_worst(w, t):
    """The lowest tps of the runs without errors."""
    rs = ok_runs(w, t)
    return min(r["tps"] for r in rs) if rs else None

def per_tx(w, t, part="cpu"):
    """Proxy CPU (part: user, system or cpu = both) in us per transaction, of each run without errors."""
    return [r[part] / clk * 1e6 / r["tx"] for r in ok_runs(w, t) if r["cpu"] >= 0 and r["tx"] > 0]

def cpu_ms(w, t, part="cpu"):
    """Proxy CPU in ms per 1000 transactions (= us per transaction), median over the runs without errors."""
    vals = per_tx(w, t, part)
    return statistics.median(vals) if vals else None

def cpu_worst(w, t):
    """The highest user+system CPU per transaction of the runs without errors."""
    vals = per_tx(w, t)
    return max(vals) if vals else None

def ratio(a, b):
    return f"{a / b:.2f}x" if a is not None and b else "-"

def num(v, fmt):
    return "-" if v is None else format(v, fmt)

def cell(w, t):
    if skipped(w, t):
        return "not run"
    v, bad = tps(w, t), err_runs(w, t)
    if v is None:
        return "fails" if bad else "-"
    return format(v, ".0f") + ("!" if bad else "")

def most_common(values):
    return max(set(values), key=values.count) if values else ""

def note(w, t, who):
    if skipped(w, t):
        return f"{who} not run: {skipped(w, t)}"
    bad = err_runs(w, t)
    if not bad:
        return None
    msg = most_common([r["message"] for r in bad])
    msg = msg[6:].strip() if msg.startswith("ERROR:") else msg
    if len(msg) > 80:
        msg = msg[:77] + "..."
    ab = sorted({r["aborted"] for r in bad})
    clients = bad[0]["clients"]
    aborted = f"{ab[0]}" if len(ab) == 1 else f"{ab[0]}-{ab[-1]}"
    detail = f"{aborted} of {clients} clients aborted" if ab[-1] > 0 else "errors"
    if ok_runs(w, t):
        return f"{who}: {len(bad)} of {len(bad) + len(ok_runs(w, t))} runs failed ({detail}): {msg}"
    return f"{who} fails: {msg} ({detail})"

label = {}
for w in workloads:
    n = w.rsplit("-", 1)[1]
    if w.startswith("churn-"):
        label[w] = f"connection churn (-C), {n} clients"
    elif w.startswith("tls-churn-"):
        label[w] = f"TLS+SCRAM churn (-C), {n} clients"
    elif w.startswith("tls-"):
        label[w] = f"TLS select-only {w.split('-')[2]}, {n} clients"
    else:
        label[w] = f"select-only {w.split('-')[1]}, {n} clients"

cols = [("workload", "<", 36), ("pool mode", "<", 11), ("direct", ">", 8), ("pgate", ">", 8),
        ("worst", ">", 7), ("PgBouncer", ">", 9), ("worst", ">", 7), ("pgate/PgB", ">", 9),
        ("pgate/direct", ">", 12), ("CPU pgate", ">", 9), ("CPU PgB", ">", 8), ("CPU pgate/PgB", ">", 13),
        ("notes", "<", 5)]

def row(values):
    return "  ".join(f"{v:{a}{n}}" for v, (_h, a, n) in zip(values, cols)).rstrip()

modes = [m for m in ("transaction", "session") if any((w, f"pgate-{m}") in runs for w in workloads)]
print()
print(f"pgate vs PgBouncer vs direct PostgreSQL: pgbench -j {jobs}, {rounds} round(s) of {duration} s per cell, "
      f"pool size {pool} (for every client count), medians")
print()
print(row([h for h, _a, _n in cols]))
print(row(["-" * n for _h, _a, n in cols]))
for w in workloads:
    for i, m in enumerate(modes):
        g, b = f"pgate-{m}", f"pgbouncer-{m}"
        notes = [note(w, "direct", "direct") if i == 0 else None, note(w, g, "pgate"), note(w, b, "PgBouncer")]
        if skipped(w, g) and skipped(w, g) == skipped(w, b):
            notes[1:] = [f"pgate, PgBouncer not run: {skipped(w, g)}"]
        print(row([label[w], m, cell(w, "direct"), cell(w, g), num(tps_worst(w, g), ".0f"), cell(w, b),
                   num(tps_worst(w, b), ".0f"), ratio(tps(w, g), tps(w, b)), ratio(tps(w, g), tps(w, "direct")),
                   num(cpu_ms(w, g), ".1f"), num(cpu_ms(w, b), ".1f"), ratio(cpu_ms(w, g), cpu_ms(w, b)),
                   "; ".join(n for n in notes if n)]))
print()
print("direct, pgate, PgBouncer: transactions per second, median of the rounds (pgbench tps; the")
print("  direct runs are the same for both pool modes); worst: the lowest round.  CPU: the proxy")
print("  process's user+system CPU time, in ms per 1000 transactions = us per transaction (from")
print("  /proc/PID/stat; the split is below).  Runs with errors are left out of every figure:")
print("  'fails' = every run of that cell had errors (with aborted clients, pgbench's tps is the")
print("  survivors'), '!' = some did; 'not run' = see notes.  The problems section below has the")
print("  exact pgbench command of every run with errors.")

cpu_cols = [("workload", "<", 20), ("pool mode", "<", 11)] + [
    (h, ">", n) for _who in ("pgate", "PgBouncer") for h, n in (("user", 6), ("system", 6), ("total", 6), ("worst", 6))
] + [(h, ">", n) for h, n in (("user", 6), ("system", 6), ("total", 6))]
widths = [n for _h, _a, n in cpu_cols]
def cpu_row(values):
    return "  ".join(f"{v:{a}{n}}" for v, (_h, a, n) in zip(values, cpu_cols)).rstrip()
def span(title, first, count):
    width = sum(widths[first:first + count]) + 2 * (count - 1)
    return f"{title:^{width}}"
print()
print("CPU per transaction, user / system, in us (medians of the rounds; worst: the round with the")
print("highest user+system)")
print(" " * (sum(widths[:2]) + 4) + "  ".join([span("pgate", 2, 4), span("PgBouncer", 6, 4), span("pgate/PgBouncer", 10, 3)]).rstrip())
print(cpu_row([h for h, _a, _n in cpu_cols]))
print(cpu_row(["-" * n for _h, _a, n in cpu_cols]))
for w in workloads:
    for m in modes:
        g, b = f"pgate-{m}", f"pgbouncer-{m}"
        if not (per_tx(w, g) or per_tx(w, b)):
            continue
        values = [w, m]
        for t in (g, b):
            values += [num(cpu_ms(w, t, "user"), ".1f"), num(cpu_ms(w, t, "system"), ".1f"),
                       num(cpu_ms(w, t), ".1f"), num(cpu_worst(w, t), ".1f")]
        values += [ratio(cpu_ms(w, g, p), cpu_ms(w, b, p)) for p in ("user", "system", "cpu")]
        print(cpu_row(values))
print("user, system: the proxy's utime and stime (/proc/PID/stat fields 14, 15) over the run, divided")
print("  by pgbench's transactions; each is the median of its own, so user + system may differ from")
print("  total by rounding and when the rounds split differently.  For churn: per connection.")

idle_rows = []
for line in open(idle):
    proxy, state, n1, n2, base, rss1, rss2 = line.rstrip("\n").split("\t")
    n1, n2, base, rss1, rss2 = int(n1), int(n2), int(base), int(rss1), int(rss2)
    first = (rss1 - base) / n1 if n1 else None
    marginal = (rss2 - rss1) / (n2 - n1) if n2 > n1 else None
    idle_rows.append((proxy, state, n1, n2, base, rss1, rss2, first, marginal))
per_client = {}
if idle_rows:
    print()
    print("idle clients, transaction mode, a proxy process started for this test: RSS before any client,")
    print("with the first batch of clients, with twice as many; KiB per client for the first batch and")
    print("marginal (the second batch: growth / clients added)")
    print(f"{'proxy':<10}  {'process':<28}  {'clients':>11}  {'RSS before':>10}  {'RSS first':>10}  {'RSS both':>10}"
          f"  {'KiB first':>9}  {'KiB marginal':>12}")
    print(f"{'-' * 10}  {'-' * 28}  {'-' * 11}  {'-' * 10}  {'-' * 10}  {'-' * 10}  {'-' * 9}  {'-' * 12}")
    for proxy, state, n1, n2, base, rss1, rss2, first, marginal in idle_rows:
        who = "pgate" if proxy == "pgate" else "PgBouncer"
        per_client[(who, state)] = marginal
        process = "fresh" if state == "fresh" else f"after select-simple-128 {duration} s"
        print(f"{who:<10}  {process:<28}  {f'{n1}+{n2 - n1}':>11}  {base:>10}  {rss1:>10}  {rss2:>10}"
              f"  {num(first, '.2f'):>9}  {num(marginal, '.2f'):>12}")

rules = [w for w in ("rules-select-simple-128", "rules-select-extended-128") if (w, "pgate-rules") in runs]
if rules:
    print()
    print("workspace rules + audit log (transaction mode): pgate as above vs pgate with a workspace")
    print("(relation rules on, search_path pinned) and the pgaudit file sink; same run, alternating")
    print(f"{'workload':<30}  {'pgate':>8}  {'+rules+audit':>12}  {'TPS ratio':>9}  {'CPU/tx':>7}  {'+rules':>7}  {'CPU ratio':>9}  {'CPU worst +rules':>16}")
    print(f"{'-' * 30}  {'-' * 8}  {'-' * 12}  {'-' * 9}  {'-' * 7}  {'-' * 7}  {'-' * 9}  {'-' * 16}")
    for w in rules:
        a, b = "pgate-transaction", "pgate-rules"
        worst = [r["cpu"] / clk * 1000 / (r["tx"] / 1000) for r in ok_runs(w, b) if r["cpu"] >= 0 and r["tx"] > 0]
        print(f"{'select-only ' + w.split('-')[2] + ', 128 clients':<30}  {cell(w, a):>8}  {cell(w, b):>12}  "
              f"{ratio(tps(w, b), tps(w, a)):>9}  {num(cpu_ms(w, a), '.1f'):>7}  {num(cpu_ms(w, b), '.1f'):>7}  "
              f"{ratio(cpu_ms(w, b), cpu_ms(w, a)):>9}  {num(max(worst) if worst else None, '.1f'):>16}")
    print("targets: TPS ratio >= 0.90x (at most 10% cost), CPU ratio <= 1.15x (at most 15% more CPU per transaction)")

scrape_rows = {}
for line in open(scrapes):
    w, _round, good, bad, size = line.rstrip("\n").split("\t")
    scrape_rows.setdefault(w, []).append((int(good), int(bad), int(size)))
metric_rows = [w for w in ("metrics-select-simple-128", "metrics-select-extended-128", "metrics-select-prepared-128")
               if (w, "pgate-metrics") in runs]
if metric_rows:
    base = any((w, "baseline-metrics") in runs for w in metric_rows)
    print()
    print("metrics (transaction mode): pgate with its endpoint off vs on and scraped every second during the")
    print("run; same run, alternating" + ("; baseline: PGATE_BASELINE_BIN" if base else ""))
    head = f"{'workload':<30}  {'off':>8}  {'on+scrape':>9}  {'TPS ratio':>9}  {'CPU/tx off':>10}  {'on':>7}  {'CPU ratio':>9}  {'scrapes ok/failed':>17}  {'KiB/scrape':>10}"
    if base:
        head += f"  {'baseline':>8}  {'off/baseline':>12}  {'CPU baseline':>12}"
    print(head)
    print("  ".join("-" * len(c) for c in head.split("  ") if c))
    for w in metric_rows:
        a, b = "pgate-transaction", "pgate-metrics"
        sc = scrape_rows.get(w, [])
        good, bad = sum(g for g, _b, _s in sc), sum(x for _g, x, _s in sc)
        kib = max((s for _g, _b, s in sc), default=0) / 1024
        line = (f"{'select-only ' + w.split('-')[2] + ', 128 clients':<30}  {cell(w, a):>8}  {cell(w, b):>9}  "
                f"{ratio(tps(w, b), tps(w, a)):>9}  {num(cpu_ms(w, a), '.1f'):>10}  {num(cpu_ms(w, b), '.1f'):>7}  "
                f"{ratio(cpu_ms(w, b), cpu_ms(w, a)):>9}  {f'{good}/{bad}':>17}  {kib:>10.1f}")
        if base:
            c = "baseline-metrics"
            line += f"  {cell(w, c):>8}  {ratio(tps(w, a), tps(w, c)):>12}  {num(cpu_ms(w, c), '.1f'):>12}"
        print(line)
    print("target: TPS ratio >= 0.97x (at most 3% cost for metrics on and scraped every second)")

login_rows = {}
for line in open(logins):
    name, _round, ns, tx, servers = line.rstrip("\n").split("\t")
    login_rows.setdefault(name, []).append((int(ns), int(tx), int(servers)))
if login_rows:
    print()
    print("server logins: concurrent session clients against a fresh pool (each one a SCRAM login to PostgreSQL)")
    print(f"{'proxy':<26}  {'clients':>7}  {'server logins':>13}  {'rounds':>6}  {'CPU ms median':>13}  {'CPU ms worst':>12}  {'us per client':>13}")
    print(f"{'-' * 26}  {'-' * 7}  {'-' * 13}  {'-' * 6}  {'-' * 13}  {'-' * 12}  {'-' * 13}")
    names = {"pgate-logins": "pgate", "baseline-logins": "pgate (PGATE_BASELINE_BIN)", "pgbouncer-logins": "PgBouncer"}
    for name in ("pgate-logins", "baseline-logins", "pgbouncer-logins"):
        rs = login_rows.get(name)
        if not rs:
            continue
        ms = [ns / 1e6 for ns, _tx, _s in rs]
        clients = max(tx for _ns, tx, _s in rs)
        servers = statistics.median(s for _ns, _tx, s in rs)
        med = statistics.median(ms)
        per = med * 1000 / clients if clients else None
        print(f"{names[name]:<26}  {clients:>7}  {servers:>13.0f}  {len(rs):>6}  {med:>13.1f}  {max(ms):>12.1f}  {num(per, '.0f'):>13}")
    print("CPU: the proxy's threads' run time for the whole burst (client logins, server logins, one")
    print("  transaction each, the resets); server logins: connections PostgreSQL saw the proxy open.")

def verdict(ok):
    return "-" if ok is None else ("met" if ok else "MISSED")

def cmp(a, b):
    return None if a is None or not b else a / b

def tx_ratio(w, a, b, goal, at_least=True):
    r = cmp(tps(w, a), tps(w, b))
    bad = bool(err_runs(w, a) or err_runs(w, b))
    shown = "-" if r is None else f"{r:.2f}x" + ("!" if bad else "")
    return (">= " if at_least else "<= ") + f"{goal:.2f}x", shown, None if r is None else r >= goal

T, B = "pgate-transaction", "pgbouncer-transaction"

def cpu_ratio(w, part, goal):
    r = cmp(cpu_ms(w, T, part), cpu_ms(w, B, part))
    bad = bool(err_runs(w, T) or err_runs(w, B))
    shown = "-" if r is None else f"{r:.2f}x" + ("!" if bad else "")
    return f"<= {goal:.2f}x", shown, None if r is None else r <= goal

targets = []
for w in ("select-simple-16", "select-simple-128", "select-extended-16", "select-extended-128"):
    what = f"select-only {w.split('-')[1]}, {w.split('-')[2]} clients: pgate/PgBouncer"
    targets += [(f"{what} user CPU per tx", *cpu_ratio(w, "user", 0.70)),
                (f"{what} total CPU per tx", *cpu_ratio(w, "cpu", 0.90)),
                (f"{what} TPS", *tx_ratio(w, T, B, 1.05))]
kib, pgb_kib = per_client.get(("pgate", "fresh")), per_client.get(("PgBouncer", "fresh"))
targets += [
    (f"pgate KiB per idle client, marginal, fresh process (PgBouncer: {num(pgb_kib, '.2f')})", "<= 4.00",
     num(kib, ".2f"), None if kib is None else kib <= 4),
    ("connection churn (-C), 16 clients: pgate/PgBouncer TPS", *tx_ratio("churn-16", T, B, 1.00)),
    ("TLS+SCRAM churn (-C), 16 clients: pgate/PgBouncer CPU per login", *cpu_ratio("tls-churn-16", "cpu", 0.80)),
]
print()
print(f"targets, transaction mode, pool size {pool} (shown, not enforced; '-' = not measured in this run)")
print(f"{'':<80}  {'target':>8}  {'measured':>8}")
for name, goal, got, ok in targets:
    print(f"{name:<80}  {goal:>8}  {got:>8}  {verdict(ok)}")

print_problems(problems)
