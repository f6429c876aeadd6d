#!/usr/bin/env bash
# demo.sh -- auditq end to end on this machine, in well under a minute:
# private Redis and PostgreSQL servers under .run/, the schema, a worker,
# 100,000 synthetic audit events, the queues draining, and what landed in
# PostgreSQL.  `make demo` installs the dependencies, builds and runs this.
#
#   bash scripts/demo.sh           run the demo (servers keep running after)
#   bash scripts/demo.sh stop      stop the demo's worker and servers (`make demo-stop`)
#   bash scripts/demo.sh status    is a demo running, and how to reach it
#
# Nothing outside the repository is touched: Redis and PostgreSQL run from
# .run/ (git-ignored) on free ports chosen at start, PostgreSQL as `nobody`
# when we are root (tests/lib/harness.sh does that).  Their pids, ports and
# URLs are in .run/demo.env: `source .run/demo.env` puts build/bin on PATH and
# points auditqctl, auditq-bench and psql at the demo, so the README's
# commands work as printed.  The worker serves /metrics, /healthz and /readyz
# on a free port ($DEMO_METRICS_URL in demo.env).
#
# Running it again while a demo runs reuses that demo: same servers, same
# ports (so psql/redis-cli lines you copied keep working), data kept; the
# worker is restarted so it runs the binaries just built, and another batch
# of events is added.  A half-dead earlier demo is stopped and started over.
#
# If a step fails (or on Ctrl-C), the script says which one and where the
# logs are, then stops everything the demo runs, a reused one included
# (logs are kept in .run/); DEMO_KEEP_ON_FAILURE=1 leaves it running.
#
# Knobs: DEMO_EVENTS (default 100000), DEMO_DRAIN_TIMEOUT seconds (180),
# BUILD (the build dir, default build: `make demo BUILD=x` passes it),
# DEMO_DIR (default .run; tests/integration/it_14_demo.sh uses a temp dir).
# AUDITQ_* variables from your environment are ignored, so the demo always
# runs with the defaults plus the demo's own servers.

set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUN=$(realpath -m "${DEMO_DIR:-$REPO/.run}")
R=${RUN#"$REPO"/}             # .run, as messages print it
ENV_FILE=$RUN/demo.env
BIN=$REPO/${BUILD:-build}/bin
RBIN=${BIN#"$REPO"/}          # build/bin
EVENTS=${DEMO_EVENTS:-100000}
DRAIN_TIMEOUT=${DEMO_DRAIN_TIMEOUT:-180}
WORKER_THREADS=2
NSTEPS=8

# shellcheck source=tests/lib/harness.sh
source "$REPO/tests/lib/harness.sh"

if [[ -t 1 && "${TERM:-dumb}" != dumb ]]; then
    TTY=1 BOLD=$'\033[1m' RED=$'\033[31m' GREEN=$'\033[32m' RESET=$'\033[0m'
else
    TTY=0 BOLD="" RED="" GREEN="" RESET=""
fi

STEP_NO=0
STEP_TITLE="preflight checks"
DEMO_OK=0

# ---------------------------------------------------------------- output helpers

say() { printf '%s\n' "$*"; }
indent() { sed 's/^/    /'; }

step() {
    STEP_NO=$1
    STEP_TITLE=$2
    printf '\n%s==> [%s/%s] %s%s\n' "$BOLD" "$STEP_NO" "$NSTEPS" "$STEP_TITLE" "$RESET"
}

die() {
    printf '%sdemo: ERROR: %s%s\n' "$RED" "$*" "$RESET" >&2
    exit 1
}

# 1234567 -> 1,234,567
commas() {
    local n=$1 out=""
    while ((${#n} > 3)); do
        out=",${n: -3}$out"
        n=${n:0:${#n}-3}
    done
    printf '%s%s' "$n" "$out"
}

# Microseconds since the epoch (EPOCHREALTIME may use a locale's ',').
now_us() { printf '%s' "${EPOCHREALTIME//[!0-9]/}"; }

# seconds with one decimal between two now_us values
secs_between() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) / 1e6 }'; }

# ---------------------------------------------------------------- process helpers

# True if PID is alive and its command line contains WORD (pids get reused).
pid_runs() {
    local pid=$1 word=$2 cmd
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    _aq_alive "$pid" || return 1
    cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ "$cmd" == *"$word"* ]]
}

# The worker drains on the first SIGTERM (normally a few ms), but it waits up
# to shutdown_timeout_ms (30 s) for a batch it cannot acknowledge, e.g. when
# Redis is already gone.  After 10 s a second SIGTERM makes it stop at once.
# Nothing is lost: jobs it has not acknowledged stay in Redis (in flight)
# and the next worker recovers them; rows already committed are skipped as
# duplicates then.
stop_worker() {
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || true
    if ! _aq_wait_dead "$pid" 10; then
        say "    worker still draining after 10 s: second SIGTERM (stop now)"
        _aq_stop_pid "$pid" 5
    fi
    wait "$pid" 2>/dev/null || true
}

# psql against the demo's cluster, output indented; psql's trailing blank
# line dropped.  Long values wrap at the terminal's width (100 if none).
psql_demo() {
    local cols=100 out
    if ((TTY)); then
        cols=$(tput cols 2>/dev/null) || cols=100
    fi
    ((cols >= 60)) || cols=60
    out=$("$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres \
        -d auditq -P footer=off -P format=wrapped -P columns=$((cols - 4)) "$@" </dev/null) || return 1
    printf '%s\n' "$out" | sed -e '/^$/d' -e 's/^/    /'
}

# ---------------------------------------------------------------- demo.env

write_env() {
    {
        # shellcheck disable=SC2016  # backquotes meant literally
        printf '# auditq demo -- written by scripts/demo.sh; removed by `make demo-stop`.\n'
        # shellcheck disable=SC2016
        printf '# `source %s/demo.env` puts %s on PATH and points auditqctl, auditq-bench\n' "$R" "$RBIN"
        # shellcheck disable=SC2016  # $DEMO_METRICS_URL and $PATH are meant literally
        printf '# and psql at the demo; $DEMO_METRICS_URL is the worker'"'"'s /metrics.\n'
        # shellcheck disable=SC2016
        printf 'case ":$PATH:" in *:%q:*) ;; *) export PATH=%q:"$PATH" ;; esac\n' "$BIN" "$BIN"
        printf 'export AUDITQ_REDIS_URL=%q\n' "$AUDITQ_REDIS_URL"
        printf 'export AUDITQ_DATABASE_URL=%q\n' "$AUDITQ_DATABASE_URL"
        printf 'export PGHOST=127.0.0.1 PGPORT=%q PGUSER=postgres PGDATABASE=auditq\n' "$PG_PORT"
        printf 'export DEMO_METRICS_URL=%q\n' "http://127.0.0.1:${DEMO_HTTP_PORT:-}/metrics"
        printf 'export AUDITQ_VERIFY_KEY_FILE=%q AUDITQ_ANCHOR_DIR=%q\n' "$RUN/seal.key.pub" "$RUN/anchors"
        printf 'DEMO_HTTP_PORT=%q\n' "${DEMO_HTTP_PORT:-}"
        printf 'export DEMO_REDIS_PORT=%q\n' "$REDIS_PORT"
        printf 'DEMO_REDIS_PID=%q\n' "${DEMO_REDIS_PID:-}"
        printf 'DEMO_REDIS_DIR=%q\n' "${DEMO_REDIS_DIR:-}"
        printf 'DEMO_PG_PORT=%q\n' "$PG_PORT"
        printf 'DEMO_PGDATA=%q\n' "${DEMO_PGDATA:-}"
        printf 'DEMO_PG_BINDIR=%q\n' "$PG_BINDIR"
        printf 'DEMO_WORKER_PID=%q\n' "${DEMO_WORKER_PID:-}"
        printf 'DEMO_STARTED=%q\n' "${DEMO_STARTED:-}"
    } >"$ENV_FILE.tmp"
    mv "$ENV_FILE.tmp" "$ENV_FILE"
}

# Loads demo.env into this shell (variables only; no servers are checked).
load_env() {
    [[ -f "$ENV_FILE" ]] || return 1
    # shellcheck source=/dev/null
    source "$ENV_FILE"
    REDIS_PORT=${DEMO_REDIS_PORT:-}
    PG_PORT=${DEMO_PG_PORT:-}
    PG_BINDIR=${DEMO_PG_BINDIR:-}
    export REDIS_PORT PG_PORT PG_BINDIR
}

# True if demo.env describes a Redis and a PostgreSQL that are both up.
# Sets WHY_NOT to the reason otherwise.
demo_alive() {
    WHY_NOT=""
    if ! load_env; then
        WHY_NOT="no $ENV_FILE"
        return 1
    fi
    if ! pid_runs "${DEMO_REDIS_PID:-}" redis-server || ! _aq_redis_ping "$REDIS_PORT"; then
        WHY_NOT="its Redis (port ${REDIS_PORT:-?}) is not running"
        return 1
    fi
    local pm
    pm=$(head -n 1 "${DEMO_PGDATA:-/nonexistent}/postmaster.pid" 2>/dev/null) || pm=""
    if ! pid_runs "$pm" postgres ||
        ! "$PG_BINDIR/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" </dev/null >/dev/null 2>&1; then
        WHY_NOT="its PostgreSQL (port ${PG_PORT:-?}) is not running"
        return 1
    fi
    return 0
}

# ---------------------------------------------------------------- stop

# Stops whatever .run/ says the demo started -- demo.env, plus the harness'
# own pid list for a run that died before writing demo.env -- worker first
# (so it can finish its batches), then PostgreSQL, then Redis.  Keeps the
# logs (moved to the top of .run/), removes data dirs and state files.
# Never fails; prints one line per thing it stopped, then (unless $1 is
# no-log-note) which logs it kept.
demo_stop() {
    local note_logs=${1:-yes} stopped=0 kind pid extra pm data dir port
    local workers=() pgdatas=() redis_dirs=()

    if [[ ! -d "$RUN" ]]; then
        say "Nothing to stop: no demo has run here (no $RUN)."
        return 0
    fi
    load_env 2>/dev/null || true
    [[ -n "${DEMO_WORKER_PID:-}" ]] && workers+=("$DEMO_WORKER_PID")
    [[ -n "${DEMO_PGDATA:-}" ]] && pgdatas+=("$DEMO_PGDATA")
    [[ -n "${DEMO_REDIS_DIR:-}" ]] && redis_dirs+=("$DEMO_REDIS_DIR")
    if [[ -f "$RUN/.harness-pids" ]]; then
        while read -r kind pid extra; do
            case $kind in
                proc) [[ "$extra" == worker ]] && workers+=("$pid") ;;
                pg) pgdatas+=("$extra") ;;
                redis) redis_dirs+=("$RUN/redis-$extra") ;;
            esac
        done <"$RUN/.harness-pids"
    fi
    if [[ -z "${PG_BINDIR:-}" ]]; then
        PG_BINDIR=$(_aq_pg_bindir 2>/dev/null) || PG_BINDIR=""
    fi

    for pid in "${workers[@]}"; do
        pid_runs "$pid" auditq-worker || continue
        say "Stopping auditq-worker (pid $pid): SIGTERM, it finishes its batches ..."
        stop_worker "$pid"
        stopped=$((stopped + 1))
    done

    for data in "${pgdatas[@]}"; do
        pm=$(head -n 1 "$data/postmaster.pid" 2>/dev/null) || continue
        pid_runs "$pm" postgres || continue
        port=$(sed -n 4p "$data/postmaster.pid" 2>/dev/null) || port="?"
        say "Stopping PostgreSQL (pid $pm, port $port): pg_ctl stop -m fast ..."
        if [[ -z "$PG_BINDIR" ]] ||
            ! _aq_pg_run "$PG_BINDIR/pg_ctl" -D "$data" -m fast -w -t 30 stop >/dev/null 2>&1; then
            say "    pg_ctl stop failed; SIGQUIT (immediate shutdown)"
            kill -QUIT "$pm" 2>/dev/null || true
            _aq_wait_dead "$pm" 10 || kill -KILL "$pm" 2>/dev/null || true
        fi
        stopped=$((stopped + 1))
    done

    for dir in "${redis_dirs[@]}"; do
        pid=$(cat "$dir/pid" 2>/dev/null) || continue
        pid_runs "$pid" redis-server || continue
        port=$(cat "$dir/port" 2>/dev/null) || port=""
        say "Stopping Redis (pid $pid, port ${port:-?}): SHUTDOWN (flushes the AOF) ..."
        if [[ -n "$port" ]]; then
            redis-cli -h 127.0.0.1 -p "$port" shutdown </dev/null >/dev/null 2>&1 || true
        fi
        _aq_wait_dead "$pid" 10 || _aq_stop_pid "$pid" 5
        stopped=$((stopped + 1))
    done

    # Keep the logs, drop the rest.  Server logs move up so the data dirs
    # can go; a cluster that lived outside .run/ (harness fallback when
    # nobody cannot reach .run/) is removed too.
    for dir in "${redis_dirs[@]}"; do
        [[ -f "$dir/redis.log" ]] && mv -f "$dir/redis.log" "$RUN/redis.log"
        [[ "$dir" == "$RUN"/redis-* ]] && rm -rf "$dir"
    done
    for data in "${pgdatas[@]}"; do
        dir=$(dirname "$data")
        [[ -f "$dir/log" ]] && mv -f "$dir/log" "$RUN/postgresql.log"
        if [[ "$dir" == "$RUN/pg" || "$dir" == /tmp/auditq-pg.* ]]; then
            rm -rf "$dir"
        fi
    done
    rm -f "$ENV_FILE" "$ENV_FILE.tmp" "$RUN/.harness-pids" "$RUN/.ports"

    if ((stopped == 0)); then
        say "Nothing was running: no demo worker, PostgreSQL or Redis found."
    else
        say "${GREEN}Stopped.${RESET} No demo process is left."
    fi
    [[ "$note_logs" == yes ]] || return 0
    local logs="" f
    for f in "$RUN"/*.log; do
        [[ -f "$f" ]] && logs+="${f##*/} "
    done
    if [[ -n "$logs" ]]; then
        say "Logs kept in $R/: $logs"
    fi
    return 0
}

# ---------------------------------------------------------------- failure path

on_exit() {
    local rc=$?
    if ((DEMO_OK == 1 || rc == 0)); then
        return 0
    fi
    trap - EXIT INT TERM HUP
    printf '\n%sdemo: FAILED in step %s/%s (%s), exit status %s.%s\n' \
        "$RED" "$STEP_NO" "$NSTEPS" "$STEP_TITLE" "$rc" "$RESET" >&2
    if ((STEP_NO == 0)); then
        # Preflight: nothing started yet, and a running demo is not ours to stop.
        exit "$rc"
    elif [[ "${DEMO_KEEP_ON_FAILURE:-0}" == 1 ]]; then
        {
            say "DEMO_KEEP_ON_FAILURE=1: leaving whatever runs running; \`make demo-stop\` stops it."
            say "Logs: $R/worker.log (worker), $R/redis-main/redis.log (Redis),"
            say "      $R/pg/log and $R/pg/initdb.log (PostgreSQL)."
        } >&2
    else
        {
            say "Stopping what the demo started (DEMO_KEEP_ON_FAILURE=1 keeps it running):"
            demo_stop | indent
            say "Worker log: $R/worker.log; Redis: $R/redis.log; PostgreSQL: $R/postgresql.log"
        } >&2
    fi
    exit "$rc"
}

on_signal() {
    printf '\ndemo: interrupted\n' >&2
    exit "$1"
}

set_traps() {
    trap on_exit EXIT
    trap 'on_signal 130' INT
    trap 'on_signal 143' TERM
    trap 'on_signal 129' HUP
}

# ---------------------------------------------------------------- stats

# Reads `auditqctl stats --json` into S_* variables; returns 1 (with the
# reason on stderr) if the command fails or its output cannot be parsed.
read_stats() {
    local json p re
    json=$("$BIN/auditqctl" stats --json) || return 1
    S_QUEUED=0
    for p in critical high normal low; do
        re="\"$p\":\\{\"depth\":([0-9]+)"
        [[ "$json" =~ $re ]] || { say "demo: cannot parse auditqctl stats --json: $json" >&2; return 1; }
        printf -v "S_${p^^}" '%s' "${BASH_REMATCH[1]}"
        S_QUEUED=$((S_QUEUED + BASH_REMATCH[1]))
    done
    for p in inflight retry dead workers processed failed dead_lettered; do
        re="\"$p\":([0-9]+)"
        [[ "$json" =~ $re ]] || { say "demo: cannot parse auditqctl stats --json: $json" >&2; return 1; }
        printf -v "S_${p^^}" '%s' "${BASH_REMATCH[1]}"
    done
}

worker_log_tail() {
    {
        say "Last lines of $R/worker.log:"
        tail -n 15 "$RUN/worker.log" 2>/dev/null | indent || true
    } >&2
}

# ---------------------------------------------------------------- steps

preflight() {
    local b missing=()
    for b in auditq-worker auditqctl auditq-bench; do
        [[ -x "$BIN/$b" ]] || die "$BIN/$b is missing: build first (make), or run make demo"
    done
    for b in redis-server redis-cli python3 awk; do
        command -v "$b" >/dev/null 2>&1 || missing+=("$b")
    done
    if ((${#missing[@]})); then
        die "not installed: ${missing[*]} (make deps installs everything)"
    fi
    PG_BINDIR=$(_aq_pg_bindir) || die "no PostgreSQL server found (make deps installs it)"
    export PG_BINDIR
    [[ "$EVENTS" =~ ^[1-9][0-9]*$ ]] || die "DEMO_EVENTS=$EVENTS: must be a positive integer"
    [[ "$DRAIN_TIMEOUT" =~ ^[1-9][0-9]*$ ]] || die "DEMO_DRAIN_TIMEOUT=$DRAIN_TIMEOUT: must be a positive integer"
}

step_servers() {
    step 1 "Start private Redis (AOF on) and PostgreSQL under $R/"
    if demo_alive; then
        REUSED=1
        export AQ_TMP=$RUN AUDITQ_REDIS_URL AUDITQ_DATABASE_URL
        export PGHOST=127.0.0.1 PGPORT=$PG_PORT PGUSER=postgres PGDATABASE=auditq
        say "A demo is already running here (started ${DEMO_STARTED:-earlier}): reusing it --"
        say "Redis on 127.0.0.1:$REDIS_PORT (pid ${DEMO_REDIS_PID:-?}), PostgreSQL on 127.0.0.1:$PG_PORT."
        say "Same servers and ports, data kept; this run adds $(commas "$EVENTS") more events,"
        say "and the worker is restarted so it runs the binaries just built."
        say "(For a clean slate: make demo-stop && make demo)"
    else
        REUSED=0
        if [[ -f "$ENV_FILE" || -s "$RUN/.harness-pids" ]]; then
            say "Found an earlier demo that is not fully running ($WHY_NOT):"
            say "stopping what is left of it and starting fresh."
            demo_stop no-log-note | indent
        fi
        # Old AOF/data must not leak into a fresh demo; old logs go too.
        rm -rf "$RUN"
        harness_init "$RUN"
        set_traps   # harness_init installed its own; ours keep servers on success
        redis_start main
        DEMO_REDIS_DIR=$RUN/redis-main
        DEMO_REDIS_PID=$(cat "$DEMO_REDIS_DIR/pid")
        pg_start
        DEMO_PGDATA=$AQ_PGDATA
        DEMO_STARTED=$(date '+%Y-%m-%d %H:%M:%S')
        write_env
        say "Redis       127.0.0.1:$REDIS_PORT  pid $DEMO_REDIS_PID  appendonly yes, appendfsync everysec"
        say "            data and log: ${DEMO_REDIS_DIR#"$REPO"/}"
        say "PostgreSQL  127.0.0.1:$PG_PORT  pid $(_aq_pg_postmaster_pid)  database auditq, user postgres$(
            _aq_is_root && printf ' (server runs as nobody)')"
        say "            data and log: ${DEMO_PGDATA#"$REPO"/}, $(dirname "${DEMO_PGDATA#"$REPO"/}")/log"
    fi
}

step_migrate() {
    step 2 "Create the schema: auditqctl migrate"
    "$BIN/auditqctl" migrate 2>&1 | indent
}

step_worker() {
    local old i started_before
    step 3 "Start auditq-worker in the background ($WORKER_THREADS threads, log: $R/worker.log)"
    old=${DEMO_WORKER_PID:-}
    if [[ "$REUSED" == 1 ]] && pid_runs "$old" auditq-worker; then
        say "Stopping the previous demo's worker (pid $old) ..."
        stop_worker "$old"
    fi
    printf -- '---- %s: demo.sh starts auditq-worker --threads %s\n' "$(date '+%F %T')" \
        "$WORKER_THREADS" >>"$RUN/worker.log"
    started_before=$(grep -c 'msg="worker started"' "$RUN/worker.log" || true)
    # HTTP on: /metrics, /healthz and /readyz on a port of its own, the same
    # one when a reused demo restarts the worker (URLs copied keep working).
    [[ -n "${DEMO_HTTP_PORT:-}" ]] || DEMO_HTTP_PORT=$(free_port) || die "no free TCP port for the worker's HTTP"
    # Sealing on (docs/INTEGRITY.md): a signing key of the demo's own, the
    # checkpoints published to $RUN/anchors; step 8 verifies the trail.
    [[ -f "$RUN/seal.key" ]] || "$BIN/auditqctl" keygen "$RUN/seal.key" >/dev/null ||
        die "auditqctl keygen failed"
    mkdir -p "$RUN/anchors"
    harness_spawn worker "$BIN/auditq-worker" --threads "$WORKER_THREADS" \
        --set "http_listen=127.0.0.1:$DEMO_HTTP_PORT" \
        --set "seal_key_file=$RUN/seal.key" --set "anchor_dir=$RUN/anchors"
    DEMO_WORKER_PID=$HARNESS_LAST_PID
    write_env
    # Up = it logged its start and Redis counts a live worker (heartbeat).
    for ((i = 0; i < 100; i++)); do
        if ! _aq_alive "$DEMO_WORKER_PID"; then
            worker_log_tail
            die "auditq-worker exited right after start (see $R/worker.log)"
        fi
        if (($(grep -c 'msg="worker started"' "$RUN/worker.log" || true) > started_before)) &&
            read_stats 2>/dev/null && ((S_WORKERS >= 1)); then
            break
        fi
        sleep 0.1
    done
    ((i < 100)) || { worker_log_tail; die "auditq-worker did not register in Redis within 10 s"; }
    if command -v curl >/dev/null 2>&1; then
        for ((i = 0; i < 50; i++)); do
            curl -sf -o /dev/null "http://127.0.0.1:$DEMO_HTTP_PORT/healthz" && break
            sleep 0.1
        done
        ((i < 50)) || { worker_log_tail; die "auditq-worker does not answer on http://127.0.0.1:$DEMO_HTTP_PORT/healthz"; }
    fi
    say "auditq-worker pid $DEMO_WORKER_PID is up: $(grep 'worker started' "$RUN/worker.log" |
        tail -n 1 | sed 's/.*msg="worker started" //')"
    say "Prometheus metrics: http://127.0.0.1:$DEMO_HTTP_PORT/metrics (also /healthz, /readyz)"
}

step_push() {
    step 4 "Push $(commas "$EVENTS") realistic events across the 4 priorities (auditq-bench)"
    read_stats || die "auditqctl stats failed before the push"
    BASE_PROCESSED=$S_PROCESSED
    BASE_DEAD=$S_DEAD_LETTERED
    # PostgreSQL's clock: rows with received_at after it are this run's.
    RUN_SINCE=$(psql_q "SELECT clock_timestamp()") || die "cannot query PostgreSQL on port $PG_PORT"
    say "The producer library (libauditq) queues each event in memory and a background"
    say "thread LPUSHes batches to Redis; the worker is already moving them to PostgreSQL."
    say "\$ auditq-bench enqueue --events $EVENTS --async --threads 2 --progress"
    PUSH_START=$(now_us)
    "$BIN/auditq-bench" enqueue --events "$EVENTS" --async --threads 2 --progress | indent ||
        die "auditq-bench failed (its messages are above)"
    say "(\"auditq async\" is the time an application thread spends per event; \"lpush ref\""
    say " is one plain synchronous LPUSH round trip, for comparison.)"
}

# One line per second when stdout is not a terminal; in a terminal the
# `auditqctl stats` table is redrawn in place.
step_drain() {
    local start deadline target shown=0 empty_polls=0 out done_ok=0 el line end_us us
    step 5 "Watch the queues drain: auditqctl stats every second (timeout ${DRAIN_TIMEOUT} s)"
    target=$((BASE_PROCESSED + EVENTS))
    start=$SECONDS
    deadline=$((SECONDS + DRAIN_TIMEOUT))
    while :; do
        if ! pid_runs "$DEMO_WORKER_PID" auditq-worker; then
            worker_log_tail
            die "auditq-worker (pid $DEMO_WORKER_PID) died while draining (see $R/worker.log)"
        fi
        read_stats || die "auditqctl stats failed (is Redis on port $REDIS_PORT up? $R/redis-main/redis.log)"
        el=$((SECONDS - start))
        line=$(printf 't=%3ss  queued %s (critical %s, high %s, normal %s, low %s)  in flight %s  retry %s  processed %s/%s' \
            "$el" "$(commas "$S_QUEUED")" "$(commas "$S_CRITICAL")" "$(commas "$S_HIGH")" \
            "$(commas "$S_NORMAL")" "$(commas "$S_LOW")" "$(commas "$S_INFLIGHT")" \
            "$(commas "$S_RETRY")" "$(commas $((S_PROCESSED - BASE_PROCESSED)))" "$(commas "$EVENTS")")
        if ((TTY)); then
            out=$("$BIN/auditqctl" stats 2>&1) || die "auditqctl stats failed: $out"
            out=$(printf '%s\n\n%s' "$out" "t=${el}s  processed by this run: $(commas $((S_PROCESSED - BASE_PROCESSED))) of $(commas "$EVENTS")" | indent)
            ((shown > 0)) && printf '\033[%dA\r\033[J' "$shown"
            printf '%s\n' "$out"
            shown=$(printf '%s\n' "$out" | wc -l)
        else
            say "    $line"
        fi
        if ((S_QUEUED == 0 && S_INFLIGHT == 0 && S_RETRY == 0)); then
            if ((S_PROCESSED >= target)); then
                done_ok=1
                break
            fi
            # Empty but short: events were lost or dead-lettered.  Give the
            # counters a few polls to settle before calling it.
            empty_polls=$((empty_polls + 1))
            if ((empty_polls >= 5)); then
                worker_log_tail
                die "queues are empty but only $(commas $((S_PROCESSED - BASE_PROCESSED))) of $(commas "$EVENTS") events were processed (dead-lettered: $((S_DEAD_LETTERED - BASE_DEAD)), dead list: $S_DEAD); see $R/worker.log"
            fi
        else
            empty_polls=0
        fi
        if ((SECONDS >= deadline)); then
            worker_log_tail
            die "the queues did not drain within ${DRAIN_TIMEOUT} s ($(commas "$S_QUEUED") queued, $(commas "$S_INFLIGHT") in flight, $(commas "$S_RETRY") to retry); see $R/worker.log"
        fi
        sleep 1
    done
    ((done_ok)) || die "internal: drain loop ended without success"
    end_us=$(now_us)
    us=$((end_us - PUSH_START))
    ((us > 0)) || us=1
    say "${GREEN}Drained.${RESET} $(commas "$EVENTS") events from producer to PostgreSQL in" \
        "$(secs_between "$PUSH_START" "$end_us") s (about $(commas $((EVENTS * 1000000 / us))) events/s end to end)."
    if ((S_DEAD_LETTERED > BASE_DEAD)); then
        say "${RED}Note:${RESET} $((S_DEAD_LETTERED - BASE_DEAD)) events were dead-lettered (see $R/worker.log)."
    fi
}

step_psql() {
    local total this_run
    step 6 "What landed in PostgreSQL (psql -h 127.0.0.1 -p $PG_PORT -U postgres auditq)"
    total=$(psql_q "SELECT count(*) FROM audit_events") || die "psql query failed (PostgreSQL log: $R/pg/log)"
    this_run=$(psql_q "SELECT count(*) FROM audit_events WHERE received_at >= '$RUN_SINCE'") ||
        die "psql query failed (PostgreSQL log: $R/pg/log)"
    if ((total != this_run)); then
        say "Total rows in audit_events: $(commas "$total")  ($(commas "$this_run") arrived during this run, the rest in earlier runs)"
    else
        say "Total rows in audit_events: $(commas "$total")"
    fi
    if ((this_run == EVENTS)); then
        say "All $(commas "$EVENTS") events sent by this run arrived, each stored once (primary key: event_id, occurred_at)."
    elif ((this_run > EVENTS)); then
        say "That includes $(commas $((this_run - EVENTS))) events that were still queued from before this run."
    else
        say "${RED}WARNING:${RESET} this run sent $(commas "$EVENTS") events but only $(commas "$this_run") new rows arrived."
    fi

    say ""
    say "Rows by priority:"
    psql_demo -c "
        SELECT priority, count(*) AS rows,
               round(100.0 * count(*) / sum(count(*)) OVER (), 1) AS pct
        FROM audit_events GROUP BY priority
        ORDER BY array_position(ARRAY['critical','high','normal','low'], priority)"
    say ""
    say "Top 10 actions:"
    psql_demo -c "
        SELECT action, count(*) AS rows,
               round(100.0 * count(*) / sum(count(*)) OVER (), 1) AS pct
        FROM audit_events GROUP BY action ORDER BY rows DESC, action LIMIT 10"
    say ""
    say "Rows by outcome:"
    psql_demo -c "
        SELECT coalesce(outcome, '(none)') AS outcome, count(*) AS rows,
               round(100.0 * count(*) / sum(count(*)) OVER (), 1) AS pct
        FROM audit_events GROUP BY outcome ORDER BY rows DESC"
    say ""
    say "3 sample rows (3 different actions, from events that carry a 'changes' diff):"
    psql_demo -x -c "
        SELECT * FROM (
            SELECT DISTINCT ON (action) event_id, occurred_at,
                   actor_type || ':' || actor_id AS actor, action,
                   entity_type || ':' || entity_id AS entity, outcome, changes
            FROM audit_events
            WHERE received_at >= '$RUN_SINCE' AND changes IS NOT NULL
            ORDER BY action, occurred_at DESC) s
        ORDER BY random() LIMIT 3" || die "psql query failed (PostgreSQL log: $R/pg/log)"
}

step_final() {
    step 7 "Final state: auditqctl stats"
    "$BIN/auditqctl" stats 2>&1 | indent
    cat <<EOF

${BOLD}Done.${RESET} The servers and the worker keep running so you can look around.
First source the demo's settings in your shell: that puts $RBIN on PATH and points
auditqctl, auditq-bench and psql at the demo, so the README's commands work as printed.

  source $R/demo.env
  auditqctl stats                  # queues, lag and totals (--watch 2: a live view)
  auditqctl workers                # the demo's worker and its heartbeat
  auditqctl query --tenant acme --since 1h --limit 5 --format ndjson
  psql -c 'SELECT action, count(*) FROM audit_events GROUP BY 1 ORDER BY 2 DESC LIMIT 5'
  curl -s \$DEMO_METRICS_URL | grep '^auditq_processed_total'    # http://127.0.0.1:$DEMO_HTTP_PORT/metrics
  auditq-bench enqueue --events 10000 --async    # more events; the worker takes them at once
  redis-cli -p $REDIS_PORT                 # the queues: keys {auditq}:*
  tail -f $R/worker.log            # the worker's log: a summary line every 10 s

Stop it all:   make demo-stop      (or: bash scripts/demo.sh stop)
Run make demo again to reuse these servers and add another $(commas "$EVENTS") events.
EOF
}

# The trail, checked: every row against its sealed leaf, the Merkle tree
# against every signed checkpoint in PostgreSQL and in $RUN/anchors. Waits
# (10 s at most) for the events just written to be sealed.
step_verify() {
    local i out
    step 8 "Verify the audit trail: auditqctl verify"
    for ((i = 0; i < 100; i++)); do
        [[ "$("$PG_BINDIR/psql" -X -A -t -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d auditq -c             "SELECT count(*) FROM auditq_evidence_batch b WHERE NOT EXISTS
             (SELECT 1 FROM auditq_seal_assignment a WHERE a.item_id = b.batch_id)" </dev/null)" == 0 ]] && break
        sleep 0.1
    done
    out=$(AUDITQ_VERIFY_KEY_FILE="$RUN/seal.key.pub" AUDITQ_ANCHOR_DIR="$RUN/anchors" \
          "$BIN/auditqctl" verify 2>&1) || { printf '%s\n' "$out" | indent; die "auditqctl verify failed"; }
    printf '%s\n' "$out" | indent
    cat <<EOF
Tamper with a row as a superuser and verify names it (README, "Integrity"):
  source $R/demo.env
  psql -c "SET session_replication_role = replica; UPDATE audit_events SET actor_id = 'mallory'
           WHERE event_id = (SELECT event_id FROM audit_events ORDER BY event_id LIMIT 1)"
  auditqctl verify
EOF
}

demo_status() {
    if demo_alive; then
        say "A demo is running (started ${DEMO_STARTED:-?}):"
        say "  Redis       redis-cli -p $REDIS_PORT   (pid ${DEMO_REDIS_PID:-?})"
        say "  PostgreSQL  psql -h 127.0.0.1 -p $PG_PORT -U postgres auditq"
        say "  Metrics     http://127.0.0.1:${DEMO_HTTP_PORT:-?}/metrics"
        say "  Shell       source $R/demo.env   (auditqctl on PATH, pointed at the demo)"
        if pid_runs "${DEMO_WORKER_PID:-}" auditq-worker; then
            say "  Worker      pid $DEMO_WORKER_PID, log $R/worker.log"
        else
            say "  Worker      not running"
        fi
        say "  Stop:       make demo-stop"
        return 0
    fi
    say "No demo is running (${WHY_NOT:-}). Start one with: make demo"
    return 1
}

usage() {
    sed -n '2,27p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

demo_start() {
    local t0
    t0=$(now_us)
    cd "$REPO"
    # Reproducible demo: the defaults plus our servers, whatever the caller exported.
    local v
    for v in $(compgen -e | grep '^AUDITQ_' || true); do
        unset "$v"
    done
    set_traps
    preflight
    say "${BOLD}auditq demo${RESET}: producer library -> Redis queues -> auditq-worker -> PostgreSQL"
    say "Everything runs from $RUN (private servers on free ports; nothing system-wide)."
    step_servers
    step_migrate
    step_worker
    step_push
    step_drain
    step_psql
    step_final
    step_verify
    say "(demo took $(secs_between "$t0" "$(now_us)") s)"
    DEMO_OK=1
}

main() {
    case ${1:-start} in
        start | run) demo_start ;;
        stop) cd "$REPO" && demo_stop ;;
        status) cd "$REPO" && demo_status ;;
        -h | --help | help) usage ;;
        *)
            printf 'demo.sh: unknown command %q\n' "$1" >&2
            usage >&2
            exit 2
            ;;
    esac
}

main "$@"
