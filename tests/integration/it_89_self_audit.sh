#!/usr/bin/env bash
# Self-audit (issue 13 part 1, docs/SECURITY.md): the real auditqctl
# ($CTL_AUDITED, not lib_it.sh's --no-self-audit wrapper) against a real
# Redis + PostgreSQL + worker:
#   - each audited command stores exactly one event: the exact action,
#     actor_id (OS user), actor_type system, tenant_id (--tenant), entity,
#     outcome, and metadata (command, args, db_role, exit status, counts);
#   - commands that read nothing or change nothing (stats, --dry-run,
#     purge without --yes) store none;
#   - with Redis down a query is refused (exit 1, the exact message, no
#     output) and so is a change (nothing changed);
#   - hold add / release are recorded, hold list is not;
#   - --no-self-audit is refused (exit 2) unless the -c FILE sets
#     self_audit = optional; AUDITQ_SELF_AUDIT=optional is not enough.
set -euo pipefail
source "$(dirname "$0")/lib_it.sh"
it_setup
CTL=$CTL_AUDITED
ME=$(id -un)
worker_start w1

psql_q "INSERT INTO audit_events (event_id, occurred_at, priority, tenant_id, actor_id, action)
        VALUES ('0190f3b2-5c4e-7a21-9d3b-000000008901', now(), 'normal', 'acme', 'u1', 'page.update'),
               ('0190f3b2-5c4e-7a21-9d3b-000000008902', now(), 'normal', 'other', 'u2', 'page.update')" >/dev/null

# audit_rows ACTION: how many stored events have ACTION (waits for the worker).
audit_rows() { psql_q "SELECT count(*) FROM audit_events WHERE action = '$1'"; }
# wait_audit ACTION N: until N events with ACTION are stored.
wait_audit() { wait_for $((10 * ${AQ_TIME_SCALE:-1})) bash -c "[ \"\$(psql -X -A -t -c \"SELECT count(*) FROM audit_events WHERE action = '$1'\")\" = $2 ]"; }
# the one event with ACTION as "actor_id|actor_type|tenant|entity|outcome|metadata-minus-host-pid"
audit_event() {
    psql_q "SELECT concat_ws('|', actor_id, actor_type, coalesce(tenant_id, '-'), entity_type || ':' || entity_id,
                             coalesce(outcome, '-'), user_agent, (metadata - 'host' - 'pid')::text)
            FROM audit_events WHERE action = '$1'"
}
drained_all() { wait_for $((10 * ${AQ_TIME_SCALE:-1})) drained; }

# ---- 1. a read: query ------------------------------------------------------
out=$("$CTL" query --tenant acme --action 'page.*' --format ndjson)
assert_eq 1 "$(grep -c '"event_id":"0190f3b2-5c4e-7a21-9d3b-000000008901"' <<<"$out")" "query output"
wait_audit auditq.query 1
assert_eq "$ME|system|acme|auditq:auditq|-|auditqctl/0.1.0|"'{"args": ["--tenant", "acme", "--action", "page.*", "--format", "ndjson"], "command": "query", "db_role": "postgres", "os_user": "'"$ME"'", "recorded": "before_read"}' \
    "$(audit_event auditq.query)" "auditq.query event"

# ---- 2. reads and changes of dead letters -----------------------------------
redis-cli -p "$REDIS_PORT" LPUSH '{auditq}:queue:normal' 'not msgpack' >/dev/null
wait_for $((10 * ${AQ_TIME_SCALE:-1})) bash -c "[ \"\$(redis-cli -p $REDIS_PORT LLEN '{auditq}:dead')\" = 1 ]"
"$CTL" dlq list >/dev/null
wait_audit auditq.dlq.list 1
assert_eq "$ME|system|-|auditq:auditq|-|auditqctl/0.1.0|"'{"args": ["list"], "command": "dlq", "db_role": "postgres", "os_user": "'"$ME"'", "recorded": "before_read"}' \
    "$(audit_event auditq.dlq.list)" "auditq.dlq.list event"
"$CTL" dlq purge --all >/dev/null 2>&1 || true      # without --yes: changes nothing
"$CTL" dlq purge --all --yes >/dev/null
wait_audit auditq.dlq.purge 1
assert_eq "$ME|system|-|auditq:auditq|success|auditqctl/0.1.0|"'{"args": ["purge", "--all", "--yes"], "counts": {"purged": 1, "matched": 1}, "command": "dlq", "db_role": "postgres", "os_user": "'"$ME"'", "exit_status": 0}' \
    "$(audit_event auditq.dlq.purge)" "auditq.dlq.purge event (one: the run without --yes is not one)"

# ---- 3. schema changes; dry runs and stats record nothing -------------------
"$CTL" migrate >/dev/null
"$CTL" migrate --status >/dev/null
"$CTL" partitions ensure >/dev/null
"$CTL" partitions ensure --dry-run >/dev/null
"$CTL" retention run --dry-run >/dev/null
"$CTL" stats >/dev/null
wait_audit auditq.migrate 1
wait_audit auditq.partitions.ensure 1
assert_eq "$ME|system|-|auditq:auditq|success|auditqctl/0.1.0|"'{"args": [], "command": "migrate", "db_role": "postgres", "os_user": "'"$ME"'", "exit_status": 0}' \
    "$(audit_event auditq.migrate)" "auditq.migrate event"
drained_all
assert_eq 0 "$(psql_q "SELECT count(*) FROM audit_events WHERE action LIKE 'auditq.%'
                       AND action NOT IN ('auditq.query', 'auditq.dlq.list', 'auditq.dlq.purge', 'auditq.migrate', 'auditq.partitions.ensure')")" \
    "no event for stats, --status, --dry-run"
assert_eq 1 "$(audit_rows auditq.dlq.purge)" "still one purge event"

# ---- 4. a failed change is recorded with its outcome -------------------------
rc=0
"$CTL" grants --writer no_such_role --reader no_such_role >/dev/null 2>&1 || rc=$?
assert_eq 1 "$rc" "grants to a missing role fails"
wait_audit auditq.grants 1
assert_eq "failure|1" "$(psql_q "SELECT outcome || '|' || (metadata->>'exit_status') FROM audit_events WHERE action = 'auditq.grants'")" \
    "auditq.grants event: failure, exit status 1"

# ---- 5. legal holds (it_72 tests the holds themselves) ----------------------
"$CTL" hold add --tenant acme --reason "Case 42" >/dev/null
"$CTL" hold list >/dev/null
"$CTL" hold release 1 --reason "closed" >/dev/null
wait_audit auditq.hold.add 1
wait_audit auditq.hold.release 1
assert_eq "$ME|system|acme|auditq:auditq|success|auditqctl/0.1.0|"'{"args": ["add", "--tenant", "acme", "--reason", "Case 42"], "command": "hold", "db_role": "postgres", "os_user": "'"$ME"'", "exit_status": 0}' \
    "$(audit_event auditq.hold.add)" "auditq.hold.add event"
assert_eq "$ME|system|-|auditq:auditq|success|auditqctl/0.1.0|"'{"args": ["release", "1", "--reason", "closed"], "command": "hold", "db_role": "postgres", "os_user": "'"$ME"'", "exit_status": 0}' \
    "$(audit_event auditq.hold.release)" "auditq.hold.release event (hold list: none)"
drained_all
assert_eq 0 "$(audit_rows auditq.hold.list)" "no event for hold list"

# ---- 6. --no-self-audit ------------------------------------------------------
rc=0
err=$(AUDITQ_SELF_AUDIT=optional "$CTL" --no-self-audit query --tenant acme --format ndjson 2>&1 >/dev/null) || rc=$?
assert_eq "2|auditqctl query: --no-self-audit refused: self_audit is 'required'; an operator allows it with 'self_audit = optional' in the config file given with -c (the environment and --set do not count)" \
    "$rc|$err" "--no-self-audit without the file"
printf 'self_audit = optional\n' >"$AQ_TMP/optional.conf"
before=$(audit_rows auditq.query)
"$CTL" -c "$AQ_TMP/optional.conf" --no-self-audit query --tenant acme --format ndjson >/dev/null
drained_all
assert_eq "$before" "$(audit_rows auditq.query)" "--no-self-audit allowed by the file: no event"

# ---- 7. Redis down: reads and changes are refused ----------------------------
worker_stop w1
redis_stop
rc=0
out=$("$CTL" query --tenant acme --format ndjson 2>"$AQ_TMP/err") || rc=$?
assert_eq 1 "$rc" "query with Redis down: exit status"
assert_eq "" "$out" "query with Redis down: no rows written"
assert_eq "auditqctl query: refused: this read could not be recorded in the audit trail (auditq.query, self-audit): cannot connect to Redis at 127.0.0.1:$REDIS_PORT: Connection refused; bring Redis (redis_url) back and retry" \
    "$(cat "$AQ_TMP/err")" "query with Redis down: the message"
partitions_before=$(psql_q "SELECT count(*) FROM pg_inherits WHERE inhparent = 'audit_events'::regclass")
rc=0
"$CTL" partitions ensure --ahead 6 >/dev/null 2>"$AQ_TMP/err" || rc=$?
assert_eq 1 "$rc" "partitions ensure with Redis down: exit status"
grep -q "^auditqctl partitions: refused: this change could not be recorded in the audit trail (auditq.partitions.ensure, self-audit): .*; nothing was changed; bring Redis (redis_url) back and retry$" "$AQ_TMP/err" ||
    { echo "FAIL: partitions ensure message: $(cat "$AQ_TMP/err")"; exit 1; }
assert_eq "$partitions_before" "$(psql_q "SELECT count(*) FROM pg_inherits WHERE inhparent = 'audit_events'::regclass")" \
    "partitions ensure with Redis down: nothing created"
it_pass "self-audit"
