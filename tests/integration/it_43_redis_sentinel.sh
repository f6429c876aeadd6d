#!/usr/bin/env bash
# Redis Sentinel fail-over under load (issue 16, docs/RELIABILITY.md R3).
#
# A master, two replicas and three sentinels (quorum 2, down-after 1 s) on
# free ports. Producers (sync and async, every acknowledged event_id
# logged), one worker (2 threads) and auditqctl find Redis only through
# redis_sentinels + redis_master_name: AUDITQ_REDIS_URL points at a port
# where nothing listens, so it can only contribute credentials and the
# database. Then the master is killed with SIGKILL, ROUNDS times (each
# round kills the master of the moment; the killed server restarts and
# the sentinels turn it into a replica):
#   - a sentinel promotes a replica;
#   - producers and the worker follow by themselves: the worker acknowledges
#     a batch on the new master within FOLLOW_BOUND_S of the kill, and both
#     producers get acknowledgements again (the figure printed is kill ->
#     first worker settle on the new master, and kill -> promotion);
# At the end every acknowledged event is stored exactly once, none is
# dead-lettered, the queues drain and auditqctl stats (through the
# sentinels) agree. The errors for an unknown master name and for no
# reachable sentinel name the cause and the fix.
# Producers run with redis_min_replicas=1 (WAIT after each sync send and
# each async batch); at the end both replicas are stopped and sync and
# async sends must fail naming the cause, never return OK.
# AQ_FAULTS=long: 3 fail-overs in a row.
set -euo pipefail
source "$(dirname "$0")/lib_it.sh"
source "$(dirname "$0")/lib_faults.sh"

ROUNDS=1
((FAULTS_LONG)) && ROUNDS=3
FOLLOW_BOUND_S=15
NAME=aqm
FIRST_WRITE_MS=""

harness_init
redis_start main
declare -A PORT_NAME
PORT_NAME[$REDIS_PORT]=main
M_PORT=$REDIS_PORT
for r in r1 r2; do
    redis_start "$r" "replicaof 127.0.0.1 $M_PORT"
    PORT_NAME[$REDIS_PORT]=$r
done
AQ_PG_FAST=${AQ_PG_FAST:-1} pg_start
"$BIN/auditqctl" migrate >/dev/null

SENT_PORTS=()
for i in 1 2 3; do
    sentinel_start "$i" "$NAME" "$M_PORT" 2 "sentinel down-after-milliseconds $NAME 1000" \
        "sentinel failover-timeout $NAME 5000" "sentinel parallel-syncs $NAME 2"
done
S() { redis-cli -p "${SENT_PORTS[0]}" "$@"; }
# Ready when each sentinel sees both replicas and the other two sentinels
# (a fail-over needs a leader elected by a majority).
sentinels_ready() {
    local p
    for p in "${SENT_PORTS[@]}"; do
        [[ "$(redis-cli -p "$p" SENTINEL replicas "$NAME" 2>/dev/null | grep -c '^ip$')" == 2 ]] || return 1
        [[ "$(redis-cli -p "$p" SENTINEL sentinels "$NAME" 2>/dev/null | grep -c '^ip$')" == 2 ]] || return 1
    done
}
wait_for 30 sentinels_ready || { echo "FAIL: the sentinels did not find each other and the replicas"; exit 1; }

export AUDITQ_REDIS_SENTINELS="127.0.0.1:${SENT_PORTS[0]}, 127.0.0.1:${SENT_PORTS[1]}, 127.0.0.1:${SENT_PORTS[2]}"
export AUDITQ_REDIS_MASTER_NAME=$NAME
dead_port=$(free_port)
export AUDITQ_REDIS_URL="redis://127.0.0.1:$dead_port"

# The causes, named.
out=$(AUDITQ_REDIS_MASTER_NAME=nosuch "$BIN/auditqctl" stats 2>&1) && { echo "FAIL: stats with an unknown master name succeeded"; exit 1; }
[[ "$out" == *"the Redis sentinels know no master named 'nosuch': check redis_master_name"* ]] ||
    { echo "FAIL: unknown master name: $out"; exit 1; }
out=$(AUDITQ_REDIS_SENTINELS="127.0.0.1:$dead_port" "$BIN/auditqctl" stats 2>&1) && { echo "FAIL: stats with no sentinel succeeded"; exit 1; }
[[ "$out" == *"no Redis sentinel reachable (127.0.0.1:$dead_port: Connection refused): check redis_sentinels"* ]] ||
    { echo "FAIL: no sentinel: $out"; exit 1; }
out=$(AUDITQ_REDIS_MASTER_NAME= "$BIN/auditqctl" stats 2>&1) && { echo "FAIL: stats without a master name succeeded"; exit 1; }
[[ "$out" == *"redis_sentinels is set but redis_master_name is empty"* ]] ||
    { echo "FAIL: no master name: $out"; exit 1; }

master_port() { S SENTINEL get-master-addr-by-name "$NAME" | sed -n 2p; }
processed_on() { redis-cli -p "$1" HGET '{auditq}:stats' processed 2>/dev/null || echo 0; }
acked_lines() { cat "$AQ_TMP/acked.sync" "$AQ_TMP/acked.async" | wc -l; }

# The load runs with redis_min_replicas=1: an acknowledged send is on the
# master and on a replica (WAIT).
AUDITQ_REDIS_MIN_REPLICAS=1 producers_start 200 1500
worker_start w1 --set threads=2 --set batch_size=200
wait_for 30 bash -c "[ \"\$(psql -X -A -t -q -c 'SELECT count(*) FROM audit_events')\" -ge 500 ]" ||
    { echo "FAIL: nothing stored through the sentinels"; tail -n 20 "$AQ_TMP/w1.log"; exit 1; }
assert_eq "$M_PORT" "$(master_port)" "master before the kill"

for ((round = 1; round <= ROUNDS; round++)); do
    old=$(master_port)
    old_name=${PORT_NAME[$old]}
    p=$(processed_on "$old")
    wait_for 30 bash -c "[ \"\$(redis-cli -p $old HGET '{auditq}:stats' processed)\" -gt $p ]"
    sync_before=$(wc -l <"$AQ_TMP/acked.sync")
    async_before=$(wc -l <"$AQ_TMP/acked.async")
    { redis_kill "$old_name"; } 2>/dev/null
    t_kill=$(now_ms)
    wait_for 20 bash -c "[ \"\$(redis-cli -p ${SENT_PORTS[0]} SENTINEL get-master-addr-by-name $NAME | sed -n 2p)\" != $old ]" ||
        { echo "FAIL: round $round: no replica promoted within 20 s"; tail -n 20 "$AQ_TMP/sentinel-1/sentinel.log"; exit 1; }
    t_promo=$(now_ms)
    new=$(master_port)
    p=$(processed_on "$new")
    if ! wait_for $FOLLOW_BOUND_S bash -c "[ \"\$(redis-cli -p $new HGET '{auditq}:stats' processed)\" -gt $p ]"; then
        echo "FAIL: round $round: the worker acknowledged nothing on the new master $new within ${FOLLOW_BOUND_S}s"
        tail -n 20 "$AQ_TMP/w1.log"
        exit 1
    fi
    t_first=$(now_ms)
    wait_for $FOLLOW_BOUND_S bash -c "[ \$(wc -l <$AQ_TMP/acked.sync) -gt $((sync_before + 50)) ] && [ \$(wc -l <$AQ_TMP/acked.async) -gt $((async_before + 50)) ]" ||
        { echo "FAIL: round $round: the producers did not follow"; tail -n 5 "$AQ_TMP/prod_sync.log" "$AQ_TMP/prod_async.log"; exit 1; }
    t_prod=$(now_ms)
    kill -0 "${WORKER_PID[w1]}" || { echo "FAIL: the worker died in round $round"; exit 1; }
    printf 'round %d: killed %s (%s); promoted %s after %d ms; first worker settle on it %d ms after the kill; producers acknowledged again by %d ms\n' \
        "$round" "$old_name" "$old" "${PORT_NAME[$new]}" $((t_promo - t_kill)) $((t_first - t_kill)) $((t_prod - t_kill))
    FIRST_WRITE_MS+=" $((t_first - t_kill))"
    # The killed server comes back; the sentinels make it a replica.
    _aq_redis_launch "$old_name"
    export AUDITQ_REDIS_URL="redis://127.0.0.1:$dead_port" # (_aq_redis_launch set it)
done

producers_stop
echo "producers: sent=$PROD_SENT acknowledged=$PROD_ACKED failed=$PROD_FAILED"
new=$(master_port)
export REDIS_PORT=$new
wait_for 60 drained || { echo "FAIL: the queues did not drain"; "$BIN/auditqctl" stats; exit 1; }
processed_stats=$(stat processed)
worker_stop w1

account
assert_eq 0 "$ACC_MISSING" "acknowledged events missing from PostgreSQL (lost in the fail-over)"
assert_eq 0 "$ACC_DUPLICATES" "duplicate rows (rows - distinct event_ids)"
((ACC_STORED >= ACC_ACKED && ACC_STORED <= PROD_SENT)) ||
    { echo "FAIL: stored $ACC_STORED not within acknowledged $ACC_ACKED .. sent $PROD_SENT"; exit 1; }
assert_eq 0 "$(redis-cli -p "$new" LLEN '{auditq}:dead')" "dead letters"
((processed_stats > 0)) || { echo "FAIL: auditqctl stats through the sentinels read processed=$processed_stats"; exit 1; }

# redis_min_replicas=1 with both replicas stopped: no silent OK. A sync
# send fails naming the cause; an async flush does not succeed.
for port in "${!PORT_NAME[@]}"; do
    [[ $port == "$new" ]] || redis_stop "${PORT_NAME[$port]}"
done
out=$("$TBIN/it_client" produce --sync 2 --async 0 --tag mr --set redis_min_replicas=1 --set timeout_ms=1000 2>&1) &&
    { echo "FAIL: sync sends with redis_min_replicas=1 and no replica succeeded: $out"; exit 1; }
want="send 0: Redis returned an error: only 0 of the 1 replicas redis_min_replicas asks for acknowledged the write within 500 ms: it is on the master only and a fail-over may lose it; check the replicas (INFO replication on the master) or lower redis_min_replicas"
[[ "$out" == *"$want"* ]] || { echo "FAIL: sync send without replicas said: $out"; exit 1; }
out=$("$TBIN/it_client" produce --sync 0 --async 2 --tag mr --set redis_min_replicas=1 --set timeout_ms=1000 --set close_timeout_ms=1500 2>&1) &&
    { echo "FAIL: async sends with redis_min_replicas=1 and no replica succeeded: $out"; exit 1; }
[[ "$out" == *"only 0 of the 1 replicas redis_min_replicas asks for"* ]] ||
    { echo "FAIL: async send without replicas said: $out"; exit 1; }
echo "figure: scenario=redis_sentinel_failover rounds=$ROUNDS down_after_ms=1000 redis_min_replicas=1 events_acked=$ACC_ACKED stored=$ACC_STORED lost=$ACC_MISSING duplicates=$ACC_DUPLICATES dead=0 failed_sends=$PROD_FAILED kill_to_first_write_ms=${FIRST_WRITE_MS# }"
it_pass "Redis Sentinel: $ROUNDS master kill(s) under load; producers, worker and auditqctl followed the promotion (kill to first write:${FIRST_WRITE_MS} ms); all $ACC_ACKED acknowledged events stored exactly once, none dead-lettered"
