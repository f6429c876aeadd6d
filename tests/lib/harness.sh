# shellcheck shell=bash
# harness.sh -- private Redis / PostgreSQL servers for integration tests and
# the demo.  SOURCE it (bash only), then:
#
#   harness_init [DIR]      work dir ($AQ_TMP, default mktemp -d /tmp/auditq-test.XXXXXX)
#                           and an EXIT/INT/TERM/HUP trap that stops everything
#   free_port               print a free 127.0.0.1 TCP port (never the same twice per run)
#   redis_start [NAME [LINE...]]  redis-server on a free port, AOF on; exports REDIS_PORT,
#                           AUDITQ_REDIS_URL.  Each LINE is appended to its redis.conf
#                           (e.g. "aclfile /x/users.acl", "tls-port 7000").  A server that
#                           answers NOAUTH counts as up.  redis_stop / redis_restart / redis_kill [NAME]
#   pg_start                private cluster; exports PG_PORT PGHOST PGPORT PGUSER
#                           PGDATABASE AUDITQ_DATABASE_URL.  pg_stop / pg_start_again / pg_kill
#   pg_standby_start [sync] a streaming standby of it (pg_basebackup -R); exports
#                           PG_STANDBY_PORT.  pg_standby_promote
#   psql_q SQL              run SQL, print unaligned tuples-only result
#   harness_detach          keep servers running after the script (demo);
#   harness_stop_dir DIR    ...and stop them later from another process
#   harness_spawn NAME CMD  run CMD in the background (log: $AQ_TMP/NAME.log), stopped
#                           at cleanup; pid in HARNESS_LAST_PID
#   wait_for SECS CMD...    poll CMD every 0.1 s until it succeeds (1 on timeout)
#   assert_eq EXP ACT MSG   exit 1 with "FAIL: MSG: expected 'EXP', got 'ACT'"
#   it_pass NAME / it_fail NAME   TAP-ish "ok - NAME" / "not ok - NAME"
#
# Environment knobs:
#   AQ_KEEP=1       keep $AQ_TMP (data dirs, logs) after the run
#   AQ_PG_FAST=1    fsync=off, synchronous_commit=off (speed over durability)
#   AQ_PG_BINDIR    PostgreSQL server bin dir (default: highest /usr/lib/postgresql/*/bin)
#   AQ_REGISTRY     file that tests/integration/run.sh reads after each test to
#                   reap anything a killed test left behind (set by run.sh)
#
# Works under `set -euo pipefail`: every function returns a status instead of
# relying on errexit, and the cleanup path never fails.  Failing calls print
# the reason (and the server log) on stderr and return 1, so a plain call
# aborts a `set -e` test.
#
# Root: PostgreSQL refuses to run as root, so initdb/pg_ctl/postgres run as
# `nobody` (setpriv, else runuser) with cwd=/ (the caller's $PWD may be
# unreadable for nobody) in a dir nobody owns.  Redis runs as the caller.
#
# Why pg_ctl and not a backgrounded postgres: pg_ctl -w gives a reliable
# readiness wait and a clean fast shutdown.  The postmaster then lives in its
# own session (pg_ctl calls setsid), so `timeout`'s process-group kill does not
# reach it -- that is what AQ_REGISTRY is for.

if [[ -n "${_AQ_HARNESS_LOADED:-}" ]]; then
    return 0
fi
_AQ_HARNESS_LOADED=1

AQ_HARNESS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
AQ_ROOT=$(cd "$AQ_HARNESS_DIR/../.." && pwd)
export AQ_ROOT

_aq_init_pid=""     # $BASHPID of the shell that owns the servers
_aq_cleaned=0

# ---------------------------------------------------------------- helpers

_aq_log() { printf 'harness: %s\n' "$*" >&2; }

# True if PID exists and is not a zombie.  kill -0 alone says yes to zombies,
# which linger when PID 1 in a container does not reap.
_aq_alive() {
    local pid=$1 st
    [[ -n "$pid" ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    st=$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null) || return 1
    [[ "$st" != "Z" ]]
}

# Wait up to SECS for PID to die.
_aq_wait_dead() {
    local pid=$1 secs=$2 i
    for ((i = 0; i < secs * 10; i++)); do
        _aq_alive "$pid" || return 0
        sleep 0.1
    done
    return 1
}

# TERM, then KILL after SECS; reaps it if it is our child.
_aq_stop_pid() {
    local pid=$1 secs=${2:-10}
    _aq_alive "$pid" || { wait "$pid" 2>/dev/null || true; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    if ! _aq_wait_dead "$pid" "$secs"; then
        _aq_log "pid $pid ignored SIGTERM for ${secs}s; SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        _aq_wait_dead "$pid" 5 || true
    fi
    wait "$pid" 2>/dev/null || true
}

# Record "KIND PID [EXTRA]" for cleanup (and for run.sh if AQ_REGISTRY is set).
_aq_register() {
    printf '%s\n' "$*" >>"$AQ_TMP/.harness-pids" 2>/dev/null || true
    if [[ -n "${AQ_REGISTRY:-}" ]]; then
        printf '%s\n' "$*" >>"$AQ_REGISTRY" 2>/dev/null || true
    fi
}

_aq_need_init() {
    if [[ -z "${AQ_TMP:-}" || ! -d "$AQ_TMP" ]]; then
        _aq_log "call harness_init first"
        return 1
    fi
}

_aq_is_root() { [[ "$(id -u)" -eq 0 ]]; }

# Run a command as the PostgreSQL OS user (nobody when we are root) from /.
_aq_pg_run() {
    if _aq_is_root; then
        if command -v setpriv >/dev/null 2>&1; then
            (cd / && exec setpriv --reuid=nobody --regid=nogroup --clear-groups -- "$@")
        else
            (cd / && exec runuser -u nobody -- "$@")
        fi
    else
        (cd / && exec "$@")
    fi
}

_aq_pg_bindir() {
    local d ver best="" bestver=0
    if [[ -n "${AQ_PG_BINDIR:-}" ]]; then
        printf '%s\n' "$AQ_PG_BINDIR"
        return 0
    fi
    for d in /usr/lib/postgresql/*/bin; do
        [[ -x "$d/initdb" ]] || continue
        ver=${d#/usr/lib/postgresql/}
        ver=${ver%/bin}
        [[ "$ver" =~ ^[0-9]+$ ]] || continue
        if ((ver > bestver)); then
            bestver=$ver
            best=$d
        fi
    done
    if [[ -z "$best" ]]; then
        _aq_log "no PostgreSQL server under /usr/lib/postgresql/*/bin (run: make deps)"
        return 1
    fi
    printf '%s\n' "$best"
}

# ---------------------------------------------------------------- lifecycle

harness_init() {
    local dir=${1:-}
    if [[ -n "$dir" ]]; then
        mkdir -p "$dir" || return 1
        AQ_TMP=$(cd "$dir" && pwd) || return 1
    else
        AQ_TMP=$(mktemp -d "${TMPDIR:-/tmp}/auditq-test.XXXXXX") || return 1
    fi
    # 755: PostgreSQL runs as nobody when we are root and must traverse it.
    chmod 755 "$AQ_TMP" || return 1
    export AQ_TMP
    : >"$AQ_TMP/.harness-pids"
    : >"$AQ_TMP/.ports"
    if [[ -n "${AQ_REGISTRY:-}" ]]; then
        printf 'dir 0 %s\n' "$AQ_TMP" >>"$AQ_REGISTRY" 2>/dev/null || true
    fi
    _aq_init_pid=$BASHPID
    _aq_cleaned=0
    trap '_aq_on_exit' EXIT
    trap '_aq_on_err "$LINENO" "$BASH_COMMAND"' ERR
    trap '_aq_on_signal 130' INT
    trap '_aq_on_signal 143' TERM
    trap '_aq_on_signal 129' HUP
}

_aq_on_exit() {
    local rc=$?
    harness_cleanup
    exit "$rc"
}

# Under set -e a failing command ends the test silently; say which one.
_aq_on_err() {
    local rc=$?
    if [[ $- == *e* ]]; then
        printf 'FAIL: %s line %s: command failed (exit %s): %s\n' \
            "$(basename "${BASH_SOURCE[1]:-$0}")" "$1" "$rc" "$2"
    fi
}

_aq_on_signal() {
    _aq_log "caught signal; cleaning up"
    # exit runs the EXIT trap, which does the cleanup.
    exit "$1"
}

# Stop everything this harness started, newest first; remove $AQ_TMP unless
# AQ_KEEP=1.  Idempotent, never fails, safe to call from a test directly.
harness_cleanup() {
    # Subshells ($(...), ( )) must not tear down the parent's servers.
    [[ "${_aq_init_pid:-}" == "$BASHPID" ]] || return 0
    [[ "$_aq_cleaned" -eq 0 ]] || return 0
    _aq_cleaned=1
    [[ -n "${AQ_TMP:-}" && -d "$AQ_TMP" ]] || return 0

    _aq_stop_recorded "$AQ_TMP/.harness-pids"

    if [[ "${AQ_KEEP:-0}" == "1" ]]; then
        _aq_log "AQ_KEEP=1: kept $AQ_TMP"
    else
        rm -rf "$AQ_TMP" 2>/dev/null || true
        if [[ -n "${_aq_pg_root:-}" && "$_aq_pg_root" != "$AQ_TMP"/* ]]; then
            rm -rf "$_aq_pg_root" 2>/dev/null || true
        fi
    fi
    return 0
}

# Stop every process recorded in FILE ("KIND PID [EXTRA]" lines), newest first.
_aq_stop_recorded() {
    local file=$1 lines=() i kind pid extra
    [[ -f "$file" ]] || return 0
    mapfile -t lines <"$file" || true
    for ((i = ${#lines[@]} - 1; i >= 0; i--)); do
        read -r kind pid extra <<<"${lines[i]}" || true
        case $kind in
            pg) _aq_pg_cleanup "$pid" "$extra" ;;
            redis|proc) _aq_stop_pid "$pid" 10 ;;
        esac
    done
}

# For long-lived setups (make demo): drop the traps so the servers outlive
# this script.  Stop them later with harness_stop_dir "$AQ_TMP".
harness_detach() {
    trap - EXIT INT TERM HUP ERR
    _aq_cleaned=1
}

# Stop the servers a (detached) harness recorded in DIR; keeps DIR.
harness_stop_dir() {
    local dir=${1:?harness_stop_dir DIR}
    if [[ -z "${PG_BINDIR:-}" ]]; then
        PG_BINDIR=$(_aq_pg_bindir) || PG_BINDIR=""
    fi
    _aq_stop_recorded "$dir/.harness-pids"
}

# ---------------------------------------------------------------- ports

# A port below the kernel's ephemeral range, so an outgoing connection (ours
# or another test's) cannot grab it between "free" and "listening".  Ports
# handed out in this run are remembered in $AQ_TMP/.ports, because callers
# use $(free_port) and a subshell cannot update our variables.
free_port() {
    local used="" port
    if [[ -n "${AQ_TMP:-}" && -f "$AQ_TMP/.ports" ]]; then
        used=$(tr '\n' ' ' <"$AQ_TMP/.ports")
    fi
    port=$(python3 - "$used" <<'PY'
import random, socket, sys
used = {int(p) for p in sys.argv[1].split()}
try:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        lo, hi = (int(x) for x in f.read().split())
except OSError:
    lo, hi = 32768, 60999
if lo > 12000:
    cand = range(lo - 11000, lo)
elif hi < 54000:
    cand = range(hi + 1, hi + 11001)
else:
    cand = range(1024, lo)
for _ in range(500):
    p = random.choice(cand)
    if p in used:
        continue
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # No SO_REUSEADDR: also refuse ports with TIME_WAIT leftovers.
        s.bind(("127.0.0.1", p))
    except OSError:
        continue
    finally:
        s.close()
    print(p)
    sys.exit(0)
sys.exit(1)
PY
    ) || { _aq_log "free_port: no free port found"; return 1; }
    if [[ -n "${AQ_TMP:-}" && -d "$AQ_TMP" ]]; then
        printf '%s\n' "$port" >>"$AQ_TMP/.ports"
    fi
    printf '%s\n' "$port"
}

# True if something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# ---------------------------------------------------------------- polling / asserts

# wait_for SECS CMD [ARGS...]: run CMD every 0.1 s until it succeeds.
# AQ_TIME_SCALE (make valgrind sets 10) widens SECS: it is an upper bound.
wait_for() {
    local secs=$1 i n
    shift
    secs=$(awk -v s="$secs" -v k="${AQ_TIME_SCALE:-1}" 'BEGIN { if (k < 1) k = 1; print s * k }')
    n=$(awk -v s="$secs" 'BEGIN { printf "%d", s * 10 }')
    for ((i = 0; i <= n; i++)); do
        if "$@"; then
            return 0
        fi
        sleep 0.1
    done
    _aq_log "wait_for: timed out after ${secs}s: $*"
    return 1
}

assert_eq() {
    if [[ "$1" != "$2" ]]; then
        printf "FAIL: %s: expected '%s', got '%s'\n" "${3:-assert_eq}" "$1" "$2"
        exit 1
    fi
}

it_pass() { printf 'ok - %s\n' "$*"; }
it_fail() { printf 'not ok - %s\n' "$*"; }

# harness_spawn NAME CMD [ARGS...]: background process stopped at cleanup.
harness_spawn() {
    local name=$1
    shift
    _aq_need_init || return 1
    "$@" </dev/null >>"$AQ_TMP/$name.log" 2>&1 &
    HARNESS_LAST_PID=$!
    _aq_register proc "$HARNESS_LAST_PID" "$name"
}

# ---------------------------------------------------------------- Redis

_aq_redis_dir() { printf '%s/redis-%s\n' "$AQ_TMP" "${1:-main}"; }

# Up = answers PONG, or NOAUTH when its ACL wants a login we do not have.
_aq_redis_ping() {
    local out
    out=$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null </dev/null) || true
    [[ "$out" == "PONG" || "$out" == NOAUTH* ]]
}

# Starts (or restarts, reusing the saved port) redis NAME.
_aq_redis_launch() {
    local name=$1 dir port pid
    dir=$(_aq_redis_dir "$name")
    port=$(cat "$dir/port")
    redis-server "$dir/redis.conf" </dev/null >>"$dir/stdout.log" 2>&1 &
    pid=$!
    printf '%s\n' "$pid" >"$dir/pid"
    _aq_register redis "$pid" "$name"
    if ! wait_for 10 _aq_redis_ping "$port"; then
        _aq_log "redis '$name' on port $port did not answer PING within 10 s; log:"
        cat "$dir/redis.log" "$dir/stdout.log" >&2 2>/dev/null || true
        return 1
    fi
    REDIS_PORT=$port
    AUDITQ_REDIS_URL="redis://127.0.0.1:$port"
    export REDIS_PORT AUDITQ_REDIS_URL
}

redis_start() {
    local name=${1:-main} dir port line
    shift || true
    _aq_need_init || return 1
    dir=$(_aq_redis_dir "$name")
    if [[ -f "$dir/pid" ]] && _aq_alive "$(cat "$dir/pid")"; then
        _aq_log "redis '$name' already running"
        return 1
    fi
    mkdir -p "$dir" || return 1
    port=$(free_port) || return 1
    printf '%s\n' "$port" >"$dir/port"
    cat >"$dir/redis.conf" <<EOF
port $port
bind 127.0.0.1
dir $dir
daemonize no
logfile $dir/redis.log
appendonly yes
appendfsync everysec
save ""
EOF
    for line in "$@"; do
        printf '%s\n' "$line" >>"$dir/redis.conf" || return 1
    done
    _aq_redis_launch "$name"
}

# Graceful stop: SHUTDOWN flushes the AOF, so data survives redis_restart.
redis_stop() {
    local name=${1:-main} dir pid port out
    dir=$(_aq_redis_dir "$name")
    [[ -f "$dir/pid" ]] || { _aq_log "redis '$name' was never started"; return 1; }
    pid=$(cat "$dir/pid")
    port=$(cat "$dir/port")
    _aq_alive "$pid" || return 0
    # With an ACL we have no login for, SHUTDOWN is refused: SIGTERM below
    # is the same graceful shutdown (AOF flushed).
    out=$(redis-cli -h 127.0.0.1 -p "$port" shutdown </dev/null 2>&1) || true
    if [[ "$out" == *NOAUTH* || "$out" == *NOPERM* ]]; then
        :
    elif ! _aq_wait_dead "$pid" 10; then
        _aq_log "redis '$name' did not exit after SHUTDOWN"
    fi
    _aq_stop_pid "$pid" 5
}

redis_restart() {
    local name=${1:-main}
    redis_stop "$name" || return 1
    _aq_redis_launch "$name"
}

# Fault injection: SIGKILL, no AOF flush (up to ~1 s of writes may be lost).
redis_kill() {
    local name=${1:-main} dir pid
    dir=$(_aq_redis_dir "$name")
    [[ -f "$dir/pid" ]] || { _aq_log "redis '$name' was never started"; return 1; }
    pid=$(cat "$dir/pid")
    kill -KILL "$pid" 2>/dev/null || true
    _aq_wait_dead "$pid" 5 || true
    wait "$pid" 2>/dev/null || true
}

# ---------------------------------------------------------------- PostgreSQL

_aq_pg_root=""      # holds data/, log, socket; owned by the PG OS user

_aq_pg_postmaster_pid() {
    head -n 1 "$_aq_pg_root/data/postmaster.pid" 2>/dev/null || true
}

# Choose where the cluster lives: $AQ_TMP/pg unless nobody cannot reach
# $AQ_TMP (e.g. harness_init DIR under an unreadable home), then /tmp.
_aq_pg_pick_root() {
    _aq_pg_root=$AQ_TMP/pg
    if _aq_is_root && ! _aq_pg_run test -x "$AQ_TMP" 2>/dev/null; then
        _aq_pg_root=$(mktemp -d /tmp/auditq-pg.XXXXXX) || return 1
        chmod 755 "$_aq_pg_root"
        _aq_log "nobody cannot reach $AQ_TMP; cluster lives in $_aq_pg_root"
        if [[ -n "${AQ_REGISTRY:-}" ]]; then
            printf 'dir 0 %s\n' "$_aq_pg_root" >>"$AQ_REGISTRY" 2>/dev/null || true
        fi
    fi
    mkdir -p "$_aq_pg_root" || return 1
    if _aq_is_root; then
        chown nobody:nogroup "$_aq_pg_root" || return 1
    fi
    chmod 755 "$_aq_pg_root"
}

_aq_pg_initdb() {
    local loc
    for loc in C.UTF-8 C; do
        rm -rf "$_aq_pg_root/data"
        if _aq_pg_run "$PG_BINDIR/initdb" -D "$_aq_pg_root/data" -U postgres -A trust \
                --no-sync -E UTF8 --locale="$loc" >"$_aq_pg_root/initdb.log" 2>&1; then
            return 0
        fi
    done
    _aq_log "initdb failed; log:"
    cat "$_aq_pg_root/initdb.log" >&2 || true
    return 1
}

_aq_pg_ctl_start() {
    local pid
    if ! _aq_pg_run "$PG_BINDIR/pg_ctl" -D "$_aq_pg_root/data" -l "$_aq_pg_root/log" \
            -w -t 30 start >"$_aq_pg_root/pg_ctl.log" 2>&1; then
        _aq_log "pg_ctl start failed; logs:"
        cat "$_aq_pg_root/pg_ctl.log" "$_aq_pg_root/log" >&2 2>/dev/null || true
        return 1
    fi
    pid=$(_aq_pg_postmaster_pid)
    _aq_register pg "$pid" "$_aq_pg_root/data"
}

pg_start() {
    local port conf
    _aq_need_init || return 1
    if [[ -n "$_aq_pg_root" ]] && _aq_alive "$(_aq_pg_postmaster_pid)"; then
        _aq_log "PostgreSQL already running (use pg_start_again after pg_stop)"
        return 1
    fi
    PG_BINDIR=$(_aq_pg_bindir) || return 1
    export PG_BINDIR
    _aq_pg_pick_root || return 1
    _aq_pg_initdb || return 1
    port=$(free_port) || return 1
    conf=$_aq_pg_root/data/postgresql.conf
    # Appended settings win over initdb's defaults earlier in the file.
    {
        printf '\n# auditq test harness\n'
        printf "port = %s\n" "$port"
        printf "listen_addresses = '127.0.0.1'\n"
        printf "unix_socket_directories = '%s'\n" "$_aq_pg_root"
        printf "max_connections = 100\n"
        printf "shared_buffers = 128MB\n"
        if [[ "${AQ_PG_FAST:-0}" == "1" ]]; then
            printf "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
        fi
    } >>"$conf" || return 1
    _aq_pg_ctl_start || return 1
    PG_PORT=$port
    PGHOST=127.0.0.1
    PGPORT=$port
    PGUSER=postgres
    PGDATABASE=auditq
    AUDITQ_DATABASE_URL="postgresql://postgres@127.0.0.1:$port/auditq"
    AQ_PGDATA=$_aq_pg_root/data
    export PG_PORT PGHOST PGPORT PGUSER PGDATABASE AUDITQ_DATABASE_URL AQ_PGDATA
    if ! "$PG_BINDIR/createdb" -h 127.0.0.1 -p "$port" -U postgres auditq </dev/null; then
        _aq_log "createdb auditq failed"
        return 1
    fi
}

# Fast shutdown (rolls back open transactions, checkpoints), waits.
pg_stop() {
    [[ -n "$_aq_pg_root" ]] || { _aq_log "pg_stop: PostgreSQL was never started"; return 1; }
    _aq_alive "$(_aq_pg_postmaster_pid)" || return 0
    if ! _aq_pg_run "$PG_BINDIR/pg_ctl" -D "$_aq_pg_root/data" -m fast -w -t 30 stop \
            >>"$_aq_pg_root/pg_ctl.log" 2>&1; then
        _aq_log "pg_ctl stop failed; log:"
        cat "$_aq_pg_root/pg_ctl.log" >&2 || true
        return 1
    fi
}

# Start the cluster made by pg_start again: same data, same port.
pg_start_again() {
    [[ -n "$_aq_pg_root" ]] || { _aq_log "pg_start_again: call pg_start first"; return 1; }
    if _aq_alive "$(_aq_pg_postmaster_pid)"; then
        _aq_log "pg_start_again: PostgreSQL is still running"
        return 1
    fi
    # After pg_kill the postmaster may linger as a zombie (PID 1 in a
    # container reaps late or never); postgres sees its pid "alive" via
    # kill(pid, 0) and refuses the stale lock files.  Dead is dead: drop them.
    rm -f "$_aq_pg_root/data/postmaster.pid" "$_aq_pg_root"/.s.PGSQL.*.lock
    _aq_pg_ctl_start
}

# Fault injection: SIGKILL the postmaster.  Its backends notice the dead
# postmaster and exit on their own; we wait for them, because a new
# postmaster refuses to start while old backends still hold shared memory.
pg_kill() {
    local pid kids k
    [[ -n "$_aq_pg_root" ]] || { _aq_log "pg_kill: PostgreSQL was never started"; return 1; }
    pid=$(_aq_pg_postmaster_pid)
    _aq_alive "$pid" || return 0
    kids=$(pgrep -P "$pid" 2>/dev/null | tr '\n' ' ') || true
    kill -KILL "$pid" 2>/dev/null || true
    _aq_wait_dead "$pid" 5 || true
    for k in $kids; do
        if ! _aq_wait_dead "$k" 10; then
            kill -KILL "$k" 2>/dev/null || true
            _aq_wait_dead "$k" 5 || true
        fi
    done
}

# A streaming standby of the pg_start cluster: pg_basebackup -R into
# $_aq_pg_root/standby, on its own free port; exports PG_STANDBY_PORT.
# "sync": the primary then waits for it on every commit
# (synchronous_standby_names = '*' and synchronous_commit = on, also under
# AQ_PG_FAST), set on the primary after the copy, so that the standby, once
# promoted, does not wait for a standby of its own. Returns when the
# standby streams (and, with sync, is the synchronous one).
pg_standby_start() {
    local mode=${1:-async} dir port pid
    [[ -n "$_aq_pg_root" ]] || { _aq_log "pg_standby_start: call pg_start first"; return 1; }
    dir=$_aq_pg_root/standby
    port=$(free_port) || return 1
    if ! _aq_pg_run "$PG_BINDIR/pg_basebackup" -h 127.0.0.1 -p "$PG_PORT" -U postgres -D "$dir" \
            -R -X stream -c fast --no-sync >"$_aq_pg_root/basebackup.log" 2>&1; then
        _aq_log "pg_basebackup failed; log:"
        cat "$_aq_pg_root/basebackup.log" >&2 || true
        return 1
    fi
    printf "\n# standby\nport = %s\n" "$port" >>"$dir/postgresql.conf" || return 1
    if ! _aq_pg_run "$PG_BINDIR/pg_ctl" -D "$dir" -l "$_aq_pg_root/standby.log" -w -t 30 start \
            >>"$_aq_pg_root/pg_ctl.log" 2>&1; then
        _aq_log "standby start failed; log:"
        cat "$_aq_pg_root/standby.log" >&2 || true
        return 1
    fi
    pid=$(head -n 1 "$dir/postmaster.pid" 2>/dev/null) || pid=""
    _aq_register pg "$pid" "$dir"
    PG_STANDBY_PORT=$port
    export PG_STANDBY_PORT
    if [[ "$mode" == sync ]]; then
        psql_q "ALTER SYSTEM SET synchronous_standby_names = '*'" >/dev/null || return 1
        psql_q "ALTER SYSTEM SET synchronous_commit = on" >/dev/null || return 1
        psql_q "SELECT pg_reload_conf()" >/dev/null || return 1
        wait_for 30 bash -c "[ \"\$(PGPORT=$PG_PORT \"\$PG_BINDIR/psql\" -X -A -t -q -c \"SELECT sync_state FROM pg_stat_replication\")\" = sync ]" || {
            _aq_log "the standby never became synchronous"; return 1; }
    else
        wait_for 30 bash -c "[ \"\$(PGPORT=$PG_PORT \"\$PG_BINDIR/psql\" -X -A -t -q -c \"SELECT state FROM pg_stat_replication\")\" = streaming ]" || {
            _aq_log "the standby never streamed"; return 1; }
    fi
}

# Promote the standby of pg_standby_start (pg_ctl promote -w: returns when
# it accepts writes).
pg_standby_promote() {
    if ! _aq_pg_run "$PG_BINDIR/pg_ctl" -D "$_aq_pg_root/standby" -w -t 30 promote \
            >>"$_aq_pg_root/pg_ctl.log" 2>&1; then
        _aq_log "pg_ctl promote failed; log:"
        cat "$_aq_pg_root/pg_ctl.log" "$_aq_pg_root/standby.log" >&2 || true
        return 1
    fi
}

# Cleanup of one registered postmaster (pid may be stale after restarts;
# the data dir's postmaster.pid is the truth).
_aq_pg_cleanup() {
    local data=$2 pid kids k
    pid=$(head -n 1 "$data/postmaster.pid" 2>/dev/null) || pid=""
    [[ -n "$pid" ]] || pid=$1
    _aq_alive "$pid" || return 0
    kids=$(pgrep -P "$pid" 2>/dev/null | tr '\n' ' ') || true
    _aq_pg_run "$PG_BINDIR/pg_ctl" -D "$data" -m fast -w -t 15 stop >/dev/null 2>&1 || true
    if _aq_alive "$pid"; then
        kill -KILL "$pid" 2>/dev/null || true
        _aq_wait_dead "$pid" 5 || true
    fi
    for k in $kids; do
        _aq_wait_dead "$k" 5 || kill -KILL "$k" 2>/dev/null || true
    done
}

psql_q() {
    local psql=psql
    if [[ -n "${PG_BINDIR:-}" && -x "$PG_BINDIR/psql" ]]; then
        psql=$PG_BINDIR/psql
    fi
    "$psql" -X -A -t -q -v ON_ERROR_STOP=1 -c "$1" </dev/null
}
