#!/usr/bin/env bash
# Fault suite, scenario 5: network stalls, resets and delays between a
# worker and Redis / PostgreSQL, through tests/lib/faultproxy.py.
#
# Worker A (3 threads) reaches Redis and PostgreSQL only through two proxies;
# worker B (1 thread) reaches them directly and keeps the system going. A
# producer (it_client stream, straight to Redis) runs through each phase
# with a tag of its own:
#   redis_stall   A's Redis link stalls (nothing moves, connections stay
#                 open) for 3.5 s, longer than redis_timeout_ms=1000 and
#                 than heartbeat_timeout_ms=2000 (so B may recover A's
#                 batches meanwhile);
#   pg_stall      A's PostgreSQL link stalls for 3.5 s mid-batch, longer than
#                 pg_timeout_ms=2000 (statement_timeout_ms=1500 cannot see a
#                 stalled network);
#   partition     A's PostgreSQL link stalls, then its Redis link too, for
#                 4 s: A is presumed dead while alive; B recovers A's
#                 in-flight batches and writes them; A's late settles are
#                 fenced;
#   resets        both links reset (RST) three times under load, then every
#                 connection refused for 1.5 s;
#   delay         both links add 30 ms to every chunk for 3 s.
# Asserted per phase:
#   - no thread hangs past its timeout: every thread of A (and A's main
#     loop, for Redis) logs the failure within timeout + 1.5 s of the fault
#     starting (its first warn line, from the log's timestamps);
#   - throughput resumes: every thread of A acknowledges a batch again
#     within 8 s of the fault ending (/metrics last-batch timestamps);
#   - every event the producer acknowledged is in PostgreSQL exactly once,
#     queues, in-flight lists and the retry set drain, no dead letter;
#   - delay: no error at all (30 ms is far below every timeout), and A
#     keeps writing.
# Prints "figure:" lines (detect_s: slowest thread to notice the fault;
# resumed_s: fault end to every thread writing again; recovery_s: fault end
# to everything drained, the producer stopped when throughput resumed).
# AQ_FAULTS=long: longer stalls (8 s) and more resets.
set -euo pipefail
source "$(dirname "$0")/lib_it.sh"
source "$(dirname "$0")/../lib/faultproxy.sh"

LONG=0
[[ "${AQ_FAULTS:-}" == long ]] && LONG=1
STALL_MS=3500
PART_MS=4000
KILLS=3
((LONG)) && STALL_MS=8000 && PART_MS=9000 && KILLS=10
REDIS_TIMEOUT=1000
PG_TIMEOUT=2000
SLACK=1500
RATE=1500
THREADS=3

it_setup
proxy_start redis "$REDIS_PORT"
RPX=$PROXY_PORT
proxy_start pg "$PG_PORT"
PPX=$PROXY_PORT
HPA=$(free_port)
HPB=$(free_port)
URLA="http://127.0.0.1:$HPA"

now_ms() { date +%s%3N; }
metric() { curl -sf --max-time 5 "$1/metrics" | awk -v k="$2" '$1 == k { print $2 }'; }

worker_start a --set threads=$THREADS --set batch_size=100 --set redis_timeout_ms=$REDIS_TIMEOUT \
    --set redis_connect_timeout_ms=1000 --set pg_timeout_ms=$PG_TIMEOUT --set statement_timeout_ms=1500 \
    --set pg_connect_timeout_s=2 --set backoff_base_ms=50 --set backoff_max_ms=500 \
    --set http_listen=127.0.0.1:$HPA --set redis_url=redis://127.0.0.1:$RPX \
    --set "database_url=postgresql://postgres@127.0.0.1:$PPX/auditq"
worker_start b --set threads=1 --set batch_size=100 --set http_listen=127.0.0.1:$HPB
wait_for 10 curl -sf -o /dev/null "$URLA/healthz"

# ---- helpers -------------------------------------------------------------------

stream_start() {
    PHASE=$1
    rm -f "$AQ_TMP/$PHASE.stop"
    harness_spawn "load-$PHASE" "$TBIN/it_client" stream --mode sync --rate "$RATE" --tag "$PHASE" \
        --ack-log "$AQ_TMP/$PHASE.acked" --stop-file "$AQ_TMP/$PHASE.stop"
    STREAM_PID=$HARNESS_LAST_PID
    # Warm up: A writes this phase's events on every thread before the fault.
    local t0
    t0=$(now_ms)
    wait_for 20 all_threads_wrote_since "$t0"
}

stream_stop() {
    touch "$AQ_TMP/$PHASE.stop"
    wait "$STREAM_PID"
    local line
    line=$(grep '^stream:' "$AQ_TMP/load-$PHASE.log")
    [[ "$line" == *" failed=0" ]] || { echo "FAIL: $PHASE: producer: $line (it talks to Redis directly)"; exit 1; }
}

# True when every thread of A acknowledged a batch at or after epoch ms $1.
all_threads_wrote_since() {
    local i v m
    m=$(curl -sf --max-time 2 "$URLA/metrics") || return 1
    for ((i = 0; i < THREADS; i++)); do
        v=$(awk -v k="auditq_thread_last_batch_timestamp_seconds{thread=\"$i\"}" '$1 == k { print $2 }' <<<"$m")
        awk -v v="$v" -v t="$1" 'BEGIN { exit !(v * 1000 >= t) }' || return 1
    done
}

# detect START_MS WHO...: for each WHO (a thread number or "main"), the ms
# from START_MS to A's first warn line from it, "-1" if none; one line
# "WHO MS MSG" each.
detect() {
    "$PY" - "$AQ_TMP/a.log" "$@" <<'PYEOF'
import datetime, re, sys
log, start, who = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
first = {}
for line in open(log, encoding="utf-8", errors="replace"):
    m = re.match(r'ts=(\S+)Z level=warn msg="([^"]*)"(.*)', line)
    if not m:
        continue
    ts = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f")
    ms = ts.replace(tzinfo=datetime.timezone.utc).timestamp() * 1000
    if ms < start:
        continue
    t = re.search(r" thread=(\d+)", m.group(3))
    first.setdefault(t.group(1) if t else "main", (int(ms - start), m.group(2)))
for w in who:
    d, msg = first.get(w, (-1, "none"))
    print(w, d, msg.replace(" ", "_"))
PYEOF
}

# check_detect PHASE START_MS BOUND_MS WHO...: every WHO noticed within BOUND_MS.
check_detect() {
    local phase=$1 start=$2 bound=$3 who d msg label worst=0
    shift 3
    while read -r who d msg; do
        label="thread $who"
        [[ $who == main ]] && label="main loop"
        if ((d < 0 || d > bound)); then
            echo "FAIL: $phase: $label of worker A: first error ${d} ms after the fault began" \
                "(bound $bound ms; -1 = never): $msg"
            grep -v 'level=debug' "$AQ_TMP/a.log" | tail -n 30
            exit 1
        fi
        ((d > worst)) && worst=$d
        echo "$phase: A's $label noticed after $d ms ($msg)"
    done < <(detect "$start" "$@")
    DETECT_MS=$worst
}

# finish_phase SCENARIO FAULT_END_MS: resume bound, drain, exactly-once, figure.
finish_phase() {
    local scenario=$1 t_end=$2 resumed_ms recovery_ms acc acked
    wait_for 8 all_threads_wrote_since "$t_end" ||
        { echo "FAIL: $scenario: a thread of A wrote no batch within 8 s of the fault ending"; exit 1; }
    resumed_ms=$(( $(now_ms) - t_end ))
    stream_stop
    wait_for 60 drained
    recovery_ms=$(( $(now_ms) - t_end ))
    acc=$(acked_vs_rows "$AQ_TMP/$PHASE.acked" "$PHASE")
    acked=$(sed -E 's/^acked=([0-9]+) .*/\1/' <<<"$acc")
    ((acked > 0)) || { echo "FAIL: $scenario: no event acknowledged"; exit 1; }
    assert_eq "acked=$acked stored=$acked duplicates=0 missing=0 unacked=0" "$acc" "$scenario: acknowledged events vs rows"
    assert_eq 0 "$(stat dead)" "$scenario: dead letters"
    assert_eq 0 "$(stat inflight)" "$scenario: jobs in flight"
    assert_eq 0 "$(stat retry)" "$scenario: retry set"
    awk -v s="$scenario" -v n="$acked" -v d="${DETECT_MS:-0}" -v u="$resumed_ms" -v r="$recovery_ms" 'BEGIN {
        printf "figure: scenario=%s events=%d stored=%d duplicates=0 lost=0 recovery_s=%.2f detect_s=%.2f resumed_s=%.2f\n",
            s, n, n, r / 1000, d / 1000, u / 1000 }'
    DETECT_MS=0
}

sleep_ms() { sleep "$(awk -v m="$1" 'BEGIN { printf "%.3f", m / 1000 }')"; }

ALL_THREADS=$(seq 0 $((THREADS - 1)) | tr '\n' ' ')

# ---- 1. Redis stall --------------------------------------------------------------
stream_start redis_stall
t0=$(now_ms)
proxy_mode redis stall
sleep_ms "$STALL_MS"
proxy_mode redis pass
t1=$(now_ms)
# shellcheck disable=SC2086
check_detect redis_stall "$t0" $((REDIS_TIMEOUT + SLACK)) $ALL_THREADS main
finish_phase "redis_stall_${STALL_MS}ms" "$t1"
it_pass "Redis link stalled ${STALL_MS} ms: every thread of A and its main loop gave up within $((REDIS_TIMEOUT + SLACK)) ms, all resumed, exactly once"

# ---- 2. PostgreSQL stall mid-batch ----------------------------------------------
stream_start pg_stall
t0=$(now_ms)
proxy_mode pg stall
sleep_ms "$STALL_MS"
proxy_mode pg pass
t1=$(now_ms)
# shellcheck disable=SC2086
check_detect pg_stall "$t0" $((PG_TIMEOUT + SLACK)) $ALL_THREADS
grep -q 'no answer from PostgreSQL within 2000 ms (pg_timeout_ms); connection dropped' "$AQ_TMP/a.log" ||
    { echo "FAIL: pg_stall: A never logged the pg_timeout_ms timeout"; exit 1; }
finish_phase "pg_stall_${STALL_MS}ms" "$t1"
it_pass "PostgreSQL link stalled ${STALL_MS} ms: every thread of A gave up within $((PG_TIMEOUT + SLACK)) ms (pg_timeout_ms), all resumed, exactly once"

# ---- 3. partition: A presumed dead while alive -----------------------------------
stream_start partition
rec0=$(stat recovered)
fenced0=$(grep -c 'msg="batch was recovered by another worker meanwhile\|msg="batch no longer ours' "$AQ_TMP/a.log" || true)
t0=$(now_ms)
proxy_mode pg stall
sleep 1     # every thread of A takes a batch and blocks writing it
proxy_mode redis stall
sleep_ms "$PART_MS"
proxy_mode redis pass
proxy_mode pg pass
t1=$(now_ms)
# shellcheck disable=SC2086
check_detect partition "$t0" $((PG_TIMEOUT + SLACK)) $ALL_THREADS
finish_phase "partition_presumed_dead_${PART_MS}ms" "$t1"
rec=$(( $(stat recovered) - rec0 ))
fenced=$(( $(grep -c 'msg="batch was recovered by another worker meanwhile\|msg="batch no longer ours' "$AQ_TMP/a.log" || true) - fenced0 ))
((rec > 0)) || { echo "FAIL: partition: B recovered no job of A (recovered +$rec)"; exit 1; }
((fenced > 0)) || { echo "FAIL: partition: no settle of A was fenced"; exit 1; }
grep -q 'msg="recovered in-flight jobs of dead workers"' "$AQ_TMP/b.log" ||
    { echo "FAIL: partition: B never logged the recovery"; exit 1; }
echo "partition: B recovered $rec in-flight jobs of A; $fenced settles of A were fenced"
it_pass "A cut off for ${PART_MS} ms with batches in hand: B recovered $rec jobs, A's $fenced late settles fenced, exactly once"

# ---- 4. resets --------------------------------------------------------------------
stream_start resets
resets0=$(( $(proxy_get redis resets) + $(proxy_get pg resets) ))
for ((k = 0; k < KILLS; k++)); do
    proxy_cmd redis kill >/dev/null
    proxy_cmd pg kill >/dev/null
    sleep 0.7
done
t0=$(now_ms)
proxy_mode redis reset
proxy_mode pg reset
sleep 1.5
proxy_mode redis pass
proxy_mode pg pass
t1=$(now_ms)
resets=$(( $(proxy_get redis resets) + $(proxy_get pg resets) - resets0 ))
# Each kill resets A's open connections: 3 threads + the main loop to Redis,
# 3 threads to PostgreSQL; the refusing period adds each new attempt.
((resets >= KILLS * 2)) || { echo "FAIL: resets: only $resets connections reset"; exit 1; }
finish_phase "resets_${KILLS}x_then_refused_1500ms" "$t1"
it_pass "both links reset $KILLS times under load and refused for 1.5 s ($resets connections reset): resumed, exactly once"

# ---- 5. delay ----------------------------------------------------------------------
stream_start delay
p0=$(metric "$URLA" auditq_processed_total)
t0=$(now_ms)
proxy_mode redis delay 30
proxy_mode pg delay 30
sleep 3
p1=$(metric "$URLA" auditq_processed_total)
proxy_mode redis pass
proxy_mode pg pass
t1=$(now_ms)
errs=$(detect "$t0" $ALL_THREADS main | awk '$2 >= 0 && $2 <= '"$((t1 - t0))"' { print }')
assert_eq "" "$errs" "delay: A's errors while every chunk was 30 ms late (far below every timeout)"
((p1 > p0)) || { echo "FAIL: delay: A wrote nothing while the links were slow ($p0 -> $p1)"; exit 1; }
echo "delay: A wrote $((p1 - p0)) events in 3 s with 30 ms added to every chunk, no error"
finish_phase "delay_30ms_per_chunk" "$t1"
it_pass "both links 30 ms slower per chunk: no error, A kept writing ($((p1 - p0)) events in 3 s), exactly once"

worker_stop a
worker_stop b
assert_eq 0 "$(stat dead)" "dead letters at the end"
assert_eq 0 "$(grep -c 'level=error' "$AQ_TMP/a.log" "$AQ_TMP/b.log" | awk -F: '{ s += $2 } END { print s }')" "error-level log lines"
it_pass "network faults: stalls, a partition, resets and delays; no thread hung past its timeout; nothing lost or duplicated"
