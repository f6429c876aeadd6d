#!/usr/bin/env bash
# Legal holds (issue 13 part 3): months -5, -4, -3 are past retain_months=3.
# Tenant acme has rows in month -4 only (actor a1: 2, actor a2: 1); other
# tenants fill all three. With hold 1 on (acme, actor a1) and hold 2 on
# (acme, actor nobody -- no rows) a retention run drops months -5 and -3
# (and the empty month -6) and keeps month -4, naming hold 1 (text and
# --json), with no integrity
# record for it; a second run changes nothing. After `hold release 1` the
# next run drops month -4. The worker's retention thread honours a hold
# too. The hold history is append-only: UPDATE, DELETE and TRUNCATE are
# refused with the exact message, and a release is a new row.
set -euo pipefail
source "$(dirname "$0")/lib_it.sh"
it_setup
CTL="$BIN/auditqctl"
export AUDITQ_HOT_MONTHS=3 AUDITQ_RETAIN_MONTHS=3
# The rows this test made (auditqctl's own self-audit events, written by
# the worker below, land in the current month: not counted).
mine() { rows "WHERE action NOT LIKE 'auditq.%'"; }

month_start() { psql_q "SELECT (date_trunc('month', now() AT TIME ZONE 'UTC') + interval '$1 months') AT TIME ZONE 'UTC'"; }
insert_rows() {  # COUNT MONTH_OFFSET TENANT ACTOR
    psql_q "INSERT INTO audit_events (event_id, occurred_at, received_at, priority, tenant_id, actor_id, action)
            SELECT gen_random_uuid(), '$(month_start "$2")'::timestamptz + i * interval '1 hour',
                   '$(month_start "$2")'::timestamptz + i * interval '1 hour', 'normal', '$3', '$4', 'm.$2'
              FROM generate_series(1, $1) AS i"
}
psql_q "DO \$\$ BEGIN FOR k IN 1 .. 6 LOOP
            PERFORM auditq_partition_month(date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - make_interval(months => k));
        END LOOP; END \$\$"
for k in 5 4 3 1; do insert_rows 10 "-$k" other u1; done
insert_rows 2 -4 acme a1
insert_rows 1 -4 acme a2
assert_eq 43 "$(mine)" "rows before retention"
M4=audit_events_$(month -4 YYYY_MM)
evidence() { psql_q "SELECT count(*) FROM auditq_evidence_retention"; }
assert_eq 0 "$(evidence)" "retention records before any run"

# ---- usage errors: no database needed -------------------------------------
rc=0; out=$("$CTL" hold add --tenant acme 2>&1) || rc=$?
assert_eq "2 auditqctl hold add: --reason TEXT is required: say why (e.g. a case number)" "$rc $out" "hold add without --reason"
rc=0; out=$("$CTL" hold add --reason x 2>&1) || rc=$?
assert_eq "2 auditqctl hold add: --tenant T is required: a hold covers one tenant's events" "$rc $out" "hold add without --tenant"

# ---- holds placed ----------------------------------------------------------
assert_eq "hold 1 added: tenant acme, actor a1; retention keeps every month holding these events until 'auditqctl hold release 1 --reason ...'" \
    "$("$CTL" hold add --tenant acme --actor a1 --reason "Case 2026-17: Doe v. Acme")" "hold add (text)"
assert_eq '{"hold_id": 2, "tenant": "acme", "actor": "nobody", "since": null, "until": null, "reason": "matter 9"}' \
    "$("$CTL" hold add --tenant acme --actor nobody --reason "matter 9" --json)" "hold add --json"
assert_eq "1 2" "$("$CTL" hold list --json | "$PY" -c 'import json,sys; print(*[h["hold_id"] for h in json.load(sys.stdin)["holds"]])')" \
    "active holds"

# ---- a run keeps the held month, drops its neighbours -----------------------
kept="kept $M4 (month $(month -4 YYYY-MM)): legal hold 1 (tenant acme, actor a1; reason: Case 2026-17: Doe v. Acme) covers rows of it; not archived or dropped until the hold is released"
out=$("$CTL" retention run)
assert_eq "dropped audit_events_$(month -6 YYYY_MM) (older than retain_months=3)
dropped audit_events_$(month -5 YYYY_MM) (older than retain_months=3)
$kept
dropped audit_events_$(month -3 YYYY_MM) (older than retain_months=3)
done: 0 archived, 0 merged, 0 exported, 3 dropped, 1 kept by legal holds" "$(sed 1d <<<"$out")" "retention run with hold 1"
assert_eq "$M4 $(for k in -2 -1 0 1 2 3; do printf 'audit_events_%s ' "$(month "$k" YYYY_MM)"; done | sed 's/ $//')" \
    "$(tables_in public)" "partitions after the run"
assert_eq 23 "$(mine)" "rows after the run: month -4 (13) + month -1 (10)"
assert_eq 13 "$(psql_q "SELECT count(*) FROM $M4")" "rows of the held month"
assert_eq 3 "$(evidence)" "retention records: one per dropped month (-6, -5, -3), none for the held one"
assert_eq 0 "$(psql_q "SELECT count(*) FROM auditq_evidence_retention WHERE table_name LIKE '%$M4'")" \
    "retention records of the held month"
"$CTL" retention run --json | "$PY" -c '
import json, sys
j = json.load(sys.stdin)
h = [a for a in j["actions"] if a["action"] == "hold"]
print(j["held"], len(j["actions"]), h[0]["table"], h[0]["hold_id"], h[0]["hold_scope"], h[0]["done"], j["summary"])' >"$AQ_TMP/json.out"
assert_eq "1 1 $M4 1 tenant acme, actor a1 True done: 0 archived, 0 merged, 0 exported, 0 dropped, 1 kept by legal holds" \
    "$(cat "$AQ_TMP/json.out")" "second run --json: only the hold, counted"

# ---- the worker's retention thread honours it ---------------------------------
worker_start w1 --set threads=1 --set retention_interval_s=3600
wait_for 30 grep -q 'msg="retention" detail="done' "$AQ_TMP/w1.log"
worker_stop w1
assert_eq 1 "$(grep -c "msg=\"retention\" detail=\"kept $M4 (month $(month -4 YYYY-MM)): legal hold 1 " "$AQ_TMP/w1.log")" \
    "worker log: the month kept by hold 1"
assert_eq 13 "$(psql_q "SELECT count(*) FROM $M4")" "rows of the held month after the worker's run"

# ---- release, then the next run drops it --------------------------------------
assert_eq "hold 1 released (tenant acme, actor a1); the next retention run applies the policy to the months it kept" \
    "$("$CTL" hold release 1 --reason "case closed 2026-12-01")" "hold release"
rc=0; out=$("$CTL" hold release 1 --reason again 2>&1) || rc=$?
assert_eq "1 auditqctl hold release: legal hold 1 is already released" "$rc $out" "second release"
rc=0; out=$("$CTL" hold release 99 --reason x 2>&1) || rc=$?
assert_eq "1 auditqctl hold release: no legal hold 99: 'auditqctl hold list' shows the active holds" "$rc $out" \
    "release of an unknown hold"
assert_eq "dropped $M4 (older than retain_months=3)
done: 0 archived, 0 merged, 0 exported, 1 dropped" "$("$CTL" retention run | sed 1d)" "retention run after the release"
assert_eq 10 "$(mine)" "rows after the release's run: month -1 only"
assert_eq 4 "$(evidence)" "retention records: the released month's drop is recorded now"
assert_eq "1 13" "$(psql_q "SELECT count(*), sum(row_count) FROM auditq_evidence_retention WHERE table_name LIKE '%$M4'" | tr '|' ' ')" \
    "the released month's retention record (its 13 rows)"

# ---- the history is append-only ----------------------------------------------
assert_eq "add add release" "$("$CTL" hold list --all --json | "$PY" -c 'import json,sys; print(*[h["event"] for h in json.load(sys.stdin)["history"]])')" \
    "hold history"
assert_eq "ERROR:  auditq_hold_history is append-only: UPDATE refused" \
    "$(refused "UPDATE auditq_hold_history SET reason = 'nothing to see'")" "UPDATE of the history"
assert_eq "ERROR:  auditq_hold_history is append-only: DELETE refused" \
    "$(refused "DELETE FROM auditq_hold_history WHERE event = 'release'")" "DELETE from the history"
assert_eq "ERROR:  auditq_hold_history is append-only: TRUNCATE refused" \
    "$(refused "TRUNCATE auditq_hold_history")" "TRUNCATE of the history"
assert_eq "2" "$("$CTL" hold list --json | "$PY" -c 'import json,sys; print(*[h["hold_id"] for h in json.load(sys.stdin)["holds"]])')" \
    "active holds after the release"
it_pass "it_72 legal hold: held month kept (13 rows, no retention record) while neighbours drop; released -> dropped; history append-only"
