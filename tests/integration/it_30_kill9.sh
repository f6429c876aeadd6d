#!/usr/bin/env bash
# kill -9 of a worker mid-batch, then recovery -> no event lost, none
# duplicated. Also the narrowest window: a crash after the PostgreSQL commit
# and before the Redis acknowledgement (crash_after_commit test hook) ->
# the batch is redelivered and stored once.
set -euo pipefail
source "$(dirname "$0")/lib_it.sh"
it_setup
N=40000
"$BIN/auditq-bench" enqueue --events $N --async --no-ref --quiet --seed 30 >/dev/null

# 1. SIGKILL while batches are in flight.
worker_start victim --set threads=2 --set batch_size=500
wait_for 60 bash -c "[ \"\$(psql -X -A -t -q -c 'SELECT count(*) FROM audit_events')\" -ge 8000 ]"
kill -STOP "${WORKER_PID[victim]}"   # freeze it with batches in hand
inflight=$(stat inflight)
[ "$inflight" -gt 0 ] || { echo "FAIL: expected jobs in flight when the worker is killed, got $inflight"; exit 1; }
kill -KILL "${WORKER_PID[victim]}"
wait "${WORKER_PID[victim]}" 2>/dev/null || true
echo "killed worker with $inflight jobs in flight"
# A fresh worker recovers them (heartbeat_timeout_ms=2000) and finishes.
t0=$(date +%s%N)
worker_start rescuer --set threads=2 --set batch_size=500
wait_for 30 bash -c "[ \"\$(\"$BIN/auditqctl\" stats --json | $PY -c 'import json,sys; print(json.load(sys.stdin)[\"recovered\"])')\" -ge $inflight ]"
recovery_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
wait_for 90 drained
assert_eq $N "$(rows)" "rows after kill -9 and recovery"
assert_eq $N "$(psql_q 'SELECT count(DISTINCT event_id) FROM audit_events')" "distinct events"
assert_eq "$inflight" "$(stat recovered)" "jobs recovered from the killed worker"
assert_eq 0 "$(stat dead)" "dead letters"
assert_eq 1 "$(stat workers_registered)" "registered workers (the dead one is gone)"
echo "recovered $inflight in-flight jobs within ${recovery_ms} ms of the rescuer starting"
worker_stop rescuer

# 2. Crash between commit and ack.
# One priority, so every batch is exactly batch_size jobs.
N2=5000
"$TBIN/it_client" send --events $N2 --priority 2 --tag crash
worker_start crasher --set threads=1 --set batch_size=1000 --set crash_after_commit=2
rc=0; wait "${WORKER_PID[crasher]}" || rc=$?
assert_eq 137 "$rc" "crash hook exit status"
committed=$(( $(rows) - N ))
assert_eq 2000 "$committed" "rows committed before the crash (2 batches of 1000)"
assert_eq 1000 "$(stat inflight)" "the committed-but-unacknowledged batch is still in flight"
worker_start finisher --set threads=1 --set batch_size=1000
wait_for 60 drained
assert_eq $((N + N2)) "$(rows)" "rows after redelivery of a committed batch"
assert_eq $((N + N2)) "$(psql_q 'SELECT count(DISTINCT event_id) FROM audit_events')" "distinct events"
worker_stop finisher
it_pass "kill -9 and crash-after-commit: $N + $N2 events, none lost, none duplicated"
