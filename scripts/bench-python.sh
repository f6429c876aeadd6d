#!/usr/bin/env bash
# bench-python.sh -- per-call cost of the Python binding's async send beside
# the C library's, in the same run, on one private Redis (BENCHMARKS.md,
# "Python binding"). Needs `make all bindings`.
#
#   bash scripts/bench-python.sh [EVENTS]      (default 100000; BUILD=build-x)
#
# Order: C (auditq-bench enqueue --async --pool 4096), Python with dicts,
# Python with JSON text, C again (each with buffer_events=1000000, so the
# call is measured, not backpressure from a slow Redis; the C runs also
# time a bare hiredis LPUSH, the suite's usual reference) -- the two C runs bracket the Python ones,
# so a machine whose load changed during the run shows it.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100000}
B=${BUILD:-build}
[[ -f $B/python/auditq/__init__.py ]] || { echo "bench-python: make BUILD=$B all bindings first" >&2; exit 1; }
source tests/lib/harness.sh
harness_init
redis_start
echo "== machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr); load $(cut -d' ' -f1-3 /proc/loadavg); $(/usr/bin/python3 --version); $(redis-server --version | awk '{print $3}')"
c_run() {
    echo "== C: auditq-bench enqueue --events $N --async --pool 4096 --buffer-events 1000000 --quiet"
    "$B/bin/auditq-bench" enqueue --redis-url "$AUDITQ_REDIS_URL" --events "$N" --async --pool 4096 --buffer-events 1000000 --quiet
    redis-cli -p "$REDIS_PORT" flushall >/dev/null
}
c_run
for j in dict str; do
    echo "== Python: bench.py --events $N --json-as $j"
    PYTHONPATH=$B/python /usr/bin/python3 -P bindings/python/bench.py --redis-url "$AUDITQ_REDIS_URL" --events "$N" --json-as $j
    redis-cli -p "$REDIS_PORT" flushall >/dev/null
done
c_run
