#!/usr/bin/env bash
# Rows whose month has no partition land in the DEFAULT partition;
# `auditqctl partitions ensure` creates their months and moves them there:
# exact counts, every event once, DEFAULT empty, append-only still enforced
# (on the new months and on DEFAULT, whose trigger was off only inside the
# move's transaction). --dry-run changes nothing; a rerun does nothing; the
# worker's auditq_ensure_partitions (called by the low-privilege writer role)
# moves the rows of its own months; the writer cannot use the owner-only
# move function. While a month is being attached, inserts into other months
# go on and inserts into DEFAULT wait (the documented locks).
set -euo pipefail
source "$(dirname "$0")/lib_it.sh"
it_setup
CTL="$BIN/auditqctl"

# month N months from now (UTC) as YYYY_MM / YYYY-MM
in_table() { psql_q "SELECT count(*) FROM audit_events WHERE tableoid = '$1'::regclass"; }
insert_rows() {  # COUNT START_TIMESTAMP TAG
    psql_q "INSERT INTO audit_events (event_id, occurred_at, priority, action, actor_id, metadata)
            SELECT gen_random_uuid(), '$2'::timestamptz + i * interval '1 minute', 'normal', '$3', 'u' || i,
                   jsonb_build_object('i', i)
              FROM generate_series(1, $1) AS i"
}

# 1234 rows of 2020-01 and 56 of 2019-12 (no partitions: DEFAULT), 100 of this month.
insert_rows 1234 '2020-01-01 00:00:00+00' backfill
insert_rows 56 '2019-12-31 22:00:00+00' backfill
insert_rows 100 "$(psql_q "SELECT date_trunc('month', now())")" live
assert_eq 1290 "$(in_table audit_events_default)" "rows in DEFAULT before ensure"
assert_eq 1390 "$(rows)" "rows in audit_events before ensure"
before=$(psql_q "SELECT md5(string_agg(event_id::text || '@' || occurred_at::text || '@' || action, ',' ORDER BY event_id)) FROM audit_events")

# list: DEFAULT counted exactly, with a warning naming its months.
"$CTL" partitions list >"$AQ_TMP/list.out" 2>"$AQ_TMP/list.err"
assert_eq "auditqctl partitions: warning: the DEFAULT partition holds 1290 rows (months 2019-12, 2020-01); run 'auditqctl partitions ensure' to move them into monthly partitions" \
    "$(cat "$AQ_TMP/list.err")" "list warning"
assert_eq "audit_events_default - default 1290" \
    "$(awk '$1 == "audit_events_default" { print $1, $2, $3, $4 }' "$AQ_TMP/list.out")" "DEFAULT line of list"

# --dry-run: the exact plan, and nothing changes.
expected="would create audit_events_2019_12
would move 56 rows from DEFAULT into audit_events_2019_12
would create audit_events_2020_01
would move 1234 rows from DEFAULT into audit_events_2020_01
dry run: 2 partition(s) would be created, 1290 row(s) would be moved out of DEFAULT; nothing changed"
assert_eq "$expected" "$("$CTL" partitions ensure --dry-run)" "ensure --dry-run output"
assert_eq 1290 "$(in_table audit_events_default)" "rows in DEFAULT after --dry-run"
assert_eq "" "$(psql_q "SELECT to_regclass('audit_events_2020_01')")" "no table made by --dry-run"

# ensure: moves exactly those rows into their new months.
expected="created audit_events_2019_12
moved 56 rows from DEFAULT into audit_events_2019_12
created audit_events_2020_01
moved 1234 rows from DEFAULT into audit_events_2020_01
ensure: 2 partition(s) created, 1290 row(s) moved out of DEFAULT"
assert_eq "$expected" "$("$CTL" partitions ensure)" "ensure output"
assert_eq 0 "$(in_table audit_events_default)" "rows in DEFAULT after ensure"
assert_eq 1234 "$(in_table audit_events_2020_01)" "rows in audit_events_2020_01"
assert_eq 56 "$(in_table audit_events_2019_12)" "rows in audit_events_2019_12"
assert_eq 100 "$(in_table "audit_events_$(month 0 YYYY_MM)")" "rows of this month untouched"
assert_eq 1390 "$(rows)" "total rows after ensure"
assert_eq 1390 "$(psql_q "SELECT count(DISTINCT event_id) FROM audit_events")" "every event_id once"
assert_eq "$before" "$(psql_q "SELECT md5(string_agg(event_id::text || '@' || occurred_at::text || '@' || action, ',' ORDER BY event_id)) FROM audit_events")" \
    "same events (id, time, action) before and after"
assert_eq "FOR VALUES FROM ('2020-01-01 00:00:00+00') TO ('2020-02-01 00:00:00+00')" \
    "$(psql_q "SET TimeZone = 'UTC'; SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE relname = 'audit_events_2020_01'")" \
    "bound of the new partition"
assert_eq 1234 "$(psql_q "SELECT count(*) FROM audit_events WHERE occurred_at >= '2020-01-01Z' AND occurred_at < '2020-02-01Z' AND actor_id LIKE 'u%'")" \
    "rows of 2020-01 found through audit_events (indexes attached)"

# Append-only everywhere: the new month (row and TRUNCATE triggers) and
# DEFAULT (its trigger back on after the move).
assert_eq "ERROR:  audit_events is append-only: UPDATE refused" \
    "$(refused "UPDATE audit_events_2020_01 SET action = 'x'")" "UPDATE of the new partition"
assert_eq "ERROR:  audit_events is append-only: DELETE refused" \
    "$(refused "DELETE FROM audit_events WHERE occurred_at < '2020-02-01Z'")" "DELETE through audit_events"
assert_eq "ERROR:  audit_events is append-only: TRUNCATE refused" \
    "$(refused "TRUNCATE audit_events_2020_01")" "TRUNCATE of the new partition"
assert_eq "O" "$(psql_q "SELECT tgenabled FROM pg_trigger WHERE tgrelid = 'audit_events_default'::regclass AND tgname = 'audit_events_append_only'")" \
    "DEFAULT's append-only trigger enabled again"
insert_rows 1 '2015-06-01 00:00:00+00' stray
assert_eq "ERROR:  audit_events is append-only: DELETE refused" \
    "$(refused "DELETE FROM audit_events_default")" "DELETE in DEFAULT"

# list --exact: the new month with its exact count; JSON agrees.
"$CTL" partitions list --exact >"$AQ_TMP/list.out" 2>/dev/null
assert_eq "audit_events_2020_01 2020-01 hot 1234" \
    "$(awk '$1 == "audit_events_2020_01" { print $1, $2, $3, $4 }' "$AQ_TMP/list.out")" "list --exact line"
assert_eq "rows: exact counts" "$(tail -n 1 "$AQ_TMP/list.out")" "list --exact footer"
"$CTL" partitions list --exact --json 2>/dev/null | "$PY" -c '
import json, sys
j = json.load(sys.stdin)
p = {x["name"]: x for x in j["partitions"]}
m = p["audit_events_2020_01"]
print(j["rows_exact"], m["location"], m["month"], m["from"], m["to"], m["rows"], m["rows_exact"], m["bytes"] > 0,
      p["audit_events_default"]["location"], j["default_rows"], j["default_months"])' >"$AQ_TMP/json.out"
assert_eq "True hot 2020-01 2020-01-01T00:00:00Z 2020-02-01T00:00:00Z 1234 True True default 1 ['2015-06']" \
    "$(cat "$AQ_TMP/json.out")" "list --json"

# The stray 2015-06 row: moved by the next ensure; then a rerun does nothing.
assert_eq "created audit_events_2015_06
moved 1 rows from DEFAULT into audit_events_2015_06
ensure: 1 partition(s) created, 1 row(s) moved out of DEFAULT" "$("$CTL" partitions ensure)" "ensure of one stray row"
assert_eq "nothing to do: every month from $(month 0 YYYY-MM) to $(month 3 YYYY-MM) has its partition, and DEFAULT holds no rows" \
    "$("$CTL" partitions ensure)" "ensure rerun"
assert_eq "created audit_events_$(month 4 YYYY_MM)
created audit_events_$(month 5 YYYY_MM)
ensure: 2 partition(s) created, 0 row(s) moved out of DEFAULT" "$("$CTL" partitions ensure --ahead 5)" "ensure --ahead 5"

# The worker's path: auditq_ensure_partitions, called by a writer role that
# may only INSERT/SELECT, moves the DEFAULT rows of a month in its window.
psql_q "CREATE ROLE aq_writer LOGIN; GRANT USAGE ON SCHEMA public TO aq_writer;
        GRANT INSERT, SELECT ON audit_events TO aq_writer"
psql_q "DROP TABLE audit_events_$(month 5 YYYY_MM)"
insert_rows 3 "$(psql_q "SELECT date_trunc('month', now()) + interval '5 months'")" late
assert_eq 3 "$(in_table audit_events_default)" "rows of month +5 in DEFAULT"
as_writer() { PGUSER=aq_writer psql_q "$1"; }
assert_eq 1 "$(as_writer "SELECT auditq_ensure_partitions(5)" 2>"$AQ_TMP/notice")" "writer's auditq_ensure_partitions created one month"
assert_eq "NOTICE:  auditq: moved 3 rows from the DEFAULT partition into audit_events_$(month 5 YYYY_MM)" \
    "$(cat "$AQ_TMP/notice")" "notice of the move"
assert_eq 3 "$(in_table "audit_events_$(month 5 YYYY_MM)")" "rows moved by auditq_ensure_partitions"
assert_eq 0 "$(in_table audit_events_default)" "DEFAULT empty again"
assert_eq "ERROR:  permission denied for function auditq_partition_month" \
    "$(PGUSER=aq_writer refused "SELECT auditq_partition_month('2010-01-01Z')")" "writer cannot call the move function"
assert_eq "ERROR:  must be owner of table audit_events_default" \
    "$(PGUSER=aq_writer refused "ALTER TABLE audit_events_default DISABLE TRIGGER audit_events_append_only")" \
    "writer cannot disable the trigger"
assert_eq "ERROR:  permission denied for table audit_events" \
    "$(PGUSER=aq_writer refused "DELETE FROM audit_events")" "writer cannot delete"

# Locks while a month is attached: hold a move's transaction open (5 rows
# of 2018-01 sit in DEFAULT)...
insert_rows 5 '2018-01-10 00:00:00+00' held
harness_spawn holder "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 \
    -c "BEGIN; SELECT auditq_partition_month('2018-01-01Z'); SELECT pg_sleep(60); COMMIT;"
holder=$HARNESS_LAST_PID
holder_pid() { psql_q "SELECT pid FROM pg_locks WHERE relation = 'audit_events_default'::regclass AND mode = 'AccessExclusiveLock' AND granted"; }
wait_for 10 bash -c "[ -n \"\$(psql -X -A -t -c \"SELECT pid FROM pg_locks WHERE relation = 'audit_events_default'::regclass AND mode = 'AccessExclusiveLock' AND granted\")\" ]"
# ...an insert into this month goes through, one that routes to DEFAULT waits.
assert_eq "" "$(psql_q "SET lock_timeout = '1s'; INSERT INTO audit_events (event_id, occurred_at, priority, action) VALUES (gen_random_uuid(), now(), 'normal', 'during')")" \
    "insert into this month during an attach"
assert_eq "ERROR:  canceling statement due to lock timeout" \
    "$(refused "SET lock_timeout = '1s'; INSERT INTO audit_events (event_id, occurred_at, priority, action) VALUES (gen_random_uuid(), '2012-03-01Z', 'normal', 'during')")" \
    "insert into DEFAULT during an attach waits"
# The move dies mid-transaction (backend terminated): nothing of it remains.
assert_eq t "$(psql_q "SELECT pg_terminate_backend($(holder_pid))")" "terminate the moving backend"
wait "$holder" 2>/dev/null || true
assert_eq 5 "$(in_table audit_events_default)" "rows of 2018-01 back in DEFAULT after the crash"
assert_eq "" "$(psql_q "SELECT to_regclass('audit_events_2018_01')")" "no half-made partition"
assert_eq "O" "$(psql_q "SELECT tgenabled FROM pg_trigger WHERE tgrelid = 'audit_events_default'::regclass AND tgname = 'audit_events_append_only'")" \
    "DEFAULT's trigger enabled after the crash"
assert_eq "created audit_events_2018_01
moved 5 rows from DEFAULT into audit_events_2018_01
ensure: 1 partition(s) created, 5 row(s) moved out of DEFAULT" "$("$CTL" partitions ensure)" "ensure after the crash"
assert_eq 1400 "$(rows)" "all rows at the end (1390 + 1 + 3 + 5 + 1)"
assert_eq 1400 "$(psql_q "SELECT count(DISTINCT event_id) FROM audit_events")" "every event_id once at the end"
# The Citus branch of the move (sql/007_citus.sql), run on this plain
# PostgreSQL with auditq_citus() answering true: Citus itself cannot be
# started here (docs/SCALING.md), but its SQL runs all the same --
# DISABLE/ENABLE TRIGGER USER instead of names, and a disabled trigger of
# DEFAULT refused by name rather than turned on behind the operator's back.
psql_q "CREATE OR REPLACE FUNCTION auditq_citus() RETURNS boolean LANGUAGE sql AS 'SELECT true'" >/dev/null
insert_rows 4 '2011-05-01 00:00:00+00' citus
psql_q "ALTER TABLE audit_events_default DISABLE TRIGGER audit_events_no_truncate" >/dev/null
assert_eq "ERROR:  auditq_partition_month: trigger(s) audit_events_no_truncate on audit_events_default are disabled; cannot move its rows of 2011-05" \
    "$(refused "SELECT auditq_partition_month('2011-05-01Z')")" "Citus branch: a disabled DEFAULT trigger refused"
psql_q "ALTER TABLE audit_events_default ENABLE TRIGGER audit_events_no_truncate" >/dev/null
assert_eq 4 "$(psql_q "SELECT auditq_partition_month('2011-05-01Z')")" "Citus branch: 4 rows moved"
assert_eq 4 "$(in_table audit_events_2011_05)" "Citus branch: the rows in their month"
assert_eq "O O" "$(psql_q "SELECT string_agg(tgenabled::text, ' ' ORDER BY tgname) FROM pg_trigger WHERE tgrelid = 'audit_events_default'::regclass AND NOT tgisinternal")" \
    "Citus branch: DEFAULT's triggers all on again"
assert_eq "ERROR:  audit_events is append-only: DELETE refused" \
    "$(refused "DELETE FROM audit_events_2011_05")" "Citus branch: the new month append-only"
psql_q "CREATE OR REPLACE FUNCTION auditq_citus() RETURNS boolean LANGUAGE sql AS 'SELECT false'" >/dev/null
assert_eq 1404 "$(rows)" "all rows at the very end"
it_pass "partitions: 1290 DEFAULT rows moved into 2019-12/2020-01 exactly once, append-only kept, dry-run/rerun idempotent, worker path and privileges, locks as documented, a killed move leaves nothing"
