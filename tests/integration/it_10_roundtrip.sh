#!/usr/bin/env bash
# N events enqueued sync and async -> exactly N rows, every field byte-exact
# (quotes, tabs, CR/LF, backslashes, non-ASCII, JSON escapes, NULLs).
set -euo pipefail
source "$(dirname "$0")/lib_it.sh"
it_setup
worker_start w1 --set threads=2
"$TBIN/it_client" exact --events 3000 --mode sync --tag sync
"$TBIN/it_client" exact --events 3000 --mode async --tag async
assert_eq 6000 "$(rows)" "total rows"
assert_eq 6000 "$(psql_q 'SELECT count(DISTINCT event_id) FROM audit_events')" "distinct event ids"
wait_for 10 drained
assert_eq 6000 "$(stat processed)" "stats processed"
assert_eq 0 "$(stat dead)" "dead letters"
worker_stop w1
assert_eq 0 "$(stat workers)" "live workers after clean stop"
it_pass "roundtrip: 3000 sync + 3000 async events stored byte-exact"
