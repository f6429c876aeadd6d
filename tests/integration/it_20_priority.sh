#!/usr/bin/env bash
# Priority order under backlog: with a backlog in all four queues, one
# writer thread writes every critical job before any high, every high
# before any normal, every normal before any low (strict mode) -- even
# though the low jobs were enqueued first.
set -euo pipefail
source "$(dirname "$0")/lib_it.sh"
it_setup
C="$TBIN/it_client"
"$C" send --events 1500 --priority 3 --tag low
"$C" send --events 1500 --priority 2 --tag normal
"$C" send --events 1500 --priority 1 --tag high
"$C" send --events 500 --priority 0 --tag critical
assert_eq 5000 "$(( $(stat queues.critical.depth) + $(stat queues.high.depth) + $(stat queues.normal.depth) + $(stat queues.low.depth) ))" "backlog before the worker starts"
worker_start w1 --set threads=1 --set batch_size=100
wait_for 60 bash -c "[ \"\$(psql -X -A -t -q -c 'SELECT count(*) FROM audit_events')\" = 5000 ]"
# Rows are stamped received_at = clock_timestamp() as they are inserted.
order=$(psql_q "SELECT string_agg(priority, ',' ORDER BY first) FROM (SELECT priority, min(received_at) first, max(received_at) last FROM audit_events GROUP BY priority) s")
assert_eq "critical,high,normal,low" "$order" "order in which priorities were first written"
overlap=$(psql_q "SELECT count(*) FROM (SELECT priority, min(received_at) lo, max(received_at) hi FROM audit_events GROUP BY priority) a JOIN (SELECT priority, min(received_at) lo, max(received_at) hi FROM audit_events GROUP BY priority) b ON array_position(array['critical','high','normal','low'], a.priority) < array_position(array['critical','high','normal','low'], b.priority) AND a.hi > b.lo")
assert_eq 0 "$overlap" "pairs of priorities whose writes interleave"
worker_stop w1
# Weighted mode: low is not starved while critical keeps a backlog. Each
# fetch draws among the non-empty queues by weight (critical 8 : low 1), so
# about 1 fetch in 9 serves low. With batch_size=20 the critical backlog
# takes 150 fetches, during which low expects ~16 fetches (all 15 of its
# batches, 300 rows); fewer than 3 (60 rows) would be a 1-in-100000 fluke.
# Strict mode would serve none.
"$C" send --events 3000 --priority 0 --tag wcrit
"$C" send --events 300 --priority 3 --tag wlow
worker_start w2 --set threads=1 --set batch_size=20 --set priority_mode=weighted --set weights=8,4,2,1
wait_for 60 bash -c "[ \"\$(psql -X -A -t -q -c 'SELECT count(*) FROM audit_events')\" = 8300 ]"
low_before=$(psql_q "SELECT count(*) FROM audit_events WHERE request_id LIKE 'req-wlow-%' AND received_at < (SELECT max(received_at) FROM audit_events WHERE request_id LIKE 'req-wcrit-%')")
[ "$low_before" -ge 60 ] || { echo "FAIL: weighted mode served only $low_before of 300 low jobs before the critical backlog drained (expected most of them)"; exit 1; }
worker_stop w2
it_pass "priority: strict order under backlog; weighted mode serves low ($low_before low rows before critical drained)"
