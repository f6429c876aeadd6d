#!/usr/bin/env bash
# An old PostgreSQL primary that comes back after its standby was promoted
# (issue 16: fencing; worker/pgw.c DESIGN "Fencing", pg_sync_fence).
#
# A primary P1 with a synchronous standby P2 (synchronous_standby_names =
# '*'), the worker given "P1,P2 ... target_session_attrs=read-write", a
# sync producer streaming. Then, as a split brain goes:
#   1. P2 is promoted while the worker writes to P1: P1's commits now wait
#      for a standby that will never come back; batches hang in COMMIT,
#      already committed in P1's WAL;
#   2. the worker gives up on a hung COMMIT (pg_timeout_ms) and retries on
#      P1, read-write and listed first; meanwhile the waits for the lost
#      standby are canceled on P1 every second (pg_cancel_backend, as an
#      operator or a restart would end them), so those commits stand on P1
#      and their rows are visible to the retry. A retry finds every row
#      present and writes nothing; without the fence its commit needs no
#      standby and returns at once, the batch is acknowledged, and its
#      events exist only on P1. A canceled wait of the worker's own commit
#      answers with a WARNING, which is never taken as a success;
#   3. the operator kills P1 (the fence); the worker reaches P2.
# Asserts: every acknowledged event is on P2 (the primary that survives)
# exactly once; while P1 was back no batch was acknowledged (Redis'
# processed counter did not move); the run prints how many commits hung.
# AQ_FENCE=off runs the same with pg_sync_fence = off and expects the
# loss (it prints how many acknowledged events P2 lacks): the proof that
# the test can fail. It runs write_method = insert (AQ_WRITE_METHOD=copy
# for the other): there a retry that finds its rows writes no WAL at all,
# so without the fence its commit needs no standby (measured: 226 of
# 3,750 acknowledged events lost). The copy method's retries waited for
# the standby even with the fence off in our runs (it passes either way);
# the fence makes that independent of how a batch is written.
set -euo pipefail
source "$(dirname "$0")/lib_it.sh"

FENCE=${AQ_FENCE:-on}
it_setup
pg_standby_start sync
P1=$PG_PORT
P2=$PG_STANDBY_PORT
export AUDITQ_DATABASE_URL="postgresql://postgres@127.0.0.1:$P1,127.0.0.1:$P2/auditq?target_session_attrs=read-write"

worker_start w --set threads=2 --set batch_size=50 --set pg_timeout_ms=3000 --set statement_timeout_ms=2000 \
    --set pg_connect_timeout_s=1 --set backoff_base_ms=50 --set backoff_max_ms=500 --set "pg_sync_fence=$FENCE" \
    --set "write_method=${AQ_WRITE_METHOD:-insert}"
rm -f "$AQ_TMP/stop"
harness_spawn prod "$TBIN/it_client" stream --mode sync --rate 300 --tag fz --ack-log "$AQ_TMP/acked" \
    --stop-file "$AQ_TMP/stop"
PROD=$HARNESS_LAST_PID
rows_on() { PGPORT=$1 psql_q "SELECT count(*) FROM audit_events"; }
enough() { [[ $(rows_on "$P1") -ge 300 ]]; }
wait_for 30 enough || { echo "FAIL: nothing written to P1"; exit 1; }

# ---- 1. the standby is promoted: P1 is cut off --------------------------------
pg_standby_promote
hung() { [[ $(PGPORT=$P1 psql_q "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'") -ge 1 ]]; }
wait_for 20 hung || { echo "FAIL: no commit waits for the lost standby on P1"; exit 1; }
nhung=$(PGPORT=$P1 psql_q "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'")

# ---- 2. the hung commits become visible on P1 -----------------------------------
# The worker gives up on a hung COMMIT after pg_timeout_ms (its outcome
# unknown) and retries on P1, still read-write and listed first. Every
# second the waits for the lost standby are canceled on P1 (as an operator
# or a server restart would end them): the commits they belonged to stand
# on P1 alone, and their rows are visible to the retries.
processed0=$(redis-cli -p "$REDIS_PORT" hget '{auditq}:stats' processed)
canceled=0
for _ in 1 2 3 4 5 6 7 8 9 10; do
    sleep 1
    n=$(PGPORT=$P1 psql_q "SELECT count(*) FROM (SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE wait_event = 'SyncRep') c")
    canceled=$((canceled + n))
done
processed1=$(redis-cli -p "$REDIS_PORT" hget '{auditq}:stats' processed)
on_p1=$(rows_on "$P1")
echo "P1 cut off: $nhung commits hung at first, $canceled waits canceled over 10 s, $on_p1 rows on P1; jobs acknowledged meanwhile: $((processed1 - processed0))"

# ---- 3. the operator fences P1 off ---------------------------------------------
pg_kill   # STONITH: fast shutdown can hang behind the waits for the lost standby
touch "$AQ_TMP/stop"
wait "$PROD"
grep '^stream:' "$AQ_TMP/prod.log"
wait_for 60 drained || { echo "FAIL: not drained on P2"; exit 1; }
res=$(PGPORT=$P2 acked_vs_rows "$AQ_TMP/acked" fz)
echo "on P2: $res"
missing=$(sed -n 's/.* missing=\([0-9]*\).*/\1/p' <<<"$res")
if [[ $FENCE == off ]]; then
    ((missing > 0)) || { echo "FAIL: pg_sync_fence=off lost nothing: the scenario did not happen"; exit 1; }
    it_pass "pg_sync_fence=off: $missing acknowledged events exist only on the old primary (the loss the fence closes)"
    exit 0
fi
assert_eq 0 "$missing" "acknowledged events missing on the surviving primary"
assert_eq 0 "$(sed -n 's/.* duplicates=\([0-9]*\).*/\1/p' <<<"$res")" "duplicates on P2"
assert_eq 0 "$((processed1 - processed0))" "jobs acknowledged while P1 was cut off"
((canceled > 0)) || { echo "FAIL: no wait was canceled: the scenario did not happen"; exit 1; }
worker_stop w
it_pass "old primary cut off by a promotion: $canceled canceled standby waits, 0 batches acknowledged there; every acknowledged event stored once on the new primary"
