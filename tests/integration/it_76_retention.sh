#!/usr/bin/env bash
# `auditqctl retention run` on 31 months of partitions (month -30 .. this
# month, month -k holding 10+k rows), hot_months=3, retain_months=24:
#   --dry-run: the exact plan, nothing changed (also as JSON);
#   schema mode: exact sets of months kept hot, moved to auditq_archive
#     (still append-only, still queryable) and dropped; a rerun does
#     nothing; late rows of an archived month are merged into it;
#   refusals: a second run while one holds the lock, a non-owner role;
#   csv mode (hot_months=2): every archived month and month -2 exported to
#     gzip CSV holding exactly the source rows, manifests right (row count,
#     sha256 = sha256sum, columns), tables dropped; an export whose DROP
#     failed is redone into the same files by the next run; late rows of an
#     exported month go to a .2 file and the first export stays untouched.
set -euo pipefail
source "$(dirname "$0")/lib_it.sh"
it_setup
CTL="$BIN/auditqctl"
ARCH="$AQ_TMP/archive"

month_start() { psql_q "SELECT (date_trunc('month', now() AT TIME ZONE 'UTC') + interval '$1 months') AT TIME ZONE 'UTC'"; }
names() {  # FROM TO -> audit_events_YYYY_MM for months FROM..TO, one line
    local k out=""
    for ((k = $1; k <= $2; k++)); do out+="${out:+ }audit_events_$(month "$k" YYYY_MM)"; done
    printf '%s\n' "$out"
}
# received_at as if each row had arrived in its own month (RECEIVED_OFFSET,
# default MONTH_OFFSET): retention also looks at received_at and keeps a
# month holding rows received within the period (it_73_clock_retention.sh).
insert_rows() {  # COUNT MONTH_OFFSET TAG [RECEIVED_OFFSET]
    psql_q "INSERT INTO audit_events (event_id, occurred_at, received_at, priority, action, metadata)
            SELECT gen_random_uuid(), '$(month_start "$2")'::timestamptz + i * interval '1 hour',
                   '$(month_start "${4:-$2}")'::timestamptz + i * interval '1 hour', 'normal', '$3',
                   jsonb_build_object('i', i, 'note', 'a \"quoted\", comma')
              FROM generate_series(1, $1) AS i"
}

# Months -30 .. -1 get partitions (migrate made this month and 3 ahead).
psql_q "DO \$\$ BEGIN FOR k IN 1 .. 30 LOOP
            PERFORM auditq_partition_month(date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - make_interval(months => k));
        END LOOP; END \$\$"
for ((k = 0; k <= 30; k++)); do insert_rows $((10 + k)) "-$k" "m$k"; done
total=$(rows)
assert_eq $((31 * 10 + 465)) "$total" "rows before retention"
assert_eq "$(names -30 3)" "$(tables_in public)" "partitions before retention"

policy="policy: audit_events keeps $(month -2 YYYY-MM) and later (hot_months=3); older months move to schema auditq_archive (archive_mode=schema); months before $(month -23 YYYY-MM) are dropped (retain_months=24)"

# --dry-run: the exact plan, nothing changed.
expected=$policy
for ((k = 30; k >= 24; k--)); do expected+=$'\n'"would drop audit_events_$(month "-$k" YYYY_MM) (older than retain_months=24)"; done
for ((k = 23; k >= 3; k--)); do
    n=audit_events_$(month "-$k" YYYY_MM)
    expected+=$'\n'"would archive $n -> auditq_archive.$n"
done
expected+=$'\n'"dry run: 28 action(s) planned; nothing changed"
assert_eq "$expected" "$("$CTL" retention run --dry-run)" "retention --dry-run output"
assert_eq "$(names -30 3)" "$(tables_in public)" "partitions after --dry-run"
assert_eq "" "$(psql_q "SELECT to_regnamespace('auditq_archive')")" "no archive schema after --dry-run"
"$CTL" retention run --dry-run --json | "$PY" -c '
import json, sys
j = json.load(sys.stdin)
a = j["actions"]
print(j["dry_run"], j["ok"], j["policy"]["hot_months"], j["policy"]["retain_months"], j["policy"]["archive_mode"],
      len(a), sum(x["action"] == "drop" for x in a), sum(x["action"] == "archive" for x in a),
      any(x["done"] for x in a), j["summary"])' >"$AQ_TMP/json.out"
assert_eq "True True 3 24 schema 28 7 21 False dry run: 28 action(s) planned; nothing changed" \
    "$(cat "$AQ_TMP/json.out")" "retention --dry-run --json"

# Schema mode, for real.
expected=$policy
for ((k = 30; k >= 24; k--)); do expected+=$'\n'"dropped audit_events_$(month "-$k" YYYY_MM) (older than retain_months=24)"; done
for ((k = 23; k >= 3; k--)); do
    n=audit_events_$(month "-$k" YYYY_MM)
    expected+=$'\n'"archived $n -> auditq_archive.$n"
done
expected+=$'\n'"done: 21 archived, 0 merged, 0 exported, 7 dropped"
assert_eq "$expected" "$("$CTL" retention run)" "retention run output"
assert_eq "$(names -2 3)" "$(tables_in public)" "months kept in audit_events"
assert_eq "$(names -23 -3)" "$(tables_in auditq_archive)" "months in auditq_archive"
assert_eq 0 "$(psql_q "SELECT count(*) FROM pg_class WHERE relname IN ($(names -30 -24 | sed "s/[^ ]*/'&'/g; s/ /, /g"))")" \
    "months -30..-24 dropped everywhere"
assert_eq $((10 + 11 + 12)) "$(rows)" "rows in audit_events (months 0, -1, -2)"
assert_eq $((10 + 11 + 12)) "$(psql_q "SELECT count(*) FROM audit_events WHERE occurred_at >= '$(month_start -2)' AND action LIKE 'm%'")" \
    "a bounded query on audit_events after the detaches"
assert_eq 15 "$(psql_q "SELECT count(*) FROM auditq_archive.audit_events_$(month -5 YYYY_MM)")" "rows of month -5 in the archive"
assert_eq $((21 * 10 + 273)) "$(psql_q "SELECT sum(n) FROM (SELECT count(*) AS n FROM auditq_archive.audit_events_$(month -3 YYYY_MM)
    $(for ((k = 4; k <= 23; k++)); do printf ' UNION ALL SELECT count(*) FROM auditq_archive.audit_events_%s' "$(month "-$k" YYYY_MM)"; done)) s")" \
    "all archived rows (months -3..-23)"
old=auditq_archive.audit_events_$(month -10 YYYY_MM)
assert_eq "ERROR:  audit_events is append-only: UPDATE refused" "$(refused "UPDATE $old SET action = 'x'")" "UPDATE of an archived month"
assert_eq "ERROR:  audit_events is append-only: DELETE refused" "$(refused "DELETE FROM $old")" "DELETE of an archived month"
assert_eq "ERROR:  audit_events is append-only: TRUNCATE refused" "$(refused "TRUNCATE $old")" "TRUNCATE of an archived month"
assert_eq "$policy
nothing to do" "$("$CTL" retention run)" "second run"

# Late rows of an archived month: DEFAULT (retention warns, never touches
# them) -> partitions ensure -> a hot table of that month -> merged.
insert_rows 4 -5 late -3
"$CTL" retention run --dry-run >/dev/null 2>"$AQ_TMP/warn"
assert_eq "auditqctl retention: warning: the DEFAULT partition audit_events_default holds 4 rows; retention never touches them: run 'auditqctl partitions ensure' to move them into monthly partitions" \
    "$(cat "$AQ_TMP/warn")" "retention warns about DEFAULT rows"
"$CTL" partitions ensure >/dev/null
m5=audit_events_$(month -5 YYYY_MM)
assert_eq "$policy
merged 4 rows of $m5 into auditq_archive.$m5
done: 0 archived, 1 merged, 0 exported, 0 dropped" "$("$CTL" retention run)" "merge of late rows"
assert_eq 19 "$(psql_q "SELECT count(*) FROM auditq_archive.$m5")" "month -5 in the archive with its late rows"
assert_eq "" "$(psql_q "SELECT to_regclass('public.$m5')")" "hot table of the late rows gone"

# A run while another holds the lock: refused at once, nothing done.
harness_spawn locker "$PG_BINDIR/psql" -X -q -c "SELECT pg_advisory_lock(7021519074117118318), pg_sleep(60)"
locker=$HARNESS_LAST_PID
wait_for 10 bash -c "[ -n \"\$(psql -X -A -t -c \"SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = 1952541038 AND granted\")\" ]"
lpid=$(psql_q "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = 1952541038 AND granted")
rc=0
"$CTL" retention run >"$AQ_TMP/busy.out" 2>"$AQ_TMP/busy.err" || rc=$?
assert_eq 1 "$rc" "exit status of a run while another holds the lock"
assert_eq "auditqctl retention: another retention run holds the lock (PostgreSQL backend pid $lpid, application_name 'psql'); nothing done: run again when it has finished" \
    "$(cat "$AQ_TMP/busy.err")" "busy message"
assert_eq "" "$(cat "$AQ_TMP/busy.out")" "nothing printed on stdout when busy"
psql_q "SELECT pg_terminate_backend($lpid)" >/dev/null
wait "$locker" 2>/dev/null || true

# A role that does not own audit_events is refused before anything.
psql_q "CREATE ROLE aq_writer LOGIN; GRANT USAGE ON SCHEMA public TO aq_writer; GRANT INSERT, SELECT ON audit_events TO aq_writer"
rc=0
"$CTL" --set "database_url=postgresql://aq_writer@127.0.0.1:$PG_PORT/auditq" retention run >/dev/null 2>"$AQ_TMP/priv.err" || rc=$?
assert_eq 1 "$rc" "exit status for a non-owner"
assert_eq "auditqctl retention: retention changes audit_events, which only its owner may do: connected as role aq_writer, owner is postgres; use the database_url of the role that ran 'auditqctl migrate'" \
    "$(cat "$AQ_TMP/priv.err")" "non-owner message"

# ---- csv mode, hot_months=2: the 21 archived months and month -2 go to files.
CSV=(--set archive_mode=csv --set "archive_dir=$ARCH" --set hot_months=2)
# The source rows of each month, as the export must write them (sorted, so
# the comparison does not depend on scan order).
src_sum() {  # QUALIFIED_TABLE
    psql_q "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; COPY (SELECT * FROM $1) TO STDOUT WITH (FORMAT csv, HEADER true)" |
        LC_ALL=C sort | md5sum | cut -d' ' -f1
}
declare -A SRC
for ((k = 3; k <= 23; k++)); do n=audit_events_$(month "-$k" YYYY_MM); SRC[$n]=$(src_sum "auditq_archive.$n"); done
n2=audit_events_$(month -2 YYYY_MM)
SRC[$n2]=$(src_sum "$n2")

# An export whose DROP cannot get its lock (a reader holds the table) fails
# after writing its files; the next run redoes it into the same files. The
# oldest month, so it is the first export and the run stops there.
m3=audit_events_$(month -23 YYYY_MM)
harness_spawn reader "$PG_BINDIR/psql" -X -q -c "BEGIN; SELECT count(*) FROM auditq_archive.$m3; SELECT pg_sleep(60); COMMIT;"
reader=$HARNESS_LAST_PID
wait_for 10 bash -c "[ -n \"\$(psql -X -A -t -c \"SELECT pid FROM pg_locks WHERE relation = 'auditq_archive.$m3'::regclass AND granted AND pid <> pg_backend_pid()\")\" ]"
rpid=$(psql_q "SELECT pid FROM pg_locks WHERE relation = 'auditq_archive.$m3'::regclass AND granted AND pid <> pg_backend_pid()")
rc=0
"$CTL" "${CSV[@]}" retention run >"$AQ_TMP/csv1.out" 2>"$AQ_TMP/csv1.err" || rc=$?
assert_eq 1 "$rc" "exit status when the DROP after an export times out"
assert_eq "exported auditq_archive.$m3: 33 rows to $ARCH/$m3.csv.gz (sha256 $(sha256sum "$ARCH/$m3.csv.gz" | cut -d' ' -f1))" \
    "$(tail -n 1 "$AQ_TMP/csv1.out")" "last line before the failed DROP"
assert_eq "auditqctl retention: exporting auditq_archive.$m3: canceling statement due to lock timeout (SQLSTATE 55P03); a long-running query or transaction holds a conflicting lock on audit_events: nothing was changed by this step, run again later" \
    "$(cat "$AQ_TMP/csv1.err")" "error of the failed DROP"
assert_eq "$m3" "$(psql_q "SELECT relname FROM pg_class WHERE oid = to_regclass('auditq_archive.$m3')")" "table kept when its DROP failed"
first_oid=$(psql_q "SELECT 'auditq_archive.$m3'::regclass::oid")
psql_q "SELECT pg_terminate_backend($rpid)" >/dev/null
wait "$reader" 2>/dev/null || true

out=$("$CTL" "${CSV[@]}" retention run)
expected="policy: audit_events keeps $(month -1 YYYY-MM) and later (hot_months=2); older months are exported to $ARCH (archive_mode=csv); months before $(month -23 YYYY-MM) are dropped (retain_months=24)"
for ((k = 23; k >= 2; k--)); do
    n=audit_events_$(month "-$k" YYYY_MM)
    ((k == 2)) && expected+=$'\n'"archived $n -> auditq_archive.$n"
    expected+=$'\n'"exported auditq_archive.$n: $((10 + k + (k == 5 ? 4 : 0))) rows to $ARCH/$n.csv.gz (sha256 $(sha256sum "$ARCH/$n.csv.gz" | cut -d' ' -f1))"
    expected+=$'\n'"dropped auditq_archive.$n (exported to $ARCH/$n.csv.gz)"
done
expected+=$'\n'"done: 1 archived, 0 merged, 22 exported, 22 dropped"
assert_eq "$expected" "$out" "csv retention output (month -23 redone into the same files)"
assert_eq "$(names -1 3)" "$(tables_in public)" "months kept in audit_events (csv)"
assert_eq "" "$(tables_in auditq_archive)" "archive schema empty after the exports"
assert_eq 44 "$(find "$ARCH" -type f | wc -l)" "22 data files + 22 manifests, no temporary file"
for ((k = 2; k <= 23; k++)); do
    n=audit_events_$(month "-$k" YYYY_MM)
    assert_eq "${SRC[$n]}" "$(gunzip -c "$ARCH/$n.csv.gz" | LC_ALL=C sort | md5sum | cut -d' ' -f1)" "rows of $n in its .csv.gz"
    assert_eq $((10 + k + (k == 5 ? 4 : 0) + 1)) "$(gunzip -c "$ARCH/$n.csv.gz" | wc -l)" "lines of $n.csv.gz (header + rows)"
done
"$PY" - "$ARCH/$m3" "$(sha256sum "$ARCH/$m3.csv.gz" | cut -d' ' -f1)" "$(wc -c <"$ARCH/$m3.csv.gz")" \
    "$first_oid" "$("$CTL" --version | awk '{ print $2 }')" >"$AQ_TMP/manifest.out" <<'PYEOF'
import json, re, sys
base, sha, size, oid, version = sys.argv[1:]
m = json.load(open(base + ".manifest.json"))
print(m["format"], m["table"], m["source"], m["database"], m["table_oid"] == int(oid), m["month"],
      m["range"]["from"], m["range"]["to"], m["row_count"], m["file"], m["file_bytes"] == int(size),
      m["sha256"] == sha, m["compression"], m["csv"]["header"], m["auditq_version"] == version,
      bool(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", m["exported_at"])),
      ",".join(c["name"] for c in m["columns"]), m["columns"][1]["type"], m["columns"][16]["type"])
PYEOF
assert_eq "auditq-partition-export/1 $m3 auditq_archive.$m3 auditq True $(month -23 YYYY-MM) $(month -23 YYYY-MM)-01T00:00:00Z $(month -22 YYYY-MM)-01T00:00:00Z 33 $m3.csv.gz True True gzip True True True event_id,occurred_at,received_at,priority,tenant_id,actor_id,actor_type,action,entity_type,entity_id,outcome,source_ip,user_agent,request_id,session_id,changes,metadata,clock_flag timestamp with time zone jsonb" \
    "$(cat "$AQ_TMP/manifest.out")" "manifest of month -23"

# Late rows of an exported month: a new export file .2; the first untouched.
m10=audit_events_$(month -10 YYYY_MM)
sum10=$(sha256sum "$ARCH/$m10.csv.gz")
insert_rows 3 -10 late2 -3
"$CTL" partitions ensure >/dev/null
out=$("$CTL" "${CSV[@]}" retention run | sed 1d)
assert_eq "archived $m10 -> auditq_archive.$m10
exported auditq_archive.$m10: 3 rows to $ARCH/$m10.2.csv.gz (sha256 $(sha256sum "$ARCH/$m10.2.csv.gz" | cut -d' ' -f1))
dropped auditq_archive.$m10 (exported to $ARCH/$m10.2.csv.gz)
done: 1 archived, 0 merged, 1 exported, 1 dropped" "$out" "export of late rows to a second file"
assert_eq "$sum10" "$(sha256sum "$ARCH/$m10.csv.gz")" "first export of month -10 untouched"
assert_eq 3 "$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["row_count"])' "$ARCH/$m10.2.manifest.json")" \
    "row_count of the second export"
assert_eq $((10 + 11)) "$(rows)" "rows left in audit_events (months 0, -1)"
it_pass "retention: dry-run plan exact; schema mode keeps 3 months hot, archives 21 (append-only), drops 7; rerun no-op; late rows merged; busy and non-owner refused; csv exports 22 months byte-checked with manifests, failed DROP redone, late rows to .2"
