#!/usr/bin/env bash
# The worker runs retention on its timer (retention_interval_s > 0), in a
# thread of its own, while it keeps writing events: with months -6 .. 0
# holding rows, hot_months=2 and retain_months=4, one run moves months -3 and
# -2 to auditq_archive, drops -6 .. -4, logs each step as logfmt, and the
# events sent meanwhile are all stored. A second tick within the interval
# does nothing (one run per retention_interval_s).
set -euo pipefail
source "$(dirname "$0")/lib_it.sh"
it_setup
psql_q "DO \$\$ BEGIN FOR k IN 1 .. 6 LOOP
            PERFORM auditq_partition_month(date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - make_interval(months => k));
        END LOOP; END \$\$"
# received_at = occurred_at: rows that arrived in their own month (a row
# received within the period would keep its month, it_73_clock_retention.sh).
psql_q "INSERT INTO audit_events (event_id, occurred_at, received_at, priority, action)
        SELECT gen_random_uuid(), t, t, 'normal', 'old.m' || k
          FROM generate_series(1, 6) AS k, generate_series(1, 5),
               LATERAL (SELECT date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
                               - make_interval(months => k) + interval '1 day' AS t) AS x"
assert_eq 30 "$(rows)" "old rows before retention"

worker_start w1 --set threads=1 --set retention_interval_s=3600 --set hot_months=2 --set retain_months=4 \
    --set archive_mode=schema
"$TBIN/it_client" send --events 2000 --priority normal --tag during >/dev/null
wait_for 30 bash -c "[ \$(grep -c 'msg=\"retention\" detail=\"archived' '$AQ_TMP/w1.log') = 2 ]"
wait_for 30 drained
sleep 2   # two more 1 s ticks: nothing may start again within the interval
worker_stop w1

hot=""; for k in -1 0 1 2 3; do hot+="${hot:+ }audit_events_$(month "$k" YYYY_MM)"; done
assert_eq "$hot" "$(tables_in public)" "months kept in audit_events (hot_months=2, plus those created ahead)"
assert_eq "audit_events_$(month -3 YYYY_MM) audit_events_$(month -2 YYYY_MM)" "$(tables_in auditq_archive)" "months archived"
assert_eq 2005 "$(rows)" "rows in audit_events: the 2000 sent while retention ran + month -1's 5 old rows"
assert_eq 5 "$(psql_q "SELECT count(*) FROM auditq_archive.audit_events_$(month -2 YYYY_MM)")" "rows of archived month -2"
assert_eq 3 "$(grep -c 'msg="retention" detail="dropped' "$AQ_TMP/w1.log")" "drops logged (months -6 .. -4)"
assert_eq 1 "$(grep -c 'msg="retention" detail="policy' "$AQ_TMP/w1.log")" "runs (one policy line: the interval had not passed again)"
assert_eq 2000 "$(stat processed)" "events written while retention ran"
it_pass "worker retention timer: months -3,-2 archived, -6..-4 dropped, logged; 2000 events stored meanwhile"
