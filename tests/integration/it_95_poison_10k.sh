#!/usr/bin/env bash
# Fault suite, scenario 6: one poison row in a batch of exactly 10,000.
#
# 9,999 valid events and one whose changes hold "\u0000" (valid JSON, which
# jsonb refuses with SQLSTATE 22P05) are queued before the worker starts;
# one writer thread with batch_size=10000 takes them as ONE batch. Expected:
#   - 9,999 rows stored, the poison row not;
#   - the poison row retried alone (max_attempts=3: two one-row retries) and
#     dead-lettered with its SQLSTATE and PostgreSQL's message;
#   - the queues, in-flight lists and retry set empty;
#   - the cost of isolating it, measured by the worker itself on /metrics
#     (auditq_pg_transactions_total, auditq_pg_round_trips_total,
#     auditq_pg_bisections_total).
# write_method=copy (the default): the batch is staged once and the bad row
# is found with savepoint probes inside the batch's ONE transaction (worker/
# pgw.c pgw_isolate): 1 transaction, 3 round trips for BEGIN+COPY, the rows
# and SAVEPOINT+INSERT+COMMIT, then one round trip per probe. The extra
# round trips must stay <= ceil(log2 n) + 2 = 16; the test also holds them
# to the exact number the search rule gives for the poison row's position
# (isolate_model below: update it with the rule). Rounds: the poison row at
# index 0, in the middle and at the end.
# write_method=insert (AQ_FAULTS=long, with random positions for both
# methods) keeps the per-transaction bisection (pgw_bisect): between
# ceil(log2 n)+1 = 15 and 2*ceil(log2 n)+1 = 29 transactions of one round
# trip each, held to the exact count of bisect_model.
set -euo pipefail
source "$(dirname "$0")/lib_it.sh"
it_setup
R() { redis-cli -p "$REDIS_PORT" "$@"; }
N=10000
MAX_ATTEMPTS=3
rounds=(copy:0 copy:$((N / 2)) copy:$((N - 1)))   # write method : index of the poison row in the batch
[[ "${AQ_FAULTS:-}" == long ]] && rounds+=(insert:0 "copy:$((RANDOM % N))" "insert:$((RANDOM % N))")

# Index of event_id $1 in the normal queue, in the order a fetch hands the
# batch to the writer (LRANGE -N -1 = the list from its head, when the list
# holds exactly N).
index_in_queue() {
    "$PY" - "$REDIS_PORT" "$1" <<'PYEOF'
import socket, sys, msgpack
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"*4\r\n$6\r\nLRANGE\r\n$21\r\n{auditq}:queue:normal\r\n$1\r\n0\r\n$2\r\n-1\r\n")
f = s.makefile("rb")
n = int(f.readline()[1:])
hits = []
for i in range(n):
    ln = int(f.readline()[1:])
    job = msgpack.unpackb(f.read(ln + 2)[:-2], raw=False)
    if job["event_id"] == sys.argv[2]:
        hits.append(i)
if len(hits) != 1:
    sys.exit("event %s found %d times in the queue" % (sys.argv[2], len(hits)))
print(hits[0])
PYEOF
}

# Moves the job at index $1 of the normal queue to index $2.
move_job() {
    R EVAL "local q = KEYS[1]
        local job = redis.call('LINDEX', q, ARGV[1])
        redis.call('LSET', q, ARGV[1], '')
        redis.call('LREM', q, 1, '')
        local dst = tonumber(ARGV[2])
        if dst >= redis.call('LLEN', q) then return redis.call('RPUSH', q, job) end
        return redis.call('LINSERT', q, 'BEFORE', redis.call('LINDEX', q, dst), job)" \
        1 '{auditq}:queue:normal' "$1" "$2" >/dev/null
}

# Transactions pgw_bisect spends on n rows with one bad row at index $2
# (worker/pgw.c bisect_range): a range is tried unless it is known to hold
# the bad row; a failing range is split at lo + (hi - lo) / 2; the right
# half is known bad when its left sibling committed cleanly.
bisect_model() {
    "$PY" - "$1" "$2" <<'PYEOF'
import sys
n, bad = int(sys.argv[1]), int(sys.argv[2])
tx = 0
def rng(lo, hi, known_bad):
    global tx
    if not known_bad or hi - lo == 1:
        tx += 1
        if not lo <= bad < hi:
            return "clean"
        if hi - lo == 1:
            return "split"
    mid = lo + (hi - lo) // 2
    left = rng(lo, mid, False)
    rng(mid, hi, left == "clean")
    return "split"
rng(0, n, False)
print(tx)
PYEOF
}

# Savepoint probes pgw_isolate spends on n rows with one bad row at index
# $2, and its round trips (the probes, plus a bare COMMIT when no row
# follows the bad one): halve [l, h) to the first bad row, keeping ranges
# that go in, then insert everything after it with COMMIT.
isolate_model() {
    "$PY" - "$1" "$2" <<'PYEOF'
import sys
n, bad = int(sys.argv[1]), int(sys.argv[2])
l, h, probes = 0, n, 0
while h - l > 1:
    mid = l + (h - l) // 2
    probes += 1
    if l <= bad < mid:
        h = mid
    else:
        l = mid
assert l == bad
print(probes + (1 if bad + 1 < n else 0), probes + 1)
PYEOF
}

metric() { awk -v k="$1" '$1 == k { print $2 }' <<<"$M"; }

lg=$("$PY" -c "import math; print(math.ceil(math.log2($N)))")
lo_bound=$((lg + 1))
hi_bound=$((2 * lg + 1))
rt_bound=$((lg + 2))

for round in "${rounds[@]}"; do
    method=${round%%:*}
    want_pos=${round#*:}
    # audit_events is append-only: each round has its own tag; Redis starts empty.
    R FLUSHALL >/dev/null
    tag="poison$method$want_pos"
    mine="WHERE request_id LIKE 'req-$tag-%'"
    # `bad --valid N` sends N events, the one in the middle poisoned.
    badid=$("$TBIN/it_client" bad --valid $N --tag "$tag")
    assert_eq $N "$(stat queues.normal.depth)" "jobs queued before the worker starts (9,999 good, 1 poison)"
    move_job "$(index_in_queue "$badid")" "$want_pos"
    pos=$(index_in_queue "$badid")
    assert_eq "$want_pos" "$pos" "the poison row's index in the batch"
    assert_eq $N "$(stat queues.normal.depth)" "jobs queued after moving the poison row"
    if [[ $method == copy ]]; then
        read -r expect_probes expect_extra < <(isolate_model $N "$pos")
    else
        expect_first=$(bisect_model $N "$pos")
    fi

    HP=$(free_port)
    worker_start "w_$tag" --set threads=1 --set batch_size=$N --set max_attempts=$MAX_ATTEMPTS \
        --set backoff_base_ms=50 --set backoff_max_ms=200 --set write_method="$method" \
        --set http_listen="127.0.0.1:$HP"
    wait_for 120 bash -c "[ \"\$(redis-cli -p $REDIS_PORT LLEN '{auditq}:dead')\" = 1 ]"
    wait_for 10 drained
    assert_eq $((N - 1)) "$(rows "$mine")" "rows stored ($method)"
    assert_eq $((N - 1)) "$(psql_q "SELECT count(DISTINCT event_id) FROM audit_events $mine")" "distinct events ($method)"
    assert_eq 0 "$(psql_q "SELECT count(*) FROM audit_events WHERE event_id = '$badid'")" "the poison row is not stored ($method)"
    assert_eq "postgres rejected the row $MAX_ATTEMPTS times: unsupported Unicode escape sequence [22P05]" \
        "$(dead_reasons)" "dead letter ($method)"
    assert_eq $((MAX_ATTEMPTS - 1)) "$(stat retried)" "one-row retries before dead-lettering ($method)"
    assert_eq $((N - 1)) "$(stat processed)" "processed ($method)"

    M=$(curl -sf "http://127.0.0.1:$HP/metrics")
    # 3 batches: the 10,000 and the poison row alone twice (its retries).
    assert_eq 3 "$(metric auditq_batches_total)" "batches ($method)"
    assert_eq $((N + MAX_ATTEMPTS - 1)) "$(metric auditq_batch_size_sum)" "jobs fetched ($method)"
    assert_eq 0 "$(metric auditq_pg_write_errors_total)" "transient write errors ($method)"
    total=$(metric auditq_pg_transactions_total)
    splits=$(metric auditq_pg_bisections_total)
    trips=$(metric auditq_pg_round_trips_total)
    if [[ $method == copy ]]; then
        # Each retry is a one-row batch in one transaction: BEGIN+COPY, the
        # row, SAVEPOINT+INSERT+COMMIT (fails), then "ROLLBACK TO SAVEPOINT;
        # COMMIT" -- 4 round trips, no probe (a single row is marked from
        # the INSERT's error).
        assert_eq $MAX_ATTEMPTS "$total" "transactions: ONE for the 10,000-row batch, one per retry ($method)"
        first_trips=$((trips - 4 * (MAX_ATTEMPTS - 1)))
        extra=$((first_trips - 3))
        if ((extra > rt_bound)); then
            echo "FAIL: $method: isolating the poison row took $extra extra round trips; must stay <= ceil(log2 n)+2 = $rt_bound"
            exit 1
        fi
        assert_eq "$expect_probes" "$splits" "savepoint probes for the 10,000-row batch, poison row at index $pos ($method)"
        assert_eq "$expect_extra" "$extra" "extra round trips for the 10,000-row batch, poison row at index $pos ($method)"
        worker_stop "w_$tag"
        echo "figure: scenario=poison_10k method=$method batch=$N poison_index=$pos stored=$((N - 1)) dead=1 sqlstate=22P05 attempts=$MAX_ATTEMPTS first_attempt_transactions=1 first_attempt_round_trips=$first_trips extra_round_trips=$extra probes=$splits bound=$rt_bound total_transactions=$total total_round_trips=$trips"
    else
        # Each retry is a one-row batch: exactly one (failing) transaction.
        first=$((total - (MAX_ATTEMPTS - 1)))
        if ((first < lo_bound || first > hi_bound)); then
            echo "FAIL: $method: the 10,000-row batch took $first transactions; bisection must stay within [$lo_bound, $hi_bound]"
            exit 1
        fi
        assert_eq "$expect_first" "$first" "transactions for the 10,000-row batch, poison row at index $pos ($method)"
        assert_eq "$total" "$trips" "round trips: one per transaction ($method)"
        worker_stop "w_$tag"
        echo "figure: scenario=poison_10k method=$method batch=$N poison_index=$pos stored=$((N - 1)) dead=1 sqlstate=22P05 attempts=$MAX_ATTEMPTS first_attempt_transactions=$first extra_transactions=$((first - 1)) bound=$lo_bound..$hi_bound bisections=$splits total_transactions=$total"
    fi
done
it_pass "poison row in a batch of $N: $((N - 1)) stored, 1 dead-lettered with 22P05 after $MAX_ATTEMPTS attempts; copy: one transaction, <= ceil(log2 n)+2 = $rt_bound extra round trips; insert: ceil(log2 n)+1..2*ceil(log2 n)+1 transactions (${rounds[*]})"
