#!/usr/bin/env bash
# auditqctl stats --watch against a real Redis (+ a worker):
#   - Redis unreachable at the first sample: exit 1, the message names
#     redis_url; bad --watch/--count: exit 2;
#   - --watch 0.2 --count 3 piped: exactly 3 blocks, exact layout, every
#     line <= 80 columns, exit 0;
#   - rates: 500 jobs pushed between two samples -> events/s in x elapsed =
#     500 exactly, written 0; while a worker drains, written x elapsed =
#     processed delta and in = 0 (each sample is one atomic snapshot);
#   - Redis stopped mid-watch: an error line per refresh, no exit, blocks
#     again once it is back;
#   - SIGINT / SIGTERM stop it with exit 0; on a terminal it redraws in place.
set -euo pipefail
source "$(dirname "$0")/lib_it.sh"
it_setup
CTL="$BIN/auditqctl"
run_rc() {  # run_rc VAR CMD...: stdout+stderr into $OUT, exit status into VAR
    local __v=$1
    shift
    local __rc=0
    OUT=$("$@" 2>&1) || __rc=$?
    printf -v "$__v" '%s' "$__rc"
}
blocks() { grep -c '^auditq  namespace=auditq ' "$1" || true; }

# ---- 1. errors ------------------------------------------------------------------
port=$(free_port)
run_rc rc env AUDITQ_REDIS_URL="redis://127.0.0.1:$port" "$CTL" stats --watch 1
assert_eq 1 "$rc" "watch with Redis unreachable at the first sample"
assert_eq "auditqctl stats: cannot connect to Redis at 127.0.0.1:$port: Connection refused; check redis_url (AUDITQ_REDIS_URL) and that Redis is running" \
    "$OUT" "unreachable message"
run_rc rc "$CTL" stats --watch 0.1
assert_eq 2 "$rc" "--watch 0.1"
assert_eq "auditqctl stats: --watch '0.1': give the refresh interval in seconds, 0.2 to 86400 (e.g. --watch 2 or --watch 0.5)" "$OUT" "--watch 0.1 message"
run_rc rc "$CTL" stats --count 3
assert_eq 2 "$rc" "--count without --watch"
assert_eq "auditqctl stats: --count needs --watch SECS" "$OUT" "--count without --watch message"

# ---- 2. three blocks, exact layout -------------------------------------------------
start=$(date +%s%N)
run_rc rc "$CTL" stats --watch 0.2 --count 3
ms=$((($(date +%s%N) - start) / 1000000))
assert_eq 0 "$rc" "--watch 0.2 --count 3 exit status"
printf '%s\n' "$OUT" >"$AQ_TMP/watch.txt"
assert_eq 3 "$(blocks "$AQ_TMP/watch.txt")" "blocks printed"
[ "$ms" -ge 400 ] || { echo "FAIL: 3 refreshes 0.2 s apart took only $ms ms"; exit 1; }
"$PY" - "$AQ_TMP/watch.txt" <<'EOF'
import re, sys
lines = open(sys.argv[1]).read().split("\n")
body = ["", "queue             depth       oldest",
        "critical              0            -", "high                  0            -",
        "normal                0            -", "low                   0            -",
        "total                 0", "", "in flight 0   retry 0   dead 0", "workers   0 live", "",
        "processed 0   failed 0   retried 0   recovered 0   dead-lettered 0"]
exp = []
for b in range(3):
    exp += ([""] if b else []) + ["HEADER"]
    exp += ["events in -   written -   (rates from the next refresh)" if b == 0 else "events in 0.0/s   written 0.0/s"]
    exp += body
exp.append("")  # the output ends with a newline
if len(lines) != len(exp):
    sys.exit(f"FAIL: watch output has {len(lines)} lines, expected {len(exp)}:\n" + "\n".join(lines))
for i, (e, g) in enumerate(zip(exp, lines)):
    if e == "HEADER":
        if not re.fullmatch(r"auditq  namespace=auditq   \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ   every 0\.2 s", g):
            sys.exit(f"FAIL: watch line {i + 1}: header expected, got {g!r}")
    elif e != g:
        sys.exit(f"FAIL: watch line {i + 1}: expected {e!r}, got {g!r}")
    if len(g) > 80:
        sys.exit(f"FAIL: watch line {i + 1} is {len(g)} columns: {g!r}")
EOF

# ---- 3. rates ---------------------------------------------------------------------------
# 500 jobs pushed right after the first sample, none consumed.
"$CTL" stats --watch 2 --count 2 --json >"$AQ_TMP/rate-in.json" &
w=$!
wait_for 10 bash -c "[ -s '$AQ_TMP/rate-in.json' ]"
"$BIN/auditq-bench" enqueue --events 500 --async --no-ref --quiet --seed 71 >/dev/null
wait "$w"
"$PY" - "$AQ_TMP/rate-in.json" <<'EOF'
import json, sys
a, b = [json.loads(l) for l in open(sys.argv[1])]
assert a["in_per_s"] is None and a["written_per_s"] is None, a
dt = (b["time_ms"] - a["time_ms"]) / 1000
queued = lambda s: sum(q["depth"] for q in s["queues"].values())
assert queued(b) - queued(a) == 500, (queued(a), queued(b))
assert abs(b["in_per_s"] - 500 / dt) <= 0.051, f"in_per_s {b['in_per_s']} for 500 jobs in {dt} s"
assert b["written_per_s"] == 0.0, b
EOF
# A worker drains them (slowly: one thread, batches of 10) under a watch:
# written matches processed, and nothing new comes in.
"$BIN/auditq-bench" enqueue --events 4500 --async --no-ref --quiet --seed 72 >/dev/null
"$CTL" stats --watch 0.5 --count 6 --json >"$AQ_TMP/rate-out.json" &
w=$!
wait_for 10 bash -c "[ -s '$AQ_TMP/rate-out.json' ]"
worker_start w1 --set threads=1 --set batch_size=10
wait "$w"
"$PY" - "$AQ_TMP/rate-out.json" <<'EOF'
import json, sys
ss = [json.loads(l) for l in open(sys.argv[1])]
assert len(ss) == 6, len(ss)
wrote = 0
for a, b in zip(ss, ss[1:]):
    dt = (b["time_ms"] - a["time_ms"]) / 1000
    d = b["processed"] - a["processed"]
    wrote += d
    assert abs(b["written_per_s"] - d / dt) <= 0.051, (b["written_per_s"], d, dt)
    assert b["in_per_s"] == 0.0, f"in_per_s {b['in_per_s']} while only draining: {a} -> {b}"
assert wrote > 0, "the worker wrote nothing during the watch"
EOF
wait_for 60 drained
assert_eq 5000 "$(stat processed)" "all jobs written"

# ---- 4. Redis stopped mid-watch ------------------------------------------------------------
"$CTL" stats --watch 0.2 --count 40 >"$AQ_TMP/outage.txt" 2>"$AQ_TMP/outage.err" &
w=$!
wait_for 10 bash -c "grep -q '^auditq  namespace' '$AQ_TMP/outage.txt'"
redis_stop
wait_for 10 bash -c "grep -q 'cannot connect to Redis' '$AQ_TMP/outage.txt'"
redis_restart
rc=0
wait "$w" || rc=$?
assert_eq 0 "$rc" "watch exit status after an outage"
assert_eq "" "$(cat "$AQ_TMP/outage.err")" "watch stderr during an outage"
grep -Eq "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z  cannot connect to Redis at 127\.0\.0\.1:$REDIS_PORT: Connection refused; retrying every 0\.2 s$" \
    "$AQ_TMP/outage.txt" || { echo "FAIL: no 'cannot connect' line:"; cat "$AQ_TMP/outage.txt"; exit 1; }
last_err=$(grep -n 'retrying every' "$AQ_TMP/outage.txt" | tail -n 1 | cut -d: -f1)
after=$(tail -n +"$last_err" "$AQ_TMP/outage.txt" | grep -c '^auditq  namespace' || true)
[ "$after" -ge 1 ] || { echo "FAIL: no block after Redis came back"; cat "$AQ_TMP/outage.txt"; exit 1; }
refreshes=$(($(blocks "$AQ_TMP/outage.txt") + $(grep -c 'retrying every' "$AQ_TMP/outage.txt")))
assert_eq 40 "$refreshes" "blocks + error lines = --count"

# ---- 5. signals; terminal redraw -----------------------------------------------------------
for sig in INT TERM; do
    # Empty it first: the previous round's blocks must not satisfy the wait
    # below before this process has truncated the file (then the signal
    # came before its handler was installed: exit 143).
    : >"$AQ_TMP/sig.txt"
    "$CTL" stats --watch 0.2 >"$AQ_TMP/sig.txt" &
    w=$!
    wait_for 10 bash -c "[ \$(grep -c '^auditq  namespace' '$AQ_TMP/sig.txt') -ge 2 ]"
    kill -"$sig" "$w"
    rc=0
    wait "$w" || rc=$?
    assert_eq 0 "$rc" "watch exit status after SIG$sig"
done
script -qec "$CTL stats --watch 0.2 --count 3" /dev/null >"$AQ_TMP/tty.txt"
"$PY" - "$AQ_TMP/tty.txt" <<'EOF'
import sys
t = open(sys.argv[1], "rb").read()
assert t.count(b"\x1b[H") == 3, t.count(b"\x1b[H")     # home, once per refresh
assert t.count(b"\x1b[J") == 3, t.count(b"\x1b[J")     # clear what a longer frame left
lines = t.split(b"\x1b[H")[1].split(b"\r\n")
assert lines[0].startswith(b"auditq  namespace=auditq ") and lines[0].endswith(b"\x1b[K"), lines[0]
assert all(len(l.replace(b"\x1b[K", b"").replace(b"\x1b[J", b"")) <= 80 for l in lines), lines
EOF
worker_stop w1
it_pass "stats --watch: 3 exact blocks <= 80 columns, exact rates (in 500 jobs, drain in=0), survives a Redis outage, exits 0 on SIGINT/SIGTERM, redraws on a terminal"
