#!/usr/bin/env bash
# Integrity under faults (issue 12): two sealing workers (each may be the
# sequencer; checkpoint_interval_ms=100, so kills land inside sequencer
# ticks too) while two producers send continuously. A killer loop SIGKILLs
# a random worker at random moments and restarts it, KILLS times; half way
# PostgreSQL is restarted under load. Then, producers stopped, queues
# drained, every evidence batch sealed:
#   - every acknowledged event is stored once (nothing missing, no
#     duplicate rows);
#   - `auditqctl verify` passes against the database and every published
#     checkpoint (no gap, no leaf twice, every root signed), exit 0;
#   - leaves = rows = distinct event_ids: a redelivered event that
#     ON CONFLICT skipped is not covered twice, a killed writer's rolled
#     back batch left no evidence;
#   - every evidence batch has exactly one assignment, and the leaf ranges
#     tile [0, tree size) (checked in SQL as well as by verify).
# AQ_FAULTS=long: 40 kills. AQ_SEED=S replays a run.
set -euo pipefail
source "$(dirname "$0")/lib_it.sh"
source "$(dirname "$0")/lib_faults.sh"
it_setup
CTL="$BIN/auditqctl"
KEY=$AQ_TMP/seal.key
ANCH=$AQ_TMP/anchors
mkdir -p "$ANCH"
"$CTL" keygen "$KEY" >/dev/null

KILLS=10
((FAULTS_LONG)) && KILLS=40
SEED=${AQ_SEED:-$$}
RANDOM=$SEED
echo "integrity storm: kills=$KILLS seed=$SEED"

declare -A PID GEN
start_slot() {
    local slot=$1 name
    GEN[$slot]=$((${GEN[$slot]:-0} + 1))
    name=w${slot}_${GEN[$slot]}
    worker_start "$name" --set threads=2 --set batch_size=100 --set max_recoveries=1000 \
        --set "seal_key_file=$KEY" --set "anchor_dir=$ANCH" --set checkpoint_interval_ms=100
    PID[$slot]=${WORKER_PID[$name]}
}

producers_start 100 2000
start_slot A
start_slot B
wait_for $((30 * ${AQ_TIME_SCALE:-1})) bash -c "[ \"\$(psql -X -A -t -q -c 'SELECT count(*) FROM auditq_checkpoint')\" -ge 3 ]" ||
    { echo "FAIL: no checkpoints signed"; exit 1; }

kills=0
while ((kills < KILLS)); do
    sleep "$(awk -v r="$RANDOM" 'BEGIN { printf "%.2f", 0.2 + 1.0 * r / 32767 }')"
    slot=$([ $((RANDOM % 2)) = 0 ] && echo A || echo B)
    pid=${PID[$slot]}
    rc=0
    { kill -KILL "$pid"; wait "$pid" || rc=$?; } 2>/dev/null
    assert_eq 137 "$rc" "exit status of SIGKILLed worker $slot"
    kills=$((kills + 1))
    if ((kills == KILLS / 2)); then
        pg_stop
        sleep 0.5
        pg_start_again
    fi
    start_slot "$slot"
done
sleep 1
producers_stop
wait_for $((60 * ${AQ_TIME_SCALE:-1})) drained || { echo "FAIL: queues not drained"; exit 1; }
unsealed() { psql_q "SELECT count(*) FROM auditq_evidence_batch b WHERE NOT EXISTS (SELECT 1 FROM auditq_seal_assignment a WHERE a.item_id = b.batch_id)"; }
wait_for $((30 * ${AQ_TIME_SCALE:-1})) bash -c "[ \"\$(psql -X -A -t -q -c 'SELECT count(*) FROM auditq_evidence_batch b WHERE NOT EXISTS (SELECT 1 FROM auditq_seal_assignment a WHERE a.item_id = b.batch_id)')\" = 0 ]" ||
    { echo "FAIL: $(unsealed) evidence batches not sealed"; exit 1; }
worker_stop "w$(echo A)_${GEN[A]}"
worker_stop "w$(echo B)_${GEN[B]}"

account
assert_eq 0 "$ACC_MISSING" "acknowledged events missing"
assert_eq 0 "$ACC_DUPLICATES" "duplicate rows"
stored=$(rows)
echo "acknowledged=$ACC_ACKED stored=$stored checkpoints=$(psql_q "SELECT count(*) FROM auditq_checkpoint")"

json=$("$CTL" verify --key "$KEY.pub" --anchors "$ANCH" --json) || {
    echo "FAIL: verify after the storm:"; printf '%s\n' "$json"; exit 1; }
assert_eq "true $stored $stored 0 0" "$("$PY" -c '
import json, sys
v = json.loads(sys.argv[1])
print(str(v["verified"]).lower(), v["event_leaves"], v["rows_checked"], v["inserted_rows"], v["findings_total"])' "$json")" \
    "verify: verified, leaves = rows checked = rows stored"
assert_eq "$stored" "$(psql_q "SELECT count(DISTINCT event_id) FROM audit_events")" "distinct event_ids = rows"
assert_eq "$(psql_q "SELECT count(*) FROM auditq_evidence_batch")" "$(psql_q "SELECT count(*) FROM auditq_seal_assignment")" \
    "one assignment per evidence batch"
# The leaf ranges tile [0, tree size): each starts where the previous ended.
assert_eq "0 $(psql_q "SELECT max(tree_size) FROM auditq_checkpoint")" "$(psql_q "
    SELECT count(*) FILTER (WHERE first_leaf <> coalesce(prev_end, 0)), max(first_leaf + n)
      FROM (SELECT first_leaf, n, lag(first_leaf + n) OVER (ORDER BY first_leaf) AS prev_end
              FROM auditq_seal_assignment) s" | tr '|' ' ')" "leaf ranges tile the tree"
assert_eq "$(psql_q "SELECT count(*) FROM auditq_checkpoint")" "$(ls "$ANCH" | grep -c '\.checkpoint$')" \
    "every checkpoint published (republished after kills between commit and publish)"
it_pass "integrity after $KILLS kills of writers and sequencers and a PostgreSQL restart: verified, $stored leaves = rows"
