#!/usr/bin/env bash
# Where pgate's CPU goes, beside PgBouncer's and the floor's (a bare tokio byte relay), in one
# run: user and system CPU per transaction, syscalls per transaction (strace -c) and pgate's top
# symbols (perf). See tests/bench/README.md.
#
#   tests/bench/profile.sh                               # DURATION=10 ROUNDS=3 (~20 minutes)
#   DURATION=5 ROUNDS=2 tests/bench/profile.sh           # ~7 minutes
#   FLOOR=0 tests/bench/profile.sh                       # without the floor: ~8 minutes
#   WORKLOADS=select-simple-128 PERF=0 tests/bench/profile.sh
#
# Environment:
#   DURATION        seconds per measured pgbench run (default 10)
#   ROUNDS          measured runs per workload and proxy, alternating (default 3)
#   WORKLOADS       some of select-{simple,extended,prepared}-{16,128}, separated by commas or
#                   spaces (default: all six)
#   WARMUP          seconds of warm-up pgbench per proxy (default 2; 0: none)
#   STRACE          1: count syscalls in a run of their own under strace -c (default); 0: skip
#   STRACE_SECONDS  length of that run (default 3; strace slows the proxy several times)
#   PERF            1: perf record pgate during a run of its own (default); 0: skip
#   PERF_SECONDS    length of that run (default DURATION)
#   TOP             symbols shown per workload (default 15)
#   FLOOR           1: measure the floor too, floor-mt and floor-ct (default); 0: skip
#   FLOOR_BIN       a relay_floor binary (default: cargo build --release --example relay_floor)
#   JOBS, PGATE_BIN, PG_BIN, PGBOUNCER, KEEP_LOGS, PGBOUNCER_USERLIST: as in pgbench.sh
#
# One throwaway cluster; pgate and PgBouncer 1.18 in transaction mode, pool size 20, and the
# floor: examples/relay_floor.rs with 2 tokio workers (floor-mt) and on tokio's current-thread
# runtime (floor-ct), which copies bytes between each client and a PostgreSQL connection of its
# own (no pool: 128 clients are 128 backends). For every workload: ROUNDS measured runs (CPU
# from /proc/PID/stat), then the strace runs, then the perf run (pgate only), so that neither
# tracer disturbs the measured figures. Report on stdout, progress on stderr.
set -euo pipefail

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-2}
STRACE=${STRACE:-1}
STRACE_SECONDS=${STRACE_SECONDS:-3}
PERF=${PERF:-1}
PERF_SECONDS=${PERF_SECONDS:-$DURATION}
TOP=${TOP:-15}
FLOOR=${FLOOR:-1}
FLOOR_BIN=${FLOOR_BIN:-}
POOL_SIZE=20
SCALE=10
# The floor opens a server per client: 128 backends beside the two pools' 40, and those of
# its previous run may still be exiting.
MAX_CONNECTIONS=300
PROFILE_WORKLOADS=(select-simple-16 select-simple-128 select-extended-16 select-extended-128
    select-prepared-16 select-prepared-128)
WORKLOADS=${WORKLOADS:-${PROFILE_WORKLOADS[*]}}

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

read -r -a wanted <<<"${WORKLOADS//,/ }"
for word in "${wanted[@]}"; do
    [[ " ${PROFILE_WORKLOADS[*]} " == *" $word "* ]] ||
        die "unknown workload '$word' (profile.sh runs: ${PROFILE_WORKLOADS[*]})"
done
SELECTED=()
for w in "${PROFILE_WORKLOADS[@]}"; do
    [[ " ${wanted[*]} " == *" $w "* ]] && SELECTED+=("$w")
done
((${#SELECTED[@]})) || die "WORKLOADS selects no workload"
[[ $FLOOR == [01] ]] || die "FLOOR must be 0 or 1"
if ((STRACE)); then command -v strace >/dev/null || die "strace not found (apt-get install strace; or STRACE=0)"; fi
if ((PERF)); then command -v perf >/dev/null || die "perf not found (apt-get install linux-perf; or PERF=0)"; fi

((FLOOR)) && find_floor
bench_setup
TARGETS=(pgate-transaction pgbouncer-transaction)
((FLOOR)) && TARGETS+=(floor-mt floor-ct)
# The floor's "mode" is its tokio worker count; 0 is the current-thread runtime.
declare -A FLOOR_THREADS=([floor-mt]=2 [floor-ct]=0)
for target in "${TARGETS[@]}"; do
    start_proxy "$target" "${FLOOR_THREADS[$target]:-}"
    say "  $target: 127.0.0.1:${PORT[$target]}, pid ${PROXY_PID[$target]}"
done
SYSCALLS=$WORK/syscalls.tsv
PERFS=$WORK/perf.tsv
: >"$SYSCALLS"
: >"$PERFS"

# Waits (up to 10 s) until strace has attached to every thread of the process.
all_traced() { # pid
    local pid=$1 status
    for _ in $(seq 100); do
        status=$(cat /proc/"$pid"/task/*/status 2>/dev/null | awk '/^TracerPid:/ && $2 == 0 { n++ } END { print n + 0 }')
        ((status == 0)) && return 0
        sleep 0.1
    done
    return 1
}

# One pgbench run under strace -c -f: the proxy's syscalls, counted per name, for the
# transactions pgbench reports. Its CPU and TPS are not used: tracing costs far more than
# the syscalls themselves.
strace_run() { # target workload
    local target=$1 workload=$2 pid tracer rc=0 status=ok
    local base=$WORK/logs/strace-$target-$workload
    check_alive "$target" "the pause before strace"
    pid=${PROXY_PID[$target]}
    strace -c -f -p "$pid" -o "$base.txt" 2>"$base.stderr" &
    tracer=$!
    BG_PIDS+=("$tracer")
    all_traced "$pid" || status="strace did not attach to every thread"
    pgbench_once "$target" "$workload" "$STRACE_SECONDS" "$base.pgbench" || rc=$?
    # SIGINT makes strace detach and write its summary.
    kill -INT "$tracer" 2>/dev/null || true
    wait "$tracer" 2>/dev/null || true
    forget_bg "$tracer"
    local tx tps
    tx=$(pgbench_tx "$base.pgbench")
    tps=$(awk '/^tps = / { printf "%.0f", $3; exit }' "$base.pgbench")
    if ((rc != 0)) || [[ $tx == 0 ]]; then
        status="pgbench: exit $rc, $tx transactions"
        {
            echo "[$target, $workload, under strace] exit $rc, $tx transactions"
            echo "  PGPASSWORD=bench $(pgbench_cmd "$target" "$workload" "$STRACE_SECONDS")"
            error_lines "$base.pgbench" | sed -n 's/^/    /; 1,5p' || true
        } >>"$PROBLEMS"
    fi
    say "$(printf '  %-20s %-22s strace  %6s tps %9s tx  %s' "$workload" "$target" "${tps:-0}" "$tx" "$status")"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$workload" "$target" "$tx" "${tps:-0}" "$status" "$base.txt" >>"$SYSCALLS"
    check_alive "$target" "strace"
}

# One pgbench run with pgate sampled by perf (cpu-clock: the VM has no hardware counters),
# then its self time by symbol and by object (kernel, pgate, libc).
perf_run() { # workload
    local workload=$1 target=pgate-transaction pid recorder rc=0 status=ok
    local base=$WORK/logs/perf-$workload
    check_alive "$target" "the pause before perf"
    pid=${PROXY_PID[$target]}
    perf record -e cpu-clock -F 999 -g -p "$pid" -o "$base.data" >"$base.record" 2>&1 &
    recorder=$!
    BG_PIDS+=("$recorder")
    sleep 1
    kill -0 "$recorder" 2>/dev/null || status="perf record ended early: $(tail -n 1 "$base.record")"
    pgbench_once "$target" "$workload" "$PERF_SECONDS" "$base.pgbench" || rc=$?
    kill -INT "$recorder" 2>/dev/null || true
    wait "$recorder" 2>/dev/null || true
    forget_bg "$recorder"
    local tx
    tx=$(pgbench_tx "$base.pgbench")
    ((rc != 0)) && status="pgbench: exit $rc, $tx transactions"
    if [[ -s $base.data ]]; then
        perf report -i "$base.data" --no-children --sort symbol --stdio -g none >"$base.symbols" 2>/dev/null ||
            status="perf report failed"
        perf report -i "$base.data" --no-children --sort dso --stdio -g none >"$base.dso" 2>/dev/null ||
            status="perf report failed"
    else
        [[ $status == ok ]] && status="no perf data: $(tail -n 1 "$base.record")"
    fi
    say "$(printf '  %-20s %-22s perf    %9s tx  %s' "$workload" "$target" "$tx" "$status")"
    printf '%s\t%s\t%s\t%s\n' "$workload" "$tx" "$status" "$base" >>"$PERFS"
    check_alive "$target" "perf"
}

runs=0
for workload in "${SELECTED[@]}"; do
    for target in "${TARGETS[@]}"; do runs=$((runs + $(rounds_for "$target" "$workload"))); done
done
secs=$((${#TARGETS[@]} * WARMUP + runs * DURATION))
((STRACE)) && secs=$((secs + ${#SELECTED[@]} * ${#TARGETS[@]} * (STRACE_SECONDS + 2)))
((PERF)) && secs=$((secs + ${#SELECTED[@]} * (PERF_SECONDS + 5)))
say ""
say "workloads: ${SELECTED[*]}"
say "targets: ${TARGETS[*]}"
say "$runs measured runs of $DURATION s, strace ${STRACE} (${STRACE_SECONDS} s), perf ${PERF} (${PERF_SECONDS} s): about $(((secs + 59) / 60)) minutes"
if ((WARMUP > 0)); then
    for target in "${TARGETS[@]}"; do run_pgbench "$target" select-simple-128 "$WARMUP" 0; done
fi
for workload in "${SELECTED[@]}"; do
    for round in $(seq "$ROUNDS"); do
        for target in "${TARGETS[@]}"; do
            ((round > $(rounds_for "$target" "$workload"))) && continue
            run_pgbench "$target" "$workload" "$DURATION" "$round"
        done
    done
    if ((STRACE)); then
        for target in "${TARGETS[@]}"; do
            if [[ $target == pgbouncer-* && $workload == select-prepared-* ]]; then
                printf '%s\t%s\t0\t0\t%s\t-\n' "$workload" "$target" "not run: fails in transaction mode" >>"$SYSCALLS"
                continue
            fi
            strace_run "$target" "$workload"
        done
    fi
    ((PERF)) && perf_run "$workload"
done

for c in "${CRASHES[@]}"; do echo "$c" >>"$PROBLEMS"; done
python3 "$(dirname "${BASH_SOURCE[0]}")/profile_report.py" "$RESULTS" "$SYSCALLS" "$PERFS" "$PROBLEMS" \
    "$CLK_TCK" "$DURATION" "$ROUNDS" "$POOL_SIZE" "$JOBS" "$STRACE_SECONDS" "$PERF_SECONDS" "$TOP"
