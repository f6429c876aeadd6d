#!/usr/bin/env bash
# PostgreSQL stopped and restarted under load -> no event lost, nothing
# dead-lettered (transient errors retry forever with backoff).
set -euo pipefail
source "$(dirname "$0")/lib_it.sh"
AQ_PG_FAST=0 it_setup
worker_start w1 --set threads=2 --set batch_size=500 --set backoff_base_ms=100 --set backoff_max_ms=1000
N=30000
# Steady load for ~6 s while the database goes away for ~3 s.
harness_spawn load "$BIN/auditq-bench" enqueue --events $N --async --rate 5000 --no-ref --quiet --seed 40
LOAD=$HARNESS_LAST_PID
sleep 1.5
pg_stop
before=$(stat processed)
sleep 3
pg_start_again
wait "$LOAD"
wait_for 60 drained
assert_eq $N "$(rows)" "rows after PostgreSQL restart"
assert_eq $N "$(psql_q 'SELECT count(DISTINCT event_id) FROM audit_events')" "distinct events"
assert_eq 0 "$(stat dead)" "dead letters (PostgreSQL being away is never the events' fault)"
grep -q 'postgres write failed; will retry' "$AQ_TMP/w1.log" || { echo "FAIL: the worker never saw PostgreSQL down"; exit 1; }
worker_stop w1
it_pass "postgres restart under load: $N events, none lost ($before written before the stop)"
