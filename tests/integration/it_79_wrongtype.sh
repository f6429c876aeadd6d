#!/usr/bin/env bash
# One Redis key of the wrong type stops only what uses it, loses nothing,
# and is named -- with the fix -- in the worker log (once, not per fetch),
# /readyz (200, "degraded"), /metrics (auditq_redis_key_wrong_type) and
# `auditqctl stats` (text and --json: every other number, exit 1). Each kind
# of key in turn, with a running worker (2 threads) and events on the other
# priorities:
#   1. {auditq}:queue:low a string: the producer's LPUSH (sync and async)
#      names the key and the fix; critical/high/normal are all stored;
#   2. {auditq}:dead a string: a batch with a dead letter stays in flight
#      (its good rows committed), the other threads keep storing; an
#      oversized job waits in its queue with the jobs newer than it, the
#      older ones are stored; after DEL the dead letters land, nothing
#      stored twice;
#   3. {auditq}:retry a string: the same for a row PostgreSQL refuses;
#   4. {auditq}:stats a string: events keep flowing, only the counters stop;
#   5. {auditq}:workers a string: events keep flowing, heartbeats resume
#      after DEL;
#   6. one writer thread's in-flight list a string: that thread stops, the
#      other stores everything.
# After each DEL everything drains and every event is stored exactly once.
set -euo pipefail
source "$(dirname "$0")/lib_it.sh"
for tool in curl redis-cli; do
    command -v "$tool" >/dev/null || { echo "FAIL: $tool is not installed; run 'make deps'"; exit 1; }
done

it_setup
HP=$(free_port)
URL="http://127.0.0.1:$HP"
C="$TBIN/it_client"
R() { redis-cli -p "$REDIS_PORT" "$@"; }
LOG="$AQ_TMP/w1.log"
FIX="inspect it with TYPE/GET, then RENAME it away or DEL it"

metric() { curl -sf "$URL/metrics" | awk -v k="$1" '$1 == k { print $2 }'; }
metric_is() { [[ "$(metric "$1")" == "$2" ]]; }
readyz_is() { [[ "$(curl -s "$URL/readyz")" == "$1" ]]; }
rows_are() { [[ "$(rows "${2:-}")" == "$1" ]]; }
# the worker log's lines saying KEY has the wrong type
wrong_lines() { grep -F 'msg="redis key has the wrong type" key="'"$1"'"' "$LOG" || true; }
# stats_out [--json]: "<exit status>" then auditqctl stats' stdout
stats_out() {
    local rc=0 out
    out=$("$BIN/auditqctl" stats "$@" 2>"$AQ_TMP/stats.err") || rc=$?
    printf '%s\n%s\n' "$rc" "$out"
}
jget() { "$PY" -c 'import json,sys; v=json.loads(sys.stdin.read().split("\n",1)[1])
for p in sys.argv[1].split("."): v = v[int(p)] if isinstance(v, list) else v[p]
print(json.dumps(v))' "$1"; }
# push_batch PRIO N TAG [JUNK]: one variadic LPUSH of N valid jobs (request_id
# req-TAG-i) and, if given, the undecodable job JUNK taken first: one batch.
push_batch() {
    "$PY" - "$REDIS_PORT" "$@" <<'PYEOF'
import socket, sys, time, uuid, msgpack
port, prio, n, tag = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
names = ["critical", "high", "normal", "low"]
t0 = int(time.time() * 1e6)
jobs = [msgpack.packb({"v": 1, "event_id": str(uuid.uuid4()), "occurred_at": t0 + i,
                       "priority": names[prio], "action": "it79.wrongtype",
                       "request_id": "req-%s-%06d" % (tag, i)}) for i in range(n)]
if len(sys.argv) > 5:
    jobs.insert(0, sys.argv[5].encode())   # LPUSH: the first argument ends up oldest
args = [b"LPUSH", ("{auditq}:queue:" + names[prio]).encode()] + jobs
cmd = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)
s = socket.create_connection(("127.0.0.1", port))
s.sendall(cmd)
reply = s.makefile("rb").readline()
assert reply.startswith(b":"), reply
PYEOF
}
# exactly_once TAG N: N rows tagged TAG, N distinct event ids
exactly_once() {
    assert_eq "$2 $2" "$(psql_q "SELECT count(*) || ' ' || count(DISTINCT event_id) FROM audit_events WHERE request_id LIKE 'req-$1-%'")" \
        "rows and distinct event ids tagged $1"
}

# Weighted mode reads every queue's length on each fetch (strict mode stops
# at the first non-empty one, so before this fix it hit the bad key only
# when the queues above it were empty).
worker_start w1 --set threads=2 --set batch_size=50 --set http_listen=127.0.0.1:$HP \
    --set max_attempts=2 --set backoff_base_ms=50 --set backoff_max_ms=200 --set priority_mode=weighted
wait_for 10 readyz_is ready
WID=$(sed -n 's/.*msg="worker started" id=\([^ ]*\) .*/\1/p' "$LOG")
[[ -n "$WID" ]] || { echo "FAIL: no worker id in the log"; exit 1; }

# ---- 1. a queue: the other priorities are served ----------------------------
K='{auditq}:queue:low'
R SET "$K" oops >/dev/null
rc=0; "$C" send --events 1 --priority 3 --tag lowsync >/dev/null 2>"$AQ_TMP/p.err" || rc=$?
assert_eq "1|send: Redis refused LPUSH: redis key $K is not a list (WRONGTYPE): $FIX; events of this priority are refused until then" \
    "$rc|$(cat "$AQ_TMP/p.err")" "sync producer's error for a wrong-typed queue"
rc=0; IT_FLUSH_MS=1500 "$C" exact --events 4 --mode async --tag lowasync --set close_timeout_ms=200 >/dev/null 2>"$AQ_TMP/p.err" || rc=$?
# (The async buffer acknowledges in order: the low event holds back the
# count of the three delivered before it; they are stored all the same.)
assert_eq "1|flush/close: flush: 4 events not yet acknowledged by Redis after 1500 ms; last error: Redis refused LPUSH: redis key $K is not a list (WRONGTYPE): $FIX; events of this priority are refused until then" \
    "$rc|$(head -n 1 "$AQ_TMP/p.err")" "async producer's error for a wrong-typed queue"
for p in 0 1 2; do "$C" send --events 200 --priority $p --tag q$p; done
wait_for 30 rows_are 603   # 3 x 200, and the async client's critical, high and normal
for p in 0 1 2; do exactly_once q$p 200; done
wait_for 10 metric_is "auditq_redis_key_wrong_type{key=\"$K\",type=\"string\",expected=\"list\"}" 1
EXPECT="redis key $K is a string, expected a list: $FIX; nothing is fetched from it meanwhile; the other queues are served"
assert_eq 200 "$(curl -s -o /dev/null -w '%{http_code}' "$URL/readyz")" "/readyz status with a wrong-typed queue"
assert_eq "ready, degraded: $EXPECT" "$(curl -s "$URL/readyz")" "/readyz body"
# Fetches run every few ms and the sample every second: one line, not one per fetch.
sleep 2
assert_eq 1 "$(wrong_lines "$K" | wc -l)" "log lines naming $K"
wrong_lines "$K" | grep -qF "type=string expected=list" || { echo "FAIL: log line: $(wrong_lines "$K")"; exit 1; }
wrong_lines "$K" | grep -qF "error=\"$EXPECT\"" || { echo "FAIL: log line lacks the fix: $(wrong_lines "$K")"; exit 1; }
out=$(stats_out)
assert_eq 1 "$(head -n 1 <<<"$out")" "auditqctl stats exit status with a wrong-typed key"
grep -qxF "problem: redis key $K is a string, expected a list: $FIX; its numbers show as unknown here; the worker log says what waits meanwhile" <<<"$out" ||
    { echo "FAIL: stats does not name the key: $out"; exit 1; }
grep -qE '^low +\? +-$' <<<"$out" || { echo "FAIL: stats low line: $out"; exit 1; }
grep -qE '^critical +0 +-$' <<<"$out" || { echo "FAIL: stats critical line: $out"; exit 1; }
grep -q "processed 603" <<<"$out" || { echo "FAIL: stats processed: $out"; exit 1; }
assert_eq "auditqctl stats: 1 Redis key of the wrong type (named above, with the fix); the numbers read from it are unknown" \
    "$(cat "$AQ_TMP/stats.err")" "stats' stderr"
out=$(stats_out --json)
assert_eq 1 "$(head -n 1 <<<"$out")" "stats --json exit status"
assert_eq '"{auditq}:queue:low"' "$(jget wrong_type_keys.0.key <<<"$out")" "stats --json wrong key"
assert_eq '"string"' "$(jget wrong_type_keys.0.type <<<"$out")" "stats --json wrong key's type"
assert_eq null "$(jget queues.low.depth <<<"$out")" "stats --json low depth"
assert_eq 0 "$(jget queues.high.depth <<<"$out")" "stats --json high depth"
assert_eq 603 "$(jget processed <<<"$out")" "stats --json processed"
R DEL "$K" >/dev/null
"$C" send --events 200 --priority 3 --tag q3
wait_for 30 rows_are 803
exactly_once q3 200
wait_for 10 metric_is "auditq_redis_key_wrong_type{key=\"$K\",type=\"string\",expected=\"list\"}" 0
wait_for 10 readyz_is ready
grep -qF 'msg="redis key is usable again" key="'"$K"'" expected=list' "$LOG" || { echo "FAIL: no 'usable again' line"; exit 1; }
assert_eq 0 "$(head -n 1 <<<"$(stats_out)")" "stats exit status after DEL"
echo "queue: 603 stored beside a wrong-typed low queue; named in log (1 line), /readyz, /metrics, stats; drained after DEL"

# ---- 2. the dead list: the batch with a dead letter waits in flight ---------
K='{auditq}:dead'
R SET "$K" oops >/dev/null
push_batch 2 20 d2 'this is not msgpack'   # one batch: an undecodable job and 20 good ones
wait_for 10 metric_is "auditq_redis_key_wrong_type{key=\"$K\",type=\"string\",expected=\"list\"}" 1
"$C" send --events 300 --priority 1 --tag d1   # the other thread stores these
wait_for 30 rows_are 300 "WHERE request_id LIKE 'req-d1-%'"
wait_for 10 rows_are 20 "WHERE request_id LIKE 'req-d2-%'"   # committed; the settle waits
wait_for 10 bash -c "[ \"\$(\"$BIN/auditqctl\" stats --json 2>/dev/null | $PY -c 'import json,sys; print(json.load(sys.stdin)[\"inflight\"])')\" = 21 ]"
assert_eq 1 "$(wrong_lines "$K" | wc -l)" "log lines naming $K"
wrong_lines "$K" | grep -qF "meanwhile a batch with a dead letter stays in flight" || { echo "FAIL: $(wrong_lines "$K")"; exit 1; }
# An oversized job cannot be dead-lettered now: the fetch takes only the
# jobs older than it; it and the newer ones wait in their queue.
"$PY" - "$REDIS_PORT" <<'PYEOF'
import socket, sys, time, uuid, msgpack
t0 = int(time.time() * 1e6)
job = lambda tag, i: msgpack.packb({"v": 1, "event_id": str(uuid.uuid4()), "occurred_at": t0 + i,
    "priority": "high", "action": "it79.wrongtype", "request_id": "req-%s-%06d" % (tag, i)})
jobs = [job("oold", i) for i in range(5)] + [b"x" * 70000] + [job("onew", i) for i in range(5)]
args = [b"LPUSH", b"{auditq}:queue:high"] + jobs    # first argument ends up oldest
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
assert s.makefile("rb").readline().startswith(b":")
PYEOF
wait_for 10 rows_are 5 "WHERE request_id LIKE 'req-oold-%'"
sleep 1
assert_eq "0 6" "$(rows "WHERE request_id LIKE 'req-onew-%'") $(R LLEN '{auditq}:queue:high')" \
    "newer jobs stored, and jobs left in the high queue, behind the oversized one"
R DEL "$K" >/dev/null
wait_for 30 drained
assert_eq "undecodable job: job is 70000 bytes, larger than max_job_bytes=65536
undecodable job: job is not a msgpack map at offset 0" "$(dead_reasons | LC_ALL=C sort)" "the dead letters, after DEL"
exactly_once d1 300
exactly_once d2 20
exactly_once oold 5
exactly_once onew 5
echo "dead list: the batch waited in flight (20 rows committed), 300 stored meanwhile, an oversized job waited in its queue with 5 newer; after DEL 2 dead letters, nothing twice"

# ---- 3. the retry set: the batch with a refused row waits in flight ---------
K='{auditq}:retry'
R SET "$K" oops >/dev/null
"$C" bad --valid 9 --tag r2 >/dev/null    # one LPUSH: 8 good rows and one PostgreSQL refuses
wait_for 10 metric_is "auditq_redis_key_wrong_type{key=\"$K\",type=\"string\",expected=\"zset\"}" 1
"$C" send --events 300 --priority 0 --tag r0
wait_for 30 rows_are 300 "WHERE request_id LIKE 'req-r0-%'"
wait_for 10 rows_are 8 "WHERE request_id LIKE 'req-r2-%'"
assert_eq 9 "$(stats_out --json | jget inflight)" "jobs held in flight meanwhile"
R DEL "$K" >/dev/null
wait_for 30 drained
exactly_once r0 300
exactly_once r2 8
assert_eq "postgres rejected the row 2 times: unsupported Unicode escape sequence [22P05]
undecodable job: job is 70000 bytes, larger than max_job_bytes=65536
undecodable job: job is not a msgpack map at offset 0" "$(dead_reasons | LC_ALL=C sort)" "dead letters after the retry"
echo "retry set: the batch waited in flight, 300 stored meanwhile; after DEL the refused row retried and dead-lettered"

# ---- 4. the stats hash: events flow, counters stop -----------------------------
K='{auditq}:stats'
R SET "$K" oops >/dev/null
"$C" send --events 100 --priority 2 --tag s2
wait_for 30 rows_are 100 "WHERE request_id LIKE 'req-s2-%'"
wait_for 10 metric_is "auditq_redis_key_wrong_type{key=\"$K\",type=\"string\",expected=\"hash\"}" 1
out=$(stats_out --json)
assert_eq "1 null 0" "$(head -n 1 <<<"$out") $(jget processed <<<"$out") $(jget queues.normal.depth <<<"$out")" \
    "stats --json: exit status, processed, normal depth"
R DEL "$K" >/dev/null
"$C" send --events 7 --priority 2 --tag s3
wait_for 30 rows_are 7 "WHERE request_id LIKE 'req-s3-%'"
wait_for 10 bash -c "[ \"\$(\"$BIN/auditqctl\" stats --json | $PY -c 'import json,sys; print(json.load(sys.stdin)[\"processed\"])')\" = 7 ]"
exactly_once s2 100
echo "stats hash: 100 stored while counters were unknown; counting restarts after DEL"

# ---- 5. the worker registry ---------------------------------------------------
K='{auditq}:workers'
R SET "$K" oops >/dev/null
"$C" send --events 100 --priority 1 --tag g1
wait_for 30 rows_are 100 "WHERE request_id LIKE 'req-g1-%'"
wait_for 10 metric_is "auditq_redis_key_wrong_type{key=\"$K\",type=\"string\",expected=\"zset\"}" 1
assert_eq null "$(stats_out --json | jget workers)" "stats --json workers"
R DEL "$K" >/dev/null
wait_for 10 bash -c "[ \"\$(\"$BIN/auditqctl\" stats --json | $PY -c 'import json,sys; print(json.load(sys.stdin)[\"workers\"])')\" = 1 ]"
exactly_once g1 100
echo "registry: 100 stored, heartbeats back after DEL"

# ---- 6. one thread's in-flight list --------------------------------------------
K="{auditq}:inflight:$WID:0"
R SET "$K" oops >/dev/null
wait_for 10 metric_is "auditq_redis_key_wrong_type{key=\"$K\",type=\"string\",expected=\"list\"}" 1
"$C" send --events 300 --priority 2 --tag i2
wait_for 30 rows_are 300 "WHERE request_id LIKE 'req-i2-%'"
R DEL "$K" >/dev/null
wait_for 10 drained
exactly_once i2 300
echo "in-flight list: thread 1 stored all 300 while thread 0's list was wrong"

for k in '{auditq}:queue:low' '{auditq}:dead' '{auditq}:retry' '{auditq}:stats' '{auditq}:workers' "{auditq}:inflight:$WID:0"; do
    assert_eq 1 "$(wrong_lines "$k" | wc -l)" "log lines naming $k"
done
worker_stop w1
it_pass "wrongtype: each wrong-typed key stopped only what uses it, was named with the fix, and nothing was lost or stored twice"
