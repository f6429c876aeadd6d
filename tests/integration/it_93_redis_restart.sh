#!/usr/bin/env bash
# Fault suite, scenario 4 (the worker's half; the producer spool is tested
# elsewhere): Redis restarted under load.
#
# Redis runs with AOF and appendfsync always: it fsyncs the log before it
# answers, so every write it acknowledged -- a producer's LPUSH, a worker's
# fetch or settle script -- survives even kill -9. Two producers (sync and
# async, every acknowledged event_id logged) and one worker (2 threads) run
# while Redis is restarted ROUNDS times, alternating a graceful stop
# (SHUTDOWN, AOF flushed) and kill -9, each followed by an outage of DOWN
# seconds. After each restart:
#   - the worker is still running and reconnects by itself: its next
#     acknowledged batch comes within RECONNECT_BOUND_S of Redis being back
#     (writer threads retry Redis with backoff capped at 5 s);
#   - Redis has forgotten the Lua scripts (the script cache is not
#     persisted): the worker's first EVALSHA gets NOSCRIPT, which it must
#     answer with SCRIPT LOAD and a retry -- errorstat_NOSCRIPT >= 1 and
#     progress after it prove that path ran (only the worker runs scripts
#     between the restart and the check: the test reads Redis with plain
#     commands and the producers only LPUSH).
# At the end (producers stopped, queues drained):
#   - every acknowledged event is in PostgreSQL exactly once; rows for the
#     producers' events are between the acknowledged count and the sent
#     count (a sync send that failed while Redis was down has an unknown
#     fate: it may or may not have reached Redis);
#   - no duplicate rows, queues/in-flight/retry empty, 0 dead letters, the
#     worker deregistered and exits 0 on SIGTERM.
# AQ_FAULTS=long: 12 restarts with random outages of 0.2..3 s.
set -euo pipefail
source "$(dirname "$0")/lib_it.sh"
source "$(dirname "$0")/lib_faults.sh"
it_setup
R() { redis-cli -p "$REDIS_PORT" "$@"; }

ROUNDS=4
((FAULTS_LONG)) && ROUNDS=12
SEED=${AQ_SEED:-$$}
RANDOM=$SEED
RECONNECT_BOUND_S=10
echo "redis restart: rounds=$ROUNDS seed=$SEED"

# CONFIG REWRITE keeps the setting in redis.conf across the restarts.
R CONFIG SET appendfsync always >/dev/null
R CONFIG REWRITE >/dev/null

processed() { R HGET '{auditq}:stats' processed; }

producers_start 200 1500
worker_start w1 --set threads=2 --set batch_size=200
wait_for 30 bash -c "[ \"\$(psql -X -A -t -q -c 'SELECT count(*) FROM audit_events')\" -ge 500 ]"

max_reconnect_ms=0 graceful=0 killed=0
for ((round = 1; round <= ROUNDS; round++)); do
    if ((FAULTS_LONG)); then
        down=$(awk -v r="$RANDOM" 'BEGIN { printf "%.2f", 0.2 + 2.8 * r / 32767 }')
    else
        down=1
    fi
    # Load is flowing: the queues hold work and the worker is busy.
    p=$(processed)
    wait_for 30 bash -c "[ \"\$(redis-cli -p $REDIS_PORT HGET '{auditq}:stats' processed)\" -gt $p ]"
    if ((round % 2)); then
        how=SHUTDOWN
        redis_stop
        graceful=$((graceful + 1))
    else
        how=SIGKILL
        { redis_kill; } 2>/dev/null   # (bash would print "Killed" for it)
        killed=$((killed + 1))
    fi
    sleep "$down"
    redis_restart
    t_up=$(now_ms)
    assert_eq always "$(R CONFIG GET appendfsync | tail -n 1)" "appendfsync after restart $round"
    p=$(processed)
    if ! wait_for $RECONNECT_BOUND_S bash -c "[ \"\$(redis-cli -p $REDIS_PORT HGET '{auditq}:stats' processed)\" -gt $p ]"; then
        echo "FAIL: round $round ($how, ${down}s down): no batch acknowledged within ${RECONNECT_BOUND_S}s of Redis being back"
        tail -n 20 "$AQ_TMP/w1.log"
        exit 1
    fi
    ms=$(($(now_ms) - t_up))
    ((ms > max_reconnect_ms)) && max_reconnect_ms=$ms
    noscript=$(R INFO errorstats | sed -n 's/^errorstat_NOSCRIPT:count=\([0-9]*\).*/\1/p')
    ((${noscript:-0} >= 1)) ||
        { echo "FAIL: round $round: the worker progressed without a NOSCRIPT after the restart (errorstats: $(R INFO errorstats | tr '\r\n' '  '))"; exit 1; }
    kill -0 "${WORKER_PID[w1]}" || { echo "FAIL: the worker died in round $round"; exit 1; }
    echo "round $round: $how, down ${down}s, first batch acknowledged ${ms} ms after Redis was back, NOSCRIPT answered $noscript times"
done

producers_stop
echo "producers: sent=$PROD_SENT acknowledged=$PROD_ACKED failed=$PROD_FAILED"
wait_for 60 drained
worker_stop w1

account
assert_eq 0 "$ACC_MISSING" "acknowledged events missing from PostgreSQL"
assert_eq 0 "$ACC_DUPLICATES" "duplicate rows (rows - distinct event_ids)"
((ACC_STORED >= ACC_ACKED && ACC_STORED <= PROD_SENT)) ||
    { echo "FAIL: stored $ACC_STORED not within acknowledged $ACC_ACKED .. sent $PROD_SENT"; exit 1; }
assert_eq 0 "$(R LLEN '{auditq}:dead')" "dead letters"
assert_eq 0 "$(stat workers_registered)" "workers left registered"
grep -q 'redis unavailable' "$AQ_TMP/w1.log" ||
    { echo "FAIL: the worker never logged losing Redis"; exit 1; }
max_s=$(awk -v m="$max_reconnect_ms" 'BEGIN { printf "%.2f", m / 1000 }')
echo "figure: scenario=redis_restart restarts=$ROUNDS shutdown=$graceful kill9=$killed appendfsync=always events_acked=$ACC_ACKED stored=$ACC_STORED unknown_fate=$((ACC_STORED - ACC_ACKED)) duplicates=$ACC_DUPLICATES lost=$ACC_MISSING dead=0 failed_sends=$PROD_FAILED max_reconnect_s=$max_s seed=$SEED"
it_pass "Redis restarted $ROUNDS times under load ($graceful SHUTDOWN, $killed kill -9): the worker reconnected within ${max_s} s each time, reloaded its scripts after NOSCRIPT, and all $ACC_ACKED acknowledged events are stored exactly once"
