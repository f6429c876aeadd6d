#!/usr/bin/env bash
# bench-write-method.sh -- COPY vs array-bound INSERT, end to end through the
# worker, on private servers (durable PostgreSQL: fsync on).
#
#   bash scripts/bench-write-method.sh [EVENTS] [THREADS]
#
# For each method: a fresh database, EVENTS realistic events pre-loaded into
# Redis by auditq-bench (so the worker, not the producer, is measured), then
# one worker with THREADS threads; the time from its start until every
# event is committed gives rows/s. Prints one line per method.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/lib/harness.sh
N=${1:-200000}
T=${2:-2}
BIN=build/bin
harness_init
redis_start
pg_start
for method in copy insert; do
    psql_q "DROP DATABASE IF EXISTS bench_$method" >/dev/null
    psql_q "CREATE DATABASE bench_$method" >/dev/null
    url="postgresql://postgres@127.0.0.1:$PG_PORT/bench_$method"
    AUDITQ_DATABASE_URL=$url $BIN/auditqctl migrate >/dev/null
    redis-cli -p "$REDIS_PORT" FLUSHALL >/dev/null
    $BIN/auditq-bench enqueue --events "$N" --async --threads 2 --no-ref --quiet --seed 7 >/dev/null
    t0=$(date +%s%N)
    AUDITQ_DATABASE_URL=$url harness_spawn "w_$method" $BIN/auditq-worker --set threads="$T" \
        --set write_method=$method --set idle_poll_ms=5
    pid=$HARNESS_LAST_PID
    until [ "$($BIN/auditqctl stats --json | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["processed"])')" -ge "$N" ]; do
        sleep 0.05
    done
    t1=$(date +%s%N)
    kill -TERM "$pid"; wait "$pid" || true
    rows=$(PGDATABASE=bench_$method psql_q "SELECT count(*) FROM audit_events")
    ms=$(( (t1 - t0) / 1000000 ))
    echo "write_method=$method events=$N threads=$T rows=$rows time_ms=$ms rows_per_s=$(( N * 1000 / ms ))"
done
