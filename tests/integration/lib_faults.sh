# shellcheck shell=bash
# lib_faults.sh -- shared steps of the fault-suite tests it_9N_*.sh (sourced
# after lib_it.sh).
#   FAULTS_LONG             1 under AQ_FAULTS=long (make test-faults), else 0
#   producers_start SYNC_RATE ASYNC_RATE
#                           two it_client stream producers in the background
#                           (tags fsync / fasync), each logging the event_id of
#                           every event Redis acknowledged to $AQ_TMP/acked.*
#   producers_stop          stops them (exit 0 asserted); sets PROD_SENT,
#                           PROD_ACKED, PROD_FAILED (sums over both)
#   backlog N               N events queued at once (async, acknowledged ids
#                           in $AQ_TMP/acked.backlog)
#   account                 holds every acknowledged event ($AQ_TMP/acked.*)
#                           to account against audit_events; sets ACC_ACKED,
#                           ACC_STORED (rows of these producers: their tags
#                           start with "f"), ACC_DUPLICATES (rows minus
#                           distinct event_ids, whole table), ACC_MISSING
#                           (acknowledged, not stored)
#   now_ms                  monotonic-enough wall clock in ms

FAULTS_LONG=0
[[ "${AQ_FAULTS:-}" == long ]] && FAULTS_LONG=1

now_ms() { echo $(($(date +%s%N) / 1000000)); }

producers_start() {
    rm -f "$AQ_TMP/stop-producers"
    : >"$AQ_TMP/acked.sync"
    : >"$AQ_TMP/acked.async"
    harness_spawn prod_sync "$TBIN/it_client" stream --mode sync --rate "$1" --tag fsync \
        --ack-log "$AQ_TMP/acked.sync" --stop-file "$AQ_TMP/stop-producers"
    PROD_SYNC_PID=$HARNESS_LAST_PID
    harness_spawn prod_async "$TBIN/it_client" stream --mode async --rate "$2" --tag fasync \
        --ack-log "$AQ_TMP/acked.async" --stop-file "$AQ_TMP/stop-producers"
    PROD_ASYNC_PID=$HARNESS_LAST_PID
}

# "stream: mode=M sent=N acked=A failed=F" -> the value of KEY ($2) in log $1.
_stream_field() {
    sed -n "s/^stream: .* $2=\([0-9]*\).*/\1/p" "$AQ_TMP/$1.log" | head -n 1
}

producers_stop() {
    local rc p f
    touch "$AQ_TMP/stop-producers"
    for p in "$PROD_SYNC_PID:prod_sync" "$PROD_ASYNC_PID:prod_async"; do
        rc=0
        wait "${p%%:*}" || rc=$?
        assert_eq 0 "$rc" "${p#*:} exit status"
    done
    PROD_SENT=0 PROD_ACKED=0 PROD_FAILED=0
    for p in prod_sync prod_async; do
        grep -q '^stream: ' "$AQ_TMP/$p.log" || { echo "FAIL: $p printed no summary"; cat "$AQ_TMP/$p.log"; exit 1; }
        PROD_SENT=$((PROD_SENT + $(_stream_field $p sent)))
        PROD_ACKED=$((PROD_ACKED + $(_stream_field $p acked)))
        f=$(_stream_field $p failed)
        PROD_FAILED=$((PROD_FAILED + f))
    done
    assert_eq "$PROD_ACKED" "$(cat "$AQ_TMP/acked.sync" "$AQ_TMP/acked.async" | wc -l)" \
        "acknowledged ids logged = acknowledged events counted"
}

backlog() {
    local out
    out=$("$TBIN/it_client" stream --mode async --events "$1" --tag fbacklog \
        --ack-log "$AQ_TMP/acked.backlog" --stop-file "$AQ_TMP/never") || exit 1
    assert_eq "stream: mode=async sent=$1 acked=$1 failed=0" "$out" "backlog producer"
}

account() {
    local out
    psql_q "SELECT event_id FROM audit_events WHERE request_id LIKE 'req-f%'" >"$AQ_TMP/stored.ids"
    out=$("$PY" - "$AQ_TMP/stored.ids" "$AQ_TMP"/acked.* <<'PYEOF'
import sys
acked = []
for p in sys.argv[2:]:
    with open(p) as f:
        acked += [l.strip() for l in f if l.strip()]
with open(sys.argv[1]) as f:
    stored = [l.strip() for l in f if l.strip()]
s = set(stored)
if len(set(acked)) != len(acked):
    sys.exit("the producers acknowledged the same event_id twice")
print(len(acked), len(stored), sum(1 for a in acked if a not in s))
PYEOF
    ) || exit 1
    read -r ACC_ACKED ACC_STORED ACC_MISSING <<<"$out"
    ACC_DUPLICATES=$(psql_q "SELECT count(*) - count(DISTINCT event_id) FROM audit_events")
}
