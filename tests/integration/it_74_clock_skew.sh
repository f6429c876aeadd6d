#!/usr/bin/env bash
# occurred_at against the worker's clock, at the exact edges of
# clock_skew_future_ms and backfill_max_age_ms (the defaults, 300000 and
# 604800000). The worker runs with its wall clock frozen at NOW
# (tests/lib/fakeclock.c, LD_PRELOAD; monotonic time still runs), so an
# event 1 ms inside or outside a bound is exactly that. One batch per run
# holds, per direction, bound - 1 ms, the bound itself and bound + 1 ms, an
# event of 2020, and a row PostgreSQL refuses (jsonb \u0000), so the
# refused-row isolation paths write clock_flag too:
#   clock_skew_policy=flag (default), write_method=copy (savepoint probes)
#     and write_method=insert (bisection): bound - 1 ms and the bound stored
#     with clock_flag NULL, bound + 1 ms and 2020 stored flagged 'future' /
#     'backfill'; the refused row dead-lettered with its SQLSTATE;
#   clock_skew_policy=dead_letter: the same plain rows stored, the three
#     others dead-lettered with reasons naming occurred_at, the worker's
#     time and the bound, exactly;
#   auditqctl query --clock-flag shows and filters the column.
set -euo pipefail
source "$(dirname "$0")/lib_it.sh"
it_setup
SHIM=$AQ_TMP/fakeclock.so
"${CC:-cc}" -shared -fPIC -o "$SHIM" "$AQ_ROOT/tests/lib/fakeclock.c" -ldl
NOW_S=$(($(date +%s) - 3600))
NOW=$((NOW_S * 1000000))          # the worker's frozen clock, in us
F=300000 B=604800000              # the default bounds, in ms

# push TAG: LPUSHes one batch to {auditq}:queue:normal, action TAG.<name>.
push() {
    "$PY" - "$REDIS_PORT" "$1" "$NOW" "$F" "$B" <<'PYEOF'
import socket, sys, uuid, msgpack
port, tag, now, f, b = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
events = [("future_minus1", now + f * 1000 - 1000), ("future_at", now + f * 1000),
          ("future_plus1", now + f * 1000 + 1000), ("backfill_minus1", now - b * 1000 + 1000),
          ("backfill_at", now - b * 1000), ("backfill_plus1", now - b * 1000 - 1000),
          ("y2020", 1583402400000000), ("poison", now)]
s = socket.create_connection(("127.0.0.1", port))
f_ = s.makefile("rb")
args = [b"LPUSH", b"{auditq}:queue:normal"]
for name, ts in events:
    job = {"v": 1, "event_id": str(uuid.uuid4()), "occurred_at": ts, "priority": "normal",
           "action": tag + "." + name}
    if name == "poison":
        job["changes"] = '{"x": "\\u0000"}'
    args.append(msgpack.packb(job))
s.sendall(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
assert f_.readline() == b":%d\r\n" % len(events), "LPUSH failed"
PYEOF
}
frozen_worker() {  # NAME [--set k=v ...]: a worker whose wall clock reads NOW
    local name=$1
    shift
    local asan=${ASAN_OPTIONS:-}
    export AQ_FAKE_REALTIME_US=$NOW LD_PRELOAD=$SHIM
    # make asan: ASan refuses to start unless its runtime comes first in
    # the library list; the shim only forwards the clock and
    # pthread_cond_timedwait to the next definition, so the order is safe.
    [[ "${SANITIZE:-}" == *address* ]] && export ASAN_OPTIONS="${asan:+$asan:}verify_asan_link_order=0"
    worker_start "$name" --set threads=1 --set max_attempts=1 "$@"
    unset AQ_FAKE_REALTIME_US LD_PRELOAD
    if [[ -n "$asan" ]]; then export ASAN_OPTIONS=$asan; else unset ASAN_OPTIONS; fi
}
flags() {  # TAG: "name flag" per stored row, by name
    psql_q "SELECT substr(action, length('$1') + 2) || ' ' || coalesce(clock_flag, '-') FROM audit_events
             WHERE action LIKE '$1.%' ORDER BY action"
}
stored_flagged="backfill_at -
backfill_minus1 -
backfill_plus1 backfill
future_at -
future_minus1 -
future_plus1 future
y2020 backfill"
poison="postgres rejected the row 1 times: unsupported Unicode escape sequence [22P05]"

# flag (the default), COPY.
push copy
frozen_worker w1
wait_for 30 bash -c "[ \$(psql -X -A -t -c \"SELECT count(*) FROM audit_events WHERE action LIKE 'copy.%'\") = 7 ]"
wait_for 10 drained
worker_stop w1
assert_eq "$stored_flagged" "$(flags copy)" "clock_flag per row (flag, write_method=copy)"
assert_eq "$poison" "$(dead_reasons)" "the refused row of the COPY batch"

# flag, INSERT.
push insert
frozen_worker w2 --set write_method=insert
wait_for 30 bash -c "[ \$(psql -X -A -t -c \"SELECT count(*) FROM audit_events WHERE action LIKE 'insert.%'\") = 7 ]"
wait_for 10 drained
worker_stop w2
assert_eq "$stored_flagged" "$(flags insert)" "clock_flag per row (flag, write_method=insert)"
assert_eq "$poison
$poison" "$(dead_reasons)" "the refused row of the INSERT batch"

# dead_letter.
iso() {  # US -> 2026-12-04T12:00:00.000000Z
    printf '%s.%06dZ' "$(date -u -d "@$(($1 / 1000000))" +%Y-%m-%dT%H:%M:%S)" $(($1 % 1000000))
}
push dl
frozen_worker w3 --set clock_skew_policy=dead_letter
wait_for 30 bash -c "[ \$(\"$BIN/auditqctl\" stats --json | $PY -c 'import json,sys; print(json.load(sys.stdin)[\"dead\"])') = 6 ]"
wait_for 10 drained
worker_stop w3
assert_eq "backfill_at -
backfill_minus1 -
future_at -
future_minus1 -" "$(flags dl)" "rows stored under clock_skew_policy=dead_letter"
expected=$(printf '%s\n' "$poison" "$poison" \
    "occurred_at $(iso $((NOW + F * 1000 + 1000))) is 300001 ms ahead of the worker's clock $(iso "$NOW"), more than clock_skew_future_ms=300000 (clock_skew_policy=dead_letter)" \
    "occurred_at $(iso $((NOW - B * 1000 - 1000))) is 604800001 ms behind the worker's clock $(iso "$NOW"), more than backfill_max_age_ms=604800000 (clock_skew_policy=dead_letter)" \
    "occurred_at 2020-03-05T10:00:00.000000Z is $(((NOW - 1583402400000000) / 1000)) ms behind the worker's clock $(iso "$NOW"), more than backfill_max_age_ms=604800000 (clock_skew_policy=dead_letter)" \
    "$poison" | sort)
assert_eq "$expected" "$(dead_reasons | sort)" "dead-letter reasons (clock_skew_policy=dead_letter)"
assert_eq 3 "$(grep -c 'msg="job dead-lettered for its occurred_at"' "$AQ_TMP/w3.log")" "dead letters logged"

# auditqctl query shows and filters the column.
assert_eq "copy.backfill_plus1 backfill
copy.y2020 backfill
insert.backfill_plus1 backfill
insert.y2020 backfill" \
    "$("$BIN/auditqctl" query --since 2000-01-01 --clock-flag backfill --format ndjson | "$PY" -c '
import json, sys
for line in sys.stdin:
    r = json.loads(line)
    print(r["action"], r["clock_flag"])' | sort)" "query --clock-flag backfill"
assert_eq 12 "$("$BIN/auditqctl" query --since 2000-01-01 --clock-flag none --format ndjson | wc -l)" \
    "query --clock-flag none: the 4 plain rows of each of the 3 batches"
assert_eq 6 "$("$BIN/auditqctl" query --since 2000-01-01 --clock-flag any --format ndjson | wc -l)" \
    "query --clock-flag any: both bounds + 1 ms and 2020, of the copy and insert batches"
it_pass "clock skew: bound-1ms and bound stored plain, bound+1ms flagged future/backfill (copy and insert, refused row isolated), dead_letter reasons exact, query --clock-flag"
