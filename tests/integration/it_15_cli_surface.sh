#!/usr/bin/env bash
# The command-line surface a new user meets first (issue 10 items 7, 8, 10b,
# 10d), with exact messages and exit codes:
#   - versions: auditqctl -V/--version, auditq-bench -V/--version,
#     auditq-worker -V;
#   - one rule for option values: an option-looking next argument is refused
#     naming the option (query --tenant --desc used to run a 0-row query for
#     tenant "--desc" and exit 0), the attached form takes any value;
#     -b -5 blames -b, not --set; a global option after the command says where
#     it goes;
#   - a misspelled AUDITQ_* variable is named with the closest one (worker
#     log line, auditqctl warning);
#   - crash_after_commit is a test hook: the installed worker refuses it from
#     --set, a file and the environment; config/auditq.conf does not ship it;
#   - migrate, grants and spool --json: parseable, with the documented keys;
#   - dlq list shows the event id of a job that does not decode.
set -euo pipefail
source "$(dirname "$0")/lib_it.sh"
it_setup
CTL="$BIN/auditqctl"
WORKER="$BIN/auditq-worker"
BENCH="$BIN/auditq-bench"

# run_rc VAR CMD...: runs CMD, stdout+stderr into $OUT, exit status into VAR.
run_rc() {
    local __v=$1
    shift
    local __rc=0
    OUT=$("$@" 2>&1) || __rc=$?
    printf -v "$__v" '%s' "$__rc"
}
# expect RC MESSAGE CMD...: exit status and whole output, exactly.
expect() {
    local want_rc=$1 want=$2 rc
    shift 2
    run_rc rc "$@"
    assert_eq "$want_rc" "$rc" "exit status of: $*"
    assert_eq "$want" "$OUT" "output of: $*"
}

# ---- versions -----------------------------------------------------------------
schema=$(find "$AQ_ROOT/sql" -name '[0-9][0-9][0-9]_*.sql' -printf '%f\n' | sort | tail -1 | cut -c1-3)
schema=$((10#$schema))
expect 0 "auditqctl 0.1.0 (schema version $schema)" "$CTL" -V
expect 0 "auditqctl 0.1.0 (schema version $schema)" "$CTL" --version
expect 0 "auditq-bench 0.1.0" "$BENCH" -V
expect 0 "auditq-bench 0.1.0" "$BENCH" --version
expect 0 "auditq-worker 0.1.0" "$WORKER" -V
it_pass "versions"

# ---- option values --------------------------------------------------------------
expect 2 "auditqctl query: option '--tenant' needs a value, but the next argument '--desc' is an option; to give a value that starts with '-', write --tenant=--desc; run 'auditqctl query --help'" \
    "$CTL" query --tenant --desc
run_rc rc "$CTL" query --tenant=--desc --format csv
assert_eq 0 "$rc" "query --tenant=--desc (the attached form takes a value starting with '-')"
expect 2 "auditqctl: option '-c' needs a value, but the next argument '--set' is an option; to give a value that starts with '-', write -c--set; run 'auditqctl --help'" \
    "$CTL" -c --set batch_size=1 stats
expect 2 "auditqctl dlq list: option '--reason' needs a value, but the next argument '--json' is an option; to give a value that starts with '-', write --reason=--json; see 'auditqctl dlq --help'" \
    "$CTL" dlq list --reason --json
expect 2 "auditqctl stats: option '--watch' needs a value; see 'auditqctl stats --help'" "$CTL" stats --watch
expect 2 "auditqctl grants: option '--writer' needs a value, but the next argument '--reader' is an option; to give a value that starts with '-', write --writer=--reader" \
    "$CTL" grants --writer --reader r
expect 2 "auditqctl partitions: option '--ahead' needs a value, but the next argument '--dry-run' is an option; to give a value that starts with '-', write --ahead=--dry-run; run 'auditqctl partitions --help'" \
    "$CTL" partitions ensure --ahead --dry-run
expect 2 "auditq-bench: option '--redis-url' needs a value, but the next argument '--async' is an option; to give a value that starts with '-', write --redis-url=--async; see auditq-bench --help" \
    "$BENCH" enqueue --redis-url --async
expect 2 "auditq-worker: option '-c' needs a value, but the next argument '--check' is an option; to give a value that starts with '-', write -c--check" \
    "$WORKER" -c --check
expect 2 "auditq-worker: -b: batch_size = -5: must be an integer from 1 to 100000" "$WORKER" -b -5 --check
expect 2 "auditq-worker: --threads: threads = 999: must be an integer from 0 to 256" "$WORKER" --threads 999 --check
expect 2 "auditq-worker: option '--batch-size' needs a value; see --help" "$WORKER" --batch-size
expect 2 "auditq-worker: unknown option '--bogus'; see --help" "$WORKER" --bogus
# A global option after the command.
expect 2 "auditqctl: global option -c must come before the command: auditqctl -c FILE stats ..." \
    "$CTL" stats -c /etc/auditq/auditq.conf
expect 2 "auditqctl: global option --set must come before the command: auditqctl --set KEY=VALUE workers ..." \
    "$CTL" workers --set batch_size=5
it_pass "option values: one rule, exact messages"

# ---- misspelled environment variables ------------------------------------------
run_rc rc env AUDITQ_BATCHSIZE=50 "$CTL" workers
assert_eq 0 "$rc" "workers exit status with AUDITQ_BATCHSIZE set"
assert_eq "auditqctl: warning: AUDITQ_BATCHSIZE is not a setting and is ignored (did you mean AUDITQ_BATCH_SIZE?)
no workers registered in namespace auditq" "$OUT" "auditqctl names the misspelled variable"
run_rc rc env AUDITQ_BATCHSIZE=50 "$WORKER" --check
assert_eq 0 "$rc" "worker --check exit status with AUDITQ_BATCHSIZE set"
line=$(printf '%s\n' "$OUT" | grep -c '^ts=[^ ]* level=warn msg="AUDITQ_BATCHSIZE is not a setting and is ignored (did you mean AUDITQ_BATCH_SIZE?)"$' || true)
assert_eq 1 "$line" "worker warn line for AUDITQ_BATCHSIZE (got: $OUT)"
it_pass "misspelled AUDITQ_* variables are named"

# ---- the test hook is not in the installed worker --------------------------------
HOOK_MSG="crash_after_commit is a test hook, not available in this build"
expect 2 "auditq-worker: --set: $HOOK_MSG; remove it (only the test build, tests/auditq-worker-hooks, has it)" \
    "$WORKER" --set crash_after_commit=1 --check
expect 2 "auditq-worker: AUDITQ_CRASH_AFTER_COMMIT=1: $HOOK_MSG; unset AUDITQ_CRASH_AFTER_COMMIT" \
    env AUDITQ_CRASH_AFTER_COMMIT=1 "$WORKER" --check
printf 'batch_size = 10\ncrash_after_commit = 0\n' >"$AQ_TMP/hook.conf"
expect 2 "auditq-worker: $AQ_TMP/hook.conf:2: $HOOK_MSG; remove it (only the test build, tests/auditq-worker-hooks, has it)" \
    "$WORKER" -c "$AQ_TMP/hook.conf" --check
assert_eq 0 "$(grep -c crash_after_commit "$AQ_ROOT/config/auditq.conf" || true)" "crash_after_commit in config/auditq.conf"
expect 0 "configuration OK" "$WORKER" -c "$AQ_ROOT/config/auditq.conf" --check
expect 0 "configuration OK" "$TBIN/auditq-worker-hooks" --set crash_after_commit=1 --check
it_pass "crash_after_commit: refused by the installed worker, only in the test build"

# ---- --json of migrate, grants, spool --------------------------------------------
"$CTL" migrate --json >"$AQ_TMP/migrate.json"
"$CTL" migrate --status --json >"$AQ_TMP/status.json"
"$CTL" migrate --dry-run --json >"$AQ_TMP/dry.json"
psql_q "CREATE ROLE it15_reader" >/dev/null
"$CTL" grants --reader it15_reader --json >"$AQ_TMP/grants.json"
"$CTL" grants --reader=it15_reader >"$AQ_TMP/grants.txt"
"$PY" - "$AQ_TMP" "$schema" <<'EOF'
import json, sys
d, schema = sys.argv[1], int(sys.argv[2])
def check(what, exp, got):
    if exp != got:
        sys.exit(f"FAIL: {what}: expected {exp!r}, got {got!r}")
m = json.load(open(f"{d}/migrate.json"))
check("migrate --json keys", ["migrations", "schema_version", "applied", "partitions_created", "partitions_ahead"], list(m))
check("migrate --json versions", list(range(1, schema + 1)), [x["version"] for x in m["migrations"]])
check("migrate --json states", {"already_applied"}, {x["state"] for x in m["migrations"]})
check("migrate --json item keys", ["version", "name", "state"], list(m["migrations"][0]))
check("migrate --json schema_version", schema, m["schema_version"])
check("migrate --json applied", 0, m["applied"])
check("migrate --json partitions_ahead", 3, m["partitions_ahead"])
s = json.load(open(f"{d}/status.json"))
check("migrate --status --json keys", ["migrations", "pending", "changed"], list(s))
check("migrate --status --json states", {"applied"}, {x["state"] for x in s["migrations"]})
check("migrate --status --json applied_at", True, all(x["applied_at"] for x in s["migrations"]))
check("migrate --status --json pending/changed", (0, 0), (s["pending"], s["changed"]))
r = json.load(open(f"{d}/dry.json"))
check("migrate --dry-run --json", (True, 0), (r["dry_run"], r["would_apply"]))
g = json.load(open(f"{d}/grants.json"))
check("grants --json keys", ["granted"], list(g))
check("grants --json item", ("it15_reader", "reader"), (g["granted"][0]["role"], g["granted"][0]["rights"]))
check("grants --json detail = the text line", open(f"{d}/grants.txt").read().strip(), g["granted"][0]["detail"])
EOF
# A spool with two events, written by a producer whose Redis is down.
dead_port=$(free_port)
"$TBIN/it_client" produce --sync 2 --tag it15 --set "redis_url=redis://127.0.0.1:$dead_port" \
    --set "spool_path=$AQ_TMP/app.spool" --set connect_timeout_ms=200 --set close_timeout_ms=200 >"$AQ_TMP/produce.log"
"$CTL" spool inspect "$AQ_TMP/app.spool" --records --json >"$AQ_TMP/inspect.json"
"$CTL" spool replay "$AQ_TMP/app.spool" --dry-run --json >"$AQ_TMP/replay.json"
"$PY" - "$AQ_TMP" <<'EOF'
import json, sys
d = sys.argv[1]
def check(what, exp, got):
    if exp != got:
        sys.exit(f"FAIL: {what}: expected {exp!r}, got {got!r}")
i = json.load(open(f"{d}/inspect.json"))
check("spool inspect --json keys", ["file", "namespace", "spool_id", "size", "position", "position_saved",
      "locked", "replayed", "waiting", "bad", "records"], list(i))
check("spool inspect --json namespace", "auditq", i["namespace"])
check("spool inspect --json waiting", 2, i["waiting"]["records"])
check("spool inspect --json bad", [], i["bad"])
check("spool inspect --json record keys", ["offset", "bytes", "priority", "state", "event_id", "occurred_at", "action"],
      list(i["records"][0]))
check("spool inspect --json states", ["waiting", "waiting"], [x["state"] for x in i["records"]])
r = json.load(open(f"{d}/replay.json"))
check("spool replay --json keys", ["file", "namespace", "dry_run", "from_offset", "size", "complete", "would_replay",
      "bad", "bad_bytes"], list(r))
check("spool replay --dry-run --json", (True, True, 2, 0), (r["dry_run"], r["complete"], r["would_replay"]["records"], r["bad"]))
EOF
it_pass "migrate, grants and spool --json"

# ---- dlq list: the event id of a job that does not decode ------------------------
EID=0190f3b2-5c4e-7a21-9d3b-00000000f015
"$PY" - "$EID" <<'EOF' | redis-cli -p "$REDIS_PORT" -x LPUSH '{auditq}:queue:normal' >/dev/null
import sys, msgpack
sys.stdout.buffer.write(msgpack.packb({"v": 1, "event_id": sys.argv[1], "occurred_at": 1577836800000000,
                                       "tenant_id": "it15", "action": "it15.test", "outcome": "maybe"}))
EOF
worker_start w1 --set threads=1
wait_for 20 bash -c "[ \"\$(redis-cli -p $REDIS_PORT LLEN '{auditq}:dead')\" = 1 ]"
worker_stop w1
"$CTL" dlq list --json >"$AQ_TMP/dlq.json"
"$CTL" dlq list >"$AQ_TMP/dlq.txt"
"$PY" - "$AQ_TMP" "$EID" <<'EOF'
import json, sys
d, eid = sys.argv[1], sys.argv[2]
def check(what, exp, got):
    if exp != got:
        sys.exit(f"FAIL: {what}: expected {exp!r}, got {got!r}")
r = json.load(open(f"{d}/dlq.json"))["records"][0]
check("dlq list --json event_id", eid, r["event_id"])
txt = open(f"{d}/dlq.txt").read().splitlines()
check("dlq list line", f"1 {r['failed_at'][:19]}Z normal   {r['attempts']:>3} {eid}", txt[2])
EOF
assert_eq "1" "$("$CTL" dlq list --json --event-id "$EID" | "$PY" -c 'import json,sys; print(len(json.load(sys.stdin)["records"]))')" \
    "dlq list --event-id finds the undecodable job"
it_pass "dlq list shows the event id of a job that does not decode"
