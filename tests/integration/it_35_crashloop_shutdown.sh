#!/usr/bin/env bash
# 1. A job that was in flight in more than max_recoveries dead workers is
#    dead-lettered as crash-looping (it would otherwise kill workers forever).
# 2. SIGTERM under load: the worker stops fetching, commits and acknowledges
#    the batches in hand, exits 0 and leaves nothing in flight; the rest
#    stays queued and is written by the next worker, exactly once.
set -euo pipefail
source "$(dirname "$0")/lib_it.sh"
it_setup

# 1. Three workers died holding the same job (same bytes): simulate their
#    registrations (heartbeat at the epoch) and in-flight lists.
crashloop_setup loop
assert_eq 3 "$(stat inflight)" "copies of the job in flight in dead workers"
worker_start w1 --set threads=1 --set max_recoveries=2
wait_for 20 bash -c "[ \"\$(\"$BIN/auditqctl\" stats --json | $PY -c 'import json,sys; print(json.load(sys.stdin)[\"dead\"])')\" = 1 ]"
wait_for 10 drained
assert_eq "crash-looping: in flight in 3 workers that died (max_recoveries=2)" "$(dead_reasons)" "dead-letter reason"
assert_eq 1 "$(rows)" "the job's recovered copies are stored once"
assert_eq 2 "$(stat recovered)" "copies recovered before the limit"
assert_eq 1 "$(stat workers_registered)" "dead registrations removed"
worker_stop w1

# 2. Graceful shutdown under load.
N=60000
"$BIN/auditq-bench" enqueue --events $N --async --no-ref --quiet --seed 35 >/dev/null
worker_start w2 --set threads=2 --set batch_size=1000
wait_for 60 bash -c "[ \"\$(psql -X -A -t -q -c 'SELECT count(*) FROM audit_events')\" -ge 5000 ]"
t0=$(date +%s%N)
worker_stop w2
stop_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
assert_eq 0 "$(stat inflight)" "in flight after a graceful stop"
assert_eq 0 "$(stat workers_registered)" "the stopped worker deregistered"
left=$(( $(stat queues.critical.depth) + $(stat queues.high.depth) + $(stat queues.normal.depth) + $(stat queues.low.depth) ))
written=$(( $(rows) - 1 ))
assert_eq $N $(( written + left )) "written + still queued after SIGTERM"
grep -q 'worker stopped' "$AQ_TMP/w2.log" || { echo "FAIL: no 'worker stopped' line"; exit 1; }
worker_start w3 --set threads=2
wait_for 90 drained
assert_eq $((N + 1)) "$(rows)" "rows after the next worker drained the rest"
assert_eq $((N + 1)) "$(psql_q 'SELECT count(DISTINCT event_id) FROM audit_events')" "distinct events"
worker_stop w3
it_pass "crash-looping job dead-lettered after 2 recoveries; SIGTERM under load exited 0 in ${stop_ms} ms with $written written, $left queued, 0 in flight, then all $N stored once"
