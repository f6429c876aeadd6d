#!/usr/bin/env bash
# Retention keeps the evidence (issue 12): months -5 .. 0 hold sealed rows;
# `auditqctl retention run` with archive_mode=csv, hot_months=2,
# retain_months=4 drops months -5 and -4 and exports months -3 and -2 to
# gzip CSV (then drops them). Each removal records a retention record
# (month, rows, SHA-256 of their leaves) in its own transaction, which the
# sequencer seals as a type 0x02 leaf. Then:
#   - verify passes: the removed rows are "archived, verified by hash"
#     (exactly as many as were removed), 4 retention leaves;
#   - verify --archive checks each export against the evidence and its
#     sealed retention record;
#   - an export with one changed byte of CSV (re-gzipped) is caught and the
#     altered row named; an export with one changed byte of gzip is caught
#     as corrupt;
#   - a row deleted (by a superuser) from a month retention already
#     removed rows of is not hidden by the retention record: the month's
#     count no longer matches.
set -euo pipefail
source "$(dirname "$0")/lib_it.sh"
it_setup
CTL="$BIN/auditqctl"
KEY=$AQ_TMP/seal.key
ANCH=$AQ_TMP/anchors
ARCH=$AQ_TMP/archive
mkdir -p "$ANCH" "$ARCH"
"$CTL" keygen "$KEY" >/dev/null
SEAL=(--set "seal_key_file=$KEY" --set "anchor_dir=$ANCH" --set checkpoint_interval_ms=200)
V() { "$CTL" verify --key "$KEY.pub" --anchors "$ANCH" "$@"; }
unsealed_items() {
    psql_q "SELECT (SELECT count(*) FROM auditq_evidence_batch b WHERE NOT EXISTS (SELECT 1 FROM auditq_seal_assignment a WHERE a.item_id = b.batch_id))
                 + (SELECT count(*) FROM auditq_evidence_retention r WHERE NOT EXISTS (SELECT 1 FROM auditq_seal_assignment a WHERE a.item_id = r.record_id))"
}
seal_all() {
    worker_start "$1" "${SEAL[@]}" --set threads=1
    wait_for $((30 * ${AQ_TIME_SCALE:-1})) bash -c "[ \"\$(psql -X -A -t -q -c \"SELECT (SELECT count(*) FROM auditq_evidence_batch b WHERE NOT EXISTS (SELECT 1 FROM auditq_seal_assignment a WHERE a.item_id = b.batch_id)) + (SELECT count(*) FROM auditq_evidence_retention r WHERE NOT EXISTS (SELECT 1 FROM auditq_seal_assignment a WHERE a.item_id = r.record_id))\")\" = 0 ]" ||
        { echo "FAIL: $(unsealed_items) items not sealed"; exit 1; }
    worker_stop "$1"
}
month_start() { psql_q "SELECT (date_trunc('month', now() AT TIME ZONE 'UTC') + interval '$1 months') AT TIME ZONE 'UTC'"; }

psql_q "DO \$\$ BEGIN FOR k IN 1 .. 5 LOOP
            PERFORM auditq_partition_month(date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - make_interval(months => k));
        END LOOP; END \$\$" >/dev/null
# Month -k: 100 + k rows, received in their own month, in two statements
# (two evidence batches); this month: 50 rows.
for k in 5 4 3 2 1; do
    for half in a b; do
        n=$(((100 + k) / 2))
        [[ $half == a ]] && n=$((n + (100 + k) % 2))
        psql_q "INSERT INTO audit_events (event_id, occurred_at, received_at, priority, action, actor_id, metadata)
                SELECT gen_random_uuid(), '$(month_start "-$k")'::timestamptz + i * interval '1 hour',
                       '$(month_start "-$k")'::timestamptz + i * interval '1 hour' + interval '1 second',
                       'normal', 'm$k$half', 'actor \"$k\", ü', jsonb_build_object('i', i, 'f', 1.50)
                  FROM generate_series(1, $n) AS i"
    done
done
psql_q "INSERT INTO audit_events (event_id, occurred_at, priority, action)
        SELECT gen_random_uuid(), now(), 'low', 'now' FROM generate_series(1, 50)"
total=$(rows)
assert_eq $((105 + 104 + 103 + 102 + 101 + 50)) "$total" "rows before retention"
seal_all s1
V >/dev/null
it_pass "sealed: $total rows in 6 months"

"$CTL" --set archive_mode=csv --set "archive_dir=$ARCH" --set hot_months=2 --set retain_months=4 \
    retention run >"$AQ_TMP/retention.out"
removed=$((105 + 104 + 103 + 102))
assert_eq $((total - removed)) "$(rows)" "rows after retention"
assert_eq 4 "$(psql_q "SELECT count(*) FROM auditq_evidence_retention")" "one retention record per month removed"
assert_eq "$removed" "$(psql_q "SELECT sum(row_count) FROM auditq_evidence_retention")" "rows the records cover"
seal_all s2
out=$(V --json)
assert_eq "true $removed 4 0" "$("$PY" -c '
import json, sys
v = json.loads(sys.argv[1])
print(str(v["verified"]).lower(), v["archived_rows"], v["retention_leaves"], v["findings_total"])' "$out")" \
    "verify after retention: removed rows archived, verified by hash; 4 retention leaves"
V | grep -q "; $removed archived rows verified by hash;" || { echo "FAIL: the summary does not say archived, verified by hash"; V; exit 1; }
it_pass "retention: months dropped and exported, verify passes with $removed rows archived, verified by hash"

# ---- the CSV exports against the tree -----------------------------------
m3=audit_events_$(month -3 YYYY_MM)
m2=audit_events_$(month -2 YYYY_MM)
for m in "$m3" "$m2"; do
    out=$(V --archive "$ARCH/$m.csv.gz")
    grep -q "^archive $ARCH/$m.csv.gz: 10[23] rows, verified by hash against sealed retention record [0-9]*$" <<<"$out" ||
        { echo "FAIL: archive $m not verified:"; printf '%s\n' "$out"; exit 1; }
done
it_pass "verify --archive: each CSV export matches its sealed retention record"

# One byte of CSV changed (an 'm' of an action becomes 'n'), re-gzipped.
gzip -dc "$ARCH/$m3.csv.gz" >"$AQ_TMP/m3.csv"
line=$(grep -m 1 -n ',m3a,' "$AQ_TMP/m3.csv" | cut -d: -f1)
victim=$(sed -n "${line}p" "$AQ_TMP/m3.csv" | cut -d, -f1)
sed -i "${line}s/,m3a,/,n3a,/" "$AQ_TMP/m3.csv"
gzip -c "$AQ_TMP/m3.csv" >"$AQ_TMP/m3-altered.csv.gz"
rc=0; out=$(V --archive "$AQ_TMP/m3-altered.csv.gz" 2>&1) || rc=$?
assert_eq 1 "$rc" "verify --archive of an altered export: exit status"
grep -qxF "archive $AQ_TMP/m3-altered.csv.gz: row event_id $victim differs from its sealed leaf (the file was altered)" <<<"$out" ||
    { echo "FAIL: the altered row is not named:"; printf '%s\n' "$out"; exit 1; }
# One byte of the gzip file itself changed.
cp "$ARCH/$m2.csv.gz" "$AQ_TMP/m2-flipped.csv.gz"
"$PY" -c '
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
b[len(b) // 2] ^= 0x01
open(p, "wb").write(b)' "$AQ_TMP/m2-flipped.csv.gz"
rc=0; out=$(V --archive "$AQ_TMP/m2-flipped.csv.gz" 2>&1) || rc=$?
assert_eq 1 "$rc" "verify --archive of a gzip with one flipped byte: exit status"
grep -q "^archive $AQ_TMP/m2-flipped.csv.gz" <<<"$out" || { echo "FAIL: the flipped archive is not named:"; printf '%s\n' "$out"; exit 1; }
it_pass "one changed byte in an export (CSV or gzip) is caught; the altered row named"

# ---- a row deleted in a month retention already covers -------------------
# Late rows of month -2 (now archived) arrive in DEFAULT; one of them is
# then deleted by a superuser: the month's count tells.
psql_q "INSERT INTO audit_events (event_id, occurred_at, received_at, priority, action)
        SELECT gen_random_uuid(), '$(month_start -2)'::timestamptz + interval '2 days', now(), 'normal', 'late'
          FROM generate_series(1, 3)" >/dev/null
seal_all s3
V >/dev/null
late=$(psql_q "SELECT event_id FROM audit_events WHERE action = 'late' ORDER BY event_id LIMIT 1")
psql_q "CREATE TABLE late_copy AS SELECT * FROM audit_events WHERE event_id = '$late'" >/dev/null
psql_q "SET session_replication_role = replica; DELETE FROM audit_events WHERE event_id = '$late'" >/dev/null
rc=0; out=$(V 2>&1) || rc=$?
assert_eq 1 "$rc" "verify after a late row of a retained month was deleted: exit status"
grep -qxF "month $(month -2 YYYY-MM): retention removed 102 rows, but 103 sealed leaves of that month have no row: 1 rows deleted outside retention" <<<"$out" ||
    { echo "FAIL: the deletion is not reported:"; printf '%s\n' "$out"; exit 1; }
it_pass "a row deleted from a retained month is not hidden by the retention record"
# Undone: the deleted row back as it was.
psql_q "SET session_replication_role = replica; INSERT INTO audit_events SELECT * FROM late_copy" >/dev/null
V >/dev/null || { echo "FAIL: verify after the deleted row was put back"; V; exit 1; }

# ---- several retention records for one month, each compared in full ------
# Late rows of month -5 (dropped above; received in it, so retention does
# not keep them for hot_months) land in DEFAULT;
# `partitions ensure` gives the month a table again and the next retention
# run drops them: a second, then a third record for month -5. verify
# compares each record with the sealed leaves of its own rows (the month's
# batches committed between its previous record and it), not just the
# month's count: a late row altered before its removal is named.
late_rows() {  # TAG N: N late rows of month -5, sealed
    psql_q "INSERT INTO audit_events (event_id, occurred_at, received_at, priority, action)
            SELECT gen_random_uuid(), '$(month_start -5)'::timestamptz + interval '3 days' + i * interval '1 hour',
                   '$(month_start -5)'::timestamptz + interval '4 days', 'normal', '$1'
              FROM generate_series(1, $2) AS i" >/dev/null
    seal_all "s-$1"
}
retain_again() {
    "$CTL" partitions ensure >/dev/null
    rm -f "$ARCH/$m2.csv.gz"
    "$CTL" --set archive_mode=csv --set "archive_dir=$ARCH" --set hot_months=2 --set retain_months=4 \
        retention run >/dev/null
    seal_all "s-$1"
}
late_rows late5a 2
retain_again r3a
assert_eq 2 "$(psql_q "SELECT count(*) FROM auditq_evidence_retention WHERE month_from = '$(month_start -5)'")" \
    "retention records of month -5"
out=$(V --json)
assert_eq "true $(psql_q "SELECT sum(row_count) FROM auditq_evidence_retention") 0" "$("$PY" -c '
import json, sys
v = json.loads(sys.argv[1])
print(str(v["verified"]).lower(), v["archived_rows"], v["findings_total"])' "$out")" \
    "verify with two records for month -5: every archived row verified by hash"
late_rows late5b 3
# Sealed as they are now; their sealed leaves' hash, before one is altered.
sealed_hash=$(psql_q "SELECT encode(sha256(string_agg(substring(b.leaves from ((u.pos - 1) * 32 + 1)::int for 32), ''::bytea
                                                      ORDER BY u.id, u.occ)), 'hex')
                        FROM auditq_evidence_batch b
                       CROSS JOIN LATERAL unnest(b.event_ids, b.occurred_ats) WITH ORDINALITY AS u(id, occ, pos)
                       WHERE u.id IN (SELECT event_id FROM audit_events WHERE action = 'late5b')")
psql_q "SET session_replication_role = replica;
        UPDATE audit_events SET actor_id = 'mallory' WHERE event_id =
            (SELECT event_id FROM audit_events WHERE action = 'late5b' ORDER BY event_id LIMIT 1)" >/dev/null
retain_again r3b
read -r rec rec_hash <<<"$(psql_q "SELECT record_id, encode(leaves_hash, 'hex') FROM auditq_evidence_retention
                                    WHERE month_from = '$(month_start -5)' ORDER BY created_at DESC LIMIT 1" | tr '|' ' ')"
rc=0; out=$(V 2>&1) || rc=$?
assert_eq 1 "$rc" "verify after a late row was altered before its removal: exit status"
grep -qxF "month $(month -5 YYYY-MM): the 3 rows retention removed (record $rec) hash to $rec_hash, their sealed leaves to $sealed_hash: a row was altered before it was removed" <<<"$out" ||
    { echo "FAIL: the altered late row is not reported by its record:"; printf '%s\n' "$out"; exit 1; }
it_pass "three retention records for one month: each compared with its own rows' sealed leaves; an altered one named"
