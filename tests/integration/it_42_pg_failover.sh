#!/usr/bin/env bash
# PostgreSQL fail-over under load (issue 16): a primary and a synchronous
# standby (pg_basebackup -R, synchronous_standby_names = '*'), the worker,
# auditqctl and the sequencer given both with
#   postgresql://...@127.0.0.1:P1,127.0.0.1:P2/auditq?target_session_attrs=read-write
# A sync and an async producer stream events; the primary is killed -9
# mid-stream, its address then goes silent (a listener that completes TCP
# handshakes and never answers, as a frozen or vanished machine does), and
# a second later the standby is promoted (pg_ctl promote). Every reconnect
# must give the silent first host at most pg_connect_timeout_s and go on
# to the second (libpq's non-blocking connect alone never times a host
# out: before common/pgconn.c the writer threads stayed on it for good).
#
# Asserts: every acknowledged event is stored exactly once (by event_id:
# lib_it.sh acked_vs_rows), none dead-lettered, queues drained; the worker
# writes again within 10 s of the promotion (the time is measured and
# printed as a figure line); the retention thread (retention_interval_s=1)
# and the sequencer (seal_key_file) carry on against the new primary --
# every batch written is sealed there -- partition upkeep creates a dropped
# month there, and auditqctl finds it through the same two-host URL.
set -euo pipefail
source "$(dirname "$0")/lib_it.sh"

RATE=500
SCALE=${AQ_TIME_SCALE:-1}
now_ms() { date +%s%3N; }

it_setup
pg_standby_start sync
P1=$PG_PORT
P2=$PG_STANDBY_PORT
export AUDITQ_DATABASE_URL="postgresql://postgres@127.0.0.1:$P1,127.0.0.1:$P2/auditq?target_session_attrs=read-write"

KEY=$AQ_TMP/seal.key
"$BIN/auditqctl" keygen "$KEY" >/dev/null
mkdir -p "$AQ_TMP/anchors"
HP=$(free_port)
worker_start w --set threads=2 --set batch_size=100 --set backoff_base_ms=50 --set backoff_max_ms=500 \
    --set pg_connect_timeout_s=1 \
    --set retention_interval_s=1 --set "seal_key_file=$KEY" --set "anchor_dir=$AQ_TMP/anchors" \
    --set checkpoint_interval_ms=200 --set http_listen=127.0.0.1:$HP

# stream_start NAME MODE TAG
declare -A SPID
stream_start() {
    rm -f "$AQ_TMP/$1.stop"
    harness_spawn "$1" "$TBIN/it_client" stream --mode "$2" --rate "$RATE" --tag "$3" \
        --ack-log "$AQ_TMP/$1.acked" --stop-file "$AQ_TMP/$1.stop"
    SPID[$1]=$HARNESS_LAST_PID
}
stream_stop() {
    touch "$AQ_TMP/$1.stop"
    wait "${SPID[$1]}"
    local line
    line=$(grep '^stream:' "$AQ_TMP/$1.log")
    [[ "$line" == *" failed=0" ]] || { echo "FAIL: producer $1: $line (Redis is never faulted here)"; exit 1; }
    echo "$line"
}
rows_on() { PGPORT=$1 psql_q "SELECT count(*) FROM audit_events"; }
retention_ok() { grep -c 'msg="retention" detail="nothing to do"' "$AQ_TMP/w.log" || true; }
retention_ran() { [[ "$(retention_ok)" -ge 1 ]]; }

stream_start fs sync fs
stream_start fa async fa
wait_for $((20 * SCALE)) bash -c "[ \$(PGPORT=$P1 \"\$PG_BINDIR/psql\" -X -A -t -q -c 'SELECT count(*) FROM audit_events') -ge 500 ]"
wait_for $((10 * SCALE)) retention_ran || { echo "FAIL: no retention run succeeded before the fail-over"; exit 1; }
assert_eq sync "$(psql_q "SELECT sync_state FROM pg_stat_replication")" "the standby is synchronous"

# ---- the fail-over -------------------------------------------------------------
pg_kill
t_kill=$(now_ms)
# The old primary's address, silent from now on (stopped at cleanup).
harness_spawn silent "$PY" -u -c '
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(1024)
held = []
while True:
    c, _ = s.accept()
    held.append(c)
    print("accepted, never answered", flush=True)' "$P1"
sleep 1
pg_standby_promote
t_promote=$(now_ms)
export PGPORT=$P2
base=$(rows_on "$P2")
ret_before=$(retention_ok)
writing() { [[ "$(rows_on "$P2")" -gt "$base" ]]; }
wait_for $((10 * SCALE)) writing || { echo "FAIL: the worker wrote nothing to the new primary within $((10 * SCALE)) s of the promotion"; exit 1; }
t_write=$(now_ms)
first_write_ms=$((t_write - t_promote))
echo "primary killed; promoted $((t_promote - t_kill)) ms later; first new row on the new primary $first_write_ms ms after the promotion"
[[ $first_write_ms -le $((10000 * SCALE)) ]] || { echo "FAIL: first write ${first_write_ms} ms after the promotion (bound 10 s)"; exit 1; }
silent_hits=$(grep -c '^accepted' "$AQ_TMP/silent.log" || true)
[[ $silent_hits -ge 1 ]] || { echo "FAIL: no connection ever reached the silent old primary: the test proved nothing about it"; exit 1; }
echo "connections held by the silent old primary: $silent_hits"

sleep 1
stream_stop fs
stream_stop fa
wait_for $((30 * SCALE)) drained || { echo "FAIL: the queues did not drain on the new primary"; exit 1; }

for t in fs fa; do
    acc=$(acked_vs_rows "$AQ_TMP/$t.acked" "$t")
    acked=$(sed -E 's/^acked=([0-9]+) .*/\1/' <<<"$acc")
    [[ "$acked" -gt 0 ]] || { echo "FAIL: $t: no event acknowledged"; exit 1; }
    assert_eq "acked=$acked stored=$acked duplicates=0 missing=0 unacked=0" "$acc" "$t: acknowledged events vs rows on the new primary"
done
assert_eq 0 "$(stat dead)" "dead letters"
assert_eq 0 "$(stat inflight)" "jobs in flight"
it_pass "kill -9 of the primary, standby promoted: every acknowledged event (sync and async) stored once on the new primary, none dead-lettered; first write ${first_write_ms} ms after the promotion"

# The sequencer and the retention thread carry on against the new primary.
unsealed() { psql_q "SELECT count(*) FROM auditq_evidence_batch b WHERE NOT EXISTS (SELECT 1 FROM auditq_seal_assignment a WHERE a.item_id = b.batch_id)"; }
sealed() { [[ "$(unsealed)" == 0 ]]; }
wait_for $((20 * SCALE)) sealed ||
    { echo "FAIL: $(unsealed) batches left unsealed on the new primary"; exit 1; }
retention_after() { [[ "$(retention_ok)" -gt "$ret_before" ]]; }
wait_for $((10 * SCALE)) retention_after || { echo "FAIL: no retention run succeeded after the promotion"; exit 1; }
# auditqctl through the two-host URL: it must land on the new primary.
vout=$(AUDITQ_PG_CONNECT_TIMEOUT_S=1 "$BIN/auditqctl" verify --key "$KEY.pub" --anchors "$AQ_TMP/anchors" 2>&1) ||
    { echo "FAIL: auditqctl verify on the new primary:"; printf '%s\n' "$vout"; exit 1; }
grep -q '^verified: ' <<<"$vout" || { echo "FAIL: auditqctl verify said:"; printf '%s\n' "$vout"; exit 1; }
it_pass "after the promotion: every batch sealed on the new primary, retention runs succeed there, auditqctl verify passes through the two-host URL"

# Partition upkeep on the new primary: a worker started now runs it at once
# (then hourly) through the same two-host URL, the silent old primary first.
far=audit_events_$(month 3 YYYY_MM)
psql_q "DROP TABLE $far"
worker_start w2 --set threads=1 --set pg_connect_timeout_s=1
wait_for $((10 * SCALE)) grep -q 'msg="partitions created" count=1' "$AQ_TMP/w2.log" ||
    { echo "FAIL: partition upkeep created nothing on the new primary"; cat "$AQ_TMP/w2.log"; exit 1; }
assert_eq "$far" "$(psql_q "SELECT to_regclass('$far')")" "the month upkeep created on the new primary"
worker_stop w2
it_pass "partition upkeep after the promotion: $far created on the new primary through the two-host URL"

worker_stop w
printf 'figure: scenario=pg_failover events=%s promote_after_kill_ms=%s first_write_after_promote_ms=%s duplicates=0 lost=0 dead=0\n' \
    "$(rows_on "$P2")" "$((t_promote - t_kill))" "$first_write_ms"
