#!/usr/bin/env bash
# bench-scaling.sh -- the scaling curve: end-to-end throughput with 1, 2 and
# 4 worker threads in one process, and 1 and 2 worker processes (2 threads
# each), each on a fresh database, against the PostgreSQL ceiling measured
# at the start of the same run. Private durable servers, as `make bench`.
#
#   bash scripts/bench-scaling.sh [EVENTS]     (default 200000)
#
# Prints one line per configuration: threads x processes, events/s, ratio to
# the 2-connection ceiling, worker CPU seconds and peak RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200000}
PY=/usr/bin/python3
source scripts/bench-servers.sh
fresh_db
ceil=$("$BIN/auditq-bench" ceiling --events "$N" --conns 1,2,4 --quiet --json)
echo "ceiling: $ceil"
c2=$("$PY" -c 'import json,sys; r=json.loads(sys.argv[1])["results"]; print([x for x in r if x["conns"]==2][0]["rows_per_s"])' "$ceil")
printf '%-22s %10s %8s %10s %10s\n' configuration "ev/s" "/ceil2" "cpu s" "rss MiB"
for cfg in "1 1" "2 1" "4 1" "2 2"; do
    set -- $cfg
    fresh_db
    j=$("$BIN/auditq-bench" e2e --events "$N" --worker-threads "$1" --workers "$2" --no-ceiling \
        --latency-seconds 0 --pool 4096 --quiet --json)
    "$PY" - "$j" "$c2" "$1" "$2" <<'PY'
import json, sys
j = json.loads(sys.argv[1]); c2 = float(sys.argv[2])
eps = j["phases"][0]["events_per_s"]
cpu = sum(w["cpu_s"] for w in j["worker_processes"])
rss = max(w["max_rss_kb"] for w in j["worker_processes"]) / 1024
print("%-22s %10.0f %8.2f %10.2f %10.1f" % ("%s thread(s) x %s proc" % (sys.argv[3], sys.argv[4]), eps, eps / c2, cpu, rss))
PY
done
