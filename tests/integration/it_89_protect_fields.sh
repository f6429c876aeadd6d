#!/usr/bin/env bash
# protect_fields (issue 13 part 2): a secret an application puts into
# source_ip, user_agent, metadata.email, changes.password and changes.*.token
# leaves the producer only as its HMAC, a redaction marker or not at all --
# through the sync path, the async path, and the spool while Redis is down
# (replayed when it is back), and through a dead letter. Afterwards the
# secret appears in no file of the run: Redis's AOF, the spool file, the
# PostgreSQL data directory (heap and WAL), the dead-letter list and every
# process log. The HMAC'd value is found with auditqctl hash + query.
set -euo pipefail
source "$(dirname "$0")/lib_it.sh"
it_setup
C=$TBIN/it_client
CTL=$BIN/auditqctl
S=pw-Zq7xK9vT           # the secret: '-', 'p', 'w', ... never occur in hex
KEY=$AQ_TMP/protect.key
(umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$KEY")
RULES="source_ip:hmac, user_agent:redact, metadata.email:hmac, changes.password:redact, changes.*.token:drop"
PROT=(--set "protect_fields=$RULES" --set "protect_key_file=$KEY" --secret "$S")
N1=40 N2=30    # phase 1: N1 sync + N1 async; phase 2 (Redis down): N2 + N2

worker_start w1 --set max_attempts=2 --set backoff_base_ms=50 --set backoff_max_ms=100

# ---- sync and async, Redis up ----------------------------------------------
# (In each phase the first async event also holds "\u0000", which jsonb
# refuses: two dead letters in all.)
"$C" produce --sync $N1 --async $N1 --tag p1 "${PROT[@]}" >"$AQ_TMP/prod_p1.log" 2>&1
assert_eq "sent sync=$N1 async=$N1 ok=$((2 * N1)) spool_full=0 other_errors=0" \
    "$(grep '^sent ' "$AQ_TMP/prod_p1.log" | sed 's/ max_call_ms=.*//')" "phase 1 sends"

# ---- the spool: Redis down, then up ---------------------------------------
redis_stop
harness_spawn prod_p2 "$C" produce --sync $N2 --async $N2 --tag p2 --set "spool_path=$AQ_TMP/p2.spool" \
    "${PROT[@]}" --wait-replayed 60
PP=$HARNESS_LAST_PID
wait_for 30 grep -q '^sent ' "$AQ_TMP/prod_p2.log"
assert_eq "$((2 * N2))" "$(grep '^stats:' "$AQ_TMP/prod_p2.log" | head -n 1 | tr ' ' '\n' | sed -n 's/^spooled=//p')" \
    "phase 2 events spooled with Redis down"
# The spool file while it holds every phase-2 event.
spool_hmacs=$({ grep -ao 'hmac-sha256:' "$AQ_TMP/p2.spool" || true; } | wc -l)
assert_eq "$((2 * N2 * 2))" "$spool_hmacs" "hmac values in the spool file (source_ip + metadata.email per event)"
assert_eq 0 "$(grep -ac -- "$S" "$AQ_TMP/p2.spool" || true)" "secret in the spool file"
cp "$AQ_TMP/p2.spool" "$AQ_TMP/p2.spool.copy"
redis_restart
wait_for 60 grep -q '^drained' "$AQ_TMP/prod_p2.log"
rc=0
wait "$PP" || rc=$?
assert_eq 0 "$rc" "phase 2 producer exit status"

# ---- stored: every event but the poison row, protected --------------------
total=$((2 * N1 + 2 * N2))
wait_for 30 drained
wait_for 30 bash -c "[ \"\$(\"$CTL\" stats --json | $PY -c 'import json,sys; print(json.load(sys.stdin)[\"dead\"])')\" = 2 ]"
assert_eq $((total - 2)) "$(rows)" "rows stored (two poison rows dead-lettered)"
H_IP=$("$CTL" hash --key-file "$KEY" "$S")
H_MAIL=$(printf '%s@example.com\n' "$S" | "$CTL" hash --key-file "$KEY" -)
assert_eq "hmac-sha256:" "${H_IP:0:12}" "auditqctl hash output form"
assert_eq $((total - 2)) "$(rows "WHERE source_ip = '$H_IP' AND user_agent = '[redacted]'
    AND metadata->>'email' = '$H_MAIL'
    AND changes->'password' = '[\"[redacted]\",\"[redacted]\"]'::jsonb
    AND changes->'api' = '{\"scope\":\"read\"}'::jsonb
    AND changes->'title' = '[\"a\",\"b\"]'::jsonb")" "rows with exactly the protected values"
assert_eq 0 "$(rows "WHERE audit_events::text LIKE '%$S%'")" "rows whose text holds the secret"
# Found by the hash, as an investigator would (sync, async and spooled alike).
n=$("$CTL" query --metadata "email=$H_MAIL" --format ndjson --no-progress | wc -l)
assert_eq $((total - 2)) "$n" "auditqctl query --metadata email=\$(auditqctl hash ...)"
n=$("$CTL" query --source-ip "$H_IP" --tenant tenant-p2-0 --format ndjson --no-progress | wc -l)
assert_eq "$(rows "WHERE tenant_id = 'tenant-p2-0' AND action NOT LIKE 'auditq.%'")" "$n" \
    "auditqctl query --source-ip \$(auditqctl hash ...)"

# ---- the dead letter holds the protected job ---------------------------
dead=$(redis-cli -p "$REDIS_PORT" --no-raw LRANGE '{auditq}:dead' 0 -1)
assert_eq 4 "$(grep -o 'hmac-sha256:' <<<"$dead" | wc -l)" "hmac values in the two dead letters"
assert_eq 0 "$(grep -c -- "$S" <<<"$dead" || true)" "secret in the dead-letter list"
worker_stop w1

# ---- nowhere on disk, in no log ---------------------------------------------
psql_q "CHECKPOINT" >/dev/null
redis-cli -p "$REDIS_PORT" BGREWRITEAOF >/dev/null
aof=$(grep -rlaF 'hmac-sha256:' "$(_aq_redis_dir main)" | wc -l)
[ "$aof" -ge 1 ] || { echo "FAIL: no Redis AOF file holds the protected jobs (the grep below would prove nothing)"; exit 1; }
PGROOT=$(dirname "$AQ_PGDATA")   # data/ (heap, WAL) and the server log
pgfiles=$(grep -rlaF "$H_MAIL" "$AQ_PGDATA" 2>/dev/null | wc -l)
[ "$pgfiles" -ge 1 ] || { echo "FAIL: PGDATA holds no protected value (the grep below would prove nothing)"; exit 1; }
leaks=$(grep -rlaF -- "$S" "$AQ_TMP" "$PGROOT" 2>/dev/null || true)
assert_eq "" "$leaks" "files under the test directory (AOF, spool, PGDATA, logs) holding the secret"
# Last: a query by the raw value puts it into the trail itself (self-audit
# records query's filters), which is why one searches by the hash.
assert_eq 0 "$("$CTL" query --metadata "email=$S@example.com" --format ndjson --no-progress | wc -l)" \
    "the raw value finds nothing"
echo "secret checked absent: $((2 * N1)) sync/async + $((2 * N2)) spooled events; found by hash: $((total - 2)) rows"
it_pass "it_89 protect_fields"
