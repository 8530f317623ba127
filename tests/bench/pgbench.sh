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
#   IDLE_CLIENTS  idle clients held open for the memory figure (default 1000; 0: skip that test)
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
JOBS=${JOBS:-2}
PGBOUNCER=${PGBOUNCER:-/usr/sbin/pgbouncer}
KEEP_LOGS=${KEEP_LOGS:-}
PGBOUNCER_USERLIST=${PGBOUNCER_USERLIST:-scram}
WORKLOADS=${WORKLOADS:-default}
read -r -a MODES <<<"${MODES:-transaction session}"
POOL_SIZE=20
SCALE=10
# Direct PostgreSQL takes up to 500 pgbench clients at once, and every proxy keeps up to
# POOL_SIZE server connections open besides.
MAX_CONNECTIONS=700

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

say() { printf '%s\n' "$*" >&2; }
die() { say "pgbench.sh: $*"; exit 1; }

# ---------------------------------------------------------------- workloads
# Every workload is select-only (-S) unless named otherwise; the number is the client count.
# They run in this order whatever the order in WORKLOADS.
ALL_WORKLOADS=(select-simple-16 select-simple-128 select-extended-16 select-extended-128
    select-prepared-16 select-prepared-128 churn-16
    select-simple-500 select-extended-500 select-prepared-500 tls-select-simple-128 tls-churn-16
    rules-select-simple-128 rules-select-extended-128
    metrics-select-simple-128 metrics-select-extended-128 metrics-select-prepared-128)
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
# Groups for WORKLOADS (besides the names above); a workload is in a group when it matches.
workload_in_group() { # workload group
    local w=$1
    case $2 in
    all) return 0 ;;
    default) [[ $w != select-prepared-500 && $w != metrics-* ]] ;; # ~20 minutes with DURATION=10 ROUNDS=2
    earlier) [[ $w == select-simple-16 || $w == select-simple-128 || $w == select-extended-16 ||
        $w == select-extended-128 || $w == churn-16 ]] ;;
    targets) [[ $w == select-simple-128 || $w == select-extended-128 || $w == select-prepared-128 ||
        $w == churn-16 || $w == tls-churn-16 ]] ;;
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

# ---------------------------------------------------------------- tools
if [[ -z ${PG_BIN:-} ]]; then
    PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [[ -z $PG_BIN || ! -x $PG_BIN/initdb ]]; then
        PG_BIN=$(dirname "$(readlink -f "$(command -v initdb || echo /nonexistent)")")
    fi
fi
for b in initdb pg_ctl postgres; do
    [[ -x $PG_BIN/$b ]] || die "no $b in $PG_BIN (set PG_BIN)"
done
tool() { if [[ -x $PG_BIN/$1 ]]; then echo "$PG_BIN/$1"; else command -v "$1"; fi; }
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
as_pg() { "${AS_PG[@]}" "$@"; }

if [[ -z ${PGATE_BIN:-} ]]; then
    say "building pgate (cargo build --release) ..."
    (cd "$ROOT" && cargo build --release --quiet) || die "cargo build --release failed"
    PGATE_BIN=$ROOT/target/release/pgate
fi
[[ -x $PGATE_BIN ]] || die "no pgate binary at $PGATE_BIN"

free_port() {
    python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'
}

# ---------------------------------------------------------------- cleanup
WORK=$(mktemp -d /tmp/pgate-bench.XXXXXX)
chmod 755 "$WORK"
mkdir -p "$WORK/logs"
[[ $(id -u) == 0 ]] && chown -R postgres: "$WORK"
declare -A PROXY_PID=()   # name -> pid of the proxy process itself
declare -A WAIT_PID=()    # name -> pid of our child (runuser for PgBouncer)
PG_STARTED=0

cleanup() {
    local rc=$?
    set +e
    for name in "${!PROXY_PID[@]}"; do
        kill -TERM "${PROXY_PID[$name]}" 2>/dev/null
    done
    for name in "${!WAIT_PID[@]}"; do
        local pid=${WAIT_PID[$name]} i
        for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "${PROXY_PID[$name]}" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    if [[ $PG_STARTED == 1 ]]; then
        as_pg "$PG_BIN/pg_ctl" -D "$WORK/pg" -m immediate -w stop >/dev/null 2>&1
    fi
    if [[ -n $KEEP_LOGS ]]; then
        mkdir -p "$KEEP_LOGS" && cp -r "$WORK"/logs/. "$KEEP_LOGS"/ &&
            say "logs copied to $KEEP_LOGS"
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- PostgreSQL
PG_PORT=$(free_port)
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

# ---------------------------------------------------------------- proxies
# Client side, for every target: TCP to 127.0.0.1, SCRAM-SHA-256 with a password, no TLS.
export PGPASSWORD=bench PGSSLMODE=disable PGCONNECT_TIMEOUT=30

declare -A PORT=([direct]=$PG_PORT)
for m in "${MODES[@]}"; do
    PORT[pgate-$m]=$(free_port)
    PORT[pgbouncer-$m]=$(free_port)
done
PORT[pgate-rules]=$(free_port)
PORT[pgate-metrics]=$(free_port)
PORT[baseline-metrics]=$(free_port)
METRICS_PORT=$(free_port)

# A pgate binary that knows [metrics] (an older baseline may not: its configuration then
# has none, and it serves no endpoint).
knows_metrics() { # binary
    printf '[metrics]\nenabled = false\n[backends.b]\nhost = "127.0.0.1"\ndatabases = ["*"]\n' >"$WORK/knows.toml"
    "$1" check --config "$WORK/knows.toml" >/dev/null 2>&1
}
# The [metrics] table of a pgate configuration: served (and scraped) for pgate-metrics,
# off for the others, absent for a binary that predates it.
metrics_table() { # name binary
    if [[ $1 == pgate-metrics ]]; then
        printf '[metrics]\naddress = "127.0.0.1:%s"\n' "$METRICS_PORT"
    elif knows_metrics "$2"; then
        printf '[metrics]\nenabled = false\n'
    fi
}

proxy_log() { echo "$WORK/logs/$1.log"; }

write_pgate_config() { # name mode [pool size] [binary]
    cat >"$WORK/$1.toml" <<EOF
[listen]
address = "127.0.0.1:${PORT[$1]}"
max_client_connections = 5000

$(metrics_table "$1" "${4:-$PGATE_BIN}")

[tls]
mode = "allow"
cert = "$WORK/tls.crt"
key = "$WORK/tls.key"

[pool]
mode = "$2"
size = ${3:-$POOL_SIZE}

[backends.main]
host = "127.0.0.1"
port = $PG_PORT
databases = ["*"]
tls = { mode = "disable" }

[[users]]
name = "bench"
password = "bench"
EOF
}

# pgate with a workspace whose relation rules pgbench's statements pass, and the audit log
# in a file: every statement classified, checked and recorded.
write_pgate_rules_config() { # name
    write_pgate_config "$1" transaction
    cat >>"$WORK/$1.toml" <<EOF

[[workspaces]]
name = "bench"
users = ["bench"]
databases = ["bench"]
allow = ["READ", "WRITE", "MISC", "MISC_SET"]
relations = { allow = ["public.pgbench_*"], deny = ["public.secrets"] }
session = { search_path = "public" }

[audit]
sink = "$WORK/audit-$1.log"
format = "pgaudit"
EOF
}

write_pgbouncer_config() { # name mode [pool size]
    printf '"bench" "%s"\n' "$PGBOUNCER_USERLIST_SECRET" >"$WORK/$1.users"
    cat >"$WORK/$1.ini" <<EOF
[databases]
* = host=127.0.0.1 port=$PG_PORT

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = ${PORT[$1]}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $WORK/$1.users
pool_mode = $2
default_pool_size = ${3:-$POOL_SIZE}
max_client_conn = 5000
ignore_startup_parameters = extra_float_digits
client_tls_sslmode = allow
client_tls_cert_file = $WORK/tls.crt
client_tls_key_file = $WORK/tls.key
server_tls_sslmode = disable
logfile = $(proxy_log "$1")
pidfile = $WORK/$1.pid
log_connections = 0
log_disconnections = 0
EOF
    [[ $(id -u) == 0 ]] && chown postgres: "$WORK/$1.users" "$WORK/$1.ini"
    return 0
}

psql_via() { # target sql
    "$PSQL" -X -qAt -h 127.0.0.1 -p "${PORT[$1]}" -U bench -d bench -c "$2"
}

wait_ready() { # name
    local name=$1 i
    for i in $(seq 300); do
        if ! kill -0 "${WAIT_PID[$name]}" 2>/dev/null; then
            tail -n 20 "$(proxy_log "$name")" >&2
            die "$name exited during start-up"
        fi
        if [[ -z ${PROXY_PID[$name]:-} && -s $WORK/$name.pid ]]; then
            PROXY_PID[$name]=$(cat "$WORK/$name.pid")
        fi
        if [[ -n ${PROXY_PID[$name]:-} ]] && psql_via "$name" "SELECT 1" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    tail -n 20 "$(proxy_log "$name")" >&2
    die "$name did not accept a query within 30 s"
}

start_proxy() { # name
    local name=$1 mode=${1#*-}
    case $name in
    pgate-rules)
        write_pgate_rules_config "$name"
        (ulimit -n 8192 && PGATE_LOG=warn exec "$PGATE_BIN" run --config "$WORK/$name.toml") \
            >>"$(proxy_log "$name")" 2>&1 &
        WAIT_PID[$name]=$!
        PROXY_PID[$name]=$!
        ;;
    pgate-metrics | baseline-metrics)
        local bin=$PGATE_BIN
        [[ $name == baseline-* ]] && bin=$PGATE_BASELINE_BIN
        write_pgate_config "$name" transaction "$POOL_SIZE" "$bin"
        (ulimit -n 8192 && PGATE_LOG=warn exec "$bin" run --config "$WORK/$name.toml") \
            >>"$(proxy_log "$name")" 2>&1 &
        WAIT_PID[$name]=$!
        PROXY_PID[$name]=$!
        ;;
    pgate-*)
        write_pgate_config "$name" "$mode"
        (ulimit -n 8192 && PGATE_LOG=warn exec "$PGATE_BIN" run --config "$WORK/$name.toml") \
            >>"$(proxy_log "$name")" 2>&1 &
        WAIT_PID[$name]=$!
        PROXY_PID[$name]=$!
        ;;
    pgbouncer-*)
        write_pgbouncer_config "$name" "$mode"
        rm -f "$WORK/$name.pid"
        unset "PROXY_PID[$name]"
        # The fd limit is raised after runuser: its PAM session resets the soft limit.
        "${AS_PG[@]}" sh -c 'ulimit -n 8192 && exec "$0" "$1"' "$PGBOUNCER" "$WORK/$name.ini" \
            >>"$WORK/logs/$name.stdout" 2>&1 &
        WAIT_PID[$name]=$!
        ;;
    esac
    wait_ready "$name"
}

# A proxy that died is reported and started again, so that the other figures still come.
CRASHES=()
check_alive() { # name
    local name=$1
    [[ $name == direct ]] && return 0
    if ! kill -0 "${PROXY_PID[$name]}" 2>/dev/null; then
        wait "${WAIT_PID[$name]}" 2>/dev/null || true
        say "!! $name (pid ${PROXY_PID[$name]}) is gone; last lines of its log:"
        tail -n 20 "$(proxy_log "$name")" | sed 's/^/   /' >&2
        CRASHES+=("$name died during: $2")
        start_proxy "$name"
    fi
}

cpu_ticks() { # pid -> utime+stime (fields 14 and 15) in clock ticks, all threads; -1 if gone
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo -1; return; }
    sed 's/^.*) //' <<<"$stat" | awk '{ print $12 + $13 }'
}
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

for m in "${MODES[@]}"; do
    start_proxy "pgate-$m"
    start_proxy "pgbouncer-$m"
done
((RULES)) && start_proxy pgate-rules
if ((METRICS)); then
    start_proxy pgate-metrics
    [[ -n $PGATE_BASELINE_BIN ]] && start_proxy baseline-metrics
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

RESULTS=$WORK/results.tsv
PROBLEMS=$WORK/problems.txt
SCRAPES=$WORK/scrapes.tsv
: >"$RESULTS"
: >"$PROBLEMS"
: >"$SCRAPES"
RUN_NO=0

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

# run_pgbench target workload seconds round -> one line in $RESULTS (round 0 = warm-up, not kept)
# A run with any error (exit status, aborted clients, failed or no transactions) is not used
# for the figures: with aborted clients, pgbench's tps is that of the survivors.
run_pgbench() {
    local target=$1 workload=$2 secs=$3 round=$4
    local port=${PORT[$target]} pid args cmd out rc=0 before=-1 after=-1
    args=$(workload_args "$workload")
    RUN_NO=$((RUN_NO + 1))
    out=$WORK/logs/run-$(printf %03d $RUN_NO)-$target-$workload.txt
    local sslmode=disable
    [[ $workload == tls-* ]] && sslmode=require
    cmd="PGSSLMODE=$sslmode pgbench -n $args -j $JOBS -T $secs -h 127.0.0.1 -p $port -U bench bench"
    check_alive "$target" "the pause before: $cmd"
    pid=${PROXY_PID[$target]:-}
    local scraped=
    if [[ $target == pgate-metrics ]]; then
        scraped=$WORK/logs/scrapes-$(printf %03d $RUN_NO).txt
        echo "0 0 0" >"$scraped"
        start_scraper "http://127.0.0.1:$METRICS_PORT/metrics" "$scraped"
    fi
    [[ -n $pid ]] && before=$(cpu_ticks "$pid")
    # shellcheck disable=SC2086
    (ulimit -n 8192 && PGSSLMODE=$sslmode exec "$PGBENCH" -n $args -j "$JOBS" -T "$secs" -h 127.0.0.1 -p "$port" -U bench bench) \
        >"$out" 2>&1 || rc=$?
    [[ -n $pid ]] && after=$(cpu_ticks "$pid")
    if [[ -n $scraped ]]; then
        kill -TERM "$SCRAPER_PID" 2>/dev/null || true
        wait "$SCRAPER_PID" 2>/dev/null || true
        ((round > 0)) && printf '%s\t%s\t%s\n' "$workload" "$round" "$(tr ' ' '\t' <"$scraped")" >>"$SCRAPES"
    fi
    local tps tx failed aborted clients message
    tps=$(awk '/^tps = / { print $3; exit }' "$out")
    tx=$(awk -F': ' '/^number of transactions actually processed/ { split($2, a, "/"); print a[1]; exit }' "$out")
    failed=$(awk -F': ' '/^number of failed transactions/ { split($2, a, " "); print a[1]; exit }' "$out")
    aborted=$({ grep -o 'client [0-9]* script [0-9]* aborted' "$out" || true; } | sort -u | wc -l)
    clients=$(awk '{ for (i = 1; i < NF; i++) if ($i == "-c") print $(i + 1) }' <<<"$args")
    tps=${tps:-0} tx=${tx:-0} failed=${failed:-0}
    local cpu=$((after - before))
    ((before < 0 || after < 0)) && cpu=-1
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
    if ((cpu >= 0 && tx > 0)); then
        cpu_ms=$(awk -v c="$cpu" -v h="$CLK_TCK" 'BEGIN { printf "%.1f", c / h * 1000 }')
    fi
    say "$(printf '  %-20s %-22s %s  %10.0f tps %9d tx  cpu %6s ms  %s' \
        "$workload" "$target" "$( ((round)) && echo "round $round" || echo "warm-up")" "$tps" "$tx" "$cpu_ms" \
        "$status${message:+: $message}")"
    ((round > 0)) && printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$workload" "$target" "$round" "$tps" "$tx" "$cpu" "$status" "$aborted" "$clients" "$message" >>"$RESULTS"
    return 0
}

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
            printf '%s\t%s\t0\t0\t0\t-1\tskipped\t0\t0\t%s\n' "$workload" "$target" "$reason" >>"$RESULTS"
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
listening() { ss -Hltn "( sport = :$1 )" | grep -q .; }
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
        case $name in
        pgate-logins | baseline-logins)
            bin=$PGATE_BIN
            [[ $name == baseline-* ]] && bin=$PGATE_BASELINE_BIN
            write_pgate_config "$name" session $((SERVER_LOGINS + 10)) "$bin"
            (ulimit -n 8192 && PGATE_LOG=warn exec "$bin" run --config "$WORK/$name.toml") \
                >>"$(proxy_log "$name")" 2>&1 &
            WAIT_PID[$name]=$!
            PROXY_PID[$name]=$!
            ;;
        pgbouncer-logins)
            write_pgbouncer_config "$name" session $((SERVER_LOGINS + 10))
            rm -f "$WORK/$name.pid"
            "${AS_PG[@]}" sh -c 'ulimit -n 8192 && exec "$0" "$1"' "$PGBOUNCER" "$WORK/$name.ini" \
                >>"$WORK/logs/$name.stdout" 2>&1 &
            WAIT_PID[$name]=$!
            for i in $(seq 100); do [[ -s $WORK/$name.pid ]] && break; sleep 0.1; done
            PROXY_PID[$name]=$(cat "$WORK/$name.pid" 2>/dev/null || echo "${WAIT_PID[$name]}")
            ;;
        esac
        for i in $(seq 300); do listening "${PORT[$name]}" && break; sleep 0.1; done
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
        kill -TERM "$pid" 2>/dev/null || true
        for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "${WAIT_PID[$name]}" 2>/dev/null || true
        unset "PROXY_PID[$name]" "WAIT_PID[$name]"
        # PostgreSQL ends the backends of the closed servers a moment later.
        for i in $(seq 50); do
            (($(bench_servers) <= open_before)) && break
            sleep 0.1
        done
    done
done

# ---------------------------------------------------------------- idle clients
# IDLE_CLIENTS clients log in (SCRAM) through one proxy in transaction mode and stay idle:
# a pgbench script that only sleeps sends no query at all.
IDLE=$WORK/idle.tsv
: >"$IDLE"
printf '\\sleep 1 s\n' >"$WORK/idle.sql"
established() { ss -Htn state established "( sport = :$1 )" | wc -l; }
IDLE_TARGETS=()
if ((IDLE_CLIENTS > 0)) && [[ " ${MODES[*]} " == *" transaction "* ]]; then
    IDLE_TARGETS=(pgate-transaction pgbouncer-transaction)
    say ""
    say "idle clients: $IDLE_CLIENTS per proxy, transaction mode"
fi
for name in "${IDLE_TARGETS[@]}"; do
    check_alive "$name" "the pause before the idle-client test"
    pid=${PROXY_PID[$name]}
    sleep 2
    base=$(rss_kib "$pid")
    (ulimit -n 8192 && exec "$PGBENCH" -n -f "$WORK/idle.sql" -c "$IDLE_CLIENTS" -j "$JOBS" -T 120 \
        -h 127.0.0.1 -p "${PORT[$name]}" -U bench bench) >"$WORK/logs/idle-$name.txt" 2>&1 &
    bench_pid=$!
    n=0
    for i in $(seq 600); do
        n=$(established "${PORT[$name]}")
        ((n >= IDLE_CLIENTS)) && break
        kill -0 "$bench_pid" 2>/dev/null || break
        sleep 0.2
    done
    sleep 3
    n=$(established "${PORT[$name]}")
    rss=$(rss_kib "$pid")
    kill -TERM "$bench_pid" 2>/dev/null || true
    wait "$bench_pid" 2>/dev/null || true
    if ((n < IDLE_CLIENTS)); then
        {
            echo "[$name, idle clients] only $n of $IDLE_CLIENTS clients were connected"
            echo "  PGPASSWORD=bench PGSSLMODE=disable pgbench -n -f idle.sql -c $IDLE_CLIENTS -j $JOBS -T 120 -h 127.0.0.1 -p ${PORT[$name]} -U bench bench   # idle.sql: \\sleep 1 s"
            grep -v '^pgbench (' "$WORK/logs/idle-$name.txt" | sort | uniq -c | sort -rn |
                sed -n 's/^/    /; 1,5p' || true
        } >>"$PROBLEMS"
    fi
    say "  $name: $n clients connected, RSS $base KiB -> $rss KiB"
    printf '%s\t%s\t%s\t%s\n' "$name" "$n" "$base" "$rss" >>"$IDLE"
    check_alive "$name" "$IDLE_CLIENTS idle clients"
done

# ---------------------------------------------------------------- report
for c in "${CRASHES[@]}"; do echo "$c" >>"$PROBLEMS"; done
python3 - "$RESULTS" "$IDLE" "$PROBLEMS" "$CLK_TCK" "$DURATION" "$ROUNDS" "$POOL_SIZE" "$JOBS" "$LOGINS" "$SCRAPES" <<'EOF'
import statistics, sys

results, idle, problems, clk, duration, rounds, pool, jobs, logins, scrapes = sys.argv[1:]
clk = int(clk)

# (workload, target) -> list of dict(tps, tx, cpu ticks, status, aborted, clients, message)
runs = {}
workloads = []
for line in open(results):
    w, t, _r, tps, tx, cpu, status, aborted, clients, message = line.rstrip("\n").split("\t")
    runs.setdefault((w, t), []).append(dict(tps=float(tps), tx=int(tx), cpu=int(cpu), status=status,
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

def cpu_ms(w, t):
    """Proxy CPU (user+system) in ms per 1000 transactions, median over the runs without errors."""
    vals = [r["cpu"] / clk * 1000 / (r["tx"] / 1000) for r in ok_runs(w, t) if r["cpu"] >= 0 and r["tx"] > 0]
    return statistics.median(vals) if vals else None

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
        ("PgBouncer", ">", 9), ("pgate/PgB", ">", 9), ("pgate/direct", ">", 12),
        ("CPU pgate", ">", 9), ("CPU PgB", ">", 8), ("CPU pgate/PgB", ">", 13), ("notes", "<", 5)]

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
        print(row([label[w], m, cell(w, "direct"), cell(w, g), cell(w, b),
                   ratio(tps(w, g), tps(w, b)), ratio(tps(w, g), tps(w, "direct")),
                   num(cpu_ms(w, g), ".1f"), num(cpu_ms(w, b), ".1f"), ratio(cpu_ms(w, g), cpu_ms(w, b)),
                   "; ".join(n for n in notes if n)]))
print()
print("direct, pgate, PgBouncer: transactions per second (pgbench tps; the direct runs are the same")
print("  for both pool modes).  CPU: the proxy process's user+system CPU time, in ms per 1000")
print("  transactions (from /proc/PID/stat).  Runs with errors are left out of every figure:")
print("  'fails' = every run of that cell had errors (with aborted clients, pgbench's tps is the")
print("  survivors'), '!' = some did; 'not run' = see notes.  The problems section below has the")
print("  exact pgbench command of every run with errors.")

idle_rows = []
for line in open(idle):
    name, n, base, rss = line.rstrip("\n").split("\t")
    n, base, rss = int(n), int(base), int(rss)
    idle_rows.append((name, n, base, rss, (rss - base) / n if n else None))
per_client = {}
if idle_rows:
    print()
    print("idle clients, transaction mode")
    print(f"{'proxy':<10}  {'clients':>7}  {'baseline RSS':>12}  {'RSS with clients':>16}  {'KiB per idle client':>19}")
    print(f"{'-' * 10}  {'-' * 7}  {'-' * 12}  {'-' * 16}  {'-' * 19}")
    for name, n, base, rss, per in idle_rows:
        proxy = "pgate" if name.startswith("pgate") else "PgBouncer"
        per_client[proxy] = per
        print(f"{proxy:<10}  {n:>7}  {str(base) + ' KiB':>12}  {str(rss) + ' KiB':>16}  {num(per, '.1f'):>19}")

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
c_sel = cmp(cpu_ms("select-simple-128", T), cpu_ms("select-simple-128", B))
kib, pgb_kib = per_client.get("pgate"), per_client.get("PgBouncer")
targets = [
    ("select-only simple, 128 clients: pgate/PgBouncer TPS", *tx_ratio("select-simple-128", T, B, 1.10)),
    ("select-only extended, 128 clients: pgate/PgBouncer TPS", *tx_ratio("select-extended-128", T, B, 1.10)),
    ("select-only prepared, 128 clients: pgate/direct TPS", *tx_ratio("select-prepared-128", T, "direct", 0.90)),
    ("earlier: select-only simple, 128 clients: pgate/PgBouncer TPS", *tx_ratio("select-simple-128", T, B, 1.00)),
    ("earlier: select-only simple, 128 clients: pgate/PgBouncer CPU per tx", "<= 1.00x",
     "-" if c_sel is None else f"{c_sel:.2f}x", None if c_sel is None else c_sel <= 1.0),
    ("TLS+SCRAM connection storm (-C), 16 clients: pgate/PgBouncer TPS", *tx_ratio("tls-churn-16", T, B, 1.50)),
    ("earlier: connection churn, 16 clients: pgate/PgBouncer TPS", *tx_ratio("churn-16", T, B, 0.90)),
    (f"earlier: pgate KiB per idle client (PgBouncer: {num(pgb_kib, '.1f')})", "<= 8.0",
     num(kib, ".1f"), None if kib is None else kib <= 8),
]
print()
print(f"targets, transaction mode, pool size {pool} (shown, not enforced; '-' = not measured in this run)")
print(f"{'':<70}  {'target':>8}  {'measured':>8}")
for name, goal, got, ok in targets:
    print(f"{name:<70}  {goal:>8}  {got:>8}  {verdict(ok)}")

text = open(problems).read().strip()
print()
if text:
    print("problems (the exact pgbench command; its error lines, counted)")
    print(text)
else:
    print("no errors from pgbench, no proxy crashes")
EOF
