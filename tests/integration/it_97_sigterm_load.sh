#!/usr/bin/env bash
# Fault suite, scenario 8: graceful shutdown (SIGTERM) under load.
#
# A backlog of BACKLOG events is queued, two producers (sync and async) keep
# sending, and two worker processes (3 threads, batch_size=1000) work
# through it. Every acknowledged event_id is logged.
#   1. Both workers are sent SIGTERM at the same moment, after each has
#      acknowledged a few batches and while both hold batches in flight
#      (read from their /metrics just before). Each
#      finishes and acknowledges the batches in hand and exits 0 well within
#      shutdown_timeout_ms (measured, signal to exit); nothing is left in
#      flight and both deregistered.
#   2. PostgreSQL down: PostgreSQL is stopped, two new workers take batches
#      they cannot commit, and get SIGTERM. A thread that cannot write does
#      not wait out shutdown_timeout_ms: each gives its batch back to the
#      front of its queue at once (not after heartbeat_timeout_ms, not at
#      the deadline) and exits 0, well before the deadline; nothing in
#      flight, nobody registered. (pg_release_after_ms is set beyond the
#      phase, so the release is the shutdown's, not the outage bound's.)
#   3. PostgreSQL back, producers stopped, a fresh worker drains: every
#      acknowledged event is stored exactly once, rows = acknowledged
#      events, 0 dead letters, and `recovered` is 0 -- no batch ever waited
#      for the dead-worker recovery.
# AQ_FAULTS=long: a backlog of 300,000 and three SIGTERM rounds in phase 1.
set -euo pipefail
source "$(dirname "$0")/lib_it.sh"
source "$(dirname "$0")/lib_faults.sh"
it_setup
R() { redis-cli -p "$REDIS_PORT" "$@"; }

BACKLOG=60000 ROUNDS=1
if ((FAULTS_LONG)); then
    BACKLOG=300000 ROUNDS=3
fi
TIMEOUT_MS=5000        # phase 1: should never be reached
DEADLINE_MS=3000       # phase 2: never waited for (a thread that cannot write gives back at once)
SLACK_MS=500           # process exit after the worker says "worker stopped"

declare -A PORT
# start_pair A B EXTRA...: two workers with their own /metrics port.
start_pair() {
    local a=$1 b=$2 n
    shift 2
    for n in "$a" "$b"; do
        PORT[$n]=$(free_port)
        worker_start "$n" --set threads=3 --set batch_size=1000 --set http_listen="127.0.0.1:${PORT[$n]}" "$@"
    done
}

# metric_of NAME METRIC: the value on worker NAME's /metrics (0 if unreadable).
metric_of() {
    local v
    v=$(curl -sf "http://127.0.0.1:${PORT[$1]}/metrics" | awk -v k="$2" '$1 == k { print $2 }') || true
    echo "${v:-0}"
}

# Both workers hold jobs in flight right now (and, with $3, have already
# acknowledged at least $3 batches each).
both_in_flight() {
    local n
    for n in "$1" "$2"; do
        (($(metric_of "$n" auditq_worker_inflight_jobs) > 0)) || return 1
        (($(metric_of "$n" auditq_batches_total) >= ${3:-0})) || return 1
    done
}

# term_pair A B: SIGTERM to both at once; waits for both (exit status 0
# asserted) and sets EXIT_MS[A], EXIT_MS[B]: signal to exit.
declare -A EXIT_MS
term_pair() {
    local a=$1 b=$2 t0 n left rc
    kill -TERM "${WORKER_PID[$a]}" "${WORKER_PID[$b]}"
    t0=$(now_ms)
    EXIT_MS[$a]="" EXIT_MS[$b]=""
    for ((i = 0; i < 6000; i++)); do
        left=0
        for n in "$a" "$b"; do
            [[ -n "${EXIT_MS[$n]}" ]] && continue
            if [[ "$(awk '{ print $3 }' "/proc/${WORKER_PID[$n]}/stat" 2>/dev/null)" =~ ^(Z|)$ ]]; then
                EXIT_MS[$n]=$(($(now_ms) - t0))
            else
                left=1
            fi
        done
        ((left)) || break
        sleep 0.01
    done
    for n in "$a" "$b"; do
        [[ -n "${EXIT_MS[$n]}" ]] || { echo "FAIL: $n still running 60 s after SIGTERM"; exit 1; }
        rc=0
        wait "${WORKER_PID[$n]}" || rc=$?
        assert_eq 0 "$rc" "$n exit status after SIGTERM"
        grep -q 'msg="worker stopped"' "$AQ_TMP/$n.log" || { echo "FAIL: $n did not log 'worker stopped'"; exit 1; }
    done
}

backlog $BACKLOG
producers_start 200 2000

# 1. SIGTERM mid-batch, PostgreSQL up.
phase1=""
for ((round = 1; round <= ROUNDS; round++)); do
    a=w${round}a b=w${round}b
    start_pair "$a" "$b" --set shutdown_timeout_ms=$TIMEOUT_MS
    wait_for 60 both_in_flight "$a" "$b" 3
    term_pair "$a" "$b"
    for n in "$a" "$b"; do
        ((EXIT_MS[$n] <= TIMEOUT_MS + SLACK_MS)) ||
            { echo "FAIL: $n took ${EXIT_MS[$n]} ms to exit (shutdown_timeout_ms=$TIMEOUT_MS)"; exit 1; }
        if grep -q -e 'stays in flight' -e 'released unfinished' "$AQ_TMP/$n.log"; then
            echo "FAIL: $n gave up on a batch although PostgreSQL was up:"
            grep -e 'stays in flight' -e 'released unfinished' "$AQ_TMP/$n.log"
            exit 1
        fi
    done
    assert_eq 0 "$(stat inflight)" "jobs in flight after both workers stopped (round $round)"
    assert_eq 0 "$(stat workers_registered)" "workers registered after both stopped (round $round)"
    echo "round $round: SIGTERM with batches in flight; exits after ${EXIT_MS[$a]} ms and ${EXIT_MS[$b]} ms"
    phase1+="${EXIT_MS[$a]},${EXIT_MS[$b]},"
done
assert_eq 0 "$(stat recovered)" "jobs that needed dead-worker recovery"

# 2. SIGTERM while PostgreSQL is down: give back at once, do not wait.
pg_stop
start_pair da db --set shutdown_timeout_ms=$DEADLINE_MS --set pg_release_after_ms=600000
wait_for 60 both_in_flight da db
held=$(stat inflight)
term_pair da db
for n in da db; do
    ((EXIT_MS[$n] < DEADLINE_MS)) ||
        { echo "FAIL: $n exited ${EXIT_MS[$n]} ms after SIGTERM; a thread that cannot write must not wait out shutdown_timeout_ms=$DEADLINE_MS"; exit 1; }
    grep -q 'msg="batch released to the front of its queue: PostgreSQL cannot take it and the worker is stopping"' "$AQ_TMP/$n.log" ||
        { echo "FAIL: $n did not give its batches back at SIGTERM"; tail -n 5 "$AQ_TMP/$n.log"; exit 1; }
    if grep -q -e 'stays in flight' -e 'released unfinished' "$AQ_TMP/$n.log"; then
        echo "FAIL: $n left a batch for the exit path although Redis was up:"
        grep -e 'stays in flight' -e 'released unfinished' "$AQ_TMP/$n.log"
        exit 1
    fi
done
assert_eq 0 "$(stat inflight)" "jobs in flight after the exits ($held were held)"
assert_eq 0 "$(stat workers_registered)" "workers registered after the exits"
released=$(cat "$AQ_TMP/da.log" "$AQ_TMP/db.log" | grep 'msg="batch released to the front' | sed -E 's/.* jobs=([0-9]+) .*/\1/' | awk '{ s += $1 } END { print s }')
echo "PostgreSQL down: $held jobs held, $released given back at SIGTERM; exits after ${EXIT_MS[da]} ms and ${EXIT_MS[db]} ms (shutdown_timeout_ms=$DEADLINE_MS not waited for)"
pg_start_again

# 3. Drain and account.
producers_stop
echo "producers: backlog=$BACKLOG sent=$PROD_SENT acknowledged=$PROD_ACKED failed=$PROD_FAILED"
assert_eq 0 "$PROD_FAILED" "failed sends (Redis stayed up)"
worker_start final --set threads=3 --set batch_size=1000
wait_for 120 drained
worker_stop final
account
assert_eq 0 "$ACC_MISSING" "acknowledged events missing from PostgreSQL"
assert_eq 0 "$ACC_DUPLICATES" "duplicate rows (rows - distinct event_ids)"
assert_eq "$ACC_ACKED" "$ACC_STORED" "rows stored = events acknowledged"
assert_eq 0 "$(R LLEN '{auditq}:dead')" "dead letters"
assert_eq 0 "$(stat recovered)" "jobs that needed dead-worker recovery"
echo "figure: scenario=sigterm_load workers=2 threads=3 batch=1000 backlog=$BACKLOG events=$ACC_ACKED stored=$ACC_STORED duplicates=0 lost=0 dead=0 exit_ms=${phase1%,} shutdown_timeout_ms=$TIMEOUT_MS pg_down_exit_ms=${EXIT_MS[da]},${EXIT_MS[db]} deadline_timeout_ms=$DEADLINE_MS pg_down_jobs_released=$released"
it_pass "SIGTERM under load: 2 workers exited 0 in ${phase1%,} ms with nothing in flight; at a PostgreSQL outage they gave their $released jobs back at once and exited in ${EXIT_MS[da]}, ${EXIT_MS[db]} ms (deadline ${DEADLINE_MS} ms not waited for); all $ACC_ACKED acknowledged events stored exactly once"
