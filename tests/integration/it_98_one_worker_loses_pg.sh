#!/usr/bin/env bash
# Fault suite, scenario 9: two workers, one of which loses PostgreSQL.
#
# Worker A (2 threads) writes as role aq_a (SCRAM password) through
# tests/lib/faultproxy.py; worker B (2 threads) writes directly. A producer
# (it_client stream, sync, straight to Redis) runs through each phase with
# a tag of its own, and A takes batches before each fault; a backlog of
# BACKLOG events is queued at once just before the fault, so A's threads
# hold full batches (batch_size=500) when it strikes. Then A loses its
# PostgreSQL, under load:
#   login      aq_a's password is changed (ALTER ROLE) and its sessions are
#              ended (pg_terminate_backend): every reconnect is refused
#              (28P01);
#   dead_port  the proxy resets A's connections and every new one (RST);
#   stall      the proxy stops moving bytes (connections stay open, new
#              ones get no answer).
# A keeps heartbeating (it is alive), so nobody recovers its jobs; instead
# each thread of A, once its writes have failed for pg_release_after_ms
# (the default, 5000), gives its batch back to the front of its queue and
# parks: it fetches nothing until a probe finds its PostgreSQL writable.
# Asserted per phase:
#   - A gives back what it held (auditq_released_total grows, one log line
#     per batch naming the cause: "login refused", "unreachable",
#     "stalled"); all of A's threads park; A holds nothing in flight and
#     writes nothing meanwhile; /readyz on A is 503 naming the cause (and
#     the fix for the login);
#   - every event the producer had acknowledged lands through B within
#     seconds of the fault: exactly once (acked_vs_rows: 0 missing,
#     0 duplicates), queues, in-flight lists and the retry set drain while
#     A is still cut off; no job needed the dead-worker recovery;
#   - after A's PostgreSQL is back (password restored, proxy passing), every
#     thread of A resumes within about a second (one probe per second) and
#     writes again.
# Prints "figure:" lines (held_s: fault to A's last batch given back;
# landed_s: fault to every acknowledged event stored, the producer running
# LOAD_S after the fault; resume_s: PostgreSQL back to every thread of A
# fetching again). AQ_FAULTS=long: longer load after each fault, faster
# producer.
set -euo pipefail
source "$(dirname "$0")/lib_it.sh"
source "$(dirname "$0")/lib_faults.sh"
source "$(dirname "$0")/../lib/faultproxy.sh"

SCALE=${AQ_TIME_SCALE:-1}
RATE=800
LOAD_S=3
BACKLOG=3000
((FAULTS_LONG)) && RATE=2000 && LOAD_S=10 && BACKLOG=20000
THREADS=2
RELEASE_MS=5000            # pg_release_after_ms default (config.c)

it_setup
T=$AQ_TMP
{ printf 'host all aq_a 127.0.0.1/32 scram-sha-256\n'; cat "$AQ_PGDATA/pg_hba.conf"; } >"$T/hba" &&
    cat "$T/hba" >"$AQ_PGDATA/pg_hba.conf"
psql_q "SELECT pg_reload_conf()" >/dev/null
psql_q "CREATE ROLE aq_a LOGIN PASSWORD 'apw'" >/dev/null
"$BIN/auditqctl" grants --writer aq_a >/dev/null
proxy_start pg "$PG_PORT"
HPA=$(free_port)
HPB=$(free_port)
URLA="http://127.0.0.1:$HPA"

worker_start a --set threads=$THREADS --set batch_size=500 --set http_listen=127.0.0.1:$HPA \
    --set pg_timeout_ms=2000 --set statement_timeout_ms=1500 --set pg_connect_timeout_s=2 \
    --set summary_interval_ms=1000 \
    --set "database_url=postgresql://aq_a:apw@127.0.0.1:$PROXY_PORT/auditq?sslmode=disable"
worker_start b --set threads=$THREADS --set batch_size=100 --set http_listen=127.0.0.1:$HPB
wait_for 10 curl -sf -o /dev/null "$URLA/healthz"

now_ms() { date +%s%3N; }
metric() { curl -sf --max-time 5 "$URLA/metrics" | awk -v k="$1" '$1 == k { print $2 }'; }
# threads_in STATE: every thread of A is in STATE (auditq_thread_state).
threads_in() {
    local m i
    m=$(curl -sf --max-time 2 "$URLA/metrics") || return 1
    for ((i = 0; i < THREADS; i++)); do
        [[ "$(awk -v k="auditq_thread_state{thread=\"$i\",state=\"$1\"}" '$1 == k { print $2 }' <<<"$m")" == 1 ]] || return 1
    done
}
none_parked() {
    local m i
    m=$(curl -sf --max-time 2 "$URLA/metrics") || return 1
    for ((i = 0; i < THREADS; i++)); do
        [[ "$(awk -v k="auditq_thread_state{thread=\"$i\",state=\"parked\"}" '$1 == k { print $2 }' <<<"$m")" == 0 ]] || return 1
    done
}
a_wrote_more_than() { (($(metric auditq_processed_total) > $1)); }

stream_start() {
    PHASE=$1
    rm -f "$T/$PHASE.stop"
    harness_spawn "load-$PHASE" "$TBIN/it_client" stream --mode sync --rate "$RATE" --tag "$PHASE" \
        --ack-log "$T/$PHASE.acked" --stop-file "$T/$PHASE.stop"
    STREAM_PID=$HARNESS_LAST_PID
}
stream_stop() {
    touch "$T/$PHASE.stop"
    wait "$STREAM_PID"
    local line
    line=$(grep '^stream:' "$T/load-$PHASE.log")
    [[ "$line" == *" failed=0" ]] || { echo "FAIL: $PHASE: producer: $line (Redis is never faulted here)"; exit 1; }
}

# phase NAME CAUSE READYZ FAULT_FN FIX_FN
phase() {
    local name=$1 cause=$2 want_ready=$3 fault=$4 fix=$5
    local rel0 lines0 p0 t0 t_rel t_stop t_land t_fix t_res acc acked pa rel held_ms out
    rel0=$(metric auditq_released_total)
    lines0=$(grep -c 'msg="batch released to the front of its queue' "$T/a.log" || true)
    p0=$(metric auditq_processed_total)
    stream_start "$name"
    # A takes part: it writes this phase's events and holds a batch.
    wait_for 20 a_wrote_more_than "$((p0 + 300))"
    out=$("$TBIN/it_client" stream --mode async --events "$BACKLOG" --tag "$name" \
        --ack-log "$T/$name.backlog.acked" --stop-file "$T/never") || exit 1
    assert_eq "stream: mode=async sent=$BACKLOG acked=$BACKLOG failed=0" "$out" "$name: backlog producer"
    t0=$(now_ms)
    "$fault"
    # Every thread of A gives its batch back and parks.
    wait_for $((RELEASE_MS / 1000 + 10)) threads_in parked ||
        { echo "FAIL: $name: A's threads did not all park"; grep -v level=debug "$T/a.log" | tail -n 20; exit 1; }
    t_rel=$(now_ms)
    pa=$(metric auditq_processed_total)
    assert_eq 0 "$(metric auditq_worker_inflight_jobs)" "$name: jobs A holds after giving back"
    assert_eq 503 "$(curl -s -o /dev/null -w '%{http_code}' "$URLA/readyz")" "$name: A's /readyz status"
    assert_eq "not ready: $want_ready" "$(curl -s "$URLA/readyz")" "$name: A's /readyz body"
    rel=$(( $(metric auditq_released_total) - rel0 ))
    ((rel > 0)) || { echo "FAIL: $name: A gave back no job"; exit 1; }
    # One line per batch given back, naming the cause.
    grep 'msg="batch released to the front of its queue' "$T/a.log" | tail -n +$((lines0 + 1)) >"$T/$name.released"
    [[ -s "$T/$name.released" ]] || { echo "FAIL: $name: no 'batch released' line"; exit 1; }
    assert_eq "" "$(grep -v "cause=\"$cause\"" "$T/$name.released" || true)" "$name: 'batch released' lines not naming cause=\"$cause\""
    assert_eq "$rel" "$(sed -E 's/.* jobs=([0-9]+) .*/\1/' "$T/$name.released" | awk '{ s += $1 } END { print s }')" \
        "$name: jobs in the 'batch released' lines vs auditq_released_total"
    held_ms=$(grep -o 'failing_ms=[0-9]*' "$T/$name.released" | cut -d= -f2 | sort -n | tail -n 1)
    # The load goes on; B alone writes it, and everything A had.
    sleep "$LOAD_S"
    stream_stop
    t_stop=$(now_ms)
    wait_for 60 drained
    t_land=$(now_ms)
    assert_eq "$pa" "$(metric auditq_processed_total)" "$name: A wrote nothing while cut off"
    assert_eq 0 "$(stat recovered)" "$name: jobs that needed the dead-worker recovery (A stayed alive)"
    cat "$T/$name.acked" "$T/$name.backlog.acked" >"$T/$name.all.acked"
    acc=$(acked_vs_rows "$T/$name.all.acked" "$name")
    acked=$(sed -E 's/^acked=([0-9]+) .*/\1/' <<<"$acc")
    ((acked > 0)) || { echo "FAIL: $name: no event acknowledged"; exit 1; }
    assert_eq "acked=$acked stored=$acked duplicates=0 missing=0 unacked=0" "$acc" "$name: acknowledged events vs rows"
    assert_eq 0 "$(stat dead)" "$name: dead letters"
    # Bounds: A gives back within pg_release_after_ms plus the wait in
    # progress (pg_timeout_ms 2 s, then a connect's pg_connect_timeout_s 2 s)
    # plus 3 s of slack; B alone then stores the rest within 20 s of the
    # producer stopping (0.4-6 s measured).
    ((held_ms <= RELEASE_MS + 4000 + 3000 * SCALE)) ||
        { echo "FAIL: $name: A held a batch ${held_ms} ms (pg_release_after_ms=$RELEASE_MS)"; exit 1; }
    ((t_land - t_stop <= 20000 * SCALE)) ||
        { echo "FAIL: $name: the last event landed $((t_land - t_stop)) ms after the producer stopped"; exit 1; }
    # A's PostgreSQL is back: every thread resumes within about a second.
    "$fix"
    t_fix=$(now_ms)
    wait_for 5 none_parked ||
        { echo "FAIL: $name: A's threads still parked 5 s after PostgreSQL came back"; tail -n 20 "$T/a.log"; exit 1; }
    t_res=$(now_ms)
    wait_for 10 bash -c "curl -s '$URLA/readyz' | grep -qx ready"
    awk -v s="$name" -v n="$acked" -v r="$rel" -v h="$held_ms" -v l="$((t_land - t0))" -v st="$((t_land - t_stop))" \
        -v u="$((t_res - t_fix))" -v p="$((t_rel - t0))" 'BEGIN {
        printf "figure: scenario=one_worker_loses_pg_%s events=%d stored=%d duplicates=0 lost=0 released=%d held_s=%.2f parked_s=%.2f landed_s=%.2f drained_after_stop_s=%.2f resume_s=%.2f\n",
            s, n, n, r, h / 1000, p / 1000, l / 1000, st / 1000, u / 1000 }'
}

login_fault() {
    psql_q "ALTER ROLE aq_a PASSWORD 'changed';
            SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = 'aq_a'" >/dev/null
}
login_fix() { psql_q "ALTER ROLE aq_a PASSWORD 'apw'" >/dev/null; }
dead_fault() { proxy_mode pg reset; }
dead_fix() { proxy_mode pg pass; }
stall_fault() { proxy_mode pg stall; }
stall_fix() { proxy_mode pg pass; }

phase login "login refused" \
    "postgresql login refused (0 of $THREADS writer threads can write): fix the user or password in database_url, or the role or pg_hba.conf on the server (docs/SECURITY.md)" \
    login_fault login_fix
grep -q 'msg="postgres login refused" thread=0 error="connect: connection to server at \\"127.0.0.1\\", port '"$(proxy_port pg)"' failed: FATAL: password authentication failed for user \\"aq_a\\"; fix the user or password in database_url' "$T/a.log" ||
    { echo "FAIL: login: A never logged 'postgres login refused' with the fix"; grep 'thread=0' "$T/a.log" | tail -n 5; exit 1; }
it_pass "A's password changed under load: A gave its batches back and parked, B wrote every event exactly once, A resumed when the password was restored"

phase dead_port unreachable "postgresql unreachable (0 of $THREADS writer threads connected)" dead_fault dead_fix
it_pass "A's PostgreSQL port dead (RST) under load: A gave its batches back and parked, B wrote every event exactly once, A resumed"

phase stall stalled "postgresql stalled (0 of $THREADS writer threads can write)" stall_fault stall_fix
it_pass "A's PostgreSQL link stalled under load: A gave its batches back and parked, B wrote every event exactly once, A resumed"

# A writes again, and its summary line counts what it gave back.
p0=$(metric auditq_processed_total)
stream_start after
wait_for 20 a_wrote_more_than "$((p0 + 200))"
stream_stop
wait_for 60 drained
total=$(metric auditq_released_total)
wait_for 5 grep -q "msg=\"summary\" .* released=$total\$" "$T/a.log" ||
    { echo "FAIL: no summary line of A with released=$total"; grep 'msg="summary"' "$T/a.log" | tail -n 3; exit 1; }
worker_stop a
worker_stop b
assert_eq 0 "$(stat dead)" "dead letters at the end"
assert_eq 0 "$(stat recovered)" "jobs recovered from dead workers at the end"
assert_eq 0 "$(grep -c 'level=error' "$T/a.log" "$T/b.log" | awk -F: '{ s += $2 } END { print s }')" "error-level log lines"
it_pass "one worker loses PostgreSQL (login, dead port, stall): $total jobs given back, every event stored once through the other worker, resumed each time"
