# shellcheck shell=bash
# The proxies of the benchmark scripts: pgate and PgBouncer configurations, the floor relay,
# start, readiness, stop, restart after a crash, and their CPU and memory. Sourced by lib.sh.

# ---------------------------------------------------------------- proxies
# Global, so that the functions and the EXIT trap share them.
declare -gA PORT=()       # target -> port on 127.0.0.1
declare -gA PROXY_PID=()  # name -> pid of the proxy process itself
declare -gA WAIT_PID=()   # name -> pid of our child (runuser for PgBouncer)
declare -gA PROXY_ARGS=() # name -> "mode pool-size binary readiness" it was started with
declare -ga CRASHES=()    # what each proxy that died was doing
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
listening() { ss -Hltn "( sport = :$1 )" | grep -q .; }

# Waits until the proxy answers a query, or (ready=listen) until it listens: that opens no
# server and sends no query, for measurements on an untouched process.
wait_ready() { # name [query|listen]
    local name=$1 how=${2:-query}
    for _ in $(seq 300); do
        if ! kill -0 "${WAIT_PID[$name]}" 2>/dev/null; then
            tail -n 20 "$(proxy_log "$name")" >&2
            die "$name exited during start-up"
        fi
        if [[ -z ${PROXY_PID[$name]:-} && -s $WORK/$name.pid ]]; then
            PROXY_PID[$name]=$(cat "$WORK/$name.pid")
        fi
        if [[ -n ${PROXY_PID[$name]:-} ]]; then
            if [[ $how == listen ]]; then
                listening "${PORT[$name]}" && return 0
            elif psql_via "$name" "SELECT 1" >/dev/null 2>&1; then
                return 0
            fi
        fi
        sleep 0.1
    done
    tail -n 20 "$(proxy_log "$name")" >&2
    die "$name did not get ready within 30 s"
}

# Starts pgate (any name not starting with pgbouncer- or floor-), PgBouncer or the floor
# relay on a port of its own. The mode defaults to the name's suffix (pgate-transaction);
# pgate-rules gets the rules configuration. For the floor (floor-mt, floor-ct) the mode is
# its worker thread count (0: tokio's current-thread runtime), the binary defaults to
# $FLOOR_BIN and the pool size is unused: it opens one server per client.
# Remembered, so that check_alive starts the same proxy again.
start_proxy() { # name [mode] [pool size] [binary] [query|listen]
    local name=$1 mode=${2:-${1#*-}} size=${3:-$POOL_SIZE} bin=${4:-} how=${5:-query}
    if [[ -z $bin && $name == floor-* ]]; then
        bin=$FLOOR_BIN
    elif [[ -z $bin ]]; then
        bin=$PGATE_BIN
    fi
    PROXY_ARGS[$name]="$mode $size $bin $how"
    [[ -n ${PORT[$name]:-} ]] || PORT[$name]=$(free_port)
    case $name in
    pgbouncer-*)
        write_pgbouncer_config "$name" "$mode" "$size"
        rm -f "$WORK/$name.pid"
        unset "PROXY_PID[$name]"
        # The fd limit is raised after runuser: its PAM session resets the soft limit.
        # shellcheck disable=SC2016 # $0 and $1 are the inner shell's
        "${AS_PG[@]}" sh -c 'ulimit -n 8192 && exec "$0" "$1"' "$PGBOUNCER" "$WORK/$name.ini" \
            >>"$WORK/logs/$name.stdout" 2>&1 &
        WAIT_PID[$name]=$!
        ;;
    floor-*)
        [[ $mode =~ ^[0-9]+$ ]] || die "$name: the floor's mode is a thread count, not '$mode'"
        (ulimit -n 8192 && exec "$bin" "127.0.0.1:${PORT[$name]}" "127.0.0.1:$PG_PORT" "$mode") \
            >>"$(proxy_log "$name")" 2>&1 &
        WAIT_PID[$name]=$!
        PROXY_PID[$name]=$!
        ;;
    *)
        if [[ $name == pgate-rules ]]; then
            write_pgate_rules_config "$name"
        else
            write_pgate_config "$name" "$mode" "$size" "$bin"
        fi
        (ulimit -n 8192 && PGATE_LOG=warn exec "$bin" run --config "$WORK/$name.toml") \
            >>"$(proxy_log "$name")" 2>&1 &
        WAIT_PID[$name]=$!
        PROXY_PID[$name]=$!
        ;;
    esac
    wait_ready "$name" "$how"
}

stop_proxy() { # name
    local name=$1 pid=${PROXY_PID[$1]:-}
    if [[ -n $pid ]]; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "${WAIT_PID[$name]}" 2>/dev/null || true
    unset "PROXY_PID[$name]" "WAIT_PID[$name]"
}

# A proxy that died is reported and started again, so that the other figures still come.
check_alive() { # name what-was-running
    local name=$1
    [[ $name == direct ]] && return 0
    if ! kill -0 "${PROXY_PID[$name]}" 2>/dev/null; then
        wait "${WAIT_PID[$name]}" 2>/dev/null || true
        say "!! $name (pid ${PROXY_PID[$name]}) is gone; last lines of its log:"
        tail -n 20 "$(proxy_log "$name")" | sed 's/^/   /' >&2
        CRASHES+=("$name died during: $2")
        local args
        read -r -a args <<<"${PROXY_ARGS[$name]}"
        start_proxy "$name" "${args[@]}"
    fi
}

# The process's user and system CPU time (fields 14 and 15 of /proc/PID/stat, all its
# threads) in clock ticks, "-1 -1" if it is gone.
cpu_ticks() { # pid -> "user system"
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo "-1 -1"; return; }
    # The command name, in parentheses, may hold spaces: the fields after the last ") ".
    awk '{ print $12, $13 }' <<<"${stat##*) }"
}
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
