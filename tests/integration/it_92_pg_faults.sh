#!/usr/bin/env bash
# Fault suite, scenario 3: PostgreSQL faults under a steady producer load.
#
#   a. PostgreSQL stopped for longer than a whole backoff cycle
#      (backoff_base_ms=50 doubling to backoff_max_ms=1000, down 3.5 s), then
#      started again. Every write attempt fails meanwhile; the log must show
#      the exact backoff schedule: attempt k waits between step/2 and step,
#      step = min(50 * 2^(k-1), 1000), up to and at the cap. /readyz says
#      PostgreSQL is down while it is.
#   b. The connection reset in the middle of a COMMIT, through
#      tests/lib/faultproxy.py between the worker and PostgreSQL, ROUNDS times
#      in each of two places:
#        s2c: PostgreSQL committed the batch, its answer is lost -- the
#             worker cannot know the batch is stored;
#        c2s: the COMMIT never reaches PostgreSQL -- rolled back, and the
#             worker cannot know that either.
#      Either way the worker must retry the whole batch (ON CONFLICT DO
#      NOTHING makes the committed one a no-op), never dead-letter it.
#      The proxy counts the resets, so the test knows each one really hit a
#      COMMIT; the worker's auditq_pg_write_errors_total must equal them.
#
# Both: every event the producer acknowledged is in PostgreSQL exactly once
# (by event_id: lib_it.sh `acked_vs_rows`), queues, in-flight lists and the retry
# set drain to empty, no dead letter. Prints "figure:" lines for
# docs (recovery_s: from the end of the fault to everything drained).
# AQ_FAULTS=long: 20 resets per place instead of 3, and a longer outage.
set -euo pipefail
source "$(dirname "$0")/lib_it.sh"
source "$(dirname "$0")/../lib/faultproxy.sh"

LONG=0
[[ "${AQ_FAULTS:-}" == long ]] && LONG=1
ROUNDS=3
DOWN_MS=3500
((LONG)) && ROUNDS=20 && DOWN_MS=8000
RATE=2000

it_setup

now_ms() { date +%s%3N; }
# metric URL NAME: one sample from the worker's /metrics
metric() { curl -sf "$1/metrics" | awk -v k="$2" '$1 == k { print $2 }'; }

# stream_start NAME TAG: it_client stream in the background at RATE events/s.
stream_start() {
    rm -f "$AQ_TMP/$1.stop"
    harness_spawn "$1" "$TBIN/it_client" stream --mode sync --rate "$RATE" --tag "$2" \
        --ack-log "$AQ_TMP/$1.acked" --stop-file "$AQ_TMP/$1.stop"
    STREAM_PID=$HARNESS_LAST_PID
}
# stream_stop NAME: stop it, check Redis acknowledged every event.
stream_stop() {
    touch "$AQ_TMP/$1.stop"
    wait "$STREAM_PID"
    local line
    line=$(grep '^stream:' "$AQ_TMP/$1.log")
    [[ "$line" == *" failed=0" ]] || { echo "FAIL: producer $1: $line (Redis is never faulted here)"; exit 1; }
    echo "$line"
}

# check_exact NAME TAG SCENARIO RECOVERY_MS: the exactly-once assertions and the figure line.
check_exact() {
    local acc acked stored
    acc=$(acked_vs_rows "$AQ_TMP/$1.acked" "$2")
    acked=$(sed -E 's/^acked=([0-9]+) .*/\1/' <<<"$acc")
    stored=$(sed -E 's/.* stored=([0-9]+).*/\1/' <<<"$acc")
    [[ "$acked" -gt 0 ]] || { echo "FAIL: $3: no event acknowledged"; exit 1; }
    assert_eq "acked=$acked stored=$acked duplicates=0 missing=0 unacked=0" "$acc" "$3: acknowledged events vs rows"
    assert_eq 0 "$(stat dead)" "$3: dead letters"
    assert_eq 0 "$(stat inflight)" "$3: jobs in flight"
    assert_eq 0 "$(stat retry)" "$3: jobs in the retry set"
    printf 'figure: scenario=%s events=%s stored=%s duplicates=0 lost=0 recovery_s=%s\n' \
        "$3" "$acked" "$stored" "$(awk -v ms="$4" 'BEGIN { printf "%.2f", ms / 1000 }')"
}

# ---- a. PostgreSQL down for longer than a backoff cycle ------------------------
HP=$(free_port)
URL="http://127.0.0.1:$HP"
worker_start wa --set threads=2 --set batch_size=200 --set backoff_base_ms=50 \
    --set backoff_max_ms=1000 --set http_listen=127.0.0.1:$HP
stream_start loada a
wait_for 20 bash -c "[ \$(psql -X -A -t -q -c \"SELECT count(*) FROM audit_events WHERE request_id LIKE 'req-a-%'\") -ge 1000 ]"
pg_stop
t_down=$(now_ms)
# While it is down: /readyz names it (threads notice at their next write or idle ping).
wait_for 10 bash -c "curl -s '$URL/readyz' | grep -q 'not ready: postgresql unreachable (0 of 2 writer threads connected)'"
assert_eq 503 "$(curl -s -o /dev/null -w '%{http_code}' "$URL/readyz")" "a: /readyz while PostgreSQL is down"
sleep "$(awk -v t="$DOWN_MS" -v d="$(( $(now_ms) - t_down ))" 'BEGIN { s = (t - d) / 1000; if (s < 0) s = 0; print s }')"
pg_start_again
t_up=$(now_ms)
stream_stop loada
wait_for 60 drained
recovery_ms=$(( $(now_ms) - t_up ))
echo "a: PostgreSQL down $(( t_up - t_down )) ms; backlog drained $recovery_ms ms after it came back"
check_exact loada a pg_down_longer_than_backoff_cycle "$recovery_ms"
# The backoff schedule, attempt by attempt, for each thread, from the log.
"$PY" - "$AQ_TMP/wa.log" <<'PYEOF'
import re, sys
base, cap = 50, 1000
seen = {}
for line in open(sys.argv[1], encoding="utf-8"):
    if 'msg="postgres write failed; will retry"' not in line:
        continue
    m = re.search(r"thread=(\d+) attempt=(\d+) retry_in_ms=(\d+)", line)
    t, a, d = (int(x) for x in m.groups())
    step = min(base << (a - 1), cap) if a < 30 else cap
    if not step // 2 <= d <= step:
        sys.exit("FAIL: a: thread %d attempt %d waited %d ms, outside [%d, %d]" % (t, a, d, step // 2, step))
    seen.setdefault(t, []).append(a)
if not seen:
    sys.exit("FAIL: a: the worker never logged a failed write while PostgreSQL was down")
for t, attempts in sorted(seen.items()):
    # attempts restart at 1 for each batch; one outage = one run 1, 2, 3, ...
    if attempts[:6] != [1, 2, 3, 4, 5, 6]:
        sys.exit("FAIL: a: thread %d attempts %s: expected a run 1..6 (reaching the 1000 ms cap)" % (t, attempts[:10]))
    print("a: thread %d: %d failed attempts, backoff 50 ms -> cap 1000 ms reached at attempt 6" % (t, len(attempts)))
PYEOF
errs=$(metric "$URL" auditq_pg_write_errors_total)
fails=$(grep -c 'msg="postgres write failed; will retry"' "$AQ_TMP/wa.log")
assert_eq "$fails" "$errs" "a: auditq_pg_write_errors_total vs failed writes in the log"
assert_eq "" "$(curl -s "$URL/readyz" | grep -v '^ready$' || true)" "a: /readyz after PostgreSQL is back"
worker_stop wa
it_pass "a: PostgreSQL down ${DOWN_MS} ms under load: backoff 50 ms..1 s as configured, $errs failed writes retried, none lost, none duplicated, 0 dead letters"

# ---- b. connection reset in the middle of a COMMIT ---------------------------
proxy_start pg "$PG_PORT"
HP=$(free_port)
URL="http://127.0.0.1:$HP"
worker_start wb --set threads=2 --set batch_size=200 --set backoff_base_ms=50 --set backoff_max_ms=1000 \
    --set http_listen=127.0.0.1:$HP --set "database_url=postgresql://postgres@127.0.0.1:$PROXY_PORT/auditq"
stream_start loadb b
wait_for 20 bash -c "[ \$(psql -X -A -t -q -c \"SELECT count(*) FROM audit_events WHERE request_id LIKE 'req-b-%'\") -ge 500 ]"
hits_at_least() { [[ "$(proxy_get pg pattern_hits)" -ge "$1" ]]; }
processed_above() { [[ "$(metric "$URL" auditq_processed_total)" -gt "$1" ]]; }
# One reset at a time, each followed by a good batch, so the resets hit
# different batches (and sometimes the retry of the batch just reset).
# s2c: the reset lands after PostgreSQL sent CommandComplete "COMMIT" (so it
# committed) and before the worker read it. c2s: the pipelined INSERT +
# COMMIT (the Parse of the unnamed statement "COMMIT") never reaches it.
hits=0
for where in s2c c2s; do
    [[ $where == s2c ]] && pat='COMMIT\x00' || pat='\x00COMMIT\x00'
    for ((r = 0; r < ROUNDS; r++)); do
        proxy_cmd pg "reset-on $where $pat 1" >/dev/null
        hits=$((hits + 1))
        wait_for 30 hits_at_least "$hits"
        wait_for 30 processed_above "$(metric "$URL" auditq_processed_total)"
    done
done
t_end=$(now_ms)
stream_stop loadb
wait_for 60 drained
recovery_ms=$(( $(now_ms) - t_end ))
assert_eq $((2 * ROUNDS)) "$(proxy_get pg pattern_hits)" "b: resets that hit a COMMIT (proxy)"
assert_eq $((2 * ROUNDS)) "$(proxy_get pg resets)" "b: connections the proxy reset"
check_exact loadb b reset_mid_commit "$recovery_ms"
assert_eq $((2 * ROUNDS)) "$(metric "$URL" auditq_pg_write_errors_total)" "b: failed writes (one per reset)"
assert_eq $((2 * ROUNDS)) "$(grep -c 'msg="postgres write failed; will retry".*connection lost' "$AQ_TMP/wb.log")" \
    "b: 'postgres write failed; will retry ... connection lost' log lines"
assert_eq 0 "$(grep -c 'dead-lettered' "$AQ_TMP/wb.log" || true)" "b: dead-letter log lines"
worker_stop wb
it_pass "b: $((2 * ROUNDS)) connection resets mid-COMMIT ($ROUNDS after PostgreSQL committed, $ROUNDS before): every batch retried, stored once, 0 dead letters"
