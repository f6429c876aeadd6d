#!/usr/bin/env bash
# bench-capacity.sh -- the per-event costs behind docs/SCALING.md's capacity
# plan, on private durable servers (scripts/bench-servers.sh):
#
#   bash scripts/bench-capacity.sh          (BUILD=build-x: another build)
#
# Throughput on a shared machine is noise; CPU-seconds, operations and bytes
# per event are not (much). So every step reads, before and after:
#   worker      utime+stime of the auditq-worker process (/proc/PID/stat)
#   PostgreSQL  utime+stime of every live postgres process plus the
#               postmaster's cutime+cstime (backends that exited)
#   Redis       INFO cpu (used_cpu_user+sys), commandstats (calls per
#               command), stats (total_net_input/output_bytes), used_memory
#   WAL         pg_current_wal_lsn()
# and prints the deltas divided by the events, with the load average.
#
# Steps (each on a fresh database and an empty Redis):
#   ref       redis-benchmark LPUSH of 600-byte values (the job size), 50
#             clients, plain and -P 100: ops/s and Redis CPU per LPUSH; and
#             `auditq-bench ceiling --conns 1`, then `--conns 2`: rows/s and
#             PostgreSQL CPU per row of the worker's own write path without
#             Redis, a worker or sealing.
#   sync      `auditq-bench enqueue` SYNC_EVENTS (default 20000), no worker,
#             from 1 and from 8 producer threads (Redis's CPU per command
#             falls when it finds several commands per wake-up)
#   drain     for each "THREADS:BATCH" in CONFIGS (default "1:1000 2:1000
#             4:1000 2:100 2:500"): DRAIN_EVENTS (default 100000) events
#             queued by `auditq-bench enqueue --async` (the producer side:
#             Redis CPU/ops/bytes per event and used_memory per queued
#             event), then one auditq-worker with sealing on (seal_key_file,
#             anchor_dir) drains them; the "after" reading waits until every
#             evidence batch is sealed, so sealing is in the PostgreSQL and
#             worker figures. Also: bytes per stored event (audit_events
#             with its indexes and TOAST; the evidence tables) and WAL per
#             event.
#   paced     PACED_RATE (default 5000) events/s for PACED_SECONDS (default
#             10) from the async producer into a running worker (2 threads,
#             batch_size 1000, sealing on): the costs at a steady rate below
#             the ceiling, where batches are not full, and events per batch;
#             before it, the idle worker's cost per second over IDLE_SECONDS
#             (default 5). Drain and paced steps also read the worker's
#             /metrics: the fraction of time its threads spent writing and
#             the jobs per fetched batch (the signals of docs/SCALING.md).
#   backlog   BACKLOG_EVENTS (default 1000000) events queued, no worker:
#             Redis used_memory per queued event at that depth, and the
#             AOF's size per queued event after BGREWRITEAOF (with the
#             fork's time).
#   ring      the producer's memory per async-buffer slot: peak RSS of
#             `auditq-bench enqueue --async` of RING_EVENTS (default 100000)
#             minus that of RING_EVENTS/10, both with Redis writes paused
#             (CLIENT PAUSE 4000 WRITE: every event waits in the buffer).
#   e2e       `auditq-bench e2e --events E2E_EVENTS` (default 200000), 2
#             worker threads, sealing on: the whole pipeline at once
#             (producer and worker against one Redis), events/s beside the
#             ceiling measured in the ref step.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-servers.sh
SYNC_EVENTS=${SYNC_EVENTS:-20000}
DRAIN_EVENTS=${DRAIN_EVENTS:-100000}
BACKLOG_EVENTS=${BACKLOG_EVENTS:-1000000}
RING_EVENTS=${RING_EVENTS:-100000}
E2E_EVENTS=${E2E_EVENTS:-200000}
PACED_RATE=${PACED_RATE:-5000}
PACED_SECONDS=${PACED_SECONDS:-10}
IDLE_SECONDS=${IDLE_SECONDS:-5}
CONFIGS=${CONFIGS:-"1:1000 2:1000 4:1000 2:100 2:500"}
KEY=$AQ_TMP/seal.key
SNAP=$AQ_TMP/snap
HZ=$(getconf CLK_TCK)
rcli() { redis-cli -p "$REDIS_PORT" "$@"; }
load1() { cut -d' ' -f1 /proc/loadavg; }
echo "== machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr); $(date -u +%FT%TZ); $(redis-server --version | cut -d' ' -f3); $(psql -V); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$BIN/auditqctl" keygen "$KEY" >/dev/null

# utime+stime (+ cutime+cstime with a second argument) of PID, in ticks.
ticks() {
    local s
    s=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
    s=${s##*) }
    awk -v c="${2:-0}" '{ t = $12 + $13; if (c) t += $14 + $15; print t }' <<<"$s"
}
pg_ticks() {
    local pm t c
    pm=$(head -n 1 "$AQ_PGDATA/postmaster.pid")
    t=$(ticks "$pm" 1)
    for c in $(pgrep -P "$pm"); do t=$((t + $(ticks "$c"))); done
    echo "$t"
}
# snap NAME [WORKER_PID]: the counters, one "key value" per line.
snap() {
    {
        echo "t $(date +%s.%N)"
        echo "pg_cpu $(awk -v t="$(pg_ticks)" -v hz="$HZ" 'BEGIN { print t / hz }')"
        echo "worker_cpu $(awk -v t="$(ticks "${2:-0}")" -v hz="$HZ" 'BEGIN { print t / hz }')"
        rcli INFO cpu | awk -F: '/^used_cpu_(sys|user):/ { s += $2 } END { print "redis_cpu", s }'
        rcli INFO stats | tr -d '\r' | awk -F: '/^total_net_(input|output)_bytes:/ { print $1, $2 }'
        rcli INFO memory | tr -d '\r' | awk -F: '/^used_memory:/ { print $1, $2 }'
        rcli INFO commandstats | tr -d '\r' |
            sed -n 's/^cmdstat_\([^:]*\):calls=\([0-9]*\),.*/cmd_\1 \2/p'
        echo "wal $(psql_q "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')")"
        echo "load $(load1)"
    } >"$SNAP.$1"
}
# per NAME_FROM NAME_TO EVENTS LABEL: the deltas per event, on one line.
per() {
    python3 - "$SNAP.$1" "$SNAP.$2" "$3" "$4" <<'EOF'
import sys
def rd(p):
    return {k: float(v) for k, v in (l.split() for l in open(p) if l.strip())}
a, b, n, label = rd(sys.argv[1]), rd(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
d = lambda k: b.get(k, 0.0) - a.get(k, 0.0)
us = lambda k: d(k) / n * 1e6
cmds = sorted(((d(k) / n, k[4:]) for k in b if k.startswith("cmd_") and d(k) > 0), reverse=True)
print("%s: %d events in %.1f s = %.0f ev/s; CPU us/event: worker %.1f, PostgreSQL %.1f, Redis %.1f; "
      "Redis net in %.0f B/ev, out %.0f B/ev; used_memory %+.0f B/ev; WAL %.0f B/ev; load %.2f -> %.2f"
      % (label, n, d("t"), n / d("t"), us("worker_cpu"), us("pg_cpu"), us("redis_cpu"),
         d("total_net_input_bytes") / n, d("total_net_output_bytes") / n, d("used_memory") / n,
         d("wal") / n, a["load"], b["load"]))
print("  Redis calls/event: " + ", ".join("%s %.4g" % (c, v) for v, c in cmds[:12])
      + "; all commands %.3f" % sum(v for v, _ in cmds))
EOF
}
db_sizes() {  # "audit_events_bytes evidence_bytes" of database bench
    PGDATABASE=bench psql_q "
        SELECT (SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('audit_events')),
               (SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c
                 WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'
                   AND c.relname LIKE 'auditq\_%' AND NOT c.relispartition)" | tr '|' ' '
}
unsealed() {
    PGDATABASE=bench psql_q "SELECT count(*) FROM auditq_evidence_batch b WHERE NOT EXISTS
        (SELECT 1 FROM auditq_seal_assignment a WHERE a.item_id = b.batch_id)"
}
processed() { rcli HGET '{auditq}:stats' processed | sed 's/^$/0/'; }
written() { [[ "$(processed)" -ge "$1" ]]; }
sealed() { [[ "$(unsealed)" == 0 ]]; }
# wm PORT: "write_s batches jobs" from the worker's /metrics (the signals
# docs/SCALING.md tells operators to watch).
wm() {
    curl -fsS "http://127.0.0.1:$1/metrics" | awk '
        $1 == "auditq_pg_write_duration_seconds_sum" { w = $2 }
        $1 == "auditq_batch_size_count" { n = $2 }
        $1 == "auditq_batch_size_sum" { j = $2 }
        END { print w + 0, n + 0, j + 0 }'
}
# signals THREADS SECONDS "W0 N0 J0" "W1 N1 J1": busy fraction, jobs per batch
signals() {
    awk -v th="$1" -v secs="$2" -v a="$3" -v b="$4" 'BEGIN {
        split(a, x, " "); split(b, y, " ")
        n = y[2] - x[2]
        printf "/metrics: threads busy writing %.0f %% (write_duration_seconds_sum / threads / %.2f s), %.0f jobs per fetched batch (batch_size_sum / count, %d batches)\n",
            100 * (y[1] - x[1]) / th / secs, secs, n ? (y[3] - x[3]) / n : 0, n }'
}
enqueue_async() {  # EVENTS [extra args]: the async producer, no reference
    local n=$1
    shift
    # A full buffer waits for Redis (an AOF fsync can stall it for a
    # moment) instead of failing the send.
    "$BIN/auditq-bench" enqueue --events "$n" --async --pool 4096 --no-ref --quiet \
        --set enqueue_timeout_ms=60000 "$@" >"$AQ_TMP/enqueue.out"
}

echo "== ref: redis-benchmark LPUSH, 600-byte values, 50 clients (load $(load1))"
rcli FLUSHALL >/dev/null
for p in 1 100; do
    snap r0
    ops=$(redis-benchmark -p "$REDIS_PORT" -t lpush -n 200000 -c 50 -d 600 -P "$p" -q | tr '\r' '\n' |
          sed -n 's/^LPUSH: \([0-9.]*\) requests per second.*/\1/p' | tail -n 1)
    snap r1
    echo "  -P $p: $ops LPUSH/s"
    per r0 r1 200000 "  redis-benchmark LPUSH -P $p" | sed -n 1p
    rcli FLUSHALL >/dev/null
done
for k in 1 2; do
    echo "== ref: auditq-bench ceiling --conns $k --events 100000 (load $(load1))"
    fresh_db
    snap c0
    "$BIN/auditq-bench" ceiling --conns "$k" --events 100000 --quiet --database-url "$AUDITQ_DATABASE_URL" |
        sed -n 's/^ *\([0-9]\)/  \1/p'
    snap c1
    per c0 c1 100000 "  ceiling ($k connection(s))" | sed -n 1p
done
for t in 1 8; do
    echo "== sync producer: auditq-bench enqueue --events $SYNC_EVENTS --threads $t (sync, no worker)"
    fresh_db
    snap s0
    "$BIN/auditq-bench" enqueue --events "$SYNC_EVENTS" --threads "$t" --pool 4096 --no-ref --quiet >"$AQ_TMP/enqueue.out"
    snap s1
    per s0 s1 "$SYNC_EVENTS" "  sync send, $t producer thread(s)"
done

for cfg in $CONFIGS; do
    th=${cfg%%:*}
    b=${cfg##*:}
    echo "== drain: $DRAIN_EVENTS events, 1 worker x $th threads, batch_size $b, sealing on"
    fresh_db
    read -r ev0 evid0 <<<"$(db_sizes)"
    snap a0
    enqueue_async "$DRAIN_EVENTS"
    snap a1
    per a0 a1 "$DRAIN_EVENTS" "  async send (queued)"
    rm -rf "$AQ_TMP/anchors" && mkdir -p "$AQ_TMP/anchors"
    snap d0
    mport=$(free_port)
    harness_spawn "worker-$th-$b" "$BIN/auditq-worker" --set "threads=$th" --set "batch_size=$b" \
        --set "seal_key_file=$KEY" --set "anchor_dir=$AQ_TMP/anchors" \
        --set "database_url=$AUDITQ_DATABASE_URL" --set "http_listen=127.0.0.1:$mport"
    wpid=$HARNESS_LAST_PID
    # d0 is read before the worker starts (its CPU counts from 0): its
    # start-up (connect, SCRIPT LOAD, < 0.05 CPU-s) is in the figures.
    wait_for 900 written "$DRAIN_EVENTS" || { echo "not written in 900 s"; exit 1; }
    snap d1 "$wpid"
    m1=$(wm "$mport")
    wait_for 900 sealed || { echo "not sealed in 900 s"; exit 1; }
    snap d2 "$wpid"
    echo "  written (processed = $DRAIN_EVENTS) $(python3 -c 'import sys; a, b, n = map(float, sys.argv[1:]); print("in %.2f s = %.0f ev/s" % (b - a, n / (b - a)))' "$(awk '$1=="t" {print $2}' "$SNAP.d0")" "$(awk '$1=="t" {print $2}' "$SNAP.d1")" "$DRAIN_EVENTS"); every batch sealed $(python3 -c 'import sys; print("%.2f" % (float(sys.argv[2]) - float(sys.argv[1])))' "$(awk '$1=="t" {print $2}' "$SNAP.d1")" "$(awk '$1=="t" {print $2}' "$SNAP.d2")") s later"
    kill -TERM "$wpid"
    wait_for 60 bash -c "! kill -0 $wpid 2>/dev/null" || true
    per d0 d2 "$DRAIN_EVENTS" "  worker drain + sealing ($th threads, batch $b)"
    echo "  $(signals "$th" "$(awk -v a="$(awk '$1=="t" {print $2}' "$SNAP.d0")" -v b="$(awk '$1=="t" {print $2}' "$SNAP.d1")" 'BEGIN { print b - a }')" "0 0 0" "$m1") until written"
    read -r ev1 evid1 <<<"$(db_sizes)"
    rows=$(PGDATABASE=bench psql_q "SELECT count(*) FROM audit_events")
    [[ "$rows" == "$DRAIN_EVENTS" ]] || { echo "stored $rows rows for $DRAIN_EVENTS events"; exit 1; }
    echo "  stored $rows rows (exactly once); bytes/event: audit_events $(((ev1 - ev0) / rows)), evidence tables $(((evid1 - evid0) / rows)); $(PGDATABASE=bench psql_q "SELECT count(*) FROM auditq_evidence_batch") evidence batches, $(PGDATABASE=bench psql_q "SELECT count(*) FROM auditq_checkpoint") checkpoints"
done

echo "== paced: $PACED_RATE events/s for $PACED_SECONDS s (async producer) into 1 worker x 2 threads, batch_size 1000, sealing on"
fresh_db
rm -rf "$AQ_TMP/anchors" && mkdir -p "$AQ_TMP/anchors"
mport=$(free_port)
harness_spawn worker-paced "$BIN/auditq-worker" --set threads=2 --set batch_size=1000 \
    --set "seal_key_file=$KEY" --set "anchor_dir=$AQ_TMP/anchors" --set "database_url=$AUDITQ_DATABASE_URL" \
    --set "http_listen=127.0.0.1:$mport"
wpid=$HARNESS_LAST_PID
# The idle worker's own cost per second (heartbeats, the metrics sample,
# idle polls, the sealer's checks), read over IDLE_SECONDS first.
sleep 2
snap i0 "$wpid"
sleep "$IDLE_SECONDS"
snap i1 "$wpid"
python3 - "$SNAP.i0" "$SNAP.i1" <<'EOF2'
import sys
rd = lambda p: {k: float(v) for k, v in (l.split() for l in open(p) if l.strip())}
a, b = rd(sys.argv[1]), rd(sys.argv[2])
t = b["t"] - a["t"]
d = lambda k: (b.get(k, 0.0) - a.get(k, 0.0)) / t
calls = sum(d(k) for k in b if k.startswith("cmd_"))
print("  idle worker, per second: CPU ms worker %.2f, PostgreSQL %.2f, Redis %.2f; Redis calls %.0f, net in %.0f B, out %.0f B; WAL %.0f B; load %.2f"
      % (d("worker_cpu") * 1e3, d("pg_cpu") * 1e3, d("redis_cpu") * 1e3, calls, d("total_net_input_bytes"),
         d("total_net_output_bytes"), d("wal"), b["load"]))
EOF2
snap p0 "$wpid"
m0=$(wm "$mport")
t0=$(date +%s.%N)
pn=$((PACED_RATE * PACED_SECONDS))
enqueue_async "$pn" --rate "$PACED_RATE"
wait_for 900 written "$pn" || { echo "not written in 900 s"; exit 1; }
m1=$(wm "$mport")
echo "  $(signals 2 "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')" "$m0" "$m1")"
wait_for 900 sealed || { echo "not sealed in 900 s"; exit 1; }
snap p1 "$wpid"
kill -TERM "$wpid"
wait_for 60 bash -c "! kill -0 $wpid 2>/dev/null" || true
per p0 p1 "$pn" "  paced (producer + worker + PostgreSQL)"
echo "  $(PGDATABASE=bench psql_q "SELECT count(*) || ' rows stored, ' || (SELECT count(*) FROM auditq_evidence_batch) || ' batches: ' || round(count(*)::numeric / (SELECT count(*) FROM auditq_evidence_batch), 1) || ' events per batch' FROM audit_events")"

echo "== backlog: $BACKLOG_EVENTS events queued, no worker"
fresh_db
snap b0
enqueue_async "$BACKLOG_EVENTS"
snap b1
echo "  used_memory: $(awk '$1=="used_memory" {print $2}' "$SNAP.b0") -> $(awk '$1=="used_memory" {print $2}' "$SNAP.b1") bytes; $(python3 -c "import sys; print('%.0f' % ((float(sys.argv[2]) - float(sys.argv[1])) / float(sys.argv[3])))" "$(awk '$1=="used_memory" {print $2}' "$SNAP.b0")" "$(awk '$1=="used_memory" {print $2}' "$SNAP.b1")" "$BACKLOG_EVENTS") B per queued event; RSS $(rcli INFO memory | tr -d '\r' | sed -n 's/^used_memory_rss_human://p'); load $(load1)"
# The AOF a backlog needs on disk: rewritten (BGREWRITEAOF), so it holds the
# queued jobs once; between rewrites it grows up to auto-aof-rewrite-percentage
# (100 %) above that.
rcli BGREWRITEAOF >/dev/null
aof_done() { rcli INFO persistence | tr -d '\r' | grep -q '^aof_rewrite_in_progress:0' &&
             rcli INFO persistence | tr -d '\r' | grep -q '^aof_rewrite_scheduled:0'; }
sleep 1
wait_for 600 aof_done || { echo "AOF rewrite did not finish in 600 s"; exit 1; }
aof=$(du -sb "$AQ_TMP/redis-main/appendonlydir" | cut -f1)
echo "  AOF after BGREWRITEAOF: $aof bytes = $((aof / BACKLOG_EVENTS)) B per queued event; the rewrite's fork took $(rcli INFO stats | tr -d '\r' | sed -n 's/^latest_fork_usec://p') us; load $(load1)"
rcli FLUSHALL >/dev/null

echo "== ring: the producer's async buffer, $RING_EVENTS events"
ring_rss() {  # EVENTS -> peak RSS (KiB) of the producer sending EVENTS with Redis writes paused
    rcli CLIENT PAUSE 4000 WRITE >/dev/null
    /usr/bin/time -f %M -o "$AQ_TMP/ring.time" "$BIN/auditq-bench" enqueue --events "$1" --async \
        --pool 4096 --no-ref --quiet --buffer-events "$((RING_EVENTS * 2))" >/dev/null
    rcli FLUSHALL >/dev/null
    cat "$AQ_TMP/ring.time"
}
small_kb=$(ring_rss "$((RING_EVENTS / 10))")
big_kb=$(ring_rss "$RING_EVENTS")
echo "  peak RSS with Redis writes paused 4 s (every event waits in the buffer): $((RING_EVENTS / 10)) events $small_kb KiB, $RING_EVENTS events $big_kb KiB: $(((big_kb - small_kb) * 1024 / (RING_EVENTS - RING_EVENTS / 10))) B per buffered event; load $(load1)"

echo "== e2e: $E2E_EVENTS events, 1 worker x 2 threads, batch 1000, sealing on"
fresh_db
rm -rf "$AQ_TMP/anchors" && mkdir -p "$AQ_TMP/anchors"
snap e0
"$BIN/auditq-bench" e2e --events "$E2E_EVENTS" --worker-threads 2 --pool 4096 --no-ceiling --latency-seconds 0 \
    --quiet --worker-set "seal_key_file=$KEY" --worker-set "anchor_dir=$AQ_TMP/anchors" | sed 's/^/  /'
snap e1
per e0 e1 "$E2E_EVENTS" "  e2e (producer + worker + PostgreSQL; worker CPU is in its line above)"
echo "== load average after: $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%FT%TZ)"
