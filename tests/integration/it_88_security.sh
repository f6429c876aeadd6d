#!/usr/bin/env bash
# Security (docs/SECURITY.md), against real servers:
#   Redis with the ACL users of config/users.acl and the default user off,
#   reached only through a stunnel TLS tunnel to Redis' TLS port: the
#   push-only producer sends 300 sync + 300 async events that the worker
#   (its own ACL user) stores byte-exact; the producer is refused LRANGE,
#   DEL, EVAL and other keys (exact NOPERM); a wrong password, no login, or
#   the wrong user give exact messages from the producer, the worker (exit
#   status 1) and auditqctl; the monitor user reads but cannot purge, the
#   admin user can; the worker user also covers recovery of a crashed
#   worker's batch, retries and a dead-lettered PostgreSQL rejection. rediss:// gives the exact no-TLS error in a build
#   without hiredis_ssl (and works, verified, in one with it).
#   PostgreSQL with an owner role (migrate), a writer (the worker) over
#   TLS with sslmode=verify-full and SCRAM channel_binding=require, and a
#   reader: the writer stores the rows exactly (COPY and INSERT methods,
#   DEFAULT partition, partition upkeep moving a row out of DEFAULT), can
#   read no content, and gets "permission denied" for UPDATE/DELETE/
#   TRUNCATE and "must be owner" for the triggers; the owner gets the
#   append-only trigger's message; conninfo keywords and URIs pass through
#   to libpq unchanged (exact libpq errors in our messages).
#   Event text that looks like SQL is stored byte for byte, and no SQL in
#   worker/pgw.c is built with %s.
set -euo pipefail
source "$(dirname "$0")/lib_it.sh"
harness_init
CTL="$BIN/auditqctl"
T=$AQ_TMP
command -v stunnel4 >/dev/null || { echo "FAIL: stunnel4 missing (make deps)"; exit 1; }

# ---- certificates: a CA and a server certificate for "localhost" only ----
ossl() { openssl "$@" 2>>"$T/openssl.log"; }
ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=auditq test CA" -keyout "$T/ca.key" -out "$T/ca.crt"
ossl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=localhost" \
    -keyout "$T/server.key" -out "$T/server.csr"
printf 'subjectAltName=DNS:localhost\n' >"$T/san.ext"
ossl x509 -req -in "$T/server.csr" -CA "$T/ca.crt" -CAkey "$T/ca.key" -CAcreateserial -days 2 \
    -extfile "$T/san.ext" -out "$T/server.crt"

# ---- Redis: config/users.acl with passwords, plus a test-only superuser ----
sed -E -e 's/^(user aq-producer reset .*)$/\1 on >ppw/' -e 's/^(user aq-worker reset .*)$/\1 on >wpw/' \
    -e 's/^(user aq-monitor reset .*)$/\1 on >mpw/' -e 's/^(user aq-admin reset .*)$/\1 on >apw/' \
    "$AQ_ROOT/config/users.acl" >"$T/users.acl"
assert_eq 4 "$(grep -c ' on >' "$T/users.acl")" "users of config/users.acl given a password"
echo 'user it-root on >rpw ~* &* +@all' >>"$T/users.acl"
TLS_PORT=$(free_port)
redis_start main "aclfile $T/users.acl" "tls-port $TLS_PORT" "tls-cert-file $T/server.crt" \
    "tls-key-file $T/server.key" "tls-ca-cert-file $T/ca.crt" "tls-auth-clients no"
PLAIN_PORT=$REDIS_PORT
rcli() { redis-cli -h 127.0.0.1 -p "$PLAIN_PORT" --no-auth-warning "$@" </dev/null; }
root() { rcli --user it-root --pass rpw "$@"; }

# The client side of the tunnel: auditq talks plain Redis to 127.0.0.1:$SPORT,
# stunnel carries it over TLS to Redis' TLS port, verifying the certificate.
SPORT=$(free_port)
cat >"$T/stunnel.conf" <<EOF
foreground = yes
pid =
[redis]
client = yes
accept = 127.0.0.1:$SPORT
connect = 127.0.0.1:$TLS_PORT
verifyChain = yes
CAfile = $T/ca.crt
checkHost = localhost
EOF
harness_spawn stunnel stunnel4 "$T/stunnel.conf"
wait_for 10 port_open "$SPORT"
url() { printf 'redis://%s@127.0.0.1:%s' "$1" "$SPORT"; }   # USER:PASSWORD
P_URL=$(url aq-producer:ppw) W_URL=$(url aq-worker:wpw) M_URL=$(url aq-monitor:mpw) A_URL=$(url aq-admin:apw)
assert_eq PONG "$(REDISCLI_AUTH=ppw redis-cli -h 127.0.0.1 -p "$SPORT" --user aq-producer ping 2>/dev/null </dev/null)" \
    "PING as the producer through the tunnel"

# ---- PostgreSQL: TLS, SCRAM for the writer, three roles ----
AQ_PG_FAST=1 pg_start
SU_URL=$AUDITQ_DATABASE_URL   # the harness' superuser, for checks only
cp "$T/server.crt" "$T/server.key" "$AQ_PGDATA/"
if [[ "$(id -u)" -eq 0 ]]; then chown nobody:nogroup "$AQ_PGDATA/server.crt" "$AQ_PGDATA/server.key"; fi
chmod 600 "$AQ_PGDATA/server.key"
printf "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n" >>"$AQ_PGDATA/postgresql.conf"
# The writer must come over TLS with a SCRAM password; everyone else: trust.
{ printf 'hostssl all aq_writer 127.0.0.1/32 scram-sha-256\nhost all aq_writer 127.0.0.1/32 reject\n'
  cat "$AQ_PGDATA/pg_hba.conf"; } >"$T/hba" && cat "$T/hba" >"$AQ_PGDATA/pg_hba.conf"
psql_q "SELECT pg_reload_conf()" >/dev/null
wait_for 10 bash -c "[ \"\$(psql -X -A -t -c 'SHOW ssl' </dev/null)\" = on ]"
psql_q "CREATE ROLE aq_owner LOGIN; ALTER DATABASE auditq OWNER TO aq_owner;
        CREATE ROLE aq_writer LOGIN PASSWORD 'wpw'; CREATE ROLE aq_reader LOGIN;
        REVOKE TEMPORARY ON DATABASE auditq FROM PUBLIC"
OWN_URL="postgresql://aq_owner@127.0.0.1:$PG_PORT/auditq"
WRITER_DSN="host=localhost hostaddr=127.0.0.1 port=$PG_PORT dbname=auditq user=aq_writer password=wpw sslmode=verify-full sslrootcert=$T/ca.crt channel_binding=require"
READER_URL="postgresql://aq_reader@127.0.0.1:$PG_PORT/auditq?sslmode=disable&application_name=it88-reader"
AUDITQ_DATABASE_URL=$OWN_URL "$CTL" migrate >"$T/migrate.out"
nmig=$(find "$AQ_ROOT/sql" -name '[0-9][0-9][0-9]_*.sql' | wc -l)   # every migration in sql/, numbered 001.. without gaps
assert_eq "schema now at version $(printf %03d "$nmig") ($nmig migration(s) applied)" "$(grep '^schema now' "$T/migrate.out")" "migrate as the owner"
assert_eq aq_owner "$(psql_q "SELECT relowner::regrole FROM pg_class WHERE relname = 'audit_events'")" "owner of audit_events"

AUDITQ_DATABASE_URL=$OWN_URL "$CTL" grants --writer aq_writer --reader aq_reader >"$T/grants.out"
assert_eq "writer aq_writer: USAGE on schema public, INSERT only on audit_events, TEMPORARY on database auditq, EXECUTE on auditq_ensure_partitions(int); SELECT, INSERT on the integrity evidence (hashes and ids only)
reader aq_reader: USAGE on schema public, SELECT on audit_events; SELECT on the integrity evidence" "$(cat "$T/grants.out")" "auditqctl grants output"
AUDITQ_DATABASE_URL=$OWN_URL "$CTL" grants --writer aq_writer --reader aq_reader >/dev/null   # idempotent
assert_eq "{aq_owner=arwdDxt/aq_owner,aq_writer=a/aq_owner,aq_reader=r/aq_owner}" \
    "$(psql_q "SELECT relacl FROM pg_class WHERE relname = 'audit_events'")" "table privileges after two grants"
assert_eq 0 "$(psql_q "SELECT count(*) FROM pg_attribute WHERE attrelid = 'audit_events'::regclass AND attacl IS NOT NULL")" \
    "no column privileges: the writer has no SELECT, not even on the key"
assert_eq "{aq_owner=X/aq_owner,aq_writer=X/aq_owner}" \
    "$(psql_q "SELECT proacl FROM pg_proc WHERE proname = 'auditq_ensure_partitions'")" "EXECUTE on auditq_ensure_partitions (not PUBLIC)"
rc=0; AUDITQ_DATABASE_URL=$OWN_URL "$CTL" grants --writer aq_owner >/dev/null 2>"$T/g.err" || rc=$?
assert_eq "1|auditqctl grants: --writer aq_owner: auditq_grant_writer: role aq_owner owns audit_events (or is a member of its owner aq_owner), so it could disable the append-only triggers (SQLSTATE 0LP01); nothing was granted
auditqctl grants: hint: Use a separate role for the worker and for readers: CREATE ROLE name LOGIN PASSWORD '...'." \
    "$rc|$(cat "$T/g.err")" "grants refuses the owner as writer"
rc=0; AUDITQ_DATABASE_URL=$OWN_URL "$CTL" grants --reader nosuch >/dev/null 2>"$T/g.err" || rc=$?
assert_eq "1|auditqctl grants: role 'nosuch' does not exist; create it first (CREATE ROLE ... LOGIN PASSWORD '...'); nothing was granted" \
    "$rc|$(cat "$T/g.err")" "grants with a missing role"
rc=0; AUDITQ_DATABASE_URL="postgresql://aq_reader@127.0.0.1:$PG_PORT/auditq" "$CTL" grants --reader aq_reader >/dev/null 2>"$T/g.err" || rc=$?
assert_eq "1|auditqctl grants: --reader aq_reader: permission denied for function auditq_grant_reader (SQLSTATE 42501); nothing was granted" \
    "$rc|$(cat "$T/g.err")" "grants as a non-owner"

# One row of month+4 (no partition yet: DEFAULT); the worker's upkeep,
# as the writer, creates that month and moves the row there.
M4=$(month 4 YYYY_MM)
psql_q "INSERT INTO audit_events (event_id, occurred_at, priority, action)
        VALUES ('00000000-0000-7000-8000-0000000000aa', date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' + interval '4 months 1 day', 'normal', 'future')"
assert_eq "audit_events_default" "$(psql_q "SELECT tableoid::regclass FROM audit_events WHERE action = 'future'")" "month+4 row in DEFAULT"

# ---- the worker: ACL user aq-worker through the tunnel, writer over TLS ----
AUDITQ_REDIS_URL=$W_URL AUDITQ_DATABASE_URL=$WRITER_DSN worker_start w1 --set partitions_ahead=4 \
    --set heartbeat_timeout_ms=$((2000 * ${AQ_TIME_SCALE:-1}))   # upkeep gets half of it: TLS + SCRAM under memcheck need more
wait_for 10 grep -q 'msg="partitions created" count=1' "$T/w1.log"
assert_eq "audit_events_$M4" "$(psql_q "SELECT tableoid::regclass FROM audit_events WHERE action = 'future'")" \
    "the writer's upkeep moved the month+4 row into its new partition"
worker_pg_session() {
    psql_q "SELECT ssl, coalesce(usename = 'aq_writer', false) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid)
            WHERE application_name = 'auditq-worker' LIMIT 1" | tr -d '\n'
}
# The writer threads connect on their own schedule (slowly under memcheck).
for _ in $(seq $((100 * ${AQ_TIME_SCALE:-1}))); do
    [[ -n "$(worker_pg_session)" ]] && break
    sleep 0.1
done
assert_eq "t|t" "$(worker_pg_session)" "the worker's PostgreSQL session is TLS, as aq_writer"
# Every Redis connection of the worker arrived on the TLS port (via stunnel).
assert_eq "" "$(root client list | awk '/user=aq-worker/ && $0 !~ ("laddr=127.0.0.1:" port " ")' port="$TLS_PORT")" \
    "aq-worker connections not on the TLS port"
assert_eq 1 "$(root client list | grep -c "user=aq-worker" | awk '{ print ($1 >= 2) }')" "aq-worker connections seen"

# ---- the push-only producer: 300 sync + 300 async, byte-exact ----
export AUDITQ_DATABASE_URL=$SU_URL   # it_client checks the rows with it
assert_eq "exact: 300 events (sync) stored, every field byte-exact" \
    "$(AUDITQ_REDIS_URL=$P_URL "$TBIN/it_client" exact --events 300 --mode sync --tag sy)" "sync producer as aq-producer"
assert_eq "exact: 300 events (async) stored, every field byte-exact" \
    "$(AUDITQ_REDIS_URL=$P_URL "$TBIN/it_client" exact --events 300 --mode async --tag as)" "async producer as aq-producer"
assert_eq 601 "$(rows)" "rows: 600 events + the month+4 row"
assert_eq 600 "$(psql_q "SELECT count(*) FROM audit_events_default WHERE request_id LIKE 'req-%'")" \
    "events of 2026-01 (no partition) stored in DEFAULT by the writer"

# Refusals the push-only user gets from Redis itself.
pr() { rcli --user aq-producer --pass ppw "$@"; }
assert_eq "NOPERM this user has no permissions to run the 'lrange' command" "$(pr lrange '{auditq}:queue:normal' 0 -1)" "producer LRANGE"
assert_eq "NOPERM this user has no permissions to run the 'del' command" "$(pr del '{auditq}:queue:normal')" "producer DEL"
assert_eq "NOPERM this user has no permissions to run the 'eval' command" "$(pr eval "return 1" 1 '{auditq}:queue:normal')" "producer EVAL"
assert_eq "NOPERM this user has no permissions to run the 'rpush' command" "$(pr rpush '{auditq}:queue:normal' x)" "producer RPUSH"
assert_eq "NOPERM this user has no permissions to access one of the keys used as arguments" \
    "$(pr lpush '{auditq}:dead' x)" "producer LPUSH outside the queues"
assert_eq "NOAUTH Authentication required." "$(rcli lpush '{auditq}:queue:normal' x)" "no login: default user off"

# ---- exact messages for a wrong password, no login, the wrong user ----
# it_client's `send` returns on the first error without freeing its event
# and handle (a test driver, not the library): no leak report for it.
NOLEAK="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
WRONGPASS_P="Redis refused the login of user 'aq-producer' (WRONGPASS): wrong password, unknown user or user off; fix redis_url or the ACL (docs/SECURITY.md)"
rc=0; ASAN_OPTIONS=$NOLEAK AUDITQ_REDIS_URL=$(url aq-producer:nope) "$TBIN/it_client" send --events 1 --tag bad >/dev/null 2>"$T/p.err" || rc=$?
assert_eq "1|send: $WRONGPASS_P" "$rc|$(cat "$T/p.err")" "producer with a wrong password"
# async: the flush that times out says why (the flusher's last failure).
rc=0; IT_FLUSH_MS=1500 ASAN_OPTIONS=$NOLEAK AUDITQ_REDIS_URL=$(url aq-producer:nope) "$TBIN/it_client" exact --events 3 --mode async --tag bad >/dev/null 2>"$T/p.err" || rc=$?
assert_eq "1|flush/close: flush: 3 events not yet acknowledged by Redis after 1500 ms; last error: $WRONGPASS_P" \
    "$rc|$(cat "$T/p.err")" "async producer with a wrong password"
rc=0; IT_FLUSH_MS=1500 ASAN_OPTIONS=$NOLEAK AUDITQ_REDIS_URL=$(url aq-monitor:mpw) "$TBIN/it_client" exact --events 3 --mode async --tag bad >/dev/null 2>"$T/p.err" || rc=$?
assert_eq "1|flush/close: flush: 3 events not yet acknowledged by Redis after 1500 ms; last error: Redis user 'aq-monitor' may not run LPUSH (NOPERM): grant it (ACL SETUSER aq-monitor +lpush) or use the producer rules of docs/SECURITY.md" \
    "$rc|$(cat "$T/p.err")" "async producer as a user without LPUSH"
rc=0; ASAN_OPTIONS=$NOLEAK AUDITQ_REDIS_URL=$(url aq-monitor:mpw) "$TBIN/it_client" send --events 1 --tag bad >/dev/null 2>"$T/p.err" || rc=$?
assert_eq "1|send: Redis user 'aq-monitor' may not run LPUSH (NOPERM): grant it (ACL SETUSER aq-monitor +lpush) or use the producer rules of docs/SECURITY.md" \
    "$rc|$(cat "$T/p.err")" "producer as a user without LPUSH"
rc=0; AUDITQ_REDIS_URL=$(url aq-worker:nope) AUDITQ_DATABASE_URL=$WRITER_DSN "$BIN/auditq-worker" >"$T/wbad.log" 2>&1 || rc=$?
assert_eq "1|level=error msg=\"cannot start: Redis refused the worker's login\" error=\"Redis refused the login of user 'aq-worker' (WRONGPASS): wrong password, unknown user or user off; fix redis_url or the ACL (docs/SECURITY.md)\"" \
    "$rc|$(sed -E 's/^ts=[^ ]+ //' "$T/wbad.log")" "worker with a wrong password"
rc=0; AUDITQ_REDIS_URL=$M_URL AUDITQ_DATABASE_URL=$WRITER_DSN "$BIN/auditq-worker" >"$T/wbad.log" 2>&1 || rc=$?
assert_eq "1|level=error msg=\"cannot start: Redis refused the worker\" error=\"Redis user 'aq-monitor' may not run the heartbeat script (NOPERM): grant it (ACL SETUSER aq-monitor +script|load) or use the worker rules of docs/SECURITY.md\"" \
    "$rc|$(sed -E 's/^ts=[^ ]+ //' "$T/wbad.log")" "worker with the monitor's user"
rc=0; AUDITQ_REDIS_URL="redis://127.0.0.1:$SPORT" AUDITQ_DATABASE_URL=$WRITER_DSN "$BIN/auditq-worker" >"$T/wbad.log" 2>&1 || rc=$?
assert_eq "1|level=error msg=\"cannot start: Redis refused the worker's login\" error=\"Redis at 127.0.0.1:$SPORT wants a login (NOAUTH) and redis_url has none: use redis://USER:PASSWORD@host:port (docs/SECURITY.md)\"" \
    "$rc|$(sed -E 's/^ts=[^ ]+ //' "$T/wbad.log")" "worker without a login"
rc=0; AUDITQ_REDIS_URL=$(url aq-monitor:nope) "$CTL" stats >/dev/null 2>"$T/c.err" || rc=$?
assert_eq "1|auditqctl stats: Redis refused the login of user 'aq-monitor' (WRONGPASS): wrong password, unknown user or user off; fix redis_url or the ACL (docs/SECURITY.md)" \
    "$rc|$(cat "$T/c.err")" "auditqctl with a wrong password"
rc=0; AUDITQ_REDIS_URL=$P_URL "$CTL" workers >/dev/null 2>"$T/c.err" || rc=$?
assert_eq "1|auditqctl workers: reading from Redis failed: Redis user 'aq-producer' may not run TIME (NOPERM): grant it (ACL SETUSER aq-producer +time) or use the auditqctl rules of docs/SECURITY.md" \
    "$rc|$(cat "$T/c.err")" "auditqctl workers as the producer"

# The monitor reads; purging a dead letter needs the admin user.
printf '\x81\xa1v\x01' >"$T/undecodable"   # {v: 1}: no event_id, dead-lettered at decode
rcli --user aq-producer --pass ppw -x lpush '{auditq}:queue:normal' <"$T/undecodable" >/dev/null
wait_for 10 bash -c "[ \"\$(AUDITQ_REDIS_URL='$M_URL' '$CTL' stats --json | $PY -c 'import json,sys; print(json.load(sys.stdin)[\"dead\"])')\" = 1 ]"
assert_eq "1 of 1 dead letters match" "$(AUDITQ_REDIS_URL=$M_URL "$CTL" dlq list | tail -n 1)" "dlq list as the monitor"
assert_eq 1 "$(AUDITQ_REDIS_URL=$M_URL "$CTL" workers --json | $PY -c 'import json,sys; print(len(json.load(sys.stdin)))')" \
    "workers as the monitor"
rc=0; AUDITQ_REDIS_URL=$M_URL "$CTL" dlq purge --all --yes >/dev/null 2>"$T/c.err" || rc=$?
assert_eq "1|auditqctl dlq purge: purging failed: Redis user 'aq-monitor' may not run a command the dlq script calls (NOPERM): give it the auditqctl rules of docs/SECURITY.md (config/users.acl)" \
    "$rc|$(cat "$T/c.err")" "dlq purge as the monitor"
assert_eq "purged 1 dead letter" "$(AUDITQ_REDIS_URL=$A_URL "$CTL" dlq purge --all --yes)" "dlq purge as the admin"

# rediss://: exact refusal without TLS support; with it, a verified TLS connection.
rc=0; AUDITQ_REDIS_URL="rediss://aq-monitor:mpw@localhost:$TLS_PORT?tls_ca=$T/ca.crt" "$CTL" stats >"$T/c.out" 2>"$T/c.err" || rc=$?
if grep -q 'built without TLS' "$T/c.err"; then
    assert_eq "2|auditqctl stats: Redis URL 'rediss://aq-monitor:***@localhost:$TLS_PORT?tls_ca=$T/ca.crt': this auditq was built without TLS (hiredis 0.14 has none): use a TLS tunnel and redis://127.0.0.1:PORT, or build with hiredis >= 1.0 and hiredis_ssl (docs/SECURITY.md); fix redis_url (AUDITQ_REDIS_URL)" \
        "$rc|$(cat "$T/c.err")" "rediss:// in a build without TLS"
    echo "# rediss:// refused with the no-TLS message (this build has no hiredis_ssl)"
else
    assert_eq 0 "$rc" "auditqctl stats over rediss:// with tls_ca (TLS build): $(cat "$T/c.err")"
    rc=0; AUDITQ_REDIS_URL="rediss://aq-monitor:mpw@127.0.0.1:$TLS_PORT?tls_ca=$T/ca.crt" "$CTL" stats >/dev/null 2>"$T/c.err" || rc=$?
    assert_eq 1 "$rc" "rediss:// to 127.0.0.1 with a certificate for localhost only is refused"
    # OpenSSL words the reason; ours is the rest.
    assert_eq "auditqctl stats: TLS handshake with Redis at 127.0.0.1:$TLS_PORT failed: SSL_connect failed: certificate verify failed: IP address mismatch; check tls_ca and tls_server_name in redis_url" \
        "$(cat "$T/c.err")" "rediss:// host verification"
    echo "# rediss:// verified (this build has hiredis_ssl)"
fi

# ---- SQL-looking event text, COPY and INSERT methods: stored byte for byte ----
push_sql_jobs() {   # TAG: pushes 2 jobs as aq-producer, prints "event_id hex" lines
    "$PY" - "$PLAIN_PORT" "$1" <<'PYEOF'
import socket, sys, uuid, msgpack
port, tag = int(sys.argv[1]), sys.argv[2]
evil = ["x'); DROP TABLE audit_events; --", "\\.\n\\N\t\\\\", "$1 $$ E'\\x00' \"q\"",
        "Robert'); DELETE FROM audit_events WHERE ('1'='1", "tab\there\r\nline 2 \\"]
s = socket.create_connection(("127.0.0.1", port))
def cmd(*a):
    s.sendall(b"*%d\r\n" % len(a) + b"".join(b"$%d\r\n%s\r\n" % (len(x), x) for x in a))
    return s.recv(4096)
assert cmd(b"AUTH", b"aq-producer", b"ppw") == b"+OK\r\n"
for i in range(2):
    eid = str(uuid.uuid4())
    f = [evil[(i + k) % 5] + tag for k in range(5)]
    job = {"v": 1, "event_id": eid, "occurred_at": 1767225600000000 + i, "priority": "high",
           "action": f[0], "actor_id": f[1], "entity_id": f[2], "tenant_id": f[3], "user_agent": f[4],
           "metadata": '{"k": "\'; TRUNCATE audit_events; --"}'}
    assert cmd(b"LPUSH", b"{auditq}:queue:high", msgpack.packb(job)).startswith(b":")
    print(eid, "\x1f".join(f).encode().hex())
PYEOF
}
check_sql_jobs() {  # FILE METHOD
    local id hex
    while read -r id hex; do
        wait_for 10 bash -c "[ \"\$(psql -X -A -t -c \"SELECT count(*) FROM audit_events WHERE event_id = '$id'\")\" = 1 ]"
        assert_eq "$hex|'; TRUNCATE audit_events; --" "$(psql_q "SELECT encode(convert_to(concat_ws(E'\\x1f', action, actor_id, entity_id, tenant_id, user_agent), 'UTF8'), 'hex') || '|' || (metadata->>'k')
                       FROM audit_events WHERE event_id = '$id'")" "SQL-looking text stored byte for byte ($2)"
    done <"$1"
}
push_sql_jobs copy >"$T/sql_copy"
check_sql_jobs "$T/sql_copy" copy
worker_stop w1
AUDITQ_REDIS_URL=$W_URL AUDITQ_DATABASE_URL=$WRITER_DSN worker_start w2 --set write_method=insert
push_sql_jobs insert >"$T/sql_insert"
check_sql_jobs "$T/sql_insert" insert
worker_stop w2
assert_eq 605 "$(rows)" "rows: 601 + 4 SQL-looking, the table still there"

# ---- the rest of the worker's rules: recovery of a crashed worker's batch,
# retries through {auditq}:retry and a PostgreSQL rejection dead-lettered ----
AUDITQ_REDIS_URL=$P_URL "$TBIN/it_client" send --events 5 --tag crash
AUDITQ_REDIS_URL=$W_URL AUDITQ_DATABASE_URL=$WRITER_DSN worker_start w4 --set crash_after_commit=1
rc=0; { wait "${WORKER_PID[w4]}"; } 2>/dev/null || rc=$?   # 137 is not a kill: no "Killed" note
assert_eq 137 "$rc" "w4 exits between commit and ack (test hook)"
AUDITQ_REDIS_URL=$W_URL AUDITQ_DATABASE_URL=$WRITER_DSN worker_start w5 --set max_attempts=2 \
    --set backoff_base_ms=10 --set backoff_max_ms=50
mstat() { AUDITQ_REDIS_URL=$M_URL stat "$1"; }
wait_for 15 bash -c "[ \"\$(AUDITQ_REDIS_URL='$M_URL' '$CTL' stats --json | $PY -c 'import json,sys; print(json.load(sys.stdin)[\"recovered\"])')\" = 5 ]"
bad_id=$(AUDITQ_REDIS_URL=$P_URL "$TBIN/it_client" bad --valid 10 --tag bd)
wait_for 15 bash -c "[ \"\$(AUDITQ_REDIS_URL='$M_URL' '$CTL' stats --json | $PY -c 'import json,sys; print(json.load(sys.stdin)[\"dead\"])')\" = 1 ]"
assert_eq 5 "$(psql_q "SELECT count(*) FROM audit_events WHERE request_id LIKE 'req-crash-%'")" "crashed batch stored once after recovery"
assert_eq 9 "$(psql_q "SELECT count(*) FROM audit_events WHERE request_id LIKE 'req-bd-%'")" "the 9 good rows sent with the bad one"
assert_eq "1 2 1 1" "$(mstat retried) $(mstat dead_lettered) $(mstat dead_purged) $(mstat dead)" "retried, dead_lettered (the undecodable job and the rejected row), dead_purged, dead"
assert_eq "1 of 1 dead letters match" "$(AUDITQ_REDIS_URL=$M_URL "$CTL" dlq list --event-id "$bad_id" --sqlstate 22P05 | tail -n 1)" \
    "the rejected row, dead-lettered after 2 attempts"
worker_stop w5
assert_eq 619 "$(rows)" "rows: 605 + 5 recovered + 9 good"
assert_eq "" "$(grep -nE '"(SELECT|INSERT|UPDATE|DELETE|COPY|SET|CREATE|BEGIN)[^"]*%s' "$AQ_ROOT/worker/pgw.c" || true)" \
    "SQL text in worker/pgw.c formatted with %s"

# ---- PostgreSQL privileges: writer, owner, reader ----
as_writer() { PGHOST=localhost PGHOSTADDR=127.0.0.1 PGUSER=aq_writer PGPASSWORD=wpw PGSSLMODE=verify-full \
              PGSSLROOTCERT=$T/ca.crt PGCHANNELBINDING=require "$@"; }
for sql in "UPDATE audit_events SET action = 'x'" "DELETE FROM audit_events" "TRUNCATE audit_events" \
           "TRUNCATE audit_events_default" "DELETE FROM audit_events_default" "SELECT action FROM audit_events LIMIT 1" \
           "SELECT count(*) FROM audit_events" "SELECT event_id FROM audit_events LIMIT 1"; do
    tbl=audit_events; [[ "$sql" == *audit_events_default* ]] && tbl=audit_events_default
    assert_eq "ERROR:  permission denied for table $tbl" "$(as_writer refused "$sql")" "writer: $sql"
done
assert_eq 619 "$(rows)" "rows at the end (counted by the owner: the writer cannot)"
assert_eq "ERROR:  must be owner of table audit_events" \
    "$(as_writer refused "ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only")" "writer cannot disable the trigger"
assert_eq "ERROR:  must be owner of relation audit_events" \
    "$(as_writer refused "DROP TRIGGER audit_events_append_only ON audit_events")" "writer cannot drop the trigger"
assert_eq "ERROR:  must be owner of table audit_events_default" \
    "$(as_writer refused "ALTER TABLE audit_events_default DISABLE TRIGGER ALL")" "writer cannot disable DEFAULT's triggers"
assert_eq 'ERROR:  permission denied to set parameter "session_replication_role"' \
    "$(as_writer refused "SET session_replication_role = replica")" "writer cannot switch triggers off by replica mode"
for op in UPDATE DELETE TRUNCATE; do
    case $op in
        UPDATE) sql="UPDATE audit_events SET action = 'x'" ;;
        DELETE) sql="DELETE FROM audit_events" ;;
        TRUNCATE) sql="TRUNCATE audit_events" ;;
    esac
    assert_eq "ERROR:  audit_events is append-only: $op refused" "$(PGUSER=aq_owner refused "$sql")" "owner: $op"
done
assert_eq 619 "$(rows)" "rows after every refused change"
assert_eq "ERROR:  permission denied for table audit_events" \
    "$(PGUSER=aq_reader refused "INSERT INTO audit_events (event_id, occurred_at, priority, action) VALUES (gen_random_uuid(), now(), 'normal', 'r')")" \
    "reader cannot insert"

# ---- libpq conninfo passes through unchanged ----
# URI with ?sslmode=disable, as the reader: auditqctl query works (January
# 2026: 600 + 4 SQL-looking + 9 good rows of the bad batch).
assert_eq 613 "$(AUDITQ_DATABASE_URL=$READER_URL "$CTL" query --since 2026-01-01 --until 2026-02-01 --format ndjson | wc -l)" \
    "auditqctl query as the reader via a postgresql:// URI"
# Keyword conninfo with sslmode=disable channel_binding=disable: passed on,
# so the server's rule for the writer (TLS only) refuses it.
rc=0; AUDITQ_DATABASE_URL="host=127.0.0.1 port=$PG_PORT dbname=auditq user=aq_writer password=wpw sslmode=disable channel_binding=disable" \
    "$CTL" query --limit 1 --format csv >/dev/null 2>"$T/q.err" || rc=$?
assert_eq "1|auditqctl query: cannot connect to PostgreSQL (connection to server at \"127.0.0.1\", port $PG_PORT failed: FATAL:  pg_hba.conf rejects connection for host \"127.0.0.1\", user \"aq_writer\", database \"auditq\", no encryption); check database_url / AUDITQ_DATABASE_URL" \
    "$rc|$(cat "$T/q.err")" "sslmode=disable reaches libpq"
rc=0; AUDITQ_DATABASE_URL="host=127.0.0.1 port=$PG_PORT dbname=auditq user=aq_reader sslmode=bogus" \
    "$CTL" query --limit 1 --format csv >/dev/null 2>"$T/q.err" || rc=$?
assert_eq "1|auditqctl query: cannot connect to PostgreSQL (invalid sslmode value: \"bogus\"); check database_url / AUDITQ_DATABASE_URL" \
    "$rc|$(cat "$T/q.err")" "a bad sslmode gives libpq's error"
rc=0; AUDITQ_DATABASE_URL="${WRITER_DSN/host=localhost/host=127.0.0.1}" "$CTL" query --limit 1 --format csv >/dev/null 2>"$T/q.err" || rc=$?
assert_eq "1|auditqctl query: cannot connect to PostgreSQL (connection to server at \"127.0.0.1\", port $PG_PORT failed: server certificate for \"localhost\" (and 1 other name) does not match host name \"127.0.0.1\"); check database_url / AUDITQ_DATABASE_URL" \
    "$rc|$(cat "$T/q.err")" "sslmode=verify-full checks the host name"
# The worker logs the same libpq text.
AUDITQ_REDIS_URL=$W_URL AUDITQ_DATABASE_URL="${WRITER_DSN/sslmode=verify-full/sslmode=bogus}" worker_start w3
wait_for 10 grep -q 'msg="postgres unreachable"' "$T/w3.log"
assert_eq 'error="connect: invalid sslmode value: \"bogus\""' \
    "$(grep -m1 'msg="postgres unreachable"' "$T/w3.log" | grep -o 'error=.*')" "worker: a bad sslmode in database_url"
worker_stop w3

it_pass "it_88_security: ACL users (push-only producer: 600 events exact, NOPERM x5), worker exit 1 on refused login/ACL, auditqctl monitor/admin, TLS tunnel, PG owner/writer/reader with verify-full + channel_binding, append-only refusals, conninfo pass-through, SQL-looking text stored exactly"
