# shellcheck shell=bash
# lib_it.sh -- shared steps of the auditq integration tests (sourced).
#   it_setup            private Redis + PostgreSQL, migrated schema
#   worker_start NAME [--set k=v ...]   background auditq-worker, log in $AQ_TMP/NAME.log
#   worker_stop NAME    SIGTERM, wait, assert exit 0
#   stat FIELD          one number from `auditqctl stats --json` (dotted path)
#   rows [WHERE]        count(*) from audit_events
#   drained             true when every queue, in-flight list and the retry set are empty
#   dead_reasons        the dead-letter records' reason (and sqlstate), one per line
#   month K FMT         this month (UTC) + K months, formatted by to_char FMT
#   tables_in SCHEMA    the audit_events_YYYY_MM tables in SCHEMA, one line
#   refused SQL         the first line of the error PostgreSQL gives (fails if SQL succeeds)
#   acked_vs_rows ACKLOG TAG  acknowledged event_ids (it_client stream) vs rows: acked= stored= duplicates= missing= unacked=
#   sentinel_start I NAME MASTER_PORT QUORUM [LINE...]  redis-server --sentinel number I on a free port
#                       (appended to SENT_PORTS) monitoring NAME, with extra sentinel.conf LINEs
source "$(dirname "${BASH_SOURCE[0]}")/../lib/harness.sh"

BIN_REAL="${AQ_BIN:-$AQ_ROOT/${BUILD:-build}/bin}"   # AQ_BIN: wrapped binaries (make valgrind)
# auditqctl records its reads and changes in the trail (self-audit,
# docs/SECURITY.md): those events would add rows, queue depth and counters
# to every test's exact numbers. So $BIN holds the binaries with an
# auditqctl that runs the real one with --no-self-audit under a config file
# allowing it (self_audit = optional); $CTL_AUDITED is the real one, for
# the tests of self-audit itself (it_89_self_audit.sh).
CTL_AUDITED=$BIN_REAL/auditqctl
_aq_noaudit_bin() {
    local dir tmp
    dir="$AQ_ROOT/${BUILD:-build}/tests/noaudit-$(printf '%s' "$BIN_REAL" | cksum | cut -d' ' -f1)"
    if [[ ! -x "$dir/auditqctl" || ! -e "$dir/self-audit-optional.conf" ]]; then
        mkdir -p "$dir"
        tmp=$(mktemp "$dir/.tmp.XXXXXX")
        printf 'self_audit = optional\n' >"$tmp" && mv -f "$tmp" "$dir/self-audit-optional.conf"
        tmp=$(mktemp "$dir/.tmp.XXXXXX")
        printf '#!/bin/sh\nexec "%s" -c "%s" --no-self-audit "$@"\n' \
            "$BIN_REAL/auditqctl" "$dir/self-audit-optional.conf" >"$tmp"
        chmod 755 "$tmp" && mv -f "$tmp" "$dir/auditqctl"
    fi
    for b in "$BIN_REAL"/*; do
        [[ "$(basename "$b")" == auditqctl || -e "$dir/$(basename "$b")" ]] || ln -sfn "$b" "$dir/$(basename "$b")"
    done
    printf '%s\n' "$dir"
}
BIN=$(_aq_noaudit_bin)
TBIN="${AQ_TBIN:-$AQ_ROOT/${BUILD:-build}/tests}" # AQ_TBIN: wrapped test clients (make valgrind)
PY=/usr/bin/python3
declare -A WORKER_PID
# The worker records its own start, stop, reloads and dead letters as events
# (worker_self_audit, default on): rows that would break every test's exact
# counts. Off for every worker a test starts; it_89_worker_events.sh unsets it.
export AUDITQ_WORKER_SELF_AUDIT=off

it_setup() {
    harness_init
    redis_start
    AQ_PG_FAST=${AQ_PG_FAST:-1} pg_start
    "$BIN/auditqctl" migrate >/dev/null
}

worker_start() {
    local name=$1 bin=$BIN/auditq-worker
    shift
    # A test hook (crash_after_commit) exists only in the test build of the
    # worker (Makefile: tests/auditq-worker-hooks); bin/auditq-worker refuses it.
    if [[ " $* " == *" crash_after_commit="* ]]; then
        bin=$TBIN/auditq-worker-hooks
        [[ -x $bin ]] || { echo "FAIL: $bin missing: make BUILD=${BUILD:-build} $bin"; exit 1; }
    fi
    harness_spawn "$name" "$bin" --set idle_poll_ms=20 --set heartbeat_interval_ms=500 \
        --set heartbeat_timeout_ms=2000 --set recovery_interval_ms=500 "$@"
    WORKER_PID[$name]=$HARNESS_LAST_PID
}

worker_stop() {
    local name=$1 pid=${WORKER_PID[$1]} rc=0
    kill -TERM "$pid"
    wait "$pid" || rc=$?
    assert_eq 0 "$rc" "worker $name exit status after SIGTERM"
}

stat() {
    "$BIN/auditqctl" stats --json | "$PY" -c '
import json, sys
v = json.load(sys.stdin)
for part in sys.argv[1].split("."):
    v = v[part]
print(v)' "$1"
}

rows() {
    psql_q "SELECT count(*) FROM audit_events ${1:-}"
}

drained() {
    local j
    j=$("$BIN/auditqctl" stats --json) || return 1
    "$PY" -c '
import json, sys
s = json.loads(sys.argv[1])
depth = sum(q["depth"] for q in s["queues"].values())
sys.exit(0 if depth == 0 and s["inflight"] == 0 and s["retry"] == 0 else 1)' "$j"
}

# A crash-looping job (it_35, it_89_worker_events): one event (tag TAG) sent
# to the normal queue, then taken off it and put in flight in three
# workers that died (registrations with a heartbeat at the epoch), so the
# next worker's recovery counts three recoveries of the same bytes.
crashloop_setup() {  # TAG
    "$TBIN/it_client" send --events 1 --priority 2 --tag "$1" >/dev/null
    redis-cli -p "$REDIS_PORT" EVAL "local j = redis.call('RPOP', KEYS[1]) for i = 2, 4 do redis.call('RPUSH', KEYS[i], j) end" 4 \
        '{auditq}:queue:normal' '{auditq}:inflight:dead1:0' '{auditq}:inflight:dead2:0' '{auditq}:inflight:dead3:0' >/dev/null
    for w in dead1 dead2 dead3; do
        redis-cli -p "$REDIS_PORT" ZADD '{auditq}:workers' 1 "$w" >/dev/null
        redis-cli -p "$REDIS_PORT" HSET "{auditq}:worker:$w" src:0 2:1 >/dev/null
    done
}
dead_reasons() {
    "$PY" - "$REDIS_PORT" <<'PYEOF'
import socket, sys, msgpack
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"*4\r\n$6\r\nLRANGE\r\n$13\r\n{auditq}:dead\r\n$1\r\n0\r\n$2\r\n-1\r\n")
f = s.makefile("rb")
n = int(f.readline()[1:])
for _ in range(n):
    ln = int(f.readline()[1:])
    # raw=True: a record built by the recover script holds the job as a
    # msgpack str of arbitrary bytes (docs/PROTOCOL.md).
    rec = {k.decode(): v for k, v in msgpack.unpackb(f.read(ln + 2)[:-2], raw=True).items()}
    line = rec["reason"].decode()
    if rec.get("sqlstate"):
        line += " [" + rec["sqlstate"].decode() + "]"
    print(line)
PYEOF
}

month() { psql_q "SELECT to_char(date_trunc('month', now() AT TIME ZONE 'UTC') + interval '$1 months', '$2')"; }

tables_in() {
    psql_q "SELECT coalesce(string_agg(relname, ' ' ORDER BY relname), '') FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = '$1' AND c.relkind = 'r' AND relname ~ '^audit_events_[0-9]{4}_[0-9]{2}$'"
}

refused() {
    local out
    if out=$(psql_q "$1" 2>&1); then
        echo "FAIL: expected an error from: $1" >&2
        exit 1
    fi
    printf '%s\n' "$out" | head -n 1
}

# acked_vs_rows ACKLOG TAG: PostgreSQL against the event_ids a producer logged as
# acknowledged by Redis (it_client stream --ack-log ACKLOG --tag TAG). Prints
# "acked=A stored=S duplicates=D missing=M unacked=U": S rows tagged TAG,
# D = S - distinct event_ids, M acknowledged ids with no row, U rows whose
# id was never acknowledged (a send that failed after Redis took it).
acked_vs_rows() {
    local psql=psql
    [[ -n "${PG_BINDIR:-}" && -x "$PG_BINDIR/psql" ]] && psql=$PG_BINDIR/psql
    "$psql" -X -A -t -q -v ON_ERROR_STOP=1 -c "CREATE TEMP TABLE acked (id uuid)" \
        -c "\\copy acked FROM '$1'" -c "
        WITH s AS (SELECT event_id FROM audit_events WHERE request_id LIKE 'req-$2-%')
        SELECT format('acked=%s stored=%s duplicates=%s missing=%s unacked=%s',
            (SELECT count(*) FROM acked), (SELECT count(*) FROM s),
            (SELECT count(*) - count(DISTINCT event_id) FROM s),
            (SELECT count(*) FROM acked a WHERE NOT EXISTS (SELECT 1 FROM s WHERE s.event_id = a.id)),
            (SELECT count(*) FROM s WHERE NOT EXISTS (SELECT 1 FROM acked a WHERE a.id = s.event_id)))" </dev/null
}

sentinel_start() {
    local i=$1 name=$2 mport=$3 quorum=$4 d p line
    shift 4
    d=$AQ_TMP/sentinel-$i
    mkdir -p "$d"
    p=$(free_port)
    SENT_PORTS+=("$p")
    printf 'port %s\nbind 127.0.0.1\ndir %s\nlogfile %s/sentinel.log\nsentinel monitor %s 127.0.0.1 %s %s\n' \
        "$p" "$d" "$d" "$name" "$mport" "$quorum" >"$d/sentinel.conf"
    for line in "$@"; do
        printf '%s\n' "$line" >>"$d/sentinel.conf"
    done
    harness_spawn "sentinel-$i" redis-server "$d/sentinel.conf" --sentinel
}
