#!/usr/bin/env bash
# Integrity (issue 12; docs/INTEGRITY.md). The attacker is a PostgreSQL
# superuser (session_replication_role = replica switches off every trigger,
# the append-only ones and the evidence capture alike).
#
#   - rows written by the worker and rows with tricky values written by SQL
#     (NULLs, emoji, non-ASCII, nested JSON, numbers jsonb normalises such
#     as 1.0E+2, keys out of order, a huge text) are sealed; `verify`
#     recomputes every leaf with the C encoder from the rows and matches the
#     SQL encoder's leaves of the trigger: exit 0, "verified", event leaves
#     = rows = distinct event_ids;
#   - each tampering is detected, named exactly, exit 1, and verify passes
#     again once it is undone: one column of one row changed; one row
#     deleted (its leaf, batch, position); a forged row inserted (its
#     event_id); a whole batch deleted with its evidence (the leaf range);
#     the newest batches, their evidence and checkpoints deleted (a
#     rollback, caught by the published checkpoints); a published
#     checkpoint file altered (bad signature);
#   - an inclusion proof (`verify --event`) checks offline with
#     `verify --proof` and with the independent tools/auditq_verify.py; the
#     proof altered is refused by both;
#   - last, the whole tree recomputed by the attacker over an altered row
#     and re-signed with another key: every database checkpoint has a bad
#     signature and the published ones disagree with the tree.
set -euo pipefail
source "$(dirname "$0")/lib_it.sh"
it_setup
CTL="$BIN/auditqctl"
KEY=$AQ_TMP/seal.key
ANCH=$AQ_TMP/anchors
mkdir -p "$ANCH"
"$CTL" keygen "$KEY" >/dev/null
"$CTL" keygen "$AQ_TMP/attacker.key" >/dev/null
SEAL=(--set "seal_key_file=$KEY" --set "anchor_dir=$ANCH" --set checkpoint_interval_ms=200)

V() { "$CTL" verify --key "$KEY.pub" --anchors "$ANCH" "$@"; }
# verify must fail (exit 1) and print LINE exactly as one of its lines.
# Each check runs twice: as the defaults split the rows (two parts), and
# in parts of 100 events over 3 connections (31 parts, a part's evidence
# cut out of batches that straddle its bounds: ctl_verify_join.c).
PARTS=(--jobs 3 --part-events 100)
expect_finding() {
    local line=$1 out rc
    for opts in "" "${PARTS[*]}"; do
        rc=0
        # shellcheck disable=SC2086 # the options, split on purpose
        out=$(V $opts 2>&1) || rc=$?
        if [[ $rc -ne 1 ]] || ! grep -qxF -- "$line" <<<"$out"; then
            echo "FAIL: expected exit 1 and the line: $line (verify $opts)"
            echo "got exit $rc:"
            printf '%s\n' "$out"
            exit 1
        fi
    done
}
expect_verified() {
    local out rc
    for opts in "" "${PARTS[*]}"; do
        rc=0
        # shellcheck disable=SC2086
        out=$(V $opts 2>&1) || rc=$?
        if [[ $rc -ne 0 ]] || ! grep -q '^verified: ' <<<"$out"; then
            echo "FAIL: $1: expected exit 0 and verified, got exit $rc (verify $opts):"
            printf '%s\n' "$out"
            exit 1
        fi
    done
}
unsealed() { psql_q "SELECT count(*) FROM auditq_evidence_batch b WHERE NOT EXISTS (SELECT 1 FROM auditq_seal_assignment a WHERE a.item_id = b.batch_id)"; }
sealed() { [[ "$(unsealed)" == 0 ]]; }
# As the attacker: SQL with every trigger off.
attack() { psql_q "SET session_replication_role = replica; $1" >/dev/null; }
# "leaf L, batch B position P" of an event.
where_of() {
    psql_q "SELECT format('leaf %s, batch %s position %s', a.first_leaf + u.pos - 1, b.batch_id, u.pos)
              FROM auditq_evidence_batch b JOIN auditq_seal_assignment a ON a.item_id = b.batch_id
             CROSS JOIN LATERAL unnest(b.event_ids) WITH ORDINALITY AS u(id, pos)
             WHERE u.id = '$1'"
}

# ---- tricky rows through SQL, ordinary ones through the worker ----------
psql_q "INSERT INTO audit_events (event_id, occurred_at, priority, tenant_id, actor_id, actor_type, action,
            entity_type, entity_id, outcome, source_ip, user_agent, request_id, session_id, changes, metadata)
        VALUES
        ('00000000-0000-7000-8000-000000000001', '1969-12-31 23:59:59.999999+00', 'low', NULL, NULL, NULL,
         'nulls', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
        ('00000000-0000-7000-8000-000000000002', now(), 'high', 'tenant-ü', 'Zoë 😀', 'user', 'naïve.action',
         'doc', 'ключ', 'success', '::1', 'agent \"quoted\" \\\\ back', 'r-2', 's-2',
         '{\"b\": 1.0E+2, \"a\": [1, 2.50, {\"z\": null, \"y\": [true, false]}], \"é\": \"😀\"}',
         '{\"z\": 1, \"a\": {\"nested\": {\"deep\": [\"x\", 0.000]}}, \"emoji\": \"🎉\\u00e9\\t\"}'),
        ('00000000-0000-7000-8000-000000000003', now(), 'critical', 't', 'a', 'ai', 'long',
         NULL, NULL, 'denied', NULL, repeat('x', 100000), NULL, NULL, '[]', '{}')"
# anchor_command: a witness that appends each checkpoint to a file, and
# refuses the very first one (retried on a later tick).
cat >"$AQ_TMP/witness.sh" <<EOF
#!/bin/sh
if [ ! -e "$AQ_TMP/witness.refused" ]; then : >"$AQ_TMP/witness.refused"; cat >/dev/null; exit 3; fi
cat >>"$AQ_TMP/witness.log"
EOF
chmod +x "$AQ_TMP/witness.sh"
HTTP_PORT=$(free_port)
worker_start w1 "${SEAL[@]}" --set threads=2 --set "anchor_command=$AQ_TMP/witness.sh" \
    --set "http_listen=127.0.0.1:$HTTP_PORT"
# Three rounds, each sealed before the next: at least four checkpoints
# (the rollback below cuts between them).
for round in 1 2 3; do
    out=$("$TBIN/it_client" stream --mode async --events 1000 --tag ok --ack-log "$AQ_TMP/acked" \
          --stop-file "$AQ_TMP/never")
    assert_eq "stream: mode=async sent=1000 acked=1000 failed=0" "$out" "producer, round $round"
    wait_for $((30 * ${AQ_TIME_SCALE:-1})) drained || { echo "FAIL: not drained"; exit 1; }
    wait_for $((30 * ${AQ_TIME_SCALE:-1})) sealed || { echo "FAIL: evidence not sealed"; exit 1; }
done
assert_eq 3003 "$(rows)" "rows stored"

json=$(V --json)
assert_eq "true 3003 3003 0 0" "$("$PY" -c '
import json, sys
v = json.loads(sys.argv[1])
print(str(v["verified"]).lower(), v["event_leaves"], v["rows_checked"], v["pending_events"], v["findings_total"])' "$json")" \
    "verify --json: verified, event leaves = rows checked = rows stored"
assert_eq 3003 "$(psql_q "SELECT count(DISTINCT event_id) FROM audit_events")" "distinct event_ids"
# The published checkpoints are the database's, byte for byte.
assert_eq "$(psql_q "SELECT count(*) FROM auditq_checkpoint")" "$(ls "$ANCH" | grep -c '\.checkpoint$')" \
    "one published file per checkpoint"
newest=$(psql_q "SELECT tree_size FROM auditq_checkpoint ORDER BY tree_size DESC LIMIT 1")
assert_eq "$(psql_q "SELECT note FROM auditq_checkpoint WHERE tree_size = $newest")" \
    "$(cat "$ANCH/auditq-$(printf '%020d' "$newest").checkpoint")" "newest published checkpoint = database note"
# The SQL encoder against F1's C encoder, byte for byte, on the tricky rows:
# the entry in an inclusion proof is the C encoder's.
for id in 00000000-0000-7000-8000-000000000001 00000000-0000-7000-8000-000000000002 \
          00000000-0000-7000-8000-000000000003; do
    V --event "$id" --out "$AQ_TMP/p.json" 2>/dev/null
    c_entry=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["entry"])' "$AQ_TMP/p.json")
    sql_entry=$(psql_q "SELECT translate(encode(auditq_event_entry(event_id, occurred_at, received_at, priority,
                            tenant_id, actor_id, actor_type, action, entity_type, entity_id, outcome, source_ip,
                            user_agent, request_id, session_id, changes, metadata, clock_flag), 'base64'), E'\n', '')
                          FROM audit_events WHERE event_id = '$id'")
    assert_eq "$sql_entry" "$c_entry" "entry of $id: SQL encoder = C encoder"
done
it_pass "untampered: verified, leaves = rows, SQL and C encoders agree"

# The witness got every checkpoint exactly once, the refused one on a retry.
assert_eq "$(psql_q "SELECT string_agg(tree_size::text, ' ' ORDER BY tree_size) FROM auditq_checkpoint")" \
    "$(grep -A1 -x 'auditq' "$AQ_TMP/witness.log" | grep -xE '[0-9]+' | sort -n | paste -sd' ')" \
    "checkpoints handed to anchor_command: each tree size once"
grep -q 'msg="checkpoint not handed to anchor_command; retried on the next ticks".*exited with status 3' "$AQ_TMP/w1.log" ||
    { echo "FAIL: the refused checkpoint is not logged"; exit 1; }
assert_eq 1 "$(curl -s "http://127.0.0.1:$HTTP_PORT/metrics" | awk '$1 == "auditq_seal_publish_failures_total" { print $2 }')" \
    "auditq_seal_publish_failures_total"
assert_eq 3003 "$(curl -s "http://127.0.0.1:$HTTP_PORT/metrics" | awk '$1 == "auditq_seal_events" { print $2 }')" \
    "auditq_seal_events"
it_pass "anchor_command: every checkpoint once, a refusal logged, counted and retried"

# Incremental: from the second checkpoint on, trusting its signed frontier.
size2=$(psql_q "SELECT tree_size FROM auditq_checkpoint ORDER BY tree_size LIMIT 1 OFFSET 1")
at2=$(psql_q "SELECT signed_at FROM auditq_checkpoint WHERE tree_size = $size2")
json=$(V --since "$at2" --json)
assert_eq "true $size2 0" "$("$PY" -c '
import json, sys
v = json.loads(sys.argv[1])
print(str(v["verified"]).lower(), v["from_leaf"], v["findings_total"])' "$json")" \
    "verify --since: verified from the starting checkpoint's size"
it_pass "verify --since starts from a signed checkpoint's frontier"

# Bounded runs (--until, and --since with --until): the tree from leaf 0
# (or the --since checkpoint's size) to the --until checkpoint's size, and
# the rows of exactly those leaves. The checkpoints published after --until
# are after the range, not a rollback.
ck_size() { psql_q "SELECT tree_size FROM auditq_checkpoint ORDER BY tree_size LIMIT 1 OFFSET $1"; }
ck_at() { psql_q "SELECT signed_at FROM auditq_checkpoint ORDER BY tree_size LIMIT 1 OFFSET $1"; }
events_in() { psql_q "SELECT coalesce(sum(n), 0) FROM auditq_seal_assignment WHERE kind = 'batch' AND first_leaf >= $1 AND first_leaf < $2"; }
summary() {
    "$PY" -c '
import json, sys
v = json.loads(sys.argv[1])
print(str(v["verified"]).lower(), v["from_leaf"], v["tree_size"], v["event_leaves"], v["rows_checked"],
      v["inserted_rows"], v["checkpoints_db"], v["checkpoints_published"], v["findings_total"])' "$1"
}
size1=$(ck_size 0); at1=$(ck_at 0); size3=$(ck_size 2); at3=$(ck_at 2)
[[ $(psql_q "SELECT count(*) FROM auditq_checkpoint") -ge 4 ]] || { echo "FAIL: fewer than 4 checkpoints"; exit 1; }
n=$(events_in 0 "$size1")
assert_eq "true 0 $size1 $n $n 0 1 1 0" "$(summary "$(V --until "$at1" --json)")" \
    "verify --until the first checkpoint: its leaves, its rows, its checkpoint only"
n=$(events_in "$size2" "$size3")
assert_eq "true $size2 $size3 $n $n 0 1 1 0" "$(summary "$(V --since "$at2" --until "$at3" --json)")" \
    "verify --since the second --until the third checkpoint: the leaves and rows between them"
it_pass "verify --until and --since/--until: exactly the leaves and rows of the range, later checkpoints not a rollback"

# A batch that commits late, behind batches with higher ids that are sealed
# meanwhile: the sequencer's watermark (worker/seal.c) must not pass its id
# while its transaction is open. Sealed all the same, verify passes.
psql_q "BEGIN;
        INSERT INTO audit_events (event_id, occurred_at, priority, action)
        SELECT gen_random_uuid(), now(), 'normal', 'slow' FROM generate_series(1, 5);
        SELECT pg_sleep($((3 * ${AQ_TIME_SCALE:-1})));
        COMMIT" >/dev/null &
slow=$!
for i in 1 2 3 4 5; do
    sleep 0.4
    psql_q "INSERT INTO audit_events (event_id, occurred_at, priority, action)
            SELECT gen_random_uuid(), now(), 'normal', 'fast' FROM generate_series(1, 2)" >/dev/null
done
wait_for $((10 * ${AQ_TIME_SCALE:-1})) bash -c "[ \"\$(psql -X -A -t -q -c \"SELECT count(*) FROM audit_events WHERE action = 'fast'\")\" = 10 ] && [ \"\$(psql -X -A -t -q -c \"SELECT count(*) FROM auditq_evidence_batch b JOIN auditq_seal_assignment a ON a.item_id = b.batch_id CROSS JOIN LATERAL unnest(b.event_ids) AS u(id) JOIN audit_events e ON e.event_id = u.id WHERE e.action = 'fast'\")\" = 10 ]" ||
    { echo "FAIL: the fast batches were not sealed while the slow one was open"; exit 1; }
wait "$slow"
wait_for $((30 * ${AQ_TIME_SCALE:-1})) sealed || { echo "FAIL: the batch that committed late was never sealed"; exit 1; }
assert_eq "true $(rows) $(rows) 0" "$("$PY" -c '
import json, sys
v = json.loads(sys.argv[1])
print(str(v["verified"]).lower(), v["event_leaves"], v["rows_checked"], v["findings_total"])' "$(V --json)")" \
    "verify after a batch committed behind sealed higher ids"
it_pass "a batch committed late behind sealed higher ids is sealed (the watermark waits for it)"

worker_stop w1

# A superuser's copy of everything, to undo each attack.
psql_q "CREATE TABLE pristine_rows AS SELECT * FROM audit_events;
        CREATE TABLE pristine_batch AS SELECT * FROM auditq_evidence_batch;
        CREATE TABLE pristine_assign AS SELECT * FROM auditq_seal_assignment;
        CREATE TABLE pristine_ck AS SELECT * FROM auditq_checkpoint" >/dev/null
cp -a "$ANCH" "$AQ_TMP/pristine_anchors"
restore() {
    attack "DELETE FROM audit_events; INSERT INTO audit_events SELECT * FROM pristine_rows;
            DELETE FROM auditq_evidence_batch; INSERT INTO auditq_evidence_batch SELECT * FROM pristine_batch;
            DELETE FROM auditq_seal_assignment; INSERT INTO auditq_seal_assignment SELECT * FROM pristine_assign;
            DELETE FROM auditq_checkpoint; INSERT INTO auditq_checkpoint SELECT * FROM pristine_ck"
    rm -rf "$ANCH" && cp -a "$AQ_TMP/pristine_anchors" "$ANCH"
    expect_verified "after undoing $1"
}
pick() { psql_q "SELECT event_id FROM audit_events WHERE request_id LIKE 'req-ok-%' ORDER BY event_id LIMIT 1 OFFSET $1"; }

# ---- one column of one row changed ----------------------------------------
victim=$(pick 100)
where=$(where_of "$victim")
attack "UPDATE audit_events SET actor_id = 'mallory' WHERE event_id = '$victim'"
expect_finding "modified row: event_id $victim ($where): the stored row does not hash to its sealed leaf"
restore "the modified row"
it_pass "one column of one row changed: named by event_id, leaf, batch and position"

# ---- a row changed after the --until checkpoint, then inside the range ----
victim=$(psql_q "SELECT u.id FROM auditq_evidence_batch b JOIN auditq_seal_assignment a ON a.item_id = b.batch_id
                  CROSS JOIN LATERAL unnest(b.event_ids) WITH ORDINALITY AS u(id, pos)
                  WHERE a.first_leaf + u.pos - 1 >= $size2 AND a.first_leaf + u.pos - 1 < $size3
                  ORDER BY u.id LIMIT 1")
where=$(where_of "$victim")
attack "UPDATE audit_events SET action = 'tampered' WHERE event_id = '$victim'"
assert_eq "true 0 $size2 $(events_in 0 "$size2") $(events_in 0 "$size2") 0 2 2 0" \
    "$(summary "$(V --until "$at2" --json)")" "verify --until before the changed row's leaf: verified"
rc=0; out=$(V --since "$at2" --until "$at3" 2>&1) || rc=$?
assert_eq 1 "$rc" "verify --since/--until over the changed row: exit status"
grep -qxF "modified row: event_id $victim ($where): the stored row does not hash to its sealed leaf" <<<"$out" || {
    echo "FAIL: the changed row inside --since/--until is not named:"; printf '%s\n' "$out"; exit 1; }
restore "the row changed inside the --until range"
it_pass "a row changed after --until is outside the run; inside --since/--until it is named"

# ---- one row deleted --------------------------------------------------------
victim=$(pick 200)
where=$(where_of "$victim")
attack "DELETE FROM audit_events WHERE event_id = '$victim'"
expect_finding "deleted row: event_id $victim ($where): its sealed evidence has no row in audit_events"
restore "the deleted row"
it_pass "one row deleted: named with its leaf, batch and position"

# ---- a forged row inserted --------------------------------------------------
forged=0190aaaa-bbbb-7ccc-8ddd-eeeeeeeeeeee
attack "INSERT INTO audit_events (event_id, occurred_at, received_at, priority, action)
        VALUES ('$forged', now(), '2026-01-02 03:04:05.678901+00', 'normal', 'forged.approval')"
expect_finding "inserted row: event_id $forged (received_at 2026-01-02T03:04:05.678901Z): no evidence covers it"
restore "the forged row"
it_pass "a forged row inserted: named by event_id"

# ---- a whole batch deleted with its evidence --------------------------------
read -r batch first n <<<"$(psql_q "SELECT b.batch_id, a.first_leaf, b.n FROM auditq_evidence_batch b
        JOIN auditq_seal_assignment a ON a.item_id = b.batch_id
        ORDER BY a.first_leaf LIMIT 1 OFFSET 3" | tr '|' ' ')"
next=$(psql_q "SELECT a.item_id FROM auditq_seal_assignment a WHERE a.first_leaf = $((first + n))")
attack "DELETE FROM audit_events e USING auditq_evidence_batch b
         WHERE b.batch_id = $batch AND e.event_id = ANY (b.event_ids);
        DELETE FROM auditq_seal_assignment WHERE item_id = $batch;
        DELETE FROM auditq_evidence_batch WHERE batch_id = $batch"
expect_finding "leaves $first..$((first + n - 1)) have no evidence: a batch and its assignment were deleted (the next sealed item, batch $next, starts at leaf $((first + n)))"
restore "the deleted batch"
it_pass "a whole batch deleted with its evidence: the leaf range named"

# ---- rollback: the newest batches, evidence and checkpoints deleted -------
cut=$(psql_q "SELECT tree_size FROM auditq_checkpoint ORDER BY tree_size LIMIT 1 OFFSET 1")
newest=$(psql_q "SELECT max(tree_size) FROM auditq_checkpoint")
attack "DELETE FROM audit_events e USING auditq_evidence_batch b, auditq_seal_assignment a
         WHERE a.item_id = b.batch_id AND a.first_leaf >= $cut AND e.event_id = ANY (b.event_ids);
        DELETE FROM auditq_evidence_batch b USING auditq_seal_assignment a
         WHERE a.item_id = b.batch_id AND a.first_leaf >= $cut;
        DELETE FROM auditq_seal_assignment WHERE first_leaf >= $cut;
        DELETE FROM auditq_checkpoint WHERE tree_size > $cut"
# The database alone is consistent now: only the published files see it.
mkdir -p "$AQ_TMP/empty-anchors"
"$CTL" verify --key "$KEY.pub" --anchors "$AQ_TMP/empty-anchors" >/dev/null
expect_finding "published checkpoint auditq-$(printf '%020d' "$newest").checkpoint (tree size $newest) is larger than the tree in PostgreSQL ($cut leaves): evidence and checkpoints were removed from the database (rolled back)"
restore "the rollback"
it_pass "rollback of the newest batches, evidence and checkpoints: caught by the published checkpoints"

# ---- a published checkpoint file altered ------------------------------------
f=$(ls "$ANCH" | grep -m 1 '\.checkpoint$')
# One digit of its "time" line changed: still well-formed, no longer signed.
"$PY" - "$ANCH/$f" <<'PYEOF'
import sys
lines = open(sys.argv[1]).read().split("\n")
i = next(k for k, l in enumerate(lines) if l.startswith("time "))
lines[i] = lines[i][:-1] + ("1" if lines[i][-1] != "1" else "2")
open(sys.argv[1], "w").write("\n".join(lines))
PYEOF
out=$(V 2>&1) && { echo "FAIL: an altered checkpoint file verified"; exit 1; } || true
grep -qF "published checkpoint $ANCH/$f: bad signature" <<<"$out" || {
    echo "FAIL: the altered file is not named as a bad signature:"; printf '%s\n' "$out"; exit 1; }
# The independent verifier agrees: the altered file fails, an untouched one passes.
rc=0; "$PY" "$AQ_ROOT/tools/auditq_verify.py" checkpoint "$ANCH/$f" --key "$KEY.pub" >/dev/null 2>&1 || rc=$?
assert_eq 1 "$rc" "auditq_verify.py checkpoint of the altered file"
"$PY" "$AQ_ROOT/tools/auditq_verify.py" checkpoint "$AQ_TMP/pristine_anchors/$f" --key "$KEY.pub" >/dev/null
restore "the altered checkpoint file"
it_pass "a published checkpoint file altered: bad signature, file named"

# ---- proofs: auditqctl and the independent Python verifier ----------------
# A leaf past 2048 of the tree of about 3,000: its path holds the subtree
# of leaves 0..2047, which the newest checkpoint's stored frontier gives
# (O(log n): no leaf of it is read); the rest of the path is under 1,024
# leaves (subtrees that small are read from their leaves).
victim=$(psql_q "SELECT u.id FROM auditq_evidence_batch b JOIN auditq_seal_assignment a ON a.item_id = b.batch_id
                  CROSS JOIN LATERAL unnest(b.event_ids) WITH ORDINALITY AS u(id, pos)
                  JOIN audit_events e ON e.event_id = u.id AND e.request_id LIKE 'req-ok-%'
                  WHERE a.first_leaf + u.pos - 1 >= 2048 ORDER BY u.id LIMIT 1")
msg=$(V --event "$victim" --out "$AQ_TMP/proof.json" 2>&1)
[[ $msg =~ \(read\ ([0-9]+)\ leaf\ hashes\ and\ ([0-9]+)\ subtree\ hashes\)$ ]] &&
    ((BASH_REMATCH[1] < 1024 && BASH_REMATCH[2] >= 1)) || {
    echo "FAIL: verify --event read the whole tree, or does not say what it read: $msg"; exit 1; }
"$CTL" verify --proof "$AQ_TMP/proof.json" --key "$KEY.pub" >/dev/null
"$PY" "$AQ_ROOT/tools/auditq_verify.py" proof "$AQ_TMP/proof.json" --key "$KEY.pub" >/dev/null
"$PY" - "$AQ_TMP/proof.json" "$AQ_TMP/bad-proof.json" <<'PYEOF'
import base64, json, sys
p = json.load(open(sys.argv[1]))
h = bytearray(base64.b64decode(p["path"][0]))
h[0] ^= 1
p["path"][0] = base64.b64encode(bytes(h)).decode()
json.dump(p, open(sys.argv[2], "w"))
PYEOF
rc=0; "$CTL" verify --proof "$AQ_TMP/bad-proof.json" --key "$KEY.pub" >/dev/null 2>&1 || rc=$?
assert_eq 1 "$rc" "auditqctl verify --proof of an altered proof"
rc=0; "$PY" "$AQ_ROOT/tools/auditq_verify.py" proof "$AQ_TMP/bad-proof.json" --key "$KEY.pub" >/dev/null 2>&1 || rc=$?
assert_eq 1 "$rc" "auditq_verify.py of an altered proof"
it_pass "inclusion proof: built from stored subtree hashes, verifies offline (auditqctl and auditq_verify.py); altered, refused by both"

# ---- the whole tree recomputed over an altered row, re-signed ------------
victim=$(pick 400)
attack "UPDATE audit_events SET outcome = 'failure' WHERE event_id = '$victim';
        DELETE FROM auditq_checkpoint; DELETE FROM auditq_seal_assignment; DELETE FROM auditq_evidence_batch"
# The attacker's evidence: the trigger's own function over the altered rows.
psql_q "INSERT INTO auditq_evidence_batch (n, event_ids, occurred_ats, leaves, min_occurred_at, max_occurred_at)
        SELECT count(*), array_agg(s.event_id ORDER BY s.event_id, s.occurred_at),
               array_agg(s.occurred_at ORDER BY s.event_id, s.occurred_at),
               string_agg(sha256('\x00'::bytea || auditq_event_entry(s.event_id, s.occurred_at, s.received_at,
                   s.priority, s.tenant_id, s.actor_id, s.actor_type, s.action, s.entity_type, s.entity_id,
                   s.outcome, s.source_ip, s.user_agent, s.request_id, s.session_id, s.changes, s.metadata,
                   s.clock_flag)), ''::bytea ORDER BY s.event_id, s.occurred_at),
               min(s.occurred_at), max(s.occurred_at)
          FROM audit_events s" >/dev/null
mkdir -p "$AQ_TMP/attacker-anchors"
worker_start w2 --set "seal_key_file=$AQ_TMP/attacker.key" --set "anchor_dir=$AQ_TMP/attacker-anchors" \
    --set checkpoint_interval_ms=200 --set threads=1
wait_for $((30 * ${AQ_TIME_SCALE:-1})) sealed || { echo "FAIL: the attacker's tree was not sealed"; exit 1; }
worker_stop w2
out=$(V 2>&1) && { echo "FAIL: a re-signed tree verified"; printf '%s\n' "$out"; exit 1; } || true
size=$(psql_q "SELECT max(tree_size) FROM auditq_checkpoint")
grep -qF "checkpoint $size in PostgreSQL: unknown key" <<<"$out" || grep -qF "checkpoint $size in PostgreSQL: key mismatch" <<<"$out" || {
    echo "FAIL: the re-signed checkpoint is not named:"; printf '%s\n' "$out"; exit 1; }
grep -q "^published checkpoint auditq-[0-9]*\.checkpoint (tree size [0-9]*, root .*) disagrees with the tree in PostgreSQL" <<<"$out" || {
    echo "FAIL: the published checkpoints do not disagree:"; printf '%s\n' "$out"; exit 1; }
# The independent verifier agrees: the attacker's newest checkpoint is not
# signed by the real key.
psql_q "SELECT note FROM auditq_checkpoint ORDER BY tree_size DESC LIMIT 1" >"$AQ_TMP/forged.checkpoint"
rc=0; "$PY" "$AQ_ROOT/tools/auditq_verify.py" checkpoint "$AQ_TMP/forged.checkpoint" --key "$KEY.pub" >/dev/null 2>&1 || rc=$?
assert_eq 1 "$rc" "auditq_verify.py checkpoint of the attacker's checkpoint"
# With the attacker's key the tree is consistent: only the signatures and
# the published checkpoints give it away.
"$CTL" verify --key "$AQ_TMP/attacker.key.pub" --anchors "$AQ_TMP/attacker-anchors" >/dev/null
it_pass "tree recomputed over an altered row and re-signed with another key: bad signatures, forked from the published"
