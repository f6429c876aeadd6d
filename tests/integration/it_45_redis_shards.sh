#!/usr/bin/env bash
# Redis shards on independent servers (issue 16, docs/SCALING.md "Redis
# shards"): redis_shards = 4 over three redis-server processes listed in
# redis_shard_urls (shard i on server i mod 3, so shards 0 and 3 share one).
#   a. spread: 400 sync events go round robin, exactly 100 per shard, under
#      the hash tags {auditq}, {auditq:1}, {auditq:2}, {auditq:3} on the
#      right servers; async batches go whole to one shard each; auditqctl
#      stats adds the shards up (and lists each);
#   b. tenant: every event of one tenant lands on the shard FNV-1a(tenant)
#      mod 4 picks (counted per shard against a model of the rule);
#   c. two workers drain every shard: every event stored once;
#   d. kill -9 of a worker with batches in flight on several shards: the
#      other worker recovers them per shard, every event stored once;
#   e. one server down (shards 1): spread sends go to the other shards
#      (all 400 acknowledged), tenant sends bound for it fail naming the
#      shard; the workers keep draining the others; the server back, its
#      shard drains too;
#   dead letters and workers: auditqctl dlq goes shard by shard (--shard N
#      for one; INDEX needs it), auditqctl workers lists each worker once;
#   f. a shard count that disagrees with the servers listed is refused with
#      the fix, by the worker, auditqctl and the library.
set -euo pipefail
source "$(dirname "$0")/lib_it.sh"

it_setup
P0=$REDIS_PORT
redis_start s1
P1=$REDIS_PORT
redis_start s2
P2=$REDIS_PORT
export AUDITQ_REDIS_URL="redis://127.0.0.1:$P0"
export AUDITQ_REDIS_SHARDS=4
export AUDITQ_REDIS_SHARD_URLS="redis://127.0.0.1:$P0, redis://127.0.0.1:$P1,redis://127.0.0.1:$P2"
PORTS=("$P0" "$P1" "$P2" "$P0")
TAGS=("{auditq}" "{auditq:1}" "{auditq:2}" "{auditq:3}")

# Jobs queued in shard I (all four priorities), read from its server.
shard_depth() {
    local i=$1 n=0 p d
    for p in critical high normal low; do
        d=$(redis-cli -p "${PORTS[$i]}" llen "${TAGS[$i]}:queue:$p")
        n=$((n + d))
    done
    echo "$n"
}
depths() { echo "$(shard_depth 0) $(shard_depth 1) $(shard_depth 2) $(shard_depth 3)"; }
# The model of redis_shard_by = tenant: it_client's event i has tenant
# PREFIX-(i % 7); prints how many of events 0..N-1 each of the 4 shards
# gets (FNV-1a 32-bit of the tenant, mod 4).
tenant_model() {  # PREFIX N
    "$PY" -c '
import sys
def fnv(s):
    h = 2166136261
    for b in s.encode():
        h = ((h ^ b) * 16777619) & 0xffffffff
    return h
n = [0, 0, 0, 0]
for i in range(int(sys.argv[2])):
    n[fnv("%s-%d" % (sys.argv[1], i % 7)) % 4] += 1
print(" ".join(map(str, n)))' "$1" "$2"
}

# ---- a. spread -------------------------------------------------------------
out=$("$TBIN/it_client" produce --sync 400 --async 0 --tag spr)
[[ "$out" == *"ok=400 "* ]] || { echo "FAIL: spread sync sends: $out"; exit 1; }
assert_eq "100 100 100 100" "$(depths)" "spread: 400 sync events, queued per shard"
# Shards 0 and 3 share a server but not keys: each key names its shard.
assert_eq "0" "$(redis-cli -p "$P1" llen '{auditq}:queue:normal')" "shard 0's keys are not on server 1"
out=$("$TBIN/it_client" produce --sync 0 --async 600 --tag spa)
[[ "$out" == *"ok=600 "* ]] || { echo "FAIL: spread async sends: $out"; exit 1; }
read -r d0 d1 d2 d3 <<<"$(depths)"
assert_eq 1000 $((d0 + d1 + d2 + d3)) "spread: 400 sync + 600 async queued over the shards"
stats=$("$BIN/auditqctl" stats --json)
assert_eq "1000 4 1000" "$("$PY" -c '
import json, sys
s = json.loads(sys.argv[1])
print(sum(q["depth"] for q in s["queues"].values()), len(s["shards"]), sum(x["queued"] for x in s["shards"]))' "$stats")" \
    "auditqctl stats: the sum, the shard list, the shards' sum"
table=$("$BIN/auditqctl" stats)
for i in 0 1 2 3; do
    grep -Eq "^$i +127\.0\.0\.1:${PORTS[$i]} " <<<"$table" || { echo "FAIL: stats table has no line for shard $i"; echo "$table"; exit 1; }
done

# ---- b. tenant -------------------------------------------------------------
before=($(depths))
out=$(AUDITQ_REDIS_SHARD_BY=tenant "$TBIN/it_client" produce --sync 350 --async 350 --tag ten)
[[ "$out" == *"ok=700 "* ]] || { echo "FAIL: tenant sends: $out"; exit 1; }
after=($(depths))
got="$((after[0] - before[0])) $((after[1] - before[1])) $((after[2] - before[2])) $((after[3] - before[3]))"
want=$(tenant_model tenant-ten 700)
assert_eq "$want" "$got" "tenant: events per shard as FNV-1a(tenant) mod 4 puts them"

# ---- c. two workers drain every shard --------------------------------------
worker_start wa --set threads=2
worker_start wb --set threads=2
wait_for 60 drained || { echo "FAIL: shards not drained"; depths; exit 1; }
assert_eq 1700 "$(rows)" "rows after draining 4 shards"
assert_eq 0 "$(psql_q "SELECT count(*) - count(DISTINCT event_id) FROM audit_events")" "duplicates"
assert_eq 1700 "$(stat processed)" "auditqctl stats: processed, summed over the shards"
for i in 0 1 2 3; do
    n=$(redis-cli -p "${PORTS[$i]}" hget "${TAGS[$i]}:stats" processed)
    ((n > 0)) || { echo "FAIL: shard $i processed nothing"; exit 1; }
done
# Every worker registers on every shard (recovery is per shard).
for i in 0 1 2 3; do
    assert_eq 2 "$(redis-cli -p "${PORTS[$i]}" zcard "${TAGS[$i]}:workers")" "workers registered on shard $i"
done

# ---- d. kill -9 with batches in flight on several shards --------------------
worker_stop wb
"$TBIN/it_client" produce --sync 0 --async 20000 --tag kil >/dev/null
wait_for 60 bash -c "[[ \$(psql -X -A -t -q -c \"SELECT count(*) FROM audit_events WHERE request_id LIKE 'req-kil-%'\" </dev/null) -ge 3000 ]]" ||
    { echo "FAIL: worker wa wrote too little"; exit 1; }
kill -KILL "${WORKER_PID[wa]}"
wait "${WORKER_PID[wa]}" 2>/dev/null || true
inflight=$("$BIN/auditqctl" stats --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["inflight"])')
echo "killed worker wa with $inflight jobs in flight"
worker_start wc --set threads=2
wait_for 90 drained || { echo "FAIL: not drained after the kill"; depths; exit 1; }
assert_eq 21700 "$(rows)" "rows after kill -9 and recovery"
assert_eq 0 "$(psql_q "SELECT count(*) - count(DISTINCT event_id) FROM audit_events")" "duplicates after recovery"
if ((inflight > 0)); then
    rec=$(stat recovered)
    ((rec >= inflight)) || { echo "FAIL: recovered $rec < $inflight in flight at the kill"; exit 1; }
fi

# ---- e. one server down ----------------------------------------------------
redis_stop s1
out=$("$TBIN/it_client" produce --sync 400 --async 400 --tag dwn)
[[ "$out" == *"ok=800 "* ]] || { echo "FAIL: spread sends with shard 1 down: $out"; exit 1; }
err=$(AUDITQ_REDIS_SHARD_BY=tenant "$TBIN/it_client" produce --sync 70 --async 0 --tag tdw 2>&1 || true)
# The events the model puts on shard 1 cannot be sent.
want_fail=$(tenant_model tenant-tdw 70 | cut -d' ' -f2)
[[ "$err" == *"ok=$((70 - want_fail)) "* ]] || { echo "FAIL: tenant sends with shard 1 down (want $((70 - want_fail)) ok): $err"; exit 1; }
# Only shard 1 is down: the rest drains meanwhile.
wait_for 60 bash -c "[[ \$(psql -X -A -t -q -c \"SELECT count(*) FROM audit_events WHERE request_id LIKE 'req-dwn-%' OR request_id LIKE 'req-tdw-%'\" </dev/null) -eq $((800 + 70 - want_fail)) ]]" ||
    { echo "FAIL: the other shards did not drain while shard 1 was down"; exit 1; }
grep -q 'shard=1' "$AQ_TMP/wc.log" || { echo "FAIL: the worker log does not name shard 1"; exit 1; }
redis_restart s1
wait_for 60 drained || { echo "FAIL: not drained after shard 1 came back"; exit 1; }
assert_eq $((21700 + 800 + 70 - want_fail)) "$(rows)" "rows after shard 1 came back"
assert_eq 0 "$(psql_q "SELECT count(*) - count(DISTINCT event_id) FROM audit_events")" "duplicates at the end"

# ---- dead letters and workers per shard --------------------------------------
redis-cli -p "$P2" lpush '{auditq:2}:queue:normal' 'not msgpack at all' >/dev/null
wait_for 30 bash -c "[[ \$(redis-cli -p $P2 llen '{auditq:2}:dead') == 1 ]]" || { echo "FAIL: no dead letter on shard 2"; exit 1; }
list=$("$BIN/auditqctl" dlq list)
for i in 0 1 2 3; do
    grep -q "^shard $i (127\.0\.0\.1:${PORTS[$i]}):" <<<"$list" || { echo "FAIL: dlq list has no header for shard $i"; echo "$list"; exit 1; }
done
assert_eq "0 of 0;0 of 0;1 of 1;0 of 0" "$(grep -o '^[0-9]* of [0-9]*' <<<"$list" | paste -sd';')" "dlq list: matches per shard"
rc=0
msg=$("$BIN/auditqctl" dlq show 1 2>&1) || rc=$?
assert_eq 2 "$rc" "dlq show INDEX without --shard: exit status"
[[ "$msg" == *"INDEX numbers are per shard: give --shard 0..3"* ]] || { echo "FAIL: dlq show message: $msg"; exit 1; }
assert_eq 1 "$("$BIN/auditqctl" dlq list --shard 2 --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["matched"])')" \
    "dlq list --shard 2 --json"
assert_eq "0 1 2 3" "$("$BIN/auditqctl" dlq list --json | grep -o "^{\"shard\":[0-9]*" | cut -d: -f2 | paste -sd" ")" "dlq list --json: one document per shard"
assert_eq "purged 1 dead letter" "$("$BIN/auditqctl" dlq purge --all --yes --shard 2 | head -n 1)" "dlq purge --shard 2"
assert_eq 0 "$(redis-cli -p "$P2" llen '{auditq:2}:dead')" "shard 2's dead list after the purge"
assert_eq "1 unique" "$("$BIN/auditqctl" workers --json | "$PY" -c '
import json, sys
w = json.load(sys.stdin)
ids = [x["id"] for x in w]
print(sum(1 for x in w if x["pid"] == int(sys.argv[1])), "unique" if len(ids) == len(set(ids)) else "repeated: %s" % ids)' "${WORKER_PID[wc]}")" \
    "auditqctl workers: the running worker once over 4 shards, no worker listed twice"
worker_stop wc

# ---- f. settings that disagree ---------------------------------------------
msg=$(AUDITQ_REDIS_SHARDS=2 "$BIN/auditq-worker" 2>&1 || true)
[[ "$msg" == *"redis_shard_urls lists 3 servers but redis_shards is 2"*"raise redis_shards to at least 3"* ]] ||
    { echo "FAIL: worker message: $msg"; exit 1; }
rc=0
msg=$(AUDITQ_REDIS_SHARDS=2 "$BIN/auditqctl" stats 2>&1) || rc=$?
assert_eq 2 "$rc" "auditqctl stats exit status for a bad shard list"
[[ "$msg" == *"redis_shard_urls lists 3 servers"* ]] || { echo "FAIL: auditqctl message: $msg"; exit 1; }
msg=$(AUDITQ_REDIS_SHARDS=2 "$TBIN/it_client" produce --sync 1 --async 0 --tag bad 2>&1 || true)
[[ "$msg" == *"redis_shard_urls lists 3 servers but redis_shards is 2"* ]] || { echo "FAIL: library message: $msg"; exit 1; }

it_pass "redis shards: 4 shards on 3 servers; spread 100 per shard, tenant by FNV-1a, stats summed, kill -9 recovered per shard, a shard down leaves the others working, every event stored once"
