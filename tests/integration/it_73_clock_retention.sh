#!/usr/bin/env bash
# Retention does not trust the producer's clock (issue 10 item 4). An event
# stamped 2020-03-05 arrives today: the worker stores it in DEFAULT with
# clock_flag 'backfill'; `partitions ensure` moves it into
# audit_events_2020_03 with its received_at unchanged (and the month gets
# the received_at BRIN index); `retention run` then skips that month --
# names it, the row, the newest received_at; exit 0; --json counts it --
# and the row stays. Time travel: received_at is set by PostgreSQL and the
# append-only trigger refuses an UPDATE, so the test (superuser) ages the
# row with session_replication_role = replica, which skips row triggers:
#   received 5 months ago (within retain_months=24, before hot_from): the
#     drop is skipped, the month is archived instead;
#   received in 2021: the archived month is dropped.
set -euo pipefail
source "$(dirname "$0")/lib_it.sh"
it_setup
CTL="$BIN/auditqctl"
M=audit_events_2020_03

"$PY" - "$REDIS_PORT" <<'PYEOF'
import socket, sys, msgpack
job = msgpack.packb({"v": 1, "event_id": "0170a9b8-e400-7000-8000-000000002020",
                     "occurred_at": 1583402400000000, "priority": "normal", "action": "misdated"})
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"*3\r\n$5\r\nLPUSH\r\n$21\r\n{auditq}:queue:normal\r\n$%d\r\n%s\r\n" % (len(job), job))
assert s.makefile("rb").readline() == b":1\r\n"
PYEOF
worker_start w1 --set threads=1
wait_for 30 bash -c "[ \$(psql -X -A -t -c 'SELECT count(*) FROM audit_events') = 1 ]"
worker_stop w1
received=$(psql_q "SELECT received_at FROM audit_events")
assert_eq "audit_events_default backfill true" \
    "$(psql_q "SELECT tableoid::regclass || ' ' || clock_flag || ' ' || (received_at > now() - interval '1 minute') FROM audit_events")" \
    "the 2020 event: in DEFAULT, flagged, received now"

"$CTL" partitions ensure >/dev/null
assert_eq "$M 2020-03-05 10:00:00+00 $received" \
    "$(psql_q "SELECT tableoid::regclass || ' ' || occurred_at || ' ' || received_at FROM audit_events")" \
    "moved out of DEFAULT with its received_at"
assert_eq "1" "$(psql_q "SELECT count(*) FROM pg_indexes WHERE tablename = '$M' AND indexdef LIKE '%USING brin (received_at)%'")" \
    "the new month has the received_at BRIN index"

policy="policy: audit_events keeps $(month -2 YYYY-MM) and later (hot_months=3); older months move to schema auditq_archive (archive_mode=schema); months before $(month -23 YYYY-MM) are dropped (retain_months=24)"
rc=0
out=$("$CTL" retention run) || rc=$?
assert_eq 0 "$rc" "exit status of a run that skips a month"
assert_eq "$policy
skipped $M (month 2020-03): 1 row received since $(month -2 YYYY-MM)-01, within hot_months=3 (newest received_at $received); kept in audit_events until it is older
done: 0 archived, 0 merged, 0 exported, 0 dropped, 1 skipped for rows received within the period" \
    "$out" "retention run keeps the month of a row received today"
assert_eq "1 $M" "$(psql_q "SELECT count(*) || ' ' || min(tableoid::regclass::text) FROM audit_events WHERE action = 'misdated'")" \
    "the row is still there"
"$CTL" retention run --json | "$PY" -c '
import json, sys
j = json.load(sys.stdin)
a = j["actions"]
print(j["ok"], j["skipped"], len(a), a[0]["action"], a[0]["table"], a[0]["month"], a[0]["rows"], a[0]["within"],
      a[0]["received_since"], a[0]["newest_received_at"], j["summary"])' >"$AQ_TMP/json.out"
assert_eq "True 1 1 skip $M 2020-03 1 hot_months $(month -2 YYYY-MM)-01 $received done: 0 archived, 0 merged, 0 exported, 0 dropped, 1 skipped for rows received within the period" \
    "$(cat "$AQ_TMP/json.out")" "retention run --json counts the skipped month"

# Received 5 months ago: within retain_months, not within hot_months.
aged=$(psql_q "SET session_replication_role = replica; UPDATE $M SET received_at = received_at - interval '5 months' RETURNING received_at")
assert_eq "$policy
skipped the drop of $M (month 2020-03): 1 row received since $(month -23 YYYY-MM)-01, within retain_months=24 (newest received_at $aged); kept until it is older
archived $M -> auditq_archive.$M
done: 1 archived, 0 merged, 0 exported, 0 dropped, 1 skipped for rows received within the period" \
    "$("$CTL" retention run)" "a row received 5 months ago: archived, not dropped"
assert_eq 1 "$(psql_q "SELECT count(*) FROM auditq_archive.$M")" "the row in the archive"

# Received in 2021: older than retain_months, the archived month goes.
psql_q "SET session_replication_role = replica; UPDATE auditq_archive.$M SET received_at = '2021-01-01 00:00:00+00'" >/dev/null
assert_eq "$policy
dropped auditq_archive.$M (older than retain_months=24)
done: 0 archived, 0 merged, 0 exported, 1 dropped" "$("$CTL" retention run)" "dropped once its rows aged out"
assert_eq "" "$(psql_q "SELECT to_regclass('auditq_archive.$M')")" "month 2020-03 gone"
it_pass "retention and received_at: a 2020 event received today survives partitions ensure and retention (skipped, named, counted in --json, exit 0); aged 5 months it is archived not dropped; aged to 2021 it is dropped"
