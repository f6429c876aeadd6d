#!/usr/bin/env bash
# Fault suite, scenarios 1 and 2: a kill storm.
#
# Two worker processes (3 writer threads each) run while two producers send
# continuously (one sync, one async; every event_id Redis acknowledged is
# logged). A killer loop, at random moments (random sleeps, seed printed),
# SIGKILLs a random worker and restarts it, KILLS times in all. Every
# fourth round the restarted worker has the crash_after_commit test hook
# armed (a random 2..9 commits): it dies on its own between a PostgreSQL
# commit and the Redis acknowledgement -- that counts as a kill too. The
# surviving (or restarted) worker recovers a dead one's in-flight jobs
# after heartbeat_timeout_ms.
#
# Then, with the producers stopped and the queues drained:
#   - every acknowledged event is in PostgreSQL exactly once (missing 0,
#     rows = distinct event_ids, rows = acknowledged events);
#   - queues, in-flight lists and the retry set are empty; no worker is left
#     registered; the crash-loop counters ({ns}:recoveries) are empty;
#   - the dead-letter list is empty: nothing here is poison;
#   - `recovered` equals exactly the jobs the killed workers held in flight
#     when they died (read from their in-flight lists after each death);
#   - each hook crash left its committed batch in flight (its jobs were
#     already in PostgreSQL when read from the dead worker's in-flight
#     list); recovered and written again, they are stored once (the
#     duplicate check above covers them);
#   - every recovery (death -> the worker's registration and in-flight jobs
#     gone back to their queues) took at most heartbeat_timeout_ms +
#     recovery_interval_ms + 2 s.
#
# max_recoveries=1000 (its maximum): the crash-loop detector counts every
# recovery of a job, by its bytes. A job that happened to be in flight in
# every killed worker would be recovered up to KILLS times (100 in the long
# form); with the default of 5 such an unlucky but healthy job would be
# dead-lettered as crash-looping, and the exact "dead list empty" check
# below would be wrong to expect. 1000 > KILLS keeps the detector out of
# this test (it_35 tests the detector itself).
#
# AQ_FAULTS=long: 100 kills and faster producers. AQ_SEED=S replays a run.
set -euo pipefail
source "$(dirname "$0")/lib_it.sh"
source "$(dirname "$0")/lib_faults.sh"
it_setup
R() { redis-cli -p "$REDIS_PORT" "$@"; }

KILLS=12 SYNC_RATE=200 ASYNC_RATE=4000
if ((FAULTS_LONG)); then
    KILLS=100 SYNC_RATE=300 ASYNC_RATE=6000
fi
SEED=${AQ_SEED:-$$}
RANDOM=$SEED
THREADS=3
HB_TIMEOUT_MS=2000 REC_INTERVAL_MS=500   # worker_start's settings (lib_it.sh)
REC_BOUND_MS=$((HB_TIMEOUT_MS + REC_INTERVAL_MS + 2000))
echo "kill storm: kills=$KILLS seed=$SEED"

declare -A PID GEN
start_slot() {
    local slot=$1
    shift
    GEN[$slot]=$((${GEN[$slot]:-0} + 1))
    NAME=w${slot}_${GEN[$slot]}
    worker_start "$NAME" --set threads=$THREADS --set batch_size=200 --set max_recoveries=1000 "$@"
    PID[$slot]=${WORKER_PID[$NAME]}
}

# The registered id of worker process $1 (it registers before taking work).
worker_id_of() {
    R ZRANGE '{auditq}:workers' 0 -1 | grep ":$1:" || true
}

# The event_ids of the jobs in the in-flight lists of worker id $1.
inflight_ids() {
    "$PY" - "$REDIS_PORT" "$1" "$THREADS" <<'PYEOF'
import socket, sys, msgpack
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
f = s.makefile("rb")
def cmd(*args):
    s.sendall(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
for t in range(int(sys.argv[3])):
    cmd(b"LRANGE", ("{auditq}:inflight:%s:%d" % (sys.argv[2], t)).encode(), b"0", b"-1")
    for _ in range(int(f.readline()[1:])):
        ln = int(f.readline()[1:])
        print(msgpack.unpackb(f.read(ln + 2)[:-2], raw=False)["event_id"])
PYEOF
}

# In the background: ms from $2 (death) until worker id $1 is recovered
# (its registration goes in the same atomic script that requeues its jobs).
measure_recovery() {
    local id=$1 t0=$2 i
    for ((i = 0; i < 1200; i++)); do
        if [[ -z "$(R ZSCORE '{auditq}:workers' "$id")" ]]; then
            echo "$(($(now_ms) - t0)) $id" >>"$AQ_TMP/recoveries"
            return 0
        fi
        sleep 0.05
    done
    echo "timeout $id" >>"$AQ_TMP/recoveries"
}

# After worker process $1 (id $2) died at $3: count the jobs it held in
# flight and how many of them it had already committed (stored in
# PostgreSQL, not acknowledged in Redis: they must come back and be stored
# once), then time its recovery. Sets LAST_COMMITTED.
after_death() {
    local ids n
    sleep 0.2   # let Redis finish any command the dead process had sent
    ids=$(inflight_ids "$2" | paste -sd, -)
    n=0 LAST_COMMITTED=0
    if [[ -n "$ids" ]]; then
        n=$(($(tr -cd , <<<"$ids" | wc -c) + 1))
        LAST_COMMITTED=$(psql_q "SELECT count(*) FROM audit_events WHERE event_id = ANY('{$ids}'::uuid[])")
        DEATHS_WITH_JOBS=$((DEATHS_WITH_JOBS + 1))
    fi
    INFLIGHT_AT_DEATH=$((INFLIGHT_AT_DEATH + n))
    COMMITTED_AT_DEATH=$((COMMITTED_AT_DEATH + LAST_COMMITTED))
    measure_recovery "$2" "$3" &
    MEASURERS+=($!)
}

: >"$AQ_TMP/recoveries"
INFLIGHT_AT_DEATH=0 COMMITTED_AT_DEATH=0 DEATHS_WITH_JOBS=0 MEASURERS=()
producers_start $SYNC_RATE $ASYNC_RATE
start_slot A
start_slot B
wait_for 30 bash -c "[ \"\$(psql -X -A -t -q -c 'SELECT count(*) FROM audit_events')\" -ge 500 ]"

kills=0 hooks=0 round=0
while ((kills < KILLS)); do
    round=$((round + 1))
    sleep "$(awk -v r="$RANDOM" 'BEGIN { printf "%.2f", 0.3 + 1.7 * r / 32767 }')"
    slot=$([ $((RANDOM % 2)) = 0 ] && echo A || echo B)
    pid=${PID[$slot]}
    wait_for 20 bash -c "redis-cli -p $REDIS_PORT ZRANGE '{auditq}:workers' 0 -1 | grep -q ':$pid:'"
    id=$(worker_id_of "$pid")
    rc=0
    # (stderr: bash would print "Killed" for its reaped child)
    { kill -KILL "$pid"; t0=$(now_ms); wait "$pid" || rc=$?; } 2>/dev/null
    assert_eq 137 "$rc" "exit status of SIGKILLed worker $slot"
    kills=$((kills + 1))
    after_death "$pid" "$id" "$t0"

    if ((round % 4 == 0 && kills < KILLS)); then
        # Scenario 2: the restarted worker dies between commit and ack.
        start_slot "$slot" --set crash_after_commit=$((2 + RANDOM % 8))
        hname=$NAME
        pid=${PID[$slot]}
        wait_for 20 bash -c "redis-cli -p $REDIS_PORT ZRANGE '{auditq}:workers' 0 -1 | grep -q ':$pid:'"
        id=$(worker_id_of "$pid")
        rc=0
        {
            for ((i = 0; i < 600; i++)); do
                [[ "$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null)" =~ ^(Z|)$ ]] && break
                sleep 0.1
            done
            t0=$(now_ms)
            kill -0 "$pid" && [[ "$(awk '{ print $3 }' "/proc/$pid/stat")" != Z ]] && kill -KILL "$pid"
            wait "$pid" || rc=$?
        } 2>/dev/null
        assert_eq 137 "$rc" "exit status of the crash_after_commit worker (SIGKILLed if alive after 60 s)"
        grep -q 'crash_after_commit test hook: exiting after commit, before ack' "$AQ_TMP/$hname.log" ||
            { echo "FAIL: $hname exited without the crash_after_commit hook"; cat "$AQ_TMP/$hname.log"; exit 1; }
        kills=$((kills + 1))
        hooks=$((hooks + 1))
        after_death "$pid" "$id" "$t0"
        # The hook fires right after a commit: that batch is still in flight.
        ((LAST_COMMITTED > 0)) ||
            { echo "FAIL: $hname died by the hook holding no committed job in flight"; exit 1; }
    fi
    start_slot "$slot"
done

producers_stop
echo "producers: sent=$PROD_SENT acknowledged=$PROD_ACKED failed=$PROD_FAILED"
assert_eq 0 "$PROD_FAILED" "failed sends (Redis stayed up)"
wait "${MEASURERS[@]}"
wait_for 120 drained
worker_stop "wA_${GEN[A]}"
worker_stop "wB_${GEN[B]}"

account
assert_eq 0 "$ACC_MISSING" "acknowledged events missing from PostgreSQL"
assert_eq 0 "$ACC_DUPLICATES" "duplicate rows (rows - distinct event_ids)"
assert_eq "$ACC_ACKED" "$ACC_STORED" "rows stored = events acknowledged"
assert_eq 0 "$(R LLEN '{auditq}:dead')" "dead letters"
assert_eq 0 "$(stat dead_lettered)" "dead-lettered (stats)"
assert_eq 0 "$(stat workers_registered)" "workers left registered"
assert_eq 0 "$(R HLEN '{auditq}:recoveries')" "crash-loop counters left"
((DEATHS_WITH_JOBS > 0)) || { echo "FAIL: no kill caught a worker with jobs in flight"; exit 1; }
assert_eq "$INFLIGHT_AT_DEATH" "$(stat recovered)" "jobs recovered = jobs in flight in the killed workers"
# A dead worker never acknowledges, so its commits are counted once, by
# whoever writes the recovered copy (a fenced settle of a worker presumed
# dead while alive would count twice: >=).
processed=$(stat processed)
((processed >= ACC_STORED)) || { echo "FAIL: processed $processed < stored $ACC_STORED"; exit 1; }
if grep -q '^timeout' "$AQ_TMP/recoveries"; then
    echo "FAIL: a killed worker was not recovered within 60 s:"
    grep '^timeout' "$AQ_TMP/recoveries"
    exit 1
fi
assert_eq "$kills" "$(wc -l <"$AQ_TMP/recoveries")" "recoveries measured"
max_ms=$(sort -n "$AQ_TMP/recoveries" | tail -n 1 | cut -d' ' -f1)
((max_ms <= REC_BOUND_MS)) ||
    { echo "FAIL: slowest recovery took $max_ms ms (bound $REC_BOUND_MS ms)"; exit 1; }
max_s=$(awk -v m="$max_ms" 'BEGIN { printf "%.2f", m / 1000 }')
echo "figure: scenario=kill_storm kills=$kills sigkill=$((kills - hooks)) crash_after_commit=$hooks kills_with_jobs_in_flight=$DEATHS_WITH_JOBS events=$ACC_ACKED stored=$ACC_STORED duplicates=$ACC_DUPLICATES lost=$ACC_MISSING dead=0 inflight_at_kill=$INFLIGHT_AT_DEATH recovered=$INFLIGHT_AT_DEATH committed_unacked_at_death=$COMMITTED_AT_DEATH max_recovery_s=$max_s seed=$SEED"
it_pass "kill storm: $kills kills ($hooks between commit and ack) of 2 workers x $THREADS threads under load; $ACC_ACKED acknowledged events stored exactly once, 0 dead letters, recoveries <= ${max_s} s"
