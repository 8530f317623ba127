# shellcheck shell=bash
# Shared setup of the benchmark scripts (pgbench.sh, profile.sh): tools, the throwaway cluster,
# the proxies, one pgbench run and its figures. Sourced, never run; see tests/bench/README.md.
#
# The sourcing script sets DURATION, ROUNDS, POOL_SIZE, SCALE and MAX_CONNECTIONS first, then
# calls bench_setup. The settings both scripts document the same way default here.

JOBS=${JOBS:-2}
PGBOUNCER=${PGBOUNCER:-/usr/sbin/pgbouncer}
KEEP_LOGS=${KEEP_LOGS:-}
PGBOUNCER_USERLIST=${PGBOUNCER_USERLIST:-scram}

BENCH_SCRIPT=$(basename "$0")
BENCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

say() { printf '%s\n' "$*" >&2; }
die() { say "$BENCH_SCRIPT: $*"; exit 1; }

# ---------------------------------------------------------------- workloads
# Every workload is select-only (-S) unless named otherwise; the number is the client count.
# tls-* workloads connect with sslmode=require: pgate, PgBouncer and PostgreSQL terminate
# TLS (one RSA 2048 certificate, made with openssl, for all three); the others use plaintext.
workload_args() {
    case $1 in
    rules-select-simple-*) echo "-S -M simple -c ${1##*-}" ;;
    metrics-select-simple-*) echo "-S -M simple -c ${1##*-}" ;;
    metrics-select-extended-*) echo "-S -M extended -c ${1##*-}" ;;
    metrics-select-prepared-*) echo "-S -M prepared -c ${1##*-}" ;;
    rules-select-extended-*) echo "-S -M extended -c ${1##*-}" ;;
    tls-select-simple-*) echo "-S -M simple -c ${1##*-}" ;;
    tls-churn-16) echo "-S -M simple -C -c 16" ;;
    select-simple-*) echo "-S -M simple -c ${1##*-}" ;;
    select-extended-*) echo "-S -M extended -c ${1##*-}" ;;
    select-prepared-*) echo "-S -M prepared -c ${1##*-}" ;;
    churn-16) echo "-S -M simple -C -c 16" ;;
    esac
}

# PgBouncer 1.18 has no prepared statements in transaction mode: -M prepared fails there every
# time, so that cell runs in the first round only (and its row still shows the failure).
rounds_for() { # target workload
    if [[ $1 == pgbouncer-transaction && $2 == select-prepared-* ]]; then echo 1; else echo "$ROUNDS"; fi
}

# pgbench's -T includes connecting, and 500 SCRAM logins straight into PostgreSQL take 2-5 s
# on two cores (its tps leaves that time out): such runs last at least 8 s.
run_seconds() { # workload
    local n=${1##*-}
    if ((n > 128 && DURATION < 8)); then echo 8; else echo "$DURATION"; fi
}

# Session pooling with more clients than servers: pgbench 15 sends the Parse of -M prepared
# synchronously (PQprepare), so a client that waits for a server freezes its pgbench thread,
# and with it the clients of that thread that hold the servers, until query_wait_timeout.
# Both proxies behave alike; such cells are not run.
skip_reason() { # target workload -> reason, empty when it runs
    local n=${2##*-}
    if [[ $1 == *-session && $2 == select-prepared-* ]] && ((n > POOL_SIZE)); then
        echo "session mode, -M prepared, $n clients > pool $POOL_SIZE: pgbench stalls until query_wait_timeout"
    fi
}

# ---------------------------------------------------------------- state
# Global, so that the functions below and the EXIT trap share them.
declare -ga BG_PIDS=() # other children still running (pgbench, strace, perf, scrapers)
PG_STARTED=0
WORK=
RUN_NO=0

# shellcheck source=proxies.sh
source "$(dirname "${BASH_SOURCE[0]}")/proxies.sh"

# ---------------------------------------------------------------- setup
find_tools() {
    if [[ -z ${PG_BIN:-} ]]; then
        # shellcheck disable=SC2012 # the directories are postgresql/<version>/bin
        PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
        if [[ -z $PG_BIN || ! -x $PG_BIN/initdb ]]; then
            PG_BIN=$(dirname "$(readlink -f "$(command -v initdb || echo /nonexistent)")")
        fi
    fi
    local b
    for b in initdb pg_ctl postgres; do
        [[ -x $PG_BIN/$b ]] || die "no $b in $PG_BIN (set PG_BIN)"
    done
    PSQL=$(tool psql) || die "psql not found"
    PGBENCH=$(tool pgbench) || die "pgbench not found"
    [[ -x $PGBOUNCER ]] || die "PgBouncer not found at $PGBOUNCER (apt-get install pgbouncer)"
    command -v python3 >/dev/null || die "python3 is needed for the report"
    CLK_TCK=$(getconf CLK_TCK)
    # initdb, postgres and PgBouncer refuse to run as root.
    if [[ $(id -u) == 0 ]]; then
        id postgres >/dev/null 2>&1 || die "running as root needs a 'postgres' system user"
        AS_PG=(runuser -u postgres --)
    else
        AS_PG=()
    fi
    if [[ -z ${PGATE_BIN:-} ]]; then
        say "building pgate (cargo build --release) ..."
        (cd "$BENCH_ROOT" && cargo build --release --quiet) || die "cargo build --release failed"
        PGATE_BIN=$BENCH_ROOT/target/release/pgate
    fi
    [[ -x $PGATE_BIN ]] || die "no pgate binary at $PGATE_BIN"
}
# The floor relay (examples/relay_floor.rs): $FLOOR_BIN, else built like pgate.
find_floor() {
    if [[ -z ${FLOOR_BIN:-} ]]; then
        say "building the floor relay (cargo build --release --example relay_floor) ..."
        (cd "$BENCH_ROOT" && cargo build --release --quiet --example relay_floor) ||
            die "cargo build --release --example relay_floor failed"
        FLOOR_BIN=$BENCH_ROOT/target/release/examples/relay_floor
    fi
    [[ -x $FLOOR_BIN ]] || die "no relay_floor binary at $FLOOR_BIN"
}
tool() { if [[ -x $PG_BIN/$1 ]]; then echo "$PG_BIN/$1"; else command -v "$1"; fi; }
as_pg() { "${AS_PG[@]}" "$@"; }

free_port() {
    python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'
}

make_workdir() {
    WORK=$(mktemp -d /tmp/pgate-bench.XXXXXX)
    chmod 755 "$WORK"
    mkdir -p "$WORK/logs"
    [[ $(id -u) == 0 ]] && chown -R postgres: "$WORK"
    RESULTS=$WORK/results.tsv
    PROBLEMS=$WORK/problems.txt
    : >"$RESULTS"
    : >"$PROBLEMS"
    trap cleanup EXIT
    trap 'exit 130' INT TERM
}

cleanup() {
    local rc=$?
    set +e
    local pid name
    for pid in "${BG_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "${BG_PIDS[@]}"; do wait "$pid" 2>/dev/null; done
    for name in "${!PROXY_PID[@]}"; do
        kill -TERM "${PROXY_PID[$name]}" 2>/dev/null
    done
    for name in "${!WAIT_PID[@]}"; do
        pid=${WAIT_PID[$name]}
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        [[ -n ${PROXY_PID[$name]:-} ]] && kill -KILL "${PROXY_PID[$name]}" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    if [[ $PG_STARTED == 1 ]]; then
        as_pg "$PG_BIN/pg_ctl" -D "$WORK/pg" -m immediate -w stop >/dev/null 2>&1
    fi
    if [[ -n $KEEP_LOGS && -n $WORK ]]; then
        mkdir -p "$KEEP_LOGS" && cp -r "$WORK"/logs/. "$KEEP_LOGS"/ &&
            say "logs copied to $KEEP_LOGS"
    fi
    [[ -n $WORK ]] && rm -rf "$WORK"
    exit "$rc"
}

# Forgets a background child once it has ended (so cleanup does not signal a reused pid).
forget_bg() { # pid
    local keep=() p
    for p in "${BG_PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
    BG_PIDS=("${keep[@]}")
}

start_postgres() {
    PG_PORT=$(free_port)
    PORT[direct]=$PG_PORT
    say "PostgreSQL: $PG_BIN, port $PG_PORT, data in $WORK/pg"
    as_pg "$PG_BIN/initdb" -D "$WORK/pg" -U postgres -E UTF8 --locale=C \
        --auth-local=trust --auth-host=scram-sha-256 >"$WORK/logs/initdb.log" 2>&1 ||
        { cat "$WORK/logs/initdb.log" >&2; die "initdb failed"; }
    # One certificate for every TLS endpoint, so the TLS rows compare like with like.
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 \
        -keyout "$WORK/tls.key" -out "$WORK/tls.crt" >"$WORK/logs/openssl.log" 2>&1 ||
        { cat "$WORK/logs/openssl.log" >&2; die "openssl could not make a certificate"; }
    chmod 600 "$WORK/tls.key"
    [[ $(id -u) == 0 ]] && chown postgres: "$WORK/tls.key" "$WORK/tls.crt"
    cat >>"$WORK/pg/postgresql.conf" <<EOF
ssl = on
ssl_cert_file = '$WORK/tls.crt'
ssl_key_file = '$WORK/tls.key'
port = $PG_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$WORK'
max_connections = $MAX_CONNECTIONS
fsync = off
synchronous_commit = off
full_page_writes = off
password_encryption = 'scram-sha-256'
EOF
    cat >"$WORK/pg/pg_hba.conf" <<EOF
local all all                trust
host  all all 127.0.0.1/32   scram-sha-256
EOF
    as_pg "$PG_BIN/pg_ctl" -D "$WORK/pg" -l "$WORK/logs/postgresql.log" -w start >/dev/null ||
        { tail -n 20 "$WORK/logs/postgresql.log" >&2; die "PostgreSQL did not start"; }
    PG_STARTED=1
    "$PSQL" -X -q -h "$WORK" -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 \
        -c "CREATE ROLE bench LOGIN PASSWORD 'bench'" -c "CREATE DATABASE bench OWNER bench" >/dev/null
    say "pgbench -i -s $SCALE ..."
    "$PGBENCH" -i -q -s "$SCALE" -h "$WORK" -p "$PG_PORT" -U bench bench >"$WORK/logs/pgbench-init.log" 2>&1 ||
        { cat "$WORK/logs/pgbench-init.log" >&2; die "pgbench -i failed"; }
    "$PSQL" -X -q -h "$WORK" -p "$PG_PORT" -U postgres -d bench -c "VACUUM ANALYZE" >/dev/null

    # PgBouncer's userlist: by default the role's SCRAM secret from pg_authid. With a plain
    # password there, PgBouncer derives a fresh SCRAM secret (PBKDF2, 4096 rounds) for every
    # client login, which pgate does once at start-up; with the pg_authid secret it does not,
    # and it still logs into PostgreSQL (SCRAM pass-through of the client's key).
    case $PGBOUNCER_USERLIST in
    scram)
        PGBOUNCER_USERLIST_SECRET=$("$PSQL" -X -qAt -h "$WORK" -p "$PG_PORT" -U postgres -d postgres \
            -c "SELECT rolpassword FROM pg_authid WHERE rolname = 'bench'")
        ;;
    plain) PGBOUNCER_USERLIST_SECRET=bench ;;
    *) die "PGBOUNCER_USERLIST must be scram or plain" ;;
    esac
}

# Tools, pgate, the work directory (removed on exit) and the cluster with pgbench's tables.
bench_setup() {
    find_tools
    make_workdir
    start_postgres
    # Client side, for every target: TCP to 127.0.0.1, SCRAM-SHA-256 with a password, no TLS.
    export PGPASSWORD=bench PGSSLMODE=disable PGCONNECT_TIMEOUT=30
}

# ---------------------------------------------------------------- pgbench runs
# Scrapes /metrics every second until killed, writing "<ok> <failed> <bytes>" to $2 after each.
start_scraper() { # url counts-file
    python3 - "$1" "$2" <<'PY' &
import signal, sys, time, urllib.request
url, out = sys.argv[1:]
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
ok = bad = size = 0
while True:
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            size = len(r.read())
            ok += 1
    except Exception:
        bad += 1
    with open(out, "w") as f:
        f.write(f"{ok} {bad} {size}\n")
    time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
PY
    SCRAPER_PID=$!
    BG_PIDS+=("$SCRAPER_PID")
}

# What pgbench's errors say, most frequent first: the server's message for aborted clients
# ("client 3 script 0 aborted in command 1 query 0: ERROR:  ..."), else its own error lines.
error_lines() { # pgbench output file
    {
        sed -n 's/^.*aborted in command [0-9]* query [0-9]*: //p' "$1"
        grep '^pgbench: error: ' "$1" | grep -v -e 'aborted in command' -e 'Run was aborted' |
            sed 's/^pgbench: error: //; s/client [0-9][0-9]*/client N/g' || true
    } | sed 's/[[:space:]]\+/ /g; s/ $//; /^$/d' | sort | uniq -c | sort -rn
}

# The pgbench command of a run, as a reader can paste it (PGPASSWORD=bench besides).
pgbench_cmd() { # target workload seconds
    local sslmode=disable
    [[ $2 == tls-* ]] && sslmode=require
    echo "PGSSLMODE=$sslmode pgbench -n $(workload_args "$2") -j $JOBS -T $3 -h 127.0.0.1 -p ${PORT[$1]} -U bench bench"
}

# One pgbench run into a file; its exit status is returned, never fatal.
pgbench_once() { # target workload seconds output
    local sslmode=disable args
    [[ $2 == tls-* ]] && sslmode=require
    args=$(workload_args "$2")
    # shellcheck disable=SC2086
    (ulimit -n 8192 && PGSSLMODE=$sslmode exec "$PGBENCH" -n $args -j "$JOBS" -T "$3" -h 127.0.0.1 -p "${PORT[$1]}" -U bench bench) \
        >"$4" 2>&1
}
pgbench_tx() { # pgbench output -> transactions processed (0 if none)
    local tx
    tx=$(awk -F': ' '/^number of transactions actually processed/ { split($2, a, "/"); print a[1]; exit }' "$1")
    echo "${tx:-0}"
}

# run_pgbench target workload seconds round -> one line in $RESULTS (round 0 = warm-up, not kept):
# workload target round tps tx user-ticks system-ticks status aborted clients message.
# A run with any error (exit status, aborted clients, failed or no transactions) is not used
# for the figures: with aborted clients, pgbench's tps is that of the survivors.
run_pgbench() {
    local target=$1 workload=$2 secs=$3 round=$4
    local pid args cmd out rc=0 before="-1 -1" after="-1 -1"
    args=$(workload_args "$workload")
    RUN_NO=$((RUN_NO + 1))
    out=$WORK/logs/run-$(printf %03d $RUN_NO)-$target-$workload.txt
    cmd=$(pgbench_cmd "$target" "$workload" "$secs")
    check_alive "$target" "the pause before: $cmd"
    pid=${PROXY_PID[$target]:-}
    local scraped=
    if [[ $target == pgate-metrics ]]; then
        scraped=$WORK/logs/scrapes-$(printf %03d $RUN_NO).txt
        echo "0 0 0" >"$scraped"
        start_scraper "http://127.0.0.1:$METRICS_PORT/metrics" "$scraped"
    fi
    [[ -n $pid ]] && before=$(cpu_ticks "$pid")
    pgbench_once "$target" "$workload" "$secs" "$out" || rc=$?
    [[ -n $pid ]] && after=$(cpu_ticks "$pid")
    if [[ -n $scraped ]]; then
        kill -TERM "$SCRAPER_PID" 2>/dev/null || true
        wait "$SCRAPER_PID" 2>/dev/null || true
        forget_bg "$SCRAPER_PID"
        ((round > 0)) && printf '%s\t%s\t%s\n' "$workload" "$round" "$(tr ' ' '\t' <"$scraped")" >>"$SCRAPES"
    fi
    local tps tx failed aborted clients message
    tps=$(awk '/^tps = / { print $3; exit }' "$out")
    tx=$(pgbench_tx "$out")
    failed=$(awk -F': ' '/^number of failed transactions/ { split($2, a, " "); print a[1]; exit }' "$out")
    aborted=$({ grep -o 'client [0-9]* script [0-9]* aborted' "$out" || true; } | sort -u | wc -l)
    clients=$(awk '{ for (i = 1; i < NF; i++) if ($i == "-c") print $(i + 1) }' <<<"$args")
    tps=${tps:-0} failed=${failed:-0}
    local user=$((${after% *} - ${before% *})) sys=$((${after#* } - ${before#* }))
    if ((${before% *} < 0 || ${after% *} < 0)); then user=-1 sys=-1; fi
    local status=ok
    message=
    if ((rc != 0 || failed > 0 || aborted > 0)) || [[ $tx == 0 ]]; then
        status=error
        message=$(error_lines "$out" | sed -n '1s/^ *[0-9]* //p' | tr -d '\t')
        [[ -n $message ]] || message="exit status $rc, $tx transactions"
        local expected=
        [[ $target == pgbouncer-transaction && $workload == select-prepared-* ]] &&
            expected="  (expected: PgBouncer 1.18 has no prepared statements in transaction mode)"
        {
            echo "[$target, $workload, round $round] exit $rc, $tx transactions, $failed failed, $aborted of $clients clients aborted$expected"
            echo "  PGPASSWORD=bench $cmd"
            error_lines "$out" | sed -n 's/^/    /; 1,8p' || true
        } >>"$PROBLEMS"
    fi
    check_alive "$target" "$cmd"
    local cpu_ms="-"
    if ((user >= 0 && tx > 0)); then
        cpu_ms=$(awk -v u="$user" -v s="$sys" -v h="$CLK_TCK" 'BEGIN { printf "%.0f+%.0f", u / h * 1000, s / h * 1000 }')
    fi
    say "$(printf '  %-20s %-22s %s  %10.0f tps %9d tx  cpu %9s ms  %s' \
        "$workload" "$target" "$( ((round)) && echo "round $round" || echo "warm-up")" "$tps" "$tx" "$cpu_ms" \
        "$status${message:+: $message}")"
    ((round > 0)) && printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$workload" "$target" "$round" "$tps" "$tx" "$user" "$sys" "$status" "$aborted" "$clients" "$message" >>"$RESULTS"
    return 0
}
