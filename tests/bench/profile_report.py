"""The report of profile.sh: CPU per transaction, syscalls per transaction, pgate's perf profile."""

import re
import statistics
import sys

sys.dont_write_bytecode = True  # no __pycache__ beside the scripts
from bench_common import print_problems  # noqa: E402

(results, syscalls, perfs, problems, clk, duration, rounds, pool, jobs, strace_secs, perf_secs,
 top) = sys.argv[1:]
clk, top = int(clk), int(top)
NAMES = {"pgate-transaction": "pgate", "pgbouncer-transaction": "PgBouncer", "floor-mt": "floor-mt",
         "floor-ct": "floor-ct"}
T, B = "pgate-transaction", "pgbouncer-transaction"
# The floor: a bare tokio relay, one server per client; its rows are ratioed to PgBouncer too.
FLOORS = {"floor-mt": "mt/PgB", "floor-ct": "ct/PgB"}
USER_GOAL, TOTAL_GOAL = 0.70, 0.90

# ---------------------------------------------------------------- CPU per transaction
runs = {}
workloads = []
for line in open(results):
    w, t, _r, tps, tx, user, system, status, aborted, clients, message = line.rstrip("\n").split("\t")
    runs.setdefault((w, t), []).append(dict(tps=float(tps), tx=int(tx), user=int(user), system=int(system),
                                            status=status, aborted=int(aborted), message=message))
    if w not in workloads:
        workloads.append(w)


def ok_runs(w, t):
    return [r for r in runs.get((w, t), []) if r["status"] == "ok"]


def failed(w, t):
    return [r for r in runs.get((w, t), []) if r["status"] != "ok"]


def per_tx(r, part):
    """us of CPU per transaction of one run; part is user, system or total."""
    ticks = r["user"] + r["system"] if part == "total" else r[part]
    return ticks / clk * 1e6 / r["tx"]


def figures(w, t):
    """Medians and worst rounds of one cell, or None when no run was without errors."""
    rs = [r for r in ok_runs(w, t) if r["user"] >= 0 and r["tx"] > 0]
    if not rs:
        return None
    f = {p: statistics.median(per_tx(r, p) for r in rs) for p in ("user", "system", "total")}
    f["tps"] = statistics.median(r["tps"] for r in rs)
    f["tps_worst"] = min(r["tps"] for r in rs)
    f["total_worst"] = max(per_tx(r, "total") for r in rs)
    f["runs"] = len(rs)
    return f


def num(v, fmt):
    return "-" if v is None else format(v, fmt)


def ratio(a, b):
    return "-" if a is None or not b else f"{a / b:.2f}x"


def ratio_row(label, g, b):
    """The ratios of one proxy's figures to PgBouncer's, under their columns."""
    print(f"{'':<20}  {label:<10}  {ratio(g['tps'], b['tps']):>7}  {ratio(g['tps_worst'], b['tps_worst']):>7}  "
          f"{ratio(g['user'], b['user']):>6}  {ratio(g['system'], b['system']):>6}  {ratio(g['total'], b['total']):>6}  "
          f"{ratio(g['total_worst'], b['total_worst']):>6}")


print()
print(f"pgate vs PgBouncer, transaction mode, pool size {pool}: pgbench -j {jobs}, {rounds} round(s) of "
      f"{duration} s per cell, alternating")
if any(t in FLOORS for _w, t in runs):
    print("and the floor: a bare tokio byte relay (examples/relay_floor.rs), one PostgreSQL connection per")
    print("client and no pool, with 2 worker threads (floor-mt) and on the current-thread runtime (floor-ct)")
print()
print("TPS and proxy CPU per transaction (us): medians of the rounds; worst = the lowest TPS and the")
print("highest user+system of the rounds")
head = (f"{'workload':<20}  {'proxy':<10}  {'TPS':>7}  {'worst':>7}  {'user':>6}  {'system':>6}  {'total':>6}"
        f"  {'worst':>6}  notes")
print(head)
print(f"{'-' * 20}  {'-' * 10}  {'-' * 7}  {'-' * 7}  {'-' * 6}  {'-' * 6}  {'-' * 6}  {'-' * 6}  -----")

floors = [t for t in FLOORS if any(key[1] == t for key in runs)]
got = {}
for w in workloads:
    for t in (T, B, *floors):
        f = got[w, t] = figures(w, t)
        bad = failed(w, t)
        note = ""
        if bad:
            msg = max({r["message"] for r in bad}, key=[r["message"] for r in bad].count)
            msg = msg[6:].strip() if msg.startswith("ERROR:") else msg
            note = f"{len(bad)} of {len(runs[(w, t)])} runs failed: {msg[:70]}"
        if f is None:
            print(f"{w:<20}  {NAMES[t]:<10}  {'fails' if bad else '-':>7}  {'':>7}  {'':>6}  {'':>6}  {'':>6}  {'':>6}  {note}")
        else:
            print(f"{w:<20}  {NAMES[t]:<10}  {f['tps']:>7.0f}  {f['tps_worst']:>7.0f}  {f['user']:>6.1f}  "
                  f"{f['system']:>6.1f}  {f['total']:>6.1f}  {f['total_worst']:>6.1f}  {note}".rstrip())
    b = got[w, B]
    for t, label in ((T, "pgate/PgB"), *((t, FLOORS[t]) for t in floors)):
        if got[w, t] and b:
            ratio_row(label, got[w, t], b)
print("CPU: utime (user) and stime (system) of the proxy process, all threads, from /proc/PID/stat")
print(f"  before and after each run, in clock ticks of 1/{clk} s, divided by pgbench's transactions;")
print("  each column is the median of its own.  PgBouncer 1.18 cannot run -M prepared in transaction")
print("  mode (it runs once, to show the failure).")
if floors:
    print("  mt/PgB, ct/PgB: floor-mt's and floor-ct's ratios to PgBouncer, as pgate/PgB.  The floor parses")
    print("  nothing and pools nothing: pgbench logs into PostgreSQL through it, and at 128 clients")
    print("  PostgreSQL runs 128 backends, so its TPS is not a proxy's; its CPU per transaction is the")
    print("  least a tokio relay can spend.")


def target_rows():
    """(workload, proxy, user ratio, total ratio) for every cell with PgBouncer figures beside it."""
    rows = []
    for w in workloads:
        b = got[w, B]
        for t in (T, *floors):
            f = got[w, t]
            if f and b and b["user"] and b["total"]:
                rows.append((w, t, f["user"] / b["user"], f["total"] / b["total"]))
    return rows


def met(user, total):
    return user <= USER_GOAL and total <= TOTAL_GOAL


trows = target_rows()
print()
print(f"targets: the proxy's CPU per transaction at most {USER_GOAL:.2f}x PgBouncer's user and {TOTAL_GOAL:.2f}x its total")
print("  (shown, not enforced" + ("; the floor is not a pooler, it tells what the runtime alone costs)" if floors else ")"))
if not trows:
    print("  not measured in this run (no workload with figures of PgBouncer beside them)")
for w, t, user, total in trows:
    print(f"  {w:<20}  {NAMES[t]:<10}  user {user:>5.2f}x  total {total:>5.2f}x  {'met' if met(user, total) else 'MISSED'}")
frows = [r for r in trows if r[1] in FLOORS]
if not floors:
    print("verdict: the floor was not measured (FLOOR=0), so this run cannot tell pgate's cost from the runtime's")
elif not frows:
    print("verdict: none, no workload has figures of both the floor and PgBouncer")
else:
    ok = [r for r in frows if met(r[2], r[3])]
    cells = f"{len(ok)} of {len(frows)} floor cells"
    if not ok:
        print(f"verdict: even the floor misses {USER_GOAL:.2f}x user / {TOTAL_GOAL:.2f}x total ({cells} meet both): "
              "the targets lie below what a bare tokio relay costs")
    elif len(ok) == len(frows):
        print(f"verdict: the floor meets {USER_GOAL:.2f}x user / {TOTAL_GOAL:.2f}x total ({cells}): "
              "the runtime leaves room for the targets")
    else:
        print(f"verdict: the floor meets {USER_GOAL:.2f}x user / {TOTAL_GOAL:.2f}x total in only {cells}: "
              "the targets sit at the runtime's own cost")

# ---------------------------------------------------------------- syscalls
def strace_counts(path):
    """syscall -> calls, from an strace -c summary."""
    counts = {}
    try:
        text = open(path).read()
    except OSError:
        return counts
    for line in text.splitlines():
        cols = line.split()
        if len(cols) < 5 or not re.match(r"^\d+\.\d+$", cols[0]) or cols[-1] == "total":
            continue
        # % time, seconds, usecs/call, calls, [errors], syscall
        counts[cols[-1]] = int(cols[3])
    return counts


srows = []
for line in open(syscalls):
    w, t, tx, tps, status, path = line.rstrip("\n").split("\t")
    tx = int(tx)
    counts = strace_counts(path) if path != "-" else {}
    per = {k: v / tx for k, v in counts.items()} if tx else {}
    srows.append((w, t, tx, int(tps), status, per))
if srows:
    # The columns: the syscalls that are the most frequent anywhere, the rest summed.
    best = {}
    for *_x, per in srows:
        for k, v in per.items():
            best[k] = max(best.get(k, 0), v)
    shown = [k for k, _v in sorted(best.items(), key=lambda kv: -kv[1])[:8]]
    width = {k: max(6, len(k)) for k in shown}
    print()
    print(f"syscalls per transaction: strace -c -f -p PID for a run of {strace_secs} s of its own, calls divided by")
    print("pgbench's transactions in that run (logins included); strace slows the proxy several times, so")
    print("that run's TPS is shown only to say how much")
    head = f"{'workload':<20}  {'proxy':<10}  {'TPS':>6}  {'total':>6}  " + "  ".join(
        f"{k:>{width[k]}}" for k in shown) + f"  {'other':>6}"
    print(head)
    print(f"{'-' * 20}  {'-' * 10}  {'-' * 6}  {'-' * 6}  " + "  ".join("-" * width[k] for k in shown) + f"  {'-' * 6}")
    for w, t, tx, tps, status, per in srows:
        if status != "ok" and not per:
            print(f"{w:<20}  {NAMES[t]:<10}  {status}")
            continue
        total = sum(per.values())
        other = total - sum(per.get(k, 0) for k in shown)
        line = (f"{w:<20}  {NAMES[t]:<10}  {tps:>6}  {total:>6.2f}  " + "  ".join(f"{per.get(k, 0):>{width[k]}.2f}" for k in shown)
                + f"  {other:>6.2f}")
        print(line + ("" if status == "ok" else f"  ({status})"))

# ---------------------------------------------------------------- perf
def perf_lines(path):
    """(event count, [(percent, name)]) from perf report --stdio -g none; for cpu-clock the
    event count is the sampled CPU time in ns."""
    events, rows = None, []
    try:
        text = open(path).read()
    except OSError:
        return events, rows
    for line in text.splitlines():
        m = re.match(r"^# Event count \(approx\.\): (\d+)", line)
        if m:
            events = int(m.group(1))
        m = re.match(r"^\s+(\d+\.\d+)%\s+(.*\S)", line)
        if m:
            # A recording with call graphs adds empty columns, shown as "-".
            rows.append((float(m.group(1)), re.sub(r"(\s+-)+$", "", m.group(2))))
    return events, rows


def perf_samples(path):
    """The sample count perf record reports when it ends."""
    try:
        m = re.search(r"\((\d+) samples\)", open(path).read())
    except OSError:
        return None
    return int(m.group(1)) if m else None


def dso_name(name):
    if name.startswith("[kernel"):
        return "kernel"
    if name.startswith("libc.so") or name.startswith("libc-"):
        return "libc"
    if name.startswith("pgate"):
        return "pgate"
    return name


prows = [line.rstrip("\n").split("\t") for line in open(perfs)]
if prows:
    print()
    print("perf: pgate's CPU by object and by symbol (self time), perf record -e cpu-clock -F 999 -g -p PID")
    print(f"during a run of {perf_secs} s of its own; [k] kernel, [.] user space")
    for w, tx, status, base in prows:
        events, dsos = perf_lines(base + ".dso")
        _e, syms = perf_lines(base + ".symbols")
        samples, tx = perf_samples(base + ".record"), int(tx)
        cpu = f"{events / 1e9:.2f} s of pgate CPU" if events else "no CPU"
        per = f", {events / 1e3 / tx:.1f} us per transaction while sampled" if events and tx else ""
        print()
        print(f"{w}: {num(samples, 'd')} samples = {cpu}, {tx} transactions{per}"
              + ("" if status == "ok" else f"  ({status})"))
        if dsos:
            split = {}
            for pct, name in dsos:
                key = dso_name(name)
                split[key] = split.get(key, 0) + pct
            print("  by object: " + ", ".join(f"{k} {v:.1f}%" for k, v in sorted(split.items(), key=lambda kv: -kv[1])
                                             if v >= 0.1))
        for pct, name in syms[:top]:
            print(f"  {pct:6.2f}%  {name[:110]}")

print_problems(problems)
