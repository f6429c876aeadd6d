#!/usr/bin/env bash
# SIGHUP reloads the config file (plus environment and --set, as at start):
#   1. reloadable settings (batch_size, log_level, summary_interval_ms)
#      change live: the log names each change, the next 700 jobs go in
#      exactly 100 batches of 7, debug lines and summary lines appear;
#   2. a non-reloadable setting (threads) is logged as needing a restart
#      and keeps its running value; --set still wins over the file;
#   3. a broken file (bad value, then missing file) keeps the whole running
#      config, the log names file:line, and the worker keeps storing events
#      (exact row counts);
#   4. every line the worker wrote is logfmt: ts=... level=... msg="..." key=value.
set -euo pipefail
source "$(dirname "$0")/lib_it.sh"
command -v curl >/dev/null || { echo "FAIL: curl is not installed; run 'make deps'"; exit 1; }

it_setup
HP=$(free_port)
URL="http://127.0.0.1:$HP"
CONF=$AQ_TMP/auditq.conf
LOG=$AQ_TMP/w1.log

# push N: one variadic LPUSH of N valid normal-priority jobs (so batching
# depends on batch_size alone).
push() {
    "$PY" - "$REDIS_PORT" "$1" <<'PYEOF'
import socket, sys, time, uuid, msgpack
port, n = int(sys.argv[1]), int(sys.argv[2])
t0 = int(time.time() * 1e6)
jobs = [msgpack.packb({"v": 1, "event_id": str(uuid.uuid4()), "occurred_at": t0 + i,
                       "priority": "normal", "action": "it85.reload"}) for i in range(n)]
args = [b"LPUSH", b"{auditq}:queue:normal"] + jobs
s = socket.create_connection(("127.0.0.1", port))
s.sendall(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
assert s.makefile("rb").readline() == b":%d\r\n" % n
PYEOF
}
metric() { curl -sf "$URL/metrics" | awk -v k="$1" '$1 == k { print $2 }'; }
# logged PATTERN: true once a line of the worker's log matches (grep -E)
logged() { grep -qE -- "$1" "$LOG"; }
count() { grep -cE -- "$1" "$LOG" || true; }
hup() {
    local before
    before=$(count 'msg="config reload')
    kill -HUP "${WORKER_PID[w1]}"
    wait_for 10 bash -c "[ \$(grep -cE 'msg=\"config reload' '$LOG') -gt $before ]"
}
# The file as the test writes it; $1 = batch_size, $2 = log_level, $3 = threads, $4 = summary
write_conf() {
    cat >"$CONF" <<EOF
# it_85 config
threads = $3
batch_size = $1
log_level = $2
summary_interval_ms = $4
max_attempts = 5
EOF
}

write_conf 1000 info 1 0
worker_start w1 -c "$CONF" --set http_listen=127.0.0.1:$HP --set max_attempts=9
wait_for 10 curl -sf -o /dev/null "$URL/healthz"

# ---- baseline: one batch of 700 ---------------------------------------------
push 700
wait_for 30 drained
assert_eq 700 "$(rows)" "rows after the first 700"
assert_eq 1 "$(metric auditq_batches_total)" "batches with batch_size=1000"
assert_eq 0 "$(count 'msg="batch done"')" "debug lines at log_level=info"

# ---- 1. reloadable settings apply live ---------------------------------------
write_conf 7 debug 1 300
hup
logged '^ts=\S+ level=info msg="setting batch_size changed from 1000 to 7" setting=batch_size old="1000" new="7" applied=1$' ||
    { echo "FAIL: no batch_size change line"; grep 'config\|setting' "$LOG"; exit 1; }
logged '^ts=\S+ level=info msg="setting log_level changed from info to debug" setting=log_level old="info" new="debug" applied=1$' ||
    { echo "FAIL: no log_level change line"; exit 1; }
logged '^ts=\S+ level=info msg="setting summary_interval_ms changed from 0 to 300" setting=summary_interval_ms old="0" new="300" applied=1$' ||
    { echo "FAIL: no summary_interval_ms change line"; exit 1; }
logged "^ts=\\S+ level=info msg=\"config reloaded\" file=\"$CONF\" changed=3 applied=3 restart_needed=0\$" ||
    { echo "FAIL: no 'config reloaded' summary line"; exit 1; }
# --set max_attempts=9 was re-applied over the file's 5: not a change.
assert_eq 0 "$(count 'setting=max_attempts')" "max_attempts (--set wins over the file on reload too)"
push 700
wait_for 30 drained
assert_eq 1400 "$(rows)" "rows after the second 700"
assert_eq 101 "$(metric auditq_batches_total)" "batches: 1 + 700 / 7"
assert_eq 1400 "$(metric auditq_batch_size_sum)" "jobs fetched"
assert_eq 100 "$(count 'msg="batch done" thread=0 priority=normal jobs=7 written=7 ')" "debug lines, one per batch of 7"
assert_eq 1 "$(metric 'auditq_config_reloads_total{result="ok"}')" "successful reloads"
wait_for 5 logged 'level=info msg="summary" written_per_s=[0-9]+ processed=1400 failed=0 dead_lettered=0 inflight=0 queued=0 oldest_age_s=0\.000 inflight_all=0 retry=0 dead=0$' ||
    { echo "FAIL: no summary line with throughput and lag"; grep summary "$LOG"; exit 1; }
echo "reload 1: batch_size 1000 -> 7 (100 batches of 7), log_level -> debug, summaries every 300 ms"

# ---- 2. a non-reloadable setting needs a restart ------------------------------
write_conf 7 debug 4 0
hup
logged '^ts=\S+ level=warn msg="setting threads changed from 1 to 4; restart to apply" setting=threads old="1" new="4" applied=0$' ||
    { echo "FAIL: no restart-needed line for threads"; grep 'setting\|config' "$LOG"; exit 1; }
logged "^ts=\\S+ level=info msg=\"config reloaded\" file=\"$CONF\" changed=2 applied=1 restart_needed=1\$" ||
    { echo "FAIL: no 'config reloaded' line for reload 2"; exit 1; }
assert_eq 1 "$(metric auditq_worker_threads)" "threads keep their running value"
assert_eq 1 "$(curl -sf "$URL/metrics" | grep -c '^auditq_thread_state{thread="[0-9]*",state="idle"}')" "writer threads running"
echo "reload 2: threads 1 -> 4 logged as needing a restart, still 1 thread"

# ---- 3. a broken file keeps the running config ---------------------------------
cp "$CONF" "$AQ_TMP/good.conf"
sed -i 's/^batch_size = 7$/batch_size = 0/' "$CONF"
hup
logged "^ts=\\S+ level=error msg=\"config reload failed; keeping the running configuration\" file=\"$CONF\" error=\"$CONF:3: batch_size = 0: must be an integer from 1 to 100000\"\$" ||
    { echo "FAIL: no reload-failed line naming file:line"; grep 'reload' "$LOG"; exit 1; }
push 700
wait_for 30 drained
assert_eq 2100 "$(rows)" "rows after a failed reload"
assert_eq 201 "$(metric auditq_batches_total)" "batches: still batch_size=7 after the failed reload"
rm "$CONF"
hup
logged "error=\"cannot open config file '$CONF': No such file or directory\"\$" ||
    { echo "FAIL: no reload-failed line for a missing file"; exit 1; }
push 70
wait_for 30 drained
assert_eq 2170 "$(rows)" "rows after reloading a missing file"
assert_eq 211 "$(metric auditq_batches_total)" "batches: still batch_size=7"
assert_eq 2 "$(metric 'auditq_config_reloads_total{result="error"}')" "failed reloads"
assert_eq 2 "$(metric 'auditq_config_reloads_total{result="ok"}')" "successful reloads"
# Fixed file: log_level back to info; nothing else differs from the running config.
sed 's/^log_level = debug$/log_level = info/' "$AQ_TMP/good.conf" >"$CONF"
hup
logged "^ts=\\S+ level=info msg=\"config reloaded\" file=\"$CONF\" changed=2 applied=1 restart_needed=1\$" ||
    { echo "FAIL: no reload line after fixing the file"; exit 1; }
echo "reload 3: bad value and missing file rejected with file:line, old config kept, 770 more events stored"

worker_stop w1

# ---- 4. every line is logfmt -----------------------------------------------------
"$PY" "$AQ_ROOT/tests/integration/logfmt_check.py" "$LOG"
it_pass "SIGHUP reload: live settings applied, restart-only setting reported, broken file ignored with file:line; 2170 events stored"
