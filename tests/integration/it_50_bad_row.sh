#!/usr/bin/env bash
# A batch with one row PostgreSQL refuses -> every other row of the batch is
# written, the bad one is retried max_attempts times and dead-lettered with
# its SQLSTATE. An undecodable job is dead-lettered at decode with its reason.
# Then dead_letter_max: three more undecodable jobs with the limit at 3 ->
# the dead list keeps the 3 newest, the 2 oldest are dropped and counted in
# dead_trimmed (a configured loss, never a silent one).
set -euo pipefail
source "$(dirname "$0")/lib_it.sh"
it_setup
badid=$("$TBIN/it_client" bad --valid 999 --tag bad)
redis-cli -p "$REDIS_PORT" LPUSH '{auditq}:queue:normal' 'this is not msgpack' >/dev/null
assert_eq 1000 "$(stat queues.normal.depth)" "jobs queued (998 good, 1 poison row, 1 undecodable)"
worker_start w1 --set threads=1 --set batch_size=2000 --set max_attempts=3 \
    --set backoff_base_ms=50 --set backoff_max_ms=200
wait_for 30 bash -c "[ \"\$(\"$BIN/auditqctl\" stats --json | $PY -c 'import json,sys; print(json.load(sys.stdin)[\"dead\"])')\" = 2 ]"
wait_for 10 drained
assert_eq 998 "$(rows)" "good rows written (999 sent, one of them refused by jsonb)"
assert_eq 0 "$(psql_q "SELECT count(*) FROM audit_events WHERE event_id = '$badid'")" "the bad row is not stored"
reasons=$(dead_reasons | sort)
expected=$(printf '%s\n' \
  "postgres rejected the row 3 times: unsupported Unicode escape sequence [22P05]" \
  "undecodable job: job is not a msgpack map at offset 0" | sort)
assert_eq "$expected" "$reasons" "dead-letter reasons"
assert_eq 2 "$(stat retried)" "retries before dead-lettering (max_attempts=3)"
assert_eq 998 "$(stat processed)" "processed"
worker_stop w1

for i in 1 2 3; do
    redis-cli -p "$REDIS_PORT" LPUSH '{auditq}:queue:low' "junk $i" >/dev/null
done
worker_start w2 --set threads=1 --set dead_letter_max=3
wait_for 20 bash -c "[ \"\$(\"$BIN/auditqctl\" stats --json | $PY -c 'import json,sys; print(json.load(sys.stdin)[\"dead_lettered\"])')\" = 5 ]"
wait_for 10 drained
assert_eq 3 "$(stat dead)" "dead list length at dead_letter_max=3"
assert_eq 2 "$(stat dead_trimmed)" "oldest dead letters trimmed and counted"
assert_eq "$(printf 'undecodable job: job is not a msgpack map at offset 0\n%.0s' 1 2 3)" "$(dead_reasons)" \
    "the 3 newest dead letters kept"
worker_stop w2
it_pass "bad row: 998 good rows written, 1 poison row dead-lettered with 22P05 after 3 attempts, 1 undecodable job dead-lettered; dead_letter_max=3 keeps 3, dead_trimmed=2"
