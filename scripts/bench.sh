#!/usr/bin/env bash
# bench.sh -- `make bench`: the standard benchmark scenario on private,
# durable servers (Redis with AOF appendfsync everysec, PostgreSQL with
# fsync on), started in a temp dir and stopped afterwards.
#
#   bash scripts/bench.sh [--json]      (BUILD=build-x to use another build)
#
# Runs, in this order, each on a fresh database:
#   1. enqueue sync   50,000 events, 1 thread, with the bare-LPUSH reference
#   2. enqueue async 500,000 events, 1 thread, with the reference; events
#      from a pre-built pool (--pool 4096) so the library, not the
#      generator, is measured (as in 3)
#   3. e2e           200,000 events, 1 worker x 2 threads, the PostgreSQL
#                    ceiling (1 and 2 connections) measured in the same run,
#                    then 10 s at half the measured rate for latency
# and prints each command's table (or one JSON object per line with --json).
# Environment: BENCH_EVENTS (e2e events, default 200000),
# BENCH_WORKER_THREADS (default 2), BENCH_WORKERS (default 1).
set -euo pipefail
cd "$(dirname "$0")/.."
fmt=()
[[ "${1:-}" == --json ]] && fmt=(--json)
source scripts/bench-servers.sh
echo "== machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr); $(redis-server --version | awk '{print $1, $2, $3}'); $(postgres --version 2>/dev/null || "$(pg_config --bindir)/postgres" --version)"
echo "== enqueue, sync"
fresh_db
"$BIN/auditq-bench" enqueue --events 50000 --quiet "${fmt[@]}"
echo "== enqueue, async"
fresh_db
"$BIN/auditq-bench" enqueue --events 500000 --async --pool 4096 --quiet "${fmt[@]}"
echo "== end to end"
fresh_db
"$BIN/auditq-bench" e2e --events "${BENCH_EVENTS:-200000}" --workers "${BENCH_WORKERS:-1}" \
    --worker-threads "${BENCH_WORKER_THREADS:-2}" --pool 4096 --progress "${fmt[@]}"
