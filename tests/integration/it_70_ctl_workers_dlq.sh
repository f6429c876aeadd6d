#!/usr/bin/env bash
# auditqctl workers and dlq against a real Redis + PostgreSQL:
#   - unreachable Redis: exit 1, the message names redis_url;
#   - workers: the running worker's exact host, pid and threads (table and
#     --json); a frozen one is marked "dead (not yet recovered)";
#   - four dead letters made one at a time (undecodable; jsonb NUL 22P05;
#     two rows refused by a CHECK constraint the test adds, 23514):
#     dlq list exact lines, every filter's exact count, show's exact fields,
#     show --raw's exact bytes;
#   - purge without --yes is refused (exit 2) and deletes nothing;
#   - requeue skips the undecodable job with its reason; a requeued job is
#     back with attempts 0 (exact bytes, and one more retry before it dies
#     again); after the constraint is dropped, requeue -> each row stored
#     exactly once; two racing requeues push a job once;
#   - purge --reason X --yes deletes exactly the matching records.
set -euo pipefail
source "$(dirname "$0")/lib_it.sh"
it_setup
CTL="$BIN/auditqctl"
DEAD='{auditq}:dead'

E1=0190f3b2-5c4e-7a21-9d3b-00000000e001   # mallory, high  -> 23514
E2=0190f3b2-5c4e-7a21-9d3b-00000000e002   # mallory, low   -> 23514
E3=0190f3b2-5c4e-7a21-9d3b-00000000e003   # bob, normal, changes with \u0000 -> 22P05
R_CHECK='postgres rejected the row 2 times: new row for relation "audit_events_default" violates check constraint "it70_no_mallory"'
R_NUL='postgres rejected the row 2 times: unsupported Unicode escape sequence'
R_UND='undecodable job: job is not a msgpack map at offset 0'
WORKER_OPTS=(--set threads=3 --set max_attempts=2 --set backoff_base_ms=50 --set backoff_max_ms=100)

# job ID PRIORITY ACTOR N [CHANGES [ATTEMPTS]]: the job's msgpack bytes on
# stdout, keys in codec_encode's order (v, event_id, occurred_at, priority,
# the text fields in enum order, attempts if > 0), so a worker's re-encoding
# of it is byte-identical. occurred_at = 2020-01-01 + N us: no monthly
# partition, so rows go to audit_events_default (a name in R_CHECK).
job() {
    "$PY" - "$@" <<'EOF'
import sys, msgpack
eid, prio, actor, n = sys.argv[1:5]
changes = sys.argv[5] if len(sys.argv) > 5 else ""
attempts = int(sys.argv[6]) if len(sys.argv) > 6 else 0
d = {"v": 1, "event_id": eid, "occurred_at": 1577836800000000 + int(n), "priority": prio,
     "tenant_id": "it70", "actor_id": actor, "action": "it70.test"}
if changes:
    d["changes"] = changes
if attempts:
    d["attempts"] = attempts
sys.stdout.buffer.write(msgpack.packb(d))
EOF
}
push() {  # push QUEUE JOBARGS...
    local q=$1
    shift
    job "$@" | redis-cli -p "$REDIS_PORT" -x LPUSH "{auditq}:queue:$q" >/dev/null
}
hexof() { "$PY" -c 'import sys; print(sys.stdin.buffer.read().hex())'; }
# Element IDX of list KEY, as hex (binary-safe, unlike redis-cli's output).
lindex_hex() {
    "$PY" - "$REDIS_PORT" "$1" "$2" <<'EOF'
import socket, sys
port, key, idx = int(sys.argv[1]), sys.argv[2].encode(), sys.argv[3].encode()
s = socket.create_connection(("127.0.0.1", port))
s.sendall(b"*3\r\n$6\r\nLINDEX\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(key), key, len(idx), idx))
f = s.makefile("rb")
n = int(f.readline()[1:])
print(f.read(n).hex() if n >= 0 else "nil")
EOF
}
dead_count() { redis-cli -p "$REDIS_PORT" LLEN "$DEAD"; }
dead_is() { [ "$(dead_count)" = "$1" ]; }
# run_rc VAR CMD...: runs CMD, stdout+stderr into $OUT, exit status into VAR.
run_rc() {
    local __v=$1
    shift
    local __rc=0
    OUT=$("$@" 2>&1) || __rc=$?
    printf -v "$__v" '%s' "$__rc"
}

# ---- 1. Redis unreachable ---------------------------------------------------
port=$(free_port)
for cmd in workers "dlq list"; do
    # shellcheck disable=SC2086  # "dlq list" is two words on purpose
    run_rc rc env AUDITQ_REDIS_URL="redis://127.0.0.1:$port" "$CTL" $cmd
    assert_eq 1 "$rc" "$cmd exit status, Redis unreachable"
    assert_eq "auditqctl $cmd: cannot connect to Redis at 127.0.0.1:$port: Connection refused; check redis_url (AUDITQ_REDIS_URL) and that Redis is running" \
        "$OUT" "$cmd message, Redis unreachable"
done

# ---- 2. workers ---------------------------------------------------------------
assert_eq "no workers registered in namespace auditq" "$("$CTL" workers)" "workers before any started"
assert_eq "[]" "$("$CTL" workers --json)" "workers --json before any started"
t0=$(date +%s%3N)
worker_start w1 "${WORKER_OPTS[@]}"
pid=${WORKER_PID[w1]}
wait_for 10 bash -c "[ \"\$(\"$CTL\" workers --json | $PY -c 'import json,sys; print(len(json.load(sys.stdin)))')\" = 1 ]"
"$CTL" workers --json >"$AQ_TMP/workers.json"
"$CTL" workers >"$AQ_TMP/workers.txt"
"$PY" - "$AQ_TMP/workers.json" "$AQ_TMP/workers.txt" "$pid" "$t0" "$(date +%s%3N)" <<'EOF'
import json, re, socket, sys
ws = json.load(open(sys.argv[1]))
txt = open(sys.argv[2]).read().splitlines()
pid, t0, t1 = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
host = socket.gethostname()
def check(what, exp, got):
    if exp != got:
        sys.exit(f"FAIL: workers {what}: expected {exp!r}, got {got!r}")
w = ws[0]
check("json keys", ["id", "host", "pid", "threads", "started_ms", "started", "uptime_ms",
      "heartbeat_ms", "heartbeat_age_ms", "processed", "inflight", "state"], list(w))
check("host", host, w["host"])
check("pid", pid, w["pid"])
check("threads", 3, w["threads"])
check("state", "live", w["state"])
check("processed", 0, w["processed"])
check("inflight", 0, w["inflight"])
check("id prefix", f"{host}:{pid}:", w["id"][:len(f"{host}:{pid}:")])
check("started_ms in the test's window", True, t0 - 1000 <= w["started_ms"] <= t1)
check("heartbeat age under heartbeat_timeout_ms", True, 0 <= w["heartbeat_age_ms"] <= 2000)
check("table header", "HOST             PID THR STARTED (UTC)       UPTIME HB AGO   PROCESSED INFLIGHT", txt[0])
shown = host if len(host) <= 12 else host[:9] + "..."
row = re.fullmatch(r"(.{12}) +(\d+) +(\d+) (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) +(\S+) +(\S+) +(\S+) +(\S+)", txt[1])
if not row:
    sys.exit(f"FAIL: workers table row: {txt[1]!r}")
check("table host", shown, row[1].rstrip())
check("table pid", str(pid), row[2])
check("table threads", "3", row[3])
check("table started", w["started"][:19].replace("T", " "), row[4])
check("table processed", "0", row[7])
check("table inflight", "0", row[8])
check("table footer", "1 worker: 1 live, 0 dead (not yet recovered)", txt[2])
check("table lines", 3, len(txt))
check("table width <= 80", True, all(len(l) <= 80 for l in txt))
EOF
# Frozen past heartbeat_timeout_ms (auditqctl's: 1000 here; the worker's own
# is 2000, so it does not recover itself when thawed).
CTL_HB=(--set heartbeat_interval_ms=500 --set heartbeat_timeout_ms=1000)
kill -STOP "$pid"
wait_for 10 bash -c "\"$CTL\" ${CTL_HB[*]} workers --json | grep -q '\"state\":\"dead\"'"
"$CTL" "${CTL_HB[@]}" workers >"$AQ_TMP/workers-dead.txt"
kill -CONT "$pid"
wid=$("$CTL" workers --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
[[ "$(sed -n 2p "$AQ_TMP/workers-dead.txt")" =~ ^.{12}" "+"$pid   3 " ]] ||
    { echo "FAIL: dead worker's row: '$(sed -n 2p "$AQ_TMP/workers-dead.txt")'"; exit 1; }
line3=$(sed -n 3p "$AQ_TMP/workers-dead.txt")
[[ "$line3" =~ ^"  ^ dead (not yet recovered): silent "[0-9.]+" s, over heartbeat_timeout_ms=1000"$ ]] ||
    { echo "FAIL: dead worker line: '$line3'"; exit 1; }
assert_eq "1 worker: 0 live, 1 dead (not yet recovered)" "$(sed -n 4p "$AQ_TMP/workers-dead.txt")" "footer with a dead worker"
wait_for 10 bash -c "\"$CTL\" ${CTL_HB[*]} workers --json | grep -q '\"state\":\"live\"'"

# ---- 3. dead letters, one at a time (so their order is known) -----------------
for i in 1 2 3 4 5; do push normal "0190f3b2-5c4e-7a21-9d3b-00000000a00$i" normal alice "$i"; done
wait_for 20 bash -c "[ \"\$(psql -X -A -t -q -c 'SELECT count(*) FROM audit_events')\" = 5 ]"
redis-cli -p "$REDIS_PORT" LPUSH '{auditq}:queue:normal' 'this is not msgpack' >/dev/null
wait_for 20 dead_is 1
push normal "$E3" normal bob 3 '{"note":"nul \u0000 inside"}'
wait_for 20 dead_is 2
psql_q "ALTER TABLE audit_events ADD CONSTRAINT it70_no_mallory CHECK (actor_id IS DISTINCT FROM 'mallory')" >/dev/null
push low "$E2" low mallory 2
wait_for 20 dead_is 3
push high "$E1" high mallory 1
wait_for 20 dead_is 4
t1=$(date +%s%3N)

# ---- 4. dlq list: exact lines; JSON ---------------------------------------------
"$CTL" dlq list >"$AQ_TMP/list.txt"
"$CTL" dlq list --json >"$AQ_TMP/list.json"
"$PY" - "$AQ_TMP/list.json" "$AQ_TMP/list.txt" "$wid" "$t0" "$t1" "$R_CHECK" "$R_NUL" "$R_UND" <<'EOF'
import json, re, sys
d = json.load(open(sys.argv[1]))
txt = open(sys.argv[2]).read().splitlines()
wid, t0, t1 = sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
r_check, r_nul, r_und = sys.argv[6:9]
def check(what, exp, got):
    if exp != got:
        sys.exit(f"FAIL: dlq list {what}: expected {exp!r}, got {got!r}")
check("json matched/total", (4, 4), (d["matched"], d["total"]))
recs = d["records"]
check("json event ids", ["0190f3b2-5c4e-7a21-9d3b-00000000e001", "0190f3b2-5c4e-7a21-9d3b-00000000e002",
                         "0190f3b2-5c4e-7a21-9d3b-00000000e003", None], [r["event_id"] for r in recs])
check("json indexes", [1, 2, 3, 4], [r["index"] for r in recs])
check("json priorities", ["high", "low", "normal", "normal"], [r["priority"] for r in recs])
check("json attempts", [2, 2, 2, 0], [r["attempts"] for r in recs])
check("json sqlstates", ["23514", "23514", "22P05", None], [r["sqlstate"] for r in recs])
check("json reasons (full)", [r_check, r_check, r_nul, r_und], [r["reason"] for r in recs])
check("json workers", [wid] * 4, [r["worker"] for r in recs])
check("json job_bytes", [145, 144, 180, 19], [r["job_bytes"] for r in recs])
for r in recs:
    check("failed_at in the test's window", True, t0 <= r["failed_at_ms"] <= t1)
# The table: two lines per record, exact but for the age.
def cut(s):
    return s if len(s) <= 80 else s[:77] + "..."
exp = ["# FAILED AT (UTC)      PRIORITY ATT EVENT ID", "  AGE, SQLSTATE: REASON"]
for r, (prio, att, eid) in zip(recs, [("high    ", "2", "0190f3b2-5c4e-7a21-9d3b-00000000e001"),
                                      ("low     ", "2", "0190f3b2-5c4e-7a21-9d3b-00000000e002"),
                                      ("normal  ", "2", "0190f3b2-5c4e-7a21-9d3b-00000000e003"),
                                      ("normal  ", "0", "-")]):
    exp.append(f"{r['index']} {r['failed_at'][:19]}Z {prio}   {att} {eid}")
    st = f", {r['sqlstate']}" if r["sqlstate"] else ""
    exp.append(f"  {{age}} ago{st}: {r['reason']}")
check("table line count", len(exp) + 1, len(txt))
for i, (e, g) in enumerate(zip(exp, txt)):
    if "{age}" in e:  # the age is whatever it is (< 1 min); the rest is exact, cut at 80
        m = re.match(r"  (\d+)s ago", g)
        if not m or int(m[1]) > 60:
            sys.exit(f"FAIL: dlq list line {i + 1}: expected {e!r}, got {g!r}")
        e = cut(e.replace("{age}", m[1] + "s"))
    check(f"table line {i + 1}", e, g)
check("summary", "4 of 4 dead letters match", txt[-1])
check("width <= 80", True, all(len(l) <= 80 for l in txt))
EOF

# ---- 5. filters: exact counts -------------------------------------------------------
summary() { "$CTL" dlq list "$@" | tail -n 1; }
assert_eq "2 of 4 dead letters match" "$(summary --reason 'check constraint')" "--reason 'check constraint'"
assert_eq "0 of 4 dead letters match" "$(summary --reason 'Check constraint')" "--reason is case-sensitive"
assert_eq "1 of 4 dead letters match" "$(summary --reason 'not a msgpack map')" "--reason 'not a msgpack map'"
assert_eq "2 of 4 dead letters match" "$(summary --sqlstate 23514)" "--sqlstate 23514"
assert_eq "1 of 4 dead letters match" "$(summary --sqlstate 22P05)" "--sqlstate 22P05"
assert_eq "1 of 4 dead letters match" "$(summary --priority low)" "--priority low"
assert_eq "2 of 4 dead letters match" "$(summary --priority normal)" "--priority normal"
assert_eq "1 of 4 dead letters match" "$(summary --sqlstate 23514 --priority high)" "--sqlstate 23514 --priority high"
assert_eq "0 of 4 dead letters match" "$(summary --reason undecodable --priority high)" "--reason undecodable --priority high"
assert_eq "4 of 4 dead letters match" "$(summary --newer-than 1h)" "--newer-than 1h"
assert_eq "0 of 4 dead letters match" "$(summary --older-than 1h)" "--older-than 1h"
assert_eq "1 of 4 dead letters match" "$(summary --event-id "${E2^^}")" "--event-id (upper case)"
assert_eq "4 of 4 dead letters match (the newest 1 shown: --limit 1)" "$(summary --limit 1)" "--limit 1 summary"
assert_eq 5 "$("$CTL" dlq list --limit 1 | wc -l)" "--limit 1: header (2) + one record (2) + summary"
assert_eq "[1, 2] 2 4" "$("$CTL" dlq list --json --sqlstate 23514 |
    "$PY" -c 'import json,sys; d=json.load(sys.stdin); print([r["index"] for r in d["records"]], d["matched"], d["total"])')" \
    "list --json --sqlstate 23514"
run_rc rc "$CTL" dlq list --older-than 30
assert_eq 2 "$rc" "a duration without a unit is a usage error"
assert_eq "auditqctl dlq list: '30' is not a duration; use a number and a unit (ms, s, m, h, d, w), e.g. 30s, 15m, 2h, 7d or 1h30m; see 'auditqctl dlq --help'" \
    "$OUT" "duration error text"

# ---- 6. show: every field; --raw bytes --------------------------------------------------
fa2=$("$CTL" dlq list --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["records"][1]["failed_at"])')
"$CTL" dlq show 2 >"$AQ_TMP/show2.txt"
sed -E 's/^(  failed_at    [^ ]+ )\([0-9.]+ (ms|s|min|h) ago\)$/\1(AGE ago)/' "$AQ_TMP/show2.txt" >"$AQ_TMP/show2.norm"
expected=$(cat <<EOF
dead letter #2
  failed_at    $fa2 (AGE ago)
  reason       $R_CHECK
  sqlstate     23514
  attempts     2
  priority     low
  worker       $wid
  job          144 bytes (msgpack bin)
job:
  v            1
  event_id     $E2
  occurred_at  2020-01-01T00:00:00.000002Z (1577836800000002 us)
  priority     low
  attempts     1
  tenant_id    "it70"
  actor_id     "mallory"
  action       "it70.test"
EOF
)
assert_eq "$expected" "$(cat "$AQ_TMP/show2.norm")" "dlq show 2"
# The record keeps the job as the worker last fetched it: its re-encoding
# with attempts=1 after the first failure.
assert_eq "$(job "$E2" low mallory 2 "" 1 | hexof)" "$("$CTL" dlq show 2 --raw | hexof)" "show 2 --raw: exact job bytes"
assert_eq "$(job "$E2" low mallory 2 "" 1 | hexof)" "$("$CTL" dlq show --event-id "$E2" --raw | hexof)" "show --event-id --raw"
"$CTL" dlq show --event-id "$E2" --json | "$PY" -c '
import base64, json, sys
r = json.load(sys.stdin)
assert len(r) == 1, r
r = r[0]
exp = {"v": 1, "event_id": sys.argv[1], "occurred_at_us": 1577836800000002,
       "occurred_at": "2020-01-01T00:00:00.000002Z", "priority": "low", "attempts": 1,
       "tenant_id": "it70", "actor_id": "mallory", "action": "it70.test"}
assert r["job"] == exp, r["job"]
assert r["job_error"] is None and r["job_encoding"] == "bin" and r["extra"] == {}, r
assert base64.b64decode(r["job_base64"]).hex() == sys.argv[2], r["job_base64"]
assert (r["index"], r["reason"], r["sqlstate"], r["attempts"]) == (2, sys.argv[3], "23514", 2), r
' "$E2" "$(job "$E2" low mallory 2 "" 1 | hexof)" "$R_CHECK"
"$CTL" dlq show 4 | sed -E 's/\([0-9.]+ (ms|s|min|h) ago\)$/(AGE ago)/' | sed 1,2d >"$AQ_TMP/show4.txt"
expected=$(cat <<EOF
  reason       $R_UND
  sqlstate     -
  attempts     0
  priority     normal
  worker       $wid
  job          19 bytes (msgpack bin)
job: undecodable: job is not a msgpack map at offset 0
  00000000  74 68 69 73 20 69 73 20  6e 6f 74 20 6d 73 67 70  |this is not msgp|
  00000010  61 63 6b                                          |ack|
EOF
)
assert_eq "$expected" "$(cat "$AQ_TMP/show4.txt")" "dlq show 4 (undecodable job: error and hex dump)"
assert_eq "this is not msgpack" "$("$CTL" dlq show 4 --raw)" "show 4 --raw"
run_rc rc "$CTL" dlq show 5
assert_eq 1 "$rc" "show of a missing index"
assert_eq "auditqctl dlq show: there is no dead letter #5; the list holds 4 (see 'auditqctl dlq list')" "$OUT" "show 5 message"

# ---- 7. purge without --yes: refused, nothing deleted -------------------------------------
run_rc rc "$CTL" dlq purge --reason 'check constraint'
assert_eq 2 "$rc" "purge without --yes"
assert_eq "auditqctl dlq purge: would purge 2 of 4 dead letters; nothing deleted; add --yes to delete them" "$OUT" "purge without --yes message"
run_rc rc "$CTL" dlq purge --yes
assert_eq 2 "$rc" "purge without a filter or --all"
assert_eq "auditqctl dlq purge: refusing to purge without a filter; --all --yes would purge 4 of 4 dead letters. Give a filter (--reason, --sqlstate, --priority, --older-than, --newer-than, --event-id) or --all, and --yes" \
    "$OUT" "purge without a filter message"
run_rc rc "$CTL" dlq purge --all
assert_eq 2 "$rc" "purge --all without --yes"
assert_eq 4 "$(dead_count)" "dead letters after refused purges"
assert_eq 0 "$(stat dead_purged)" "dead_purged after refused purges"

# ---- 8. requeue ------------------------------------------------------------------------------
# An undecodable job is skipped, with its reason, and stays.
run_rc rc "$CTL" dlq requeue --reason undecodable
assert_eq 0 "$rc" "requeue of an undecodable job: exit status"
assert_eq "skipped #4 (event -): undecodable job: job is not a msgpack map at offset 0; left in the dead list
requeued 0 jobs (1 skipped: undecodable job)" "$OUT" "requeue of an undecodable job"
assert_eq 4 "$(dead_count)" "dead letters after the skipped requeue"
# Dry run: lists, changes nothing.
"$CTL" dlq requeue --event-id "$E1" --dry-run >"$AQ_TMP/dry.txt"
assert_eq "would requeue 1 job" "$(tail -n 1 "$AQ_TMP/dry.txt")" "requeue --dry-run summary"
assert_eq "1 $(sed -n 3p "$AQ_TMP/list.txt" | cut -d' ' -f2-)" "$(sed -n 3p "$AQ_TMP/dry.txt")" "requeue --dry-run lists the record"
assert_eq 4 "$(dead_count)" "dead letters after --dry-run"
assert_eq 0 "$(stat requeued)" "requeued after --dry-run"

# Attempts reset: with no worker running, the requeued job sits on its
# queue, re-encoded with attempts 0 (the key omitted), at the oldest end.
worker_stop w1
assert_eq "requeued 1 job" "$("$CTL" dlq requeue --event-id "$E2")" "requeue E2"
assert_eq 3 "$(dead_count)" "dead letters after requeueing E2"
assert_eq 1 "$(redis-cli -p "$REDIS_PORT" LLEN '{auditq}:queue:low')" "E2 back on the low queue"
assert_eq "$(job "$E2" low mallory 2 | hexof)" "$(lindex_hex '{auditq}:queue:low' -1)" "requeued job: exact bytes, attempts 0"
assert_eq 1 "$(stat requeued)" "stats requeued"
# The constraint is still there: E2 fails again, and takes max_attempts=2
# tries again (one retry) -- with its old attempts it would die at once.
retried=$(stat retried)
worker_start w2 "${WORKER_OPTS[@]}"
wait_for 20 dead_is 4
assert_eq $((retried + 1)) "$(stat retried)" "one retry after the requeue (attempts were reset)"
assert_eq "$E2 2" "$("$CTL" dlq list --json --limit 1 | "$PY" -c 'import json,sys; r=json.load(sys.stdin)["records"][0]; print(r["event_id"], r["attempts"])')" \
    "E2 dead-lettered again, newest, after 2 attempts"

# Fix the cause, requeue both 23514 rows: each is stored exactly once.
psql_q "ALTER TABLE audit_events DROP CONSTRAINT it70_no_mallory" >/dev/null
assert_eq "requeued 2 jobs" "$("$CTL" dlq requeue --sqlstate 23514)" "requeue after the fix"
wait_for 20 drained
wait_for 10 bash -c "[ \"\$(psql -X -A -t -q -c \"SELECT count(*) FROM audit_events WHERE actor_id = 'mallory'\")\" = 2 ]"
assert_eq "2 2" "$(psql_q "SELECT count(*), count(DISTINCT event_id) FROM audit_events WHERE event_id IN ('$E1', '$E2')" | tr '|' ' ')" \
    "requeued rows stored exactly once"
assert_eq 2 "$(dead_count)" "dead letters after the successful requeue"
assert_eq 3 "$(stat requeued)" "stats requeued after the fix"
assert_eq 7 "$(rows)" "rows: 5 good + the 2 requeued"

# Two requeues racing over the same record push its job once.
worker_stop w2
"$CTL" dlq requeue --sqlstate 22P05 >"$AQ_TMP/race1.txt" 2>&1 &
r1=$!
"$CTL" dlq requeue --sqlstate 22P05 >"$AQ_TMP/race2.txt" 2>&1 &
r2=$!
wait "$r1"
wait "$r2"
assert_eq 1 "$(redis-cli -p "$REDIS_PORT" LLEN '{auditq}:queue:normal')" "racing requeues: the job is queued once"
assert_eq 4 "$(stat requeued)" "racing requeues: requeued counts it once"
races=$(cat "$AQ_TMP/race1.txt" "$AQ_TMP/race2.txt" | sort | tr '\n' '|')
case "$races" in
    "requeued 0 jobs|requeued 1 job|" | "requeued 0 jobs; 1 already gone (removed by another process meanwhile)|requeued 1 job|") ;;
    *) echo "FAIL: racing requeue outputs: $races"; exit 1 ;;
esac
assert_eq 1 "$(dead_count)" "dead letters after the racing requeues"
worker_start w3 "${WORKER_OPTS[@]}"
wait_for 20 dead_is 2   # still refused by jsonb: dead again

# ---- 9. purge --reason X --yes deletes exactly the matching records -------------------------
assert_eq "purged 1 dead letter" "$("$CTL" dlq purge --reason 'unsupported Unicode' --yes)" "purge --reason --yes"
assert_eq "purged 0 dead letters" "$("$CTL" dlq purge --reason 'no such reason' --yes)" "purge matching nothing"
assert_eq 1 "$(stat dead_purged)" "stats dead_purged"
assert_eq "1 of 1 dead letters match" "$(summary)" "one dead letter left"
assert_eq "$R_UND" "$("$CTL" dlq list --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["records"][0]["reason"])')" \
    "the one left is the undecodable job"
worker_stop w3
it_pass "auditqctl workers (exact host/pid/threads, dead marking) and dlq list/show/requeue/purge with exact lines, counts, bytes and stats"
