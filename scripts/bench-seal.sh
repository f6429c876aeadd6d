#!/usr/bin/env bash
# bench-seal.sh -- what sealing costs (issue 12), side by side in one run,
# on private durable servers (scripts/bench-servers.sh):
#
#   bash scripts/bench-seal.sh          (BUILD=build-x to use another build)
#
# ROUNDS (default 2) times, alternating, each on a fresh database:
#   off  the evidence trigger disabled (ALTER TABLE ... DISABLE TRIGGER
#        audit_events_evidence) and no seal_key_file: the write path as it
#        was before sealing;
#   on   the trigger on, every worker with seal_key_file and anchor_dir;
# each `auditq-bench e2e` with BENCH_EVENTS (default 200000) events, 1
# worker x BENCH_WORKER_THREADS (default 2) threads, then 10 s at half the
# measured rate. For "on" also: checkpoint lag -- a batch's commit
# (created_at, stamped in its transaction) to the signing of the first
# checkpoint covering it -- p50/p99/max over the batches of the half-load
# phase, and `auditqctl verify` over the whole database (rows/s, its RSS).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-servers.sh
EVENTS=${BENCH_EVENTS:-200000}
THREADS=${BENCH_WORKER_THREADS:-2}
ROUNDS=${ROUNDS:-2}
KEY=$AQ_TMP/seal.key
"$BIN/auditqctl" keygen "$KEY" >/dev/null
echo "== machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

e2e() {  # MODE -> events/s of the full-load phase
    local mode=$1 out
    local ws=()
    fresh_db
    if [[ $mode == off ]]; then
        PGDATABASE=bench psql_q "ALTER TABLE audit_events DISABLE TRIGGER audit_events_evidence" >/dev/null
    else
        rm -rf "$AQ_TMP/anchors" && mkdir -p "$AQ_TMP/anchors"
        ws=(--worker-set "seal_key_file=$KEY" --worker-set "anchor_dir=$AQ_TMP/anchors")
    fi
    out=$("$BIN/auditq-bench" e2e --events "$EVENTS" --worker-threads "$THREADS" --pool 4096 --no-ceiling \
          --latency-seconds 10 --load-fraction 0.5 "${ws[@]}" --json)
    python3 -c '
import json, sys
v = json.loads(sys.argv[1])
full, half = v["phases"][0], v["phases"][1]
print("%.0f %.0f %.1f" % (full["events_per_s"], half["rate"], half["latency_ms"]["p99"]))' "$out"
}

declare -a OFF ON
for ((r = 1; r <= ROUNDS; r++)); do
    read -r eps half lat <<<"$(e2e off)"
    OFF+=("$eps")
    echo "round $r off: $eps events/s (half load $half ev/s: event p99 $lat ms)"
    read -r eps half lat <<<"$(e2e on)"
    ON+=("$eps")
    # Batches of the half-load phase: the last 10 s of commits.
    lag=$(PGDATABASE=bench psql_q "
        WITH b AS (SELECT b.created_at, c.signed_at
                     FROM auditq_evidence_batch b
                     JOIN auditq_seal_assignment a ON a.item_id = b.batch_id
                     JOIN auditq_checkpoint c ON c.tree_size = a.tree_size
                    WHERE b.created_at >= (SELECT max(created_at) FROM auditq_evidence_batch) - interval '10 s')
        SELECT format('%s batches: p50 %s ms, p99 %s ms, max %s ms', count(*),
               round(percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM signed_at - created_at) * 1000)::numeric),
               round(percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM signed_at - created_at) * 1000)::numeric),
               round(max(extract(epoch FROM signed_at - created_at) * 1000)::numeric)) FROM b")
    echo "round $r on:  $eps events/s (half load $half ev/s: event p99 $lat ms); checkpoint lag at half load: $lag"
done
# verify over the last "on" database
/usr/bin/time -f "%e s %M kB" -o "$AQ_TMP/verify.time" \
    env AUDITQ_DATABASE_URL="postgresql://postgres@127.0.0.1:$PG_PORT/bench" \
    "$BIN/auditqctl" verify --key "$KEY.pub" --anchors "$AQ_TMP/anchors" >"$AQ_TMP/verify.out"
rows=$(PGDATABASE=bench psql_q "SELECT count(*) FROM audit_events")
read -r secs _ rss _ <"$AQ_TMP/verify.time"
echo "verify: $rows rows in $secs s = $(awk -v r="$rows" -v s="$secs" 'BEGIN { printf "%.0f", r / s }') rows/s, max RSS $rss kB: $(cut -c1-60 "$AQ_TMP/verify.out")..."
python3 -c '
import sys
off = [float(x) for x in sys.argv[1].split()]
on = [float(x) for x in sys.argv[2].split()]
mo, mn = sum(off) / len(off), sum(on) / len(on)
print("mean off %.0f ev/s, on %.0f ev/s: sealing costs %.1f %% of end-to-end throughput" % (mo, mn, 100 * (mo - mn) / mo))' \
    "${OFF[*]}" "${ON[*]}"
echo "== load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
