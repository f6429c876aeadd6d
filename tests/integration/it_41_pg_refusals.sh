#!/usr/bin/env bash
# A worker PostgreSQL refuses is stopped at start, not left holding work.
#
# Each case starts auditq-worker (beside a live Redis with 50 queued jobs)
# against a PostgreSQL that will never take its writes, and expects exit
# status 1 within seconds, one exact log line naming the cause and the
# fix, nothing registered in Redis and every job still queued:
#   wrong password       (28P01)   "cannot start: PostgreSQL login refused"
#   role with no INSERT on audit_events  "... privilege missing"
#   role with no TEMPORARY on the database (42501 at CREATE TEMP TABLE)
#   no such database     (3D000)   "... database missing"
#   not migrated         (42P01)   "... table missing"
# INSERT revoked while a worker runs (a live connection that cannot write):
# its thread gives the batch back, parks, /readyz names "privilege missing"
# with the fix; granted again, it resumes and writes every job.
# And the opposite: a PostgreSQL that is merely down at start is transient
# -- the worker runs, says "postgres unreachable", gives the batch it took
# back after pg_release_after_ms to the front of its queue, byte for byte
# and in the same order as before it was taken (the next fetch, by any
# worker, takes exactly those jobs first), fetches nothing more, and writes
# the jobs once the server is up.
set -euo pipefail
source "$(dirname "$0")/lib_it.sh"
it_setup
T=$AQ_TMP
R() { redis-cli -p "$REDIS_PORT" "$@"; }
queued() { local n=0 p; for p in critical high normal low; do n=$((n + $(R LLEN "{auditq}:queue:$p"))); done; echo $n; }

# The writer role logs in with a password (SCRAM); everyone else: trust.
{ printf 'host all aq_writer,aq_noins,aq_notemp 127.0.0.1/32 scram-sha-256\n'
  cat "$AQ_PGDATA/pg_hba.conf"; } >"$T/hba" && cat "$T/hba" >"$AQ_PGDATA/pg_hba.conf"
psql_q "SELECT pg_reload_conf()" >/dev/null
psql_q "CREATE ROLE aq_writer LOGIN PASSWORD 'wpw'; CREATE ROLE aq_noins LOGIN PASSWORD 'npw';
        CREATE ROLE aq_notemp LOGIN PASSWORD 'tpw'" >/dev/null
psql_q "CREATE DATABASE empty" >/dev/null
"$BIN/auditqctl" grants --writer aq_writer >/dev/null
"$BIN/auditqctl" grants --writer aq_notemp >/dev/null
psql_q "REVOKE TEMPORARY ON DATABASE auditq FROM PUBLIC; REVOKE TEMPORARY ON DATABASE auditq FROM aq_notemp;
        GRANT TEMPORARY ON DATABASE auditq TO aq_writer, aq_noins" >/dev/null
"$BIN/auditq-bench" enqueue --events 50 --no-ref --quiet --seed 41 >/dev/null
assert_eq 50 "$(queued)" "jobs queued before the refused workers"

url() { printf 'postgresql://%s@127.0.0.1:%s/%s' "$1" "$PG_PORT" "${2:-auditq}"; }
FIX_LOGIN="fix the user or password in database_url, or the role or pg_hba.conf on the server (docs/SECURITY.md)"
grants_fix() { printf "as the owner of audit_events run 'auditqctl grants --writer %s' (INSERT on audit_events, TEMPORARY on the database; docs/SECURITY.md)" "$1"; }
PGFAIL="connection to server at \\\"127.0.0.1\\\", port $PG_PORT failed: FATAL:"

# refused NAME URL WANT: the worker exits 1 within 15 s (x AQ_TIME_SCALE) and logs exactly WANT.
refused() {
    local name=$1 rc=0 t0 ms
    t0=$(date +%s%3N)
    timeout $((15 * ${AQ_TIME_SCALE:-1})) "$BIN/auditq-worker" --set threads=2 --set "database_url=$2" 2>"$T/$name.log" || rc=$?
    ms=$(($(date +%s%3N) - t0))
    assert_eq "1|$3" "$rc|$(sed -E 's/^ts=[^ ]+ //' "$T/$name.log")" "$name: exit status and log"
    assert_eq 0 "$(R ZCARD '{auditq}:workers')" "$name: workers registered in Redis"
    assert_eq 50 "$(queued)" "$name: jobs still queued"
    echo "$name: exit 1 after $ms ms"
}

refused wrong_password "$(url aq_writer:wrong)" \
    "level=error msg=\"cannot start: PostgreSQL login refused\" error=\"connect: $PGFAIL password authentication failed for user \\\"aq_writer\\\"; $FIX_LOGIN\""
refused unknown_role "$(url nosuchrole)" \
    "level=error msg=\"cannot start: PostgreSQL login refused\" error=\"connect: $PGFAIL role \\\"nosuchrole\\\" does not exist; $FIX_LOGIN\""
refused no_insert "$(url aq_noins:npw)" \
    "level=error msg=\"cannot start: PostgreSQL privilege missing\" error=\"connect check: 42501 role \\\"aq_noins\\\" has no INSERT privilege on audit_events; $(grants_fix aq_noins)\""
refused no_temporary "$(url aq_notemp:tpw)" \
    "level=error msg=\"cannot start: PostgreSQL privilege missing\" error=\"create auditq_stage: 42501 permission denied to create temporary tables in database \\\"auditq\\\"; $(grants_fix aq_notemp)\""
refused no_database "$(url postgres nosuch)" \
    "level=error msg=\"cannot start: PostgreSQL database missing\" error=\"connect: $PGFAIL database \\\"nosuch\\\" does not exist; fix the database name in database_url, or create the database and run 'auditqctl migrate'\""
refused not_migrated "$(url postgres empty)" \
    "level=error msg=\"cannot start: PostgreSQL table missing\" error=\"prepare insert: 42P01 relation \\\"audit_events\\\" does not exist; run 'auditqctl migrate' against this database_url\""
it_pass "PostgreSQL refusing the worker at start (password, role, INSERT, TEMPORARY, database, table): exit 1 with the cause and the fix, nothing registered, every job still queued"

# The right password: the same role writes the 50 jobs.
worker_start good --set threads=2 --set "database_url=$(url aq_writer:wpw)"
wait_for 20 drained
assert_eq 50 "$(rows)" "rows written by aq_writer with its password"
worker_stop good

# Revoked while it runs: the thread gives its batch back, parks, /readyz
# names the cause and the fix; granted again, it resumes and writes them.
HP=$(free_port)
worker_start rev --set threads=1 --set batch_size=10 --set pg_release_after_ms=1000 --set backoff_max_ms=300 \
    --set http_listen=127.0.0.1:$HP --set "database_url=$(url aq_writer:wpw)"
wait_for 10 curl -sf -o /dev/null "http://127.0.0.1:$HP/healthz"
psql_q "REVOKE INSERT ON audit_events FROM aq_writer" >/dev/null
"$TBIN/it_client" send --events 25 --priority 1 --tag revoke >/dev/null
wait_for 20 grep -qE 'msg="batch released to the front of its queue: PostgreSQL cannot take it; a healthy worker takes it next" thread=0 jobs=[0-9]+ priority=high cause="privilege missing"' "$T/rev.log"
READY_PRIV="not ready: postgresql privilege missing (0 of 1 writer threads can write): as the owner of audit_events run 'auditqctl grants --writer aq_writer' (INSERT on audit_events, TEMPORARY on the database; docs/SECURITY.md)"
assert_eq "503|$READY_PRIV" "$(curl -s -o "$T/ready.txt" -w '%{http_code}' "http://127.0.0.1:$HP/readyz")|$(cat "$T/ready.txt")" \
    "/readyz with INSERT revoked"
grep -q 'msg="postgres privilege missing" thread=0 error=".*42501 permission denied for table audit_events; as the owner of audit_events run '"'"'auditqctl grants --writer aq_writer'"'" "$T/rev.log" ||
    { echo "FAIL: no 'postgres privilege missing' line with the fix"; grep -v summary "$T/rev.log" | tail -n 5; exit 1; }
sleep 1.5   # parked: probes once a second, fetches nothing
assert_eq 25 "$(queued)" "jobs queued while INSERT is revoked (none held)"
psql_q "GRANT INSERT ON audit_events TO aq_writer" >/dev/null
wait_for 20 drained
assert_eq 75 "$(rows)" "rows after INSERT was granted again"
assert_eq 200 "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HP/readyz")" "/readyz after the grant"
worker_stop rev
it_pass "INSERT revoked while the worker runs: its batch given back, /readyz 'postgresql privilege missing' with the fix, nothing held; granted again: all 25 written"

# Down at start is not a refusal: the worker waits for it, holding nothing.
"$BIN/auditq-bench" enqueue --events 30 --no-ref --quiet --seed 42 >/dev/null
"$TBIN/it_client" send --events 20 --priority 0 --tag order >/dev/null   # critical: taken first
queues() { local p; for p in critical high normal low; do echo "== $p"; R --no-raw LRANGE "{auditq}:queue:$p" 0 -1; done; }
queues >"$T/queues.before"
pg_stop
worker_start down --set threads=1 --set batch_size=7 --set backoff_max_ms=500 --set pg_release_after_ms=600
wait_for 20 grep -q 'msg="postgres unreachable" thread=0' "$T/down.log"
wait_for 20 grep -q 'msg="batch released to the front of its queue: PostgreSQL cannot take it; a healthy worker takes it next" thread=0 jobs=7 ' "$T/down.log"
sleep 1.5   # parked: one probe a second, no fetch
kill -0 "${WORKER_PID[down]}" || { echo "FAIL: the worker exited while PostgreSQL was merely down"; cat "$T/down.log"; exit 1; }
assert_eq 0 "$(grep -c 'level=error' "$T/down.log" || true)" "error lines while PostgreSQL is down"
queues >"$T/queues.after"
assert_eq "" "$(diff "$T/queues.before" "$T/queues.after")" "queues after the batch was given back vs before it was taken (bytes and order)"
assert_eq 0 "$(R LLEN "{auditq}:inflight:$(R ZRANGE '{auditq}:workers' 0 0):0")" "jobs in flight while parked"
assert_eq 1 "$(grep -c 'msg="batch released' "$T/down.log")" "batches given back (parked: no second fetch)"
pg_start_again
wait_for 30 drained
assert_eq 125 "$(rows)" "rows after PostgreSQL came up"
worker_stop down
it_pass "PostgreSQL down at start: the worker runs, logs 'postgres unreachable', gives its batch of 7 back to the front of its queue in order, fetches no more, writes the 50 jobs once it is up"
