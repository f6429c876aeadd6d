#!/usr/bin/env bash
# bench-self-events.sh -- what the worker's self-audit events
# (worker_self_audit, worker/selfevents.c) cost the writers on a
# dead-letter flood, the only write-path case where they do any work.
#
#   bash scripts/bench-self-events.sh [JOBS] [ROUNDS]
#
# Private servers. Each round, for worker_self_audit = off (the reference)
# then on: fresh queues and table, JOBS undecodable jobs pushed onto the
# normal queue (the table keeps earlier rounds' rows: it is append-only), one worker (2 threads); dead_ms = its start until every job
# is dead-lettered (the writers' path). With on, events_ms = until the JOBS
# auditq.worker.dead_letter events are stored too, and the row count is
# checked (waits at most 60 s: with JOBS above SELFEVENTS_MAX_PENDING,
# 10,000, handed over faster than the main loop pushes them, the excess is
# dropped by design, counted in auditq_self_events_failed_total). Prints
# one line per run and the load average.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/lib/harness.sh
N=${1:-20000}
ROUNDS=${2:-2}
BIN=build/bin
PY=/usr/bin/python3
harness_init
redis_start
pg_start
$BIN/auditqctl migrate >/dev/null
stat() { $BIN/auditqctl stats --json | $PY -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
junk() {  # N undecodable jobs, one pipelined RESP stream
    $PY - "$N" <<'PYEOF' | redis-cli -p "$REDIS_PORT" --pipe >/dev/null
import sys
key = b"{auditq}:queue:normal"
out = sys.stdout.buffer
for i in range(int(sys.argv[1])):
    v = b"junk %d" % i
    out.write(b"*3\r\n$5\r\nLPUSH\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(key), key, len(v), v))
PYEOF
}
for r in $(seq "$ROUNDS"); do
    for mode in off on; do
        redis-cli -p "$REDIS_PORT" FLUSHALL >/dev/null
        base=$(psql_q "SELECT count(*) FROM audit_events WHERE action = 'auditq.worker.dead_letter'")
        junk
        t0=$(date +%s%N)
        AUDITQ_WORKER_SELF_AUDIT=$mode harness_spawn "w_${mode}_$r" $BIN/auditq-worker --set threads=2 \
            --set idle_poll_ms=5 --set dead_letter_max=$((N * 2))
        pid=$HARNESS_LAST_PID
        until [ "$(stat dead_lettered)" -ge "$N" ]; do sleep 0.02; done
        t1=$(date +%s%N)
        extra=""
        if [[ $mode == on ]]; then
            until [ "$(psql_q "SELECT count(*) FROM audit_events WHERE action = 'auditq.worker.dead_letter'")" -ge $((base + N)) ] || (( $(date +%s%N) - t0 > 60000000000 )); do
                sleep 0.02
            done
            t2=$(date +%s%N)
            extra=" events_ms=$(( (t2 - t0) / 1000000 )) dead_letter_rows=$(( $(psql_q "SELECT count(*) FROM audit_events WHERE action = 'auditq.worker.dead_letter'") - base ))"
        fi
        kill -TERM "$pid"; wait "$pid" || true
        echo "round=$r worker_self_audit=$mode jobs=$N dead_ms=$(( (t1 - t0) / 1000000 ))$extra load=$(cut -d' ' -f1-3 /proc/loadavg)"
    done
done
