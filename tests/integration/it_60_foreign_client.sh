#!/usr/bin/env bash
# it_60_foreign_client.sh -- a producer that is not libauditq (Python msgpack
# + a raw-socket RESP client, tests/integration/foreign_client.py, following
# docs/PROTOCOL.md only) enqueues 50 valid and 3 invalid jobs. Asserts:
#   exactly 50 rows; every column of every row byte-exact (text compared as
#   hex of its UTF-8 bytes, changes/metadata as jsonb equality, occurred_at
#   to the microsecond, priority); the 3 invalid jobs are dead letters with
#   the exact reasons, their exact bytes and their queue's priority;
#   auditqctl stats reports processed=50 and dead=3; SIGTERM -> exit 0.
# shellcheck disable=SC2119  # rows/stat take optional args; defaults intended
set -euo pipefail
# shellcheck source=tests/integration/lib_it.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib_it.sh"

CLIENT="$AQ_ROOT/tests/integration/foreign_client.py"

fail() {
    printf 'FAIL: %s\n' "$*"
    it_fail "foreign client"
    exit 1
}

it_setup
worker_start w1 --set threads=2

"$PY" "$CLIENT" send --port "$REDIS_PORT" --expect-tsv "$AQ_TMP/expected.tsv" \
    --expect-dead "$AQ_TMP/expected_dead.txt" >"$AQ_TMP/sent.json" ||
    fail "foreign_client.py send failed"
n_sent=$("$PY" -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["event_ids"]))' \
    "$AQ_TMP/sent.json")
assert_eq 50 "$n_sent" "valid jobs sent by foreign_client.py"
assert_eq 50 "$(wc -l <"$AQ_TMP/expected.tsv")" "lines in expected.tsv"

settled() {
    [[ "$(rows)" == 50 ]] &&
        [[ "$(redis-cli -p "$REDIS_PORT" LLEN '{auditq}:dead' </dev/null)" == 3 ]] &&
        drained && [[ "$(stat processed)" == 50 ]]
}
if ! wait_for 60 settled; then
    echo "--- worker log:"
    tail -n 30 "$AQ_TMP/w1.log" || true
    fail "not settled within 60 s: rows=$(rows) dead=$(redis-cli -p "$REDIS_PORT" LLEN '{auditq}:dead' </dev/null)"
fi

# ---- rows: exactly the 50 sent, every field byte-exact -------------------
assert_eq 50 "$(rows)" "rows in audit_events"

# expected.tsv holds only hex, uuids, integers and \N: \copy needs no
# quoting. The query prints one line per mismatch; none may appear.
compare_rows() {
    "${PG_BINDIR:+$PG_BINDIR/}psql" -X -A -t -q -v ON_ERROR_STOP=1 -F $'\t' -f - <<EOF
CREATE TEMP TABLE exp (
    event_id uuid, occurred_at_us bigint, priority text,
    tenant_id text, actor_id text, actor_type text, action text, entity_type text,
    entity_id text, outcome text, source_ip text, user_agent text, request_id text,
    session_id text, changes text, metadata text);
\copy exp FROM '$AQ_TMP/expected.tsv'
SELECT 'expected rows loaded: ' || count(*) FROM exp HAVING count(*) <> 50;
-- rows sent but not stored, or stored but never sent
SELECT 'missing row', e.event_id FROM exp e
 WHERE NOT EXISTS (SELECT 1 FROM audit_events a WHERE a.event_id = e.event_id);
SELECT 'unexpected row', a.event_id FROM audit_events a
 WHERE NOT EXISTS (SELECT 1 FROM exp e WHERE e.event_id = a.event_id);
-- text columns byte for byte (hex of the UTF-8 bytes; NULL = absent)
SELECT e.event_id, c.col, 'want', c.want, 'got', c.got
  FROM exp e JOIN audit_events a USING (event_id)
  CROSS JOIN LATERAL (VALUES
    ('occurred_at', e.occurred_at_us::text,
     ((extract(epoch FROM a.occurred_at) * 1000000)::bigint)::text),
    ('priority', e.priority, a.priority),
    ('tenant_id', e.tenant_id, encode(convert_to(a.tenant_id, 'UTF8'), 'hex')),
    ('actor_id', e.actor_id, encode(convert_to(a.actor_id, 'UTF8'), 'hex')),
    ('actor_type', e.actor_type, encode(convert_to(a.actor_type, 'UTF8'), 'hex')),
    ('action', e.action, encode(convert_to(a.action, 'UTF8'), 'hex')),
    ('entity_type', e.entity_type, encode(convert_to(a.entity_type, 'UTF8'), 'hex')),
    ('entity_id', e.entity_id, encode(convert_to(a.entity_id, 'UTF8'), 'hex')),
    ('outcome', e.outcome, encode(convert_to(a.outcome, 'UTF8'), 'hex')),
    ('source_ip', e.source_ip, encode(convert_to(a.source_ip, 'UTF8'), 'hex')),
    ('user_agent', e.user_agent, encode(convert_to(a.user_agent, 'UTF8'), 'hex')),
    ('request_id', e.request_id, encode(convert_to(a.request_id, 'UTF8'), 'hex')),
    ('session_id', e.session_id, encode(convert_to(a.session_id, 'UTF8'), 'hex'))
  ) AS c(col, want, got)
 WHERE c.want IS DISTINCT FROM c.got
UNION ALL
-- JSON columns as jsonb values (key order and whitespace are not kept by jsonb)
SELECT e.event_id, c.col, 'want', c.want::text, 'got', c.got::text
  FROM exp e JOIN audit_events a USING (event_id)
  CROSS JOIN LATERAL (VALUES
    ('changes', convert_from(decode(e.changes, 'hex'), 'UTF8')::jsonb, a.changes),
    ('metadata', convert_from(decode(e.metadata, 'hex'), 'UTF8')::jsonb, a.metadata)
  ) AS c(col, want, got)
 WHERE c.want IS DISTINCT FROM c.got
 ORDER BY 1, 2;
EOF
}
mismatches=$(compare_rows) || fail "comparison query failed"
# Report row mismatches now but fail at the end, so one run also shows
# whether the dead letters, stats and shutdown are right.
rows_failed=""
if [[ -n "$mismatches" ]]; then
    printf '%s\n' "$mismatches" | head -n 40
    rows_failed="$(printf '%s\n' "$mismatches" | wc -l) mismatches between audit_events and what foreign_client.py sent (listed above)"
    printf 'FAIL: %s\n' "$rows_failed"
fi
# The comparison must have looked at every row and every column.
assert_eq "50|50" "$(psql_q "SELECT count(*), count(DISTINCT event_id) FROM audit_events")" \
    "rows and distinct event ids"
if [[ -z "$rows_failed" ]]; then
    it_pass "foreign client: 50 rows, every column byte-exact (text), jsonb-equal (changes/metadata), microsecond-exact"
else
    it_fail "foreign client: rows byte-exact"
fi

# ---- dead letters --------------------------------------------------------
assert_eq 3 "$(redis-cli -p "$REDIS_PORT" LLEN '{auditq}:dead' </dev/null)" "LLEN {auditq}:dead"
reasons=$("$PY" "$CLIENT" dead --port "$REDIS_PORT" | cut -f4 | sort)
want_reasons=$(printf '%s\n' \
    "undecodable job: missing required key action" \
    "undecodable job: key v: unsupported schema version 2 (this worker reads 1)" \
    "undecodable job: job is not a msgpack map at offset 0" | sort)
assert_eq "$want_reasons" "$reasons" "dead-letter reasons"
# Same records in full: queue's priority, attempts 0, the exact job bytes.
assert_eq "$(cat "$AQ_TMP/expected_dead.txt")" "$("$PY" "$CLIENT" dead --port "$REDIS_PORT")" \
    "dead-letter records (priority, attempts, job bytes, reason)"
it_pass "foreign client: 3 invalid jobs dead-lettered with exact reasons and bytes"

# ---- stats and shutdown ----------------------------------------------------
assert_eq 50 "$(stat processed)" "auditqctl stats processed"
assert_eq 3 "$(stat dead)" "auditqctl stats dead"
assert_eq 3 "$(stat dead_lettered)" "auditqctl stats dead_lettered"
worker_stop w1
assert_eq 0 "$(stat workers_registered)" "workers registered after clean stop"
it_pass "foreign client: stats processed=50 dead=3, worker exits 0 on SIGTERM"
[[ -z "$rows_failed" ]] || fail "$rows_failed"
