#!/usr/bin/env bash
# The worker's HTTP endpoint, end to end:
#   1. PostgreSQL down at start: /healthz 200, /readyz 503 naming
#      postgresql, and /metrics shows the exact queue state (one batch of
#      100 held in flight, 150 + 3 waiting, the oldest job's age);
#   2. PostgreSQL back: everything drains; exact counters and histograms
#      (253 jobs in exactly 4 batches, as many as the worker logged);
#   3. PostgreSQL stopped while idle -> /readyz 503 within seconds, and 200
#      again after it starts;
#   4. 404 / 405 / 400 / HEAD, and `promtool check metrics` on the output;
#   5. a real Prometheus scrapes the worker every second (with the shipped
#      alert rules loaded): auditq_processed_total in its API equals 253,
#      up == 1, every alert rule evaluates without error.
set -euo pipefail
source "$(dirname "$0")/lib_it.sh"

for tool in prometheus promtool curl; do
    command -v "$tool" >/dev/null ||
        { echo "FAIL: $tool is not installed; run 'make deps' (Debian packages prometheus, curl)"; exit 1; }
done

it_setup
HP=$(free_port)
URL="http://127.0.0.1:$HP"

# push PRIO N AGE_S: one variadic LPUSH of N valid jobs whose occurred_at is
# AGE_S seconds ago (job i is i us younger), so batching is deterministic.
push() {
    "$PY" - "$REDIS_PORT" "$1" "$2" "$3" <<'PYEOF'
import socket, sys, time, uuid, msgpack
port, prio, n, age = (int(a) for a in sys.argv[1:])
names = ["critical", "high", "normal", "low"]
t0 = int(time.time() * 1e6) - age * 1000000
jobs = [msgpack.packb({"v": 1, "event_id": str(uuid.uuid4()), "occurred_at": t0 + i,
                       "priority": names[prio], "action": "it80.metrics"}) for i in range(n)]
args = [b"LPUSH", ("{auditq}:queue:" + names[prio]).encode()] + jobs
cmd = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)
s = socket.create_connection(("127.0.0.1", port))
s.sendall(cmd)
reply = s.makefile("rb").readline()
assert reply.startswith(b":"), reply
PYEOF
}

status_of() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
body_of() { curl -s "$@"; }
# metric 'NAME{labels}': its value in /metrics ("" if absent)
metric() { curl -sf "$URL/metrics" | awk -v k="$1" '$1 == k { print $2 }'; }
metric_is() { [[ "$(metric "$1")" == "$2" ]]; }

# ---- 1. PostgreSQL down at start --------------------------------------------
pg_stop
push 2 250 3600    # normal: 250 jobs, an hour old
push 3 3 60        # low: 3 jobs, a minute old
worker_start w1 --set threads=1 --set batch_size=100 --set http_listen=127.0.0.1:$HP \
    --set backoff_base_ms=100 --set backoff_max_ms=300 --set log_level=debug
wait_for 10 curl -sf -o /dev/null "$URL/healthz"
assert_eq 200 "$(status_of "$URL/healthz")" "/healthz status"
assert_eq "ok" "$(body_of "$URL/healthz")" "/healthz body"
# The thread takes one batch (strict priority: normal first) and holds it,
# retrying the write; the 1 s Redis sample then shows it in flight. (One
# sample is several round trips, so one taken during the fetch may count
# the batch both queued and in flight: wait for a sample after it.)
sampled_held_batch() {
    local m
    m=$(curl -sf "$URL/metrics") || return 1
    [[ "$(awk '$1 == "auditq_inflight_jobs" { print $2 }' <<<"$m")" == 100 &&
       "$(awk '$1 == "auditq_queue_depth{priority=\"normal\"}" { print $2 }' <<<"$m")" == 150 ]]
}
wait_for 15 sampled_held_batch
assert_eq 503 "$(status_of "$URL/readyz")" "/readyz status with PostgreSQL down"
assert_eq "not ready: postgresql unreachable (0 of 1 writer threads connected)" \
    "$(body_of "$URL/readyz")" "/readyz body with PostgreSQL down"
m=$(curl -sf "$URL/metrics")
val() { awk -v k="$1" '$1 == k { print $2 }' <<<"$m"; }
assert_eq 150 "$(val 'auditq_queue_depth{priority="normal"}')" "normal queue depth"
assert_eq 3 "$(val 'auditq_queue_depth{priority="low"}')" "low queue depth"
assert_eq 0 "$(val 'auditq_queue_depth{priority="critical"}')" "critical queue depth"
assert_eq 0 "$(val 'auditq_queue_depth{priority="high"}')" "high queue depth"
assert_eq 100 "$(val auditq_worker_inflight_jobs)" "this worker's in-flight jobs"
assert_eq 0 "$(val 'auditq_thread_pg_connected{thread="0"}')" "PostgreSQL connection gauge"
assert_eq 1 "$(val 'auditq_thread_redis_connected{thread="0"}')" "Redis connection gauge"
assert_eq 0 "$(val auditq_ready)" "auditq_ready"
assert_eq 1 "$(val auditq_queue_sample_ok)" "queue sample ok"
assert_eq 1 "$(val auditq_workers_live)" "live workers"
assert_eq 0 "$(val auditq_processed_total)" "processed before PostgreSQL is back"
assert_eq 0.000 "$(val 'auditq_queue_oldest_age_seconds{priority="critical"}')" "age of an empty queue"
"$PY" - "$(val 'auditq_queue_oldest_age_seconds{priority="normal"}')" \
    "$(val 'auditq_queue_oldest_age_seconds{priority="low"}')" "$(val auditq_pg_write_errors_total)" <<'PYEOF'
import sys
normal, low, errors = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
# Jobs were pushed 3600 s and 60 s old; the test is seconds old by now.
assert 3600 <= normal < 3660, f"normal oldest age {normal}"
assert 60 <= low < 120, f"low oldest age {low}"
assert errors >= 1, f"failed write attempts {errors}"
PYEOF
echo "PostgreSQL down: 503 named postgresql, 100 in flight, 150 + 3 queued, ages checked"

# ---- 2. PostgreSQL back: exact counters -------------------------------------
pg_start_again
wait_for 60 drained
assert_eq 253 "$(rows)" "rows stored"
wait_for 10 metric_is 'auditq_queue_depth{priority="normal"}' 0
wait_for 10 metric_is auditq_cluster_processed_total 253
assert_eq 200 "$(status_of "$URL/readyz")" "/readyz status after PostgreSQL is back"
assert_eq "ready" "$(body_of "$URL/readyz")" "/readyz body"
m=$(curl -sf "$URL/metrics")
assert_eq 253 "$(val auditq_processed_total)" "auditq_processed_total"
assert_eq 0 "$(val auditq_failed_total)" "auditq_failed_total"
assert_eq 0 "$(val auditq_dead_lettered_total)" "auditq_dead_lettered_total"
# strict priority, batch_size 100: normal 100 (held) + 100 + 50, then low 3
assert_eq 4 "$(val auditq_batches_total)" "batches"
assert_eq 4 "$(grep -c 'msg="batch done"' "$AQ_TMP/w1.log")" "batches the worker logged"
assert_eq 4 "$(val auditq_batch_size_count)" "batch size histogram count"
assert_eq 253 "$(val auditq_batch_size_sum)" "batch size histogram sum"
assert_eq 1 "$(val 'auditq_batch_size_bucket{le="5"}')" "batches of <= 5 jobs (the 3 low)"
assert_eq 2 "$(val 'auditq_batch_size_bucket{le="50"}')" "batches of <= 50 jobs"
assert_eq 4 "$(val 'auditq_batch_size_bucket{le="100"}')" "batches of <= 100 jobs"
assert_eq 4 "$(val 'auditq_batch_size_bucket{le="+Inf"}')" "batch size +Inf bucket"
assert_eq 4 "$(val auditq_pg_write_duration_seconds_count)" "successful writes timed"
assert_eq 4 "$(val 'auditq_pg_write_duration_seconds_bucket{le="+Inf"}')" "write time +Inf bucket"
assert_eq 1 "$(val 'auditq_thread_pg_connected{thread="0"}')" "PostgreSQL connection gauge after restart"
assert_eq 0 "$(val auditq_inflight_jobs)" "in flight after drain"
assert_eq 0 "$(val auditq_dead_jobs)" "dead letters"
assert_eq 1 "$(val auditq_worker_threads)" "threads"
grep -q "^auditq_worker_info{version=\"0.1.0\",worker_id=\"[^\"]*:${WORKER_PID[w1]}:[0-9a-f]\{6\}\",namespace=\"auditq\"} 1$" <<<"$m" ||
    { echo "FAIL: auditq_worker_info line: $(grep '^auditq_worker_info' <<<"$m")"; exit 1; }
echo "drained: 253 processed in 4 batches, histograms consistent"

# ---- 3. PostgreSQL stopped while idle ---------------------------------------
pg_stop
wait_for 10 bash -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' $URL/readyz)\" = 503 ]"
assert_eq "not ready: postgresql unreachable (0 of 1 writer threads connected)" \
    "$(body_of "$URL/readyz")" "/readyz body, PostgreSQL stopped while idle"
assert_eq 200 "$(status_of "$URL/healthz")" "/healthz while PostgreSQL is down"
grep -q 'msg="postgres connection lost" thread=0' "$AQ_TMP/w1.log" ||
    { echo "FAIL: no 'postgres connection lost' line"; exit 1; }
pg_start_again
wait_for 10 bash -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' $URL/readyz)\" = 200 ]"
echo "idle worker: /readyz 503 while PostgreSQL was stopped, 200 after it started"

# ---- 4. Other requests; the exposition format --------------------------------
assert_eq 404 "$(status_of "$URL/nope")" "unknown path"
assert_eq "not found: /nope (try /metrics, /healthz or /readyz)" "$(body_of "$URL/nope")" "404 body"
assert_eq 404 "$(status_of "$URL/metrics/x")" "path below /metrics"
assert_eq 405 "$(status_of -X POST "$URL/metrics")" "POST"
assert_eq "Allow: GET, HEAD" "$(curl -s -D - -o /dev/null -X DELETE "$URL/healthz" | grep -i '^allow:' | tr -d '\r')" "405 Allow header"
exec 3<>"/dev/tcp/127.0.0.1/$HP"
printf 'NOT HTTP\r\n\r\n' >&3
assert_eq "HTTP/1.1 400 Bad Request" "$(head -n 1 <&3 | tr -d '\r')" "malformed request"
exec 3<&-
assert_eq "200 0" "$(curl -s -I -o /dev/null -w '%{http_code} %{size_download}' "$URL/metrics")" "HEAD: status, no body"
assert_eq "text/plain; version=0.0.4; charset=utf-8" \
    "$(curl -s -o /dev/null -w '%{content_type}' "$URL/metrics")" "/metrics content type"
assert_eq 200 "$(status_of "$URL/metrics?x=1")" "query string ignored"
curl -sf "$URL/metrics" >"$AQ_TMP/metrics.txt"
out=$(promtool check metrics <"$AQ_TMP/metrics.txt" 2>&1) || { echo "FAIL: promtool check metrics: $out"; exit 1; }
assert_eq "" "$out" "promtool check metrics findings"
echo "404/405/400/HEAD answered; promtool check metrics: clean"

# ---- 5. A real Prometheus scrapes it ----------------------------------------
PP=$(free_port)
mkdir -p "$AQ_TMP/prom"
cp "$AQ_ROOT/config/auditq-alerts.yml" "$AQ_TMP/prom/"
cat >"$AQ_TMP/prom/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [auditq-alerts.yml]
scrape_configs:
  - job_name: auditq
    static_configs:
      - targets: ['127.0.0.1:$HP']
EOF
harness_spawn prometheus prometheus --config.file="$AQ_TMP/prom/prometheus.yml" \
    --storage.tsdb.path="$AQ_TMP/prom/data" --web.listen-address="127.0.0.1:$PP"
# promql EXPR: the value of the first sample of the instant query result ("" if none)
promql() {
    curl -sf -G "http://127.0.0.1:$PP/api/v1/query" --data-urlencode "query=$1" | "$PY" -c '
import json, sys
r = json.load(sys.stdin)["data"]["result"]
print(r[0]["value"][1] if r else "")' 2>/dev/null
}
promql_is() { [[ "$(promql "$1")" == "$2" ]]; }
wait_for 60 promql_is 'auditq_processed_total{job="auditq"}' 253 ||
    { echo "FAIL: Prometheus never scraped auditq_processed_total=253 (got '$(promql auditq_processed_total)'); log:"; tail -20 "$AQ_TMP/prometheus.log"; exit 1; }
assert_eq 1 "$(promql 'up{job="auditq"}')" "up"
assert_eq 253 "$(promql 'auditq_batch_size_sum')" "batch size sum as Prometheus stored it"
assert_eq 0 "$(promql 'sum(auditq_queue_depth)')" "queue depth as Prometheus stored it"
# Rules: all five loaded and evaluated without error; none firing or pending.
rules_state() {
    curl -sf "http://127.0.0.1:$PP/api/v1/rules" | "$PY" -c '
import json, sys
for g in json.load(sys.stdin)["data"]["groups"]:
    for r in g["rules"]:
        print(r["name"], r["health"], r["state"], r.get("lastError", ""))' | sort
}
expected=$(printf '%s\n' "AuditqDeadLettersGrowing ok inactive " "AuditqNoLiveWorkers ok inactive " \
    "AuditqPostgresUnreachable ok inactive " "AuditqQueueLagHigh ok inactive " \
    "AuditqRedisKeyWrongType ok inactive " "AuditqRedisUnreachable ok inactive " | sort)
rules_are_expected() { [[ "$(rules_state)" == "$expected" ]]; }
wait_for 20 rules_are_expected || true
rules=$(rules_state)
assert_eq "$expected" "$rules" "alert rules as Prometheus evaluated them"
echo "Prometheus scraped auditq_processed_total=253; 6 alert rules healthy, none firing"

worker_stop w1
# PostgreSQL's errors (quotes, newlines) went into the log as quoted values.
"$PY" "$AQ_ROOT/tests/integration/logfmt_check.py" "$AQ_TMP/w1.log"
it_pass "metrics endpoint: healthz/readyz follow PostgreSQL, exact queue and counter values, Prometheus scrape = 253"
