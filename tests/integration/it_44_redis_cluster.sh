#!/usr/bin/env bash
# Redis Cluster under load (issue 16, docs/SCALING.md "Redis Cluster").
#
# 3 masters + 3 replicas (lib_cluster.sh), redis_cluster = on,
# redis_shards = 6: each shard's hash tag ({auditq}, {auditq:1} ...) lives
# in one slot, so every script stays on one node. Producers (sync and
# async, redis_min_replicas = 1, every acknowledged event_id logged) and
# two workers (2 threads each) find the nodes from seeds alone. Under load:
#   1. the slot of shard 1 is migrated to another master with its keys
#      (IMPORTING/MIGRATING, MIGRATE, SETSLOT NODE) while jobs are queued
#      and in flight: clients meet MOVED/ASK/TRYAGAIN and follow;
#   2. the master serving shard 0 is killed with SIGKILL; its replica is
#      promoted; producers and workers follow (the figures printed: kill ->
#      promotion, kill -> first batch settled on the new master); the
#      killed node restarts and rejoins as a replica (so WAIT 1 can be met
#      again);
#   3. a worker is killed with SIGKILL; another starts and recovers its
#      batches, shard by shard.
# At the end every acknowledged event is stored exactly once, none is
# dead-lettered, every shard is drained, and auditqctl stats (through the
# cluster) lists the 6 shards on the masters that serve them.
set -euo pipefail
source "$(dirname "$0")/lib_it.sh"
source "$(dirname "$0")/lib_faults.sh"
source "$(dirname "$0")/lib_cluster.sh"

harness_init
cluster_start 3
AQ_PG_FAST=${AQ_PG_FAST:-1} pg_start
"$BIN/auditqctl" migrate >/dev/null
export AUDITQ_REDIS_URL=$CLUSTER_URL
export AUDITQ_REDIS_CLUSTER=on
export AUDITQ_REDIS_SHARDS=6
export AUDITQ_REDIS_SHARD_URLS=$CLUSTER_SEEDS

shard_slot() { ((${1} == 0)) && cluster_slot_of auditq || cluster_slot_of "auditq:$1"; }
declare -A OWNER
for i in 0 1 2 3 4 5; do
    OWNER[$i]=$(cluster_master_of_slot "$(shard_slot $i)")
done
echo "shards on masters: $(for i in 0 1 2 3 4 5; do printf '%s:%s ' "$i" "${OWNER[$i]}"; done)"

AUDITQ_REDIS_MIN_REPLICAS=1 producers_start 300 1500
worker_start wa --set threads=2
worker_start wb --set threads=2
sleep 2

# ---- 1. migrate shard 1's slot while it is busy -----------------------------
slot1=$(shard_slot 1)
from=${OWNER[1]}
to=""
for p in "${OWNER[@]}"; do [[ $p != "$from" ]] && { to=$p; break; }; done
[[ -n $to ]] || { echo "FAIL: every shard on one master"; exit 1; }
keys_before=$(redis-cli -p "$from" cluster countkeysinslot "$slot1")
cluster_move_slot "$slot1" "$to"
assert_eq "$to" "$(cluster_master_of_slot "$slot1")" "shard 1's slot owner after the move"
echo "moved slot $slot1 (shard 1, $keys_before keys) from $from to $to under load"
sleep 2

# ---- 2. kill the master of shard 0 -----------------------------------------
slot0=$(shard_slot 0)
victim=$(cluster_master_of_slot "$slot0")
before=$(redis-cli -c -p "$to" hget '{auditq}:stats' processed)
t0=$(now_ms)
promote_ms=$(cluster_kill_master "$victim")
newm=$(cluster_master_of_slot "$slot0")
base=$(redis-cli -p "$newm" hget '{auditq}:stats' processed)
base=${base:-0}
settled() { local v; v=$(redis-cli -p "$newm" hget '{auditq}:stats' processed); ((${v:-0} > base)); }
wait_for 30 settled || { echo "FAIL: no batch settled on shard 0's new master $newm"; exit 1; }
settle_ms=$(($(now_ms) - t0))
echo "killed master $victim (shard 0): promoted in ${promote_ms} ms, first settle on $newm ${settle_ms} ms after the kill (processed before the kill: ${before:-0})"
cluster_restart_node "$victim"

# ---- 3. kill a worker --------------------------------------------------------
sleep 1
kill -KILL "${WORKER_PID[wa]}"
wait "${WORKER_PID[wa]}" 2>/dev/null || true
worker_start wc --set threads=2
sleep 3

producers_stop
echo "producers: sent=$PROD_SENT acked=$PROD_ACKED failed=$PROD_FAILED"
((PROD_ACKED > 1000)) || { echo "FAIL: too few acknowledged events ($PROD_ACKED)"; exit 1; }
wait_for 120 drained || { echo "FAIL: not drained"; "$BIN/auditqctl" stats; exit 1; }
account
assert_eq 0 "$ACC_MISSING" "acknowledged events missing"
assert_eq 0 "$ACC_DUPLICATES" "duplicate rows"
stats=$("$BIN/auditqctl" stats --json)
assert_eq "6 0 0" "$("$PY" -c '
import json, sys
s = json.loads(sys.argv[1])
print(len(s["shards"]), sum(x["queued"] + x["inflight"] for x in s["shards"]), s["dead"])' "$stats")" \
    "stats: 6 shards, all drained, no dead letters"
assert_eq "ok" "$("$PY" -c '
import json, sys
s = json.loads(sys.argv[1])
ok = s["processed"] == sum(x["processed"] for x in s["shards"]) and s["processed"] > 0
print("ok" if ok else "processed %s vs shards %s" % (s["processed"], [x["processed"] for x in s["shards"]]))' "$stats")" \
    "stats: processed is the shards added up"
where1=$("$PY" -c 'import json,sys; print(json.loads(sys.argv[1])["shards"][1]["server"])' "$stats")
assert_eq "127.0.0.1:$(cluster_master_of_slot "$slot1")" "$where1" "stats names the master serving shard 1 now"
worker_stop wb
worker_stop wc
it_pass "redis cluster: 3+3 nodes, 6 shards; slot migrated under load, master killed (promoted ${promote_ms} ms, first settle ${settle_ms} ms), worker killed: $ACC_ACKED acknowledged events stored once, none dead-lettered, every shard drained"
