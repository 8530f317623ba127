#!/usr/bin/env bash
# pgate vs PgBouncer vs direct PostgreSQL, measured with pgbench. See tests/bench/README.md.
#
#   tests/bench/pgbench.sh                          # default: DURATION=10 ROUNDS=2 (~15 minutes)
#   DURATION=2 ROUNDS=1 tests/bench/pgbench.sh      # smoke run
#   WORKLOADS=select-prepared-128 MODES=transaction IDLE_CLIENTS=0 tests/bench/pgbench.sh
#
# Environment:
#   DURATION      seconds per pgbench run (default 10)
#   ROUNDS        runs per workload and target; the table shows medians (default 2)
#   WORKLOADS     workloads or groups to run, separated by commas or spaces (default: default);
#                 `WORKLOADS=list` prints them
#   MODES         pool modes to run the proxies in (default "transaction session")
#   WARMUP        seconds of warm-up pgbench per target before measuring (default 2; 0: none)
#   IDLE_CLIENTS  idle clients per batch for the memory figure: a fresh proxy holds one batch,
#                 then two; the growth between is the marginal cost (default 1000; 0: skip)
#   SERVER_LOGINS concurrent session clients against a fresh pool, for the CPU per server
#                 login (default 50; 0: skip that test)
#   PGATE_BASELINE_BIN  a second pgate binary (e.g. an older commit) measured beside PGATE_BIN
#                 in the server-login test and the metrics-* rows
#   JOBS          pgbench threads, -j (default 2)
#   PGATE_BIN     use this pgate binary instead of running `cargo build --release`
#   PG_BIN        directory with initdb, pg_ctl, postgres, psql, pgbench
#   PGBOUNCER     PgBouncer binary (default /usr/sbin/pgbouncer)
#   KEEP_LOGS     copy every pgbench output and the proxy logs to this directory at the end
#   PGBOUNCER_USERLIST  scram (default): PgBouncer's userlist holds the role's SCRAM secret;
#                 plain: the plain password (PgBouncer then runs PBKDF2 on every login)
#
# One throwaway PostgreSQL cluster; up to four proxies in front of it, all with pool size 20:
# pgate and PgBouncer, each once in transaction and once in session pool mode. For every
# workload, the targets take turns (direct, pgate, PgBouncer, ...) for ROUNDS rounds, so
# that machine drift hits all of them alike.
set -euo pipefail

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-2}
WARMUP=${WARMUP:-2}
IDLE_CLIENTS=${IDLE_CLIENTS:-1000}
SERVER_LOGINS=${SERVER_LOGINS:-50}
PGATE_BASELINE_BIN=${PGATE_BASELINE_BIN:-}
WORKLOADS=${WORKLOADS:-default}
read -r -a MODES <<<"${MODES:-transaction session}"
POOL_SIZE=20
SCALE=10
# Direct PostgreSQL takes up to 500 pgbench clients at once, and every proxy keeps up to
# POOL_SIZE server connections open besides.
MAX_CONNECTIONS=700

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# ---------------------------------------------------------------- workloads
# Every workload is select-only (-S) unless named otherwise; the number is the client count.
# They run in this order whatever the order in WORKLOADS.
ALL_WORKLOADS=(select-simple-16 select-simple-128 select-extended-16 select-extended-128
    select-prepared-16 select-prepared-128 churn-16
    select-simple-500 select-extended-500 select-prepared-500 tls-select-simple-128 tls-churn-16
    rules-select-simple-128 rules-select-extended-128
    metrics-select-simple-128 metrics-select-extended-128 metrics-select-prepared-128)
# Groups for WORKLOADS (besides the names above); a workload is in a group when it matches.
workload_in_group() { # workload group
    local w=$1
    case $2 in
    all) return 0 ;;
    default) [[ $w != select-prepared-500 && $w != metrics-* ]] ;; # ~20 minutes with DURATION=10 ROUNDS=2
    earlier) [[ $w == select-simple-16 || $w == select-simple-128 || $w == select-extended-16 ||
        $w == select-extended-128 || $w == churn-16 ]] ;;
    targets) [[ $w == select-simple-16 || $w == select-simple-128 || $w == select-extended-16 ||
        $w == select-extended-128 || $w == churn-16 || $w == tls-churn-16 ]] ;;
    tls) [[ $w == tls-* ]] ;;
    rules) [[ $w == rules-* ]] ;;
    metrics) [[ $w == metrics-* ]] ;;
    simple | extended | prepared) [[ $w == select-$2-* ]] ;;
    churn) [[ $w == *churn-* ]] ;;
    16 | 128 | 500) [[ $w == *-$2 ]] ;;
    *) return 1 ;;
    esac
}
WORKLOAD_GROUPS=(default all earlier targets simple extended prepared churn tls rules metrics 16 128 500)
if [[ $WORKLOADS == list ]]; then
    for g in "${WORKLOAD_GROUPS[@]}"; do
        printf '%-9s' "$g"
        for w in "${ALL_WORKLOADS[@]}"; do workload_in_group "$w" "$g" && printf ' %s' "$w"; done
        printf '\n'
    done
    for w in "${ALL_WORKLOADS[@]}"; do printf '%-20s pgbench -n %s\n' "$w" "$(workload_args "$w")"; done
    exit 0
fi
read -r -a wanted <<<"${WORKLOADS//,/ }"
SELECTED=()
for word in "${wanted[@]}"; do
    known=0
    for g in "${WORKLOAD_GROUPS[@]}" "${ALL_WORKLOADS[@]}"; do [[ $word == "$g" ]] && known=1; done
    ((known)) || die "unknown workload or group '$word' (WORKLOADS=list shows them)"
done
for w in "${ALL_WORKLOADS[@]}"; do
    for word in "${wanted[@]}"; do
        if [[ $w == "$word" ]] || workload_in_group "$w" "$word"; then
            SELECTED+=("$w")
            break
        fi
    done
done
((${#SELECTED[@]})) || die "WORKLOADS selects no workload"
for m in "${MODES[@]}"; do
    [[ $m == transaction || $m == session ]] || die "MODES may hold transaction and session, not '$m'"
done
# The rules rows compare pgate in transaction mode with and without a workspace with
# relation rules and the audit file sink.
RULES=0
for w in "${SELECTED[@]}"; do [[ $w == rules-* ]] && RULES=1; done
if ((RULES)) && [[ " ${MODES[*]} " != *" transaction "* ]]; then
    die "the rules-* workloads need transaction in MODES"
fi
# The metrics rows compare pgate in transaction mode with its metrics endpoint off and on,
# scraped every second during each run (and PGATE_BASELINE_BIN, when given).
METRICS=0
for w in "${SELECTED[@]}"; do [[ $w == metrics-* ]] && METRICS=1; done
if ((METRICS)) && [[ " ${MODES[*]} " != *" transaction "* ]]; then
    die "the metrics-* workloads need transaction in MODES"
fi

bench_setup

# ---------------------------------------------------------------- proxies
METRICS_PORT=$(free_port)
for m in "${MODES[@]}"; do
    start_proxy "pgate-$m"
    start_proxy "pgbouncer-$m"
done
((RULES)) && start_proxy pgate-rules transaction
if ((METRICS)); then
    start_proxy pgate-metrics transaction
    [[ -n $PGATE_BASELINE_BIN ]] && start_proxy baseline-metrics transaction "$POOL_SIZE" "$PGATE_BASELINE_BIN"
fi
for name in "${!PROXY_PID[@]}"; do
    say "  $name: 127.0.0.1:${PORT[$name]}, pid ${PROXY_PID[$name]}"
done

# ---------------------------------------------------------------- runs
TARGETS=(direct)
for m in "${MODES[@]}"; do TARGETS+=("pgate-$m" "pgbouncer-$m"); done
# The targets a workload runs against.
targets_for() { # workload
    if [[ $1 == rules-* ]]; then
        echo "pgate-transaction pgate-rules"
    elif [[ $1 == metrics-* ]]; then
        echo "pgate-transaction pgate-metrics${PGATE_BASELINE_BIN:+ baseline-metrics}"
    else
        echo "${TARGETS[*]}"
    fi
}

SCRAPES=$WORK/scrapes.tsv
: >"$SCRAPES"

runs=0 secs=$((${#TARGETS[@]} * WARMUP))
for workload in "${SELECTED[@]}"; do
    for target in $(targets_for "$workload"); do
        if [[ -z $(skip_reason "$target" "$workload") ]]; then
            n=$(rounds_for "$target" "$workload")
            runs=$((runs + n))
            secs=$((secs + n * $(run_seconds "$workload")))
        fi
    done
done
say ""
say "workloads: ${SELECTED[*]}"
say "warm-up ($WARMUP s per target), then $runs runs of $DURATION s (about $(((secs + 59) / 60)) minutes)"
if ((WARMUP > 0)); then
    for target in "${TARGETS[@]}"; do
        run_pgbench "$target" select-simple-128 "$WARMUP" 0
    done
fi
for workload in "${SELECTED[@]}"; do
    for target in $(targets_for "$workload"); do
        reason=$(skip_reason "$target" "$workload")
        if [[ -n $reason ]]; then
            say "$(printf '  %-20s %-22s not run: %s' "$workload" "$target" "$reason")"
            printf '%s\t%s\t0\t0\t0\t-1\t-1\tskipped\t0\t0\t%s\n' "$workload" "$target" "$reason" >>"$RESULTS"
        fi
    done
    for round in $(seq "$ROUNDS"); do
        for target in $(targets_for "$workload"); do
            [[ -n $(skip_reason "$target" "$workload") ]] && continue
            ((round > $(rounds_for "$target" "$workload"))) && continue
            run_pgbench "$target" "$workload" "$(run_seconds "$workload")" "$round"
        done
    done
done

# ---------------------------------------------------------------- server logins
# SERVER_LOGINS clients connect at once to a proxy that has just started, in session
# pooling with room for all of them: every client login is also a server login (SCRAM to
# PostgreSQL). A fresh process per round, so no earlier login has warmed anything; its
# readiness is checked by its listening socket alone, which opens no server. CPU is the sum
# of the process's threads' run time (/proc/PID/task/*/schedstat, nanoseconds: the clock
# ticks of /proc/PID/stat are too coarse for a few milliseconds).
LOGINS=$WORK/logins.tsv
: >"$LOGINS"
run_ns() { # pid -> run time of all its threads, ns
    cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { print s + 0 }'
}
bench_servers() {
    "$PSQL" -X -qAt -h "$WORK" -p "$PG_PORT" -U postgres -d postgres \
        -c "SELECT count(*) FROM pg_stat_activity WHERE usename = 'bench'"
}
LOGIN_TARGETS=()
if ((SERVER_LOGINS > 0)); then
    LOGIN_TARGETS=(pgate-logins pgbouncer-logins)
    [[ -n $PGATE_BASELINE_BIN ]] && LOGIN_TARGETS+=(baseline-logins)
    say ""
    say "server logins: $SERVER_LOGINS concurrent session clients, fresh process, $ROUNDS round(s)"
fi
for round in $(seq "$ROUNDS"); do
    for name in "${LOGIN_TARGETS[@]}"; do
        PORT[$name]=$(free_port)
        bin=$PGATE_BIN
        [[ $name == baseline-* ]] && bin=$PGATE_BASELINE_BIN
        start_proxy "$name" session $((SERVER_LOGINS + 10)) "$bin" listen
        pid=${PROXY_PID[$name]}
        sleep 0.5
        open_before=$(bench_servers)
        before=$(run_ns "$pid")
        out=$WORK/logs/logins-$name-$round.txt
        rc=0
        "$PGBENCH" -n -S -c "$SERVER_LOGINS" -j "$JOBS" -t 1 -h 127.0.0.1 -p "${PORT[$name]}" -U bench bench \
            >"$out" 2>&1 || rc=$?
        after=$(run_ns "$pid")
        tx=$(awk -F': ' '/^number of transactions actually processed/ { split($2, a, "/"); print a[1]; exit }' "$out")
        # Servers this proxy opened (it closes none meanwhile): PgBouncer opens them a few at
        # a time and lets clients that came later reuse them, pgate opens them as asked.
        servers=$(($(bench_servers) - open_before))
        if ((rc != 0)) || [[ ${tx:-0} != "$SERVER_LOGINS" ]]; then
            {
                echo "[$name, server logins, round $round] exit $rc, ${tx:-0} of $SERVER_LOGINS transactions"
                error_lines "$out" | sed -n 's/^/    /; 1,5p' || true
            } >>"$PROBLEMS"
        fi
        say "$(printf '  %-18s round %s: %s ms CPU for %s clients, %s server logins' "$name" "$round" \
            "$(awk -v n=$((after - before)) 'BEGIN { printf "%.1f", n / 1e6 }')" "${tx:-0}" "$servers")"
        printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$round" "$((after - before))" "${tx:-0}" "$servers" >>"$LOGINS"
        stop_proxy "$name"
        # PostgreSQL ends the backends of the closed servers a moment later.
        for _ in $(seq 50); do
            (($(bench_servers) <= open_before)) && break
            sleep 0.1
        done
    done
done

# ---------------------------------------------------------------- idle clients
# The memory an idle client costs, on a proxy process started for this test alone
# (transaction mode): IDLE_CLIENTS clients log in (SCRAM) and stay idle (a pgbench script
# that only sleeps sends no query), the RSS is read, IDLE_CLIENTS more join, the RSS is read
# again; the marginal cost per client is the growth between the two, so start-up
# allocations and the first client's one-time costs are left out. Twice per proxy: on an
# untouched process, and on a fresh one that first ran select-simple-128 (buffers and
# allocator arenas of a busy process). Two pgbench processes of IDLE_CLIENTS each keep every
# process below its fd limit.
IDLE=$WORK/idle.tsv
: >"$IDLE"
printf '\\sleep 1 s\n' >"$WORK/idle.sql"
established() { ss -Htn state established "( sport = :$1 )" | wc -l; }
IDLE_LOAD=select-simple-128
# Starts IDLE_CLIENTS idle clients against a proxy and waits until `want` are connected in
# all; HELD = how many are.
hold_idle() { # name batch want
    local name=$1 n=0
    (ulimit -n 8192 && exec "$PGBENCH" -n -f "$WORK/idle.sql" -c "$IDLE_CLIENTS" -j "$JOBS" -T 600 \
        -h 127.0.0.1 -p "${PORT[$name]}" -U bench bench) >"$WORK/logs/idle-$name-$2.txt" 2>&1 &
    local bench=$!
    BG_PIDS+=("$bench")
    IDLE_BENCH+=("$bench")
    for _ in $(seq 900); do
        n=$(established "${PORT[$name]}")
        ((n >= $3)) && break
        kill -0 "$bench" 2>/dev/null || break
        sleep 0.2
    done
    sleep 3
    HELD=$(established "${PORT[$name]}")
}
IDLE_PROXIES=()
if ((IDLE_CLIENTS > 0)) && [[ " ${MODES[*]} " == *" transaction "* ]]; then
    IDLE_PROXIES=(pgate pgbouncer)
    say ""
    say "idle clients: $IDLE_CLIENTS, then $((2 * IDLE_CLIENTS)), per fresh proxy process, transaction mode"
fi
for proxy in "${IDLE_PROXIES[@]}"; do
    for state in fresh loaded; do
        name=$proxy-idle
        PORT[$name]=$(free_port)
        start_proxy "$name" transaction "$POOL_SIZE" "$PGATE_BIN" listen
        pid=${PROXY_PID[$name]}
        if [[ $state == loaded ]]; then
            out=$WORK/logs/idle-$name-$state-load.txt
            pgbench_once "$name" "$IDLE_LOAD" "$DURATION" "$out" || true
            say "  $name: $IDLE_LOAD for $DURATION s first: $(pgbench_tx "$out") transactions"
        fi
        sleep 2
        base=$(rss_kib "$pid")
        IDLE_BENCH=()
        hold_idle "$name" "$state-1" "$IDLE_CLIENTS"
        n1=$HELD
        rss1=$(rss_kib "$pid")
        hold_idle "$name" "$state-2" $((2 * IDLE_CLIENTS))
        n2=$HELD
        rss2=$(rss_kib "$pid")
        for p in "${IDLE_BENCH[@]}"; do
            kill -TERM "$p" 2>/dev/null || true
            wait "$p" 2>/dev/null || true
            forget_bg "$p"
        done
        if ((n1 < IDLE_CLIENTS || n2 < 2 * IDLE_CLIENTS)); then
            {
                echo "[$name, $state, idle clients] $n1 of $IDLE_CLIENTS, then $n2 of $((2 * IDLE_CLIENTS)) clients were connected"
                echo "  PGPASSWORD=bench PGSSLMODE=disable pgbench -n -f idle.sql -c $IDLE_CLIENTS -j $JOBS -T 600 -h 127.0.0.1 -p ${PORT[$name]} -U bench bench   # idle.sql: \\sleep 1 s; twice"
                cat "$WORK/logs/idle-$name-$state"-[12].txt | grep -v '^pgbench (' | sort | uniq -c | sort -rn |
                    sed -n 's/^/    /; 1,5p' || true
            } >>"$PROBLEMS"
        fi
        say "  $name, $state: RSS $base KiB, $n1 clients $rss1 KiB, $n2 clients $rss2 KiB"
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$proxy" "$state" "$n1" "$n2" "$base" "$rss1" "$rss2" >>"$IDLE"
        check_alive "$name" "$IDLE_CLIENTS idle clients"
        stop_proxy "$name"
    done
done

# ---------------------------------------------------------------- report
for c in "${CRASHES[@]}"; do echo "$c" >>"$PROBLEMS"; done
python3 "$(dirname "${BASH_SOURCE[0]}")/pgbench_report.py" "$RESULTS" "$IDLE" "$PROBLEMS" "$CLK_TCK" "$DURATION" "$ROUNDS" "$POOL_SIZE" "$JOBS" "$LOGINS" "$SCRAPES"
