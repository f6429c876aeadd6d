#!/usr/bin/env bash
# The worker's own self-audit events (issue 13 part 1, worker/selfevents.c,
# docs/SECURITY.md "Self-audit"), against real Redis + PostgreSQL:
#   - worker_self_audit is on by default (a config file without the line):
#     exactly one auditq.worker.start row, actor = OS user, actor_type
#     system, entity auditq.worker/<worker id>;
#   - a row PostgreSQL refuses, dead-lettered after max_attempts: exactly
#     one auditq.worker.dead_letter row with its event_id, queue, attempts,
#     cause and SQLSTATE, and none of the event's content;
#   - SIGHUP after batch_size 100 -> 50: exactly one auditq.worker.reload
#     with {"batch_size": {"old": "100", "new": "50", "applied": true}}; a
#     SIGHUP that changes nothing records nothing;
#   - Redis stopped: a reload's event waits in memory (pending 1), and is
#     recorded once Redis is back (failed 0);
#   - the loop rule: a dead_letter event that is itself dead-lettered makes
#     no further event (auditq_self_events_suppressed_total 1);
#   - a job over max_job_bytes (dead-lettered by the fetch script) and a
#     crash-looping one (by recovery, past max_recoveries): one
#     dead_letter row each, causes oversized / crash_looping;
#   - SIGTERM: one auditq.worker.stop (written by the next worker);
#   - worker_self_audit = off: no start, no stop.
# lib_it.sh turns worker self-events off for every other test.
set -euo pipefail
source "$(dirname "$0")/lib_it.sh"
unset AUDITQ_WORKER_SELF_AUDIT
it_setup
ME=$(id -un)
HP=$(free_port)
URL=http://127.0.0.1:$HP
CONF=$AQ_TMP/it_89w.conf
T=$((15 * ${AQ_TIME_SCALE:-1}))

count() { psql_q "SELECT count(*) FROM audit_events WHERE action = '$1'"; }
wait_count() { wait_for "$T" bash -c "[ \"\$(psql -X -A -t -c \"SELECT count(*) FROM audit_events WHERE action = '$1'\")\" = $2 ]"; }
worker_id() { sed -n 's/.*msg="worker started" id=\([^ ]*\) .*/\1/p' "$AQ_TMP/$1.log" | head -n 1; }
metric() { curl -sf "$URL/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }

printf 'batch_size = 100\nmax_attempts = 2\n' >"$CONF"
bad1=$("$TBIN/it_client" bad --valid 1 --tag bad1)
worker_start w1 -c "$CONF" --set threads=1 --set backoff_base_ms=50 --set backoff_max_ms=200 \
    --set http_listen=127.0.0.1:$HP

# ---- start: once, after Redis and PostgreSQL answer --------------------------
wait_count auditq.worker.start 1
W1=$(worker_id w1)
[[ -n $W1 ]] || { echo "FAIL: no 'worker started' line in w1.log"; exit 1; }
assert_eq "$ME|system|auditq.worker|$W1|success|auditq-worker/0.1.0|high|$(hostname)|threads=1" \
    "$(psql_q "SELECT concat_ws('|', actor_id, actor_type, entity_type, entity_id, outcome, user_agent, priority,
                                metadata->>'host', 'threads=' || (metadata->>'threads'))
               FROM audit_events WHERE action = 'auditq.worker.start'")" "auditq.worker.start row"

# ---- dead letter: event_id, queue, attempts, cause; no content ----------------
wait_count auditq.worker.dead_letter 1
assert_eq "$ME|system|auditq.worker|$W1|failure|"'{"cause": "rejected", "queue": "normal", "attempts": 2, "event_id": "'"$bad1"'", "sqlstate": "22P05", "worker_id": "'"$W1"'"}' \
    "$(psql_q "SELECT concat_ws('|', actor_id, actor_type, entity_type, entity_id, outcome, (metadata - 'host' - 'pid')::text)
               FROM audit_events WHERE action = 'auditq.worker.dead_letter'")" "auditq.worker.dead_letter row"
assert_eq 0 "$(psql_q "SELECT count(*) FROM audit_events WHERE action LIKE 'auditq.worker.%'
                       AND (metadata::text LIKE '%nul %' OR changes IS NOT NULL)")" "no event content in self events"

# ---- reload: exactly the changed setting; nothing when nothing changed --------
printf 'batch_size = 50\nmax_attempts = 2\n' >"$CONF"
kill -HUP "${WORKER_PID[w1]}"
wait_count auditq.worker.reload 1
assert_eq '{"batch_size": {"new": "50", "old": "100", "applied": true}}' \
    "$(psql_q "SELECT metadata->'changed' FROM audit_events WHERE action = 'auditq.worker.reload'")" "auditq.worker.reload changed"
kill -HUP "${WORKER_PID[w1]}"
wait_for "$T" grep -q 'msg="config reloaded: nothing changed"' "$AQ_TMP/w1.log"

# ---- Redis away: the event waits in memory, is pushed when Redis is back -----
redis_stop
printf 'batch_size = 50\nmax_attempts = 2\ndead_letter_max = 777\n' >"$CONF"
kill -HUP "${WORKER_PID[w1]}"
wait_for "$T" grep -q 'msg="self-audit events cannot be pushed; kept and retried" pending=1 ' "$AQ_TMP/w1.log"
assert_eq 1 "$(metric auditq_self_events_pending)" "auditq_self_events_pending while Redis is down"
redis_restart
wait_count auditq.worker.reload 2
assert_eq '{"new": "777", "old": "100000", "applied": true}' \
    "$(psql_q "SELECT metadata->'changed'->'dead_letter_max' FROM audit_events
               WHERE action = 'auditq.worker.reload' AND metadata->'changed' ? 'dead_letter_max'")" "reload pushed after the outage"
assert_eq "0 0" "$(metric auditq_self_events_pending) $(metric auditq_self_events_failed_total)" "pending, failed after the outage"
grep -q 'msg="self-audit events pushed again"' "$AQ_TMP/w1.log" || { echo "FAIL: no 'pushed again' line"; exit 1; }

# ---- the loop rule: a dead_letter event dead-lettered makes no new event -------
psql_q "CREATE FUNCTION it89_refuse() RETURNS trigger LANGUAGE plpgsql AS \$\$
        BEGIN
          IF NEW.action = 'auditq.worker.dead_letter' AND NEW.metadata->>'event_id' <> '$bad1' THEN
            RAISE EXCEPTION 'it_89 refuses this dead_letter event' USING ERRCODE = 'check_violation';
          END IF;
          RETURN NEW;
        END \$\$;
        CREATE TRIGGER it89_refuse BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION it89_refuse()" >/dev/null
bad2=$("$TBIN/it_client" bad --valid 1 --tag bad2)
# bad2's record, then the record of the dead_letter event about bad2
wait_for "$T" bash -c "[ \"\$(redis-cli -p $REDIS_PORT LLEN '{auditq}:dead')\" = 3 ]"
wait_for "$T" bash -c "[ \"\$(curl -sf $URL/metrics | awk '\$1 == \"auditq_self_events_suppressed_total\" { print \$2 }')\" = 1 ]"
assert_eq "$(printf '%s\n' \
  "postgres rejected the row 2 times: it_89 refuses this dead_letter event [23514]" \
  "postgres rejected the row 2 times: unsupported Unicode escape sequence [22P05]" \
  "postgres rejected the row 2 times: unsupported Unicode escape sequence [22P05]")" "$(dead_reasons | sort)" \
  "dead letters: bad1, bad2 and the dead_letter event about bad2"
assert_eq 0 "$(metric auditq_self_events_failed_total)" "auditq_self_events_failed_total"
psql_q "DROP TRIGGER it89_refuse ON audit_events" >/dev/null
[[ -n $bad2 ]]

# ---- oversized: dead-lettered by the fetch script, recorded too ----------------
head -c 1100000 /dev/zero | tr '\0' x | redis-cli -p "$REDIS_PORT" -x LPUSH '{auditq}:queue:low' >/dev/null
wait_for "$T" bash -c "[ \"\$(psql -X -A -t -c \"SELECT count(*) FROM audit_events WHERE action = 'auditq.worker.dead_letter' AND metadata->>'cause' = 'oversized'\")\" = 1 ]"
assert_eq "failure|"'{"cause": "oversized", "queue": "low", "attempts": 0, "event_id": null, "worker_id": "'"$W1"'"}' \
    "$(psql_q "SELECT concat_ws('|', outcome, (metadata - 'host' - 'pid')::text) FROM audit_events
               WHERE action = 'auditq.worker.dead_letter' AND metadata->>'cause' = 'oversized'")" "oversized job's dead_letter row"

# ---- stop: recorded at SIGTERM, written by the next worker ---------------------
wait_for "$T" drained
worker_stop w1

# ---- crash-looping (it_35's set-up): dead-lettered by recovery, recorded -------
# Three workers that died holding the same job; the next worker, with
# max_recoveries=2, recovers two copies and dead-letters the third.
crashloop_setup loop
grep -q 'level=error.*self-audit' "$AQ_TMP/w1.log" && { echo "FAIL: self-audit errors in w1.log"; exit 1; }
worker_start w2 --set threads=1 --set max_recoveries=2
wait_count auditq.worker.stop 1
wait_count auditq.worker.start 2
W2=$(worker_id w2)
loop_id=$(psql_q "SELECT event_id FROM audit_events WHERE request_id LIKE 'req-loop-%'")
[[ -n $loop_id ]] || { echo "FAIL: the crash-looping job's recovered copy was not stored"; exit 1; }
wait_for "$T" bash -c "[ \"\$(psql -X -A -t -c \"SELECT count(*) FROM audit_events WHERE action = 'auditq.worker.dead_letter' AND metadata->>'cause' = 'crash_looping'\")\" = 1 ]"
assert_eq "failure|"'{"cause": "crash_looping", "queue": "normal", "attempts": 3, "event_id": "'"$loop_id"'", "worker_id": "'"$W2"'"}' \
    "$(psql_q "SELECT concat_ws('|', outcome, (metadata - 'host' - 'pid')::text) FROM audit_events
               WHERE action = 'auditq.worker.dead_letter' AND metadata->>'cause' = 'crash_looping'")" "crash-looping job's dead_letter row"
assert_eq "$ME|system|auditq.worker|$W1|success|"'{"signal": "SIGTERM", "worker_id": "'"$W1"'", "left_in_flight": false, "self_events_failed": 0}' \
    "$(psql_q "SELECT concat_ws('|', actor_id, actor_type, entity_type, entity_id, outcome, (metadata - 'host' - 'pid' - 'uptime_s')::text)
               FROM audit_events WHERE action = 'auditq.worker.stop'")" "auditq.worker.stop row"
worker_stop w2

# ---- off: no start, no stop ------------------------------------------------
worker_start w3 --set threads=1 --set worker_self_audit=off
wait_count auditq.worker.stop 2              # w2's stop, written by w3
worker_stop w3
AUDITQ_WORKER_SELF_AUDIT=off worker_start w4 --set threads=1
wait_for "$T" drained
worker_stop w4
assert_eq "2 2 2 3" "$(count auditq.worker.start) $(count auditq.worker.stop) $(count auditq.worker.reload) $(count auditq.worker.dead_letter)" \
    "start stop reload dead_letter rows (w3 and w4 off: none of theirs)"
it_pass "worker self-audit: start, dead_letter (event_id, no content; also oversized and crash-looping), reload (batch_size 100 -> 50), stop recorded once each; a dead_letter event dead-lettered makes none (suppressed 1); off records nothing"
