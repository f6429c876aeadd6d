#!/usr/bin/env bash
# Fault suite: Redis unreachable for the producer -- the spool takes over,
# then replays. Every event the producer acknowledged is in PostgreSQL
# exactly once.
#  (a) Redis down: N sync + M async events; every call returns AUDITQ_OK at
#      once and the events are in the spool. Redis back: the background
#      replay pushes them in spool order (checked in the queues before a
#      worker runs); then exactly N+M rows, each event once.
#  (b) A producer killed with kill -9 while Redis is down leaves its spool.
#      `auditqctl spool replay` refuses it while the producer lives, replays
#      it after: exact rows; a rerun replays nothing and changes nothing.
#  (c) A torn tail and a corrupted middle record: every good record is
#      replayed, the bad one reported with its offset, exit status 1.
#  (d) spool_max_bytes reached with spool_full_policy=error: exactly the
#      records that fit are spooled (and stored), the rest refused, counted.
# Prints "figure: scenario=producer_spool ..." for the reliability doc.
# AQ_FAULTS=long: about 10x the volume.
set -euo pipefail
source "$(dirname "$0")/lib_it.sh"
it_setup
C=$TBIN/it_client
CTL=$BIN/auditqctl
SP=$AQ_TMP/spools
mkdir -p "$SP"
if [[ "${AQ_FAULTS:-}" == long ]]; then
    NS=20000 NA=50000 NB=20000 WAIT=900
else
    NS=1500 NA=3500 NB=2000 WAIT=120
fi

# kv LOG PREFIX KEY: the value of KEY=... on the last line of LOG that
# starts with PREFIX.
kv() {
    grep "^$2" "$1" | tail -n 1 | tr ' ' '\n' | sed -n "s/^$3=//p"
}
tagged() { rows "WHERE request_id LIKE 'req-$1-%'"; }
distinct_tagged() { psql_q "SELECT count(DISTINCT event_id) FROM audit_events WHERE request_id LIKE 'req-$1-%'"; }
fsize() { wc -c <"$1"; }
# Jobs waiting in the four queues.
queued() {
    "$BIN/auditqctl" stats --json | "$PY" -c 'import json, sys; print(sum(q["depth"] for q in json.load(sys.stdin)["queues"].values()))'
}
# The offsets of the waiting records, one per line (inspect --records).
offsets() { "$CTL" spool inspect --records "$1" | awk '$1 ~ /^[0-9]+$/ { print $1 }'; }

# queue_check TAG: the jobs of TAG in the four queues, per queue in the
# order a worker takes them (oldest first: from the right end). Prints
# "COUNT order=ok|broken prio=ok|broken": order ok when the event indexes
# rise within each queue (spool order kept), prio ok when every event sits
# in the queue of its priority (index % 4).
queue_check() {
    "$PY" - "$REDIS_PORT" "$1" <<'PYEOF'
import socket, sys, msgpack
port, tag = int(sys.argv[1]), sys.argv[2]
s = socket.create_connection(("127.0.0.1", port))
f = s.makefile("rb")
def cmd(*a):
    s.sendall(b"*%d\r\n" % len(a) + b"".join(b"$%d\r\n%s\r\n" % (len(x), x) for x in a))
total, order, prio = 0, "ok", "ok"
for p, name in enumerate((b"critical", b"high", b"normal", b"low")):
    cmd(b"LRANGE", b"{auditq}:queue:" + name, b"0", b"-1")
    n = int(f.readline()[1:])
    idx = []
    for _ in range(n):
        ln = int(f.readline()[1:])
        job = msgpack.unpackb(f.read(ln + 2)[:-2], raw=False)
        if job["request_id"].startswith("req-%s-" % tag):
            idx.append(int(job["request_id"].rsplit("-", 1)[1]))
    idx.reverse()
    if idx != sorted(set(idx)):
        order = "broken"
    if any(i % 4 != p for i in idx):
        prio = "broken"
    total += len(idx)
print(total, "order=" + order, "prio=" + prio)
PYEOF
}

# ---- (a) Redis down: spool; Redis back: background replay in order ------
redis_stop
harness_spawn prod_a "$C" produce --sync $NS --async $NA --tag a --set "spool_path=$SP/a.spool" \
    --set spool_fsync=always --wait-replayed $WAIT
PA=$HARNESS_LAST_PID
LA=$AQ_TMP/prod_a.log
wait_for $WAIT grep -q '^sent ' "$LA"
assert_eq $((NS + NA)) "$(kv "$LA" 'sent ' ok)" "(a) calls that returned AUDITQ_OK with Redis down"
assert_eq 0 "$(kv "$LA" 'sent ' other_errors)" "(a) calls that failed"
max_ms=$(kv "$LA" 'sent ' max_call_ms)
[ "$max_ms" -lt 1000 ] || { echo "FAIL: (a) slowest call took $max_ms ms with Redis down (spool configured)"; exit 1; }
assert_eq $((NS + NA)) "$(kv "$LA" stats: spooled)" "(a) events spooled"
assert_eq "0 0 0" "$(kv "$LA" stats: sent_sync) $(kv "$LA" stats: sent_async) $(kv "$LA" stats: errors)" \
    "(a) sent_sync sent_async errors while Redis is down"
insp=$("$CTL" spool inspect "$SP/a.spool")
assert_eq "locked:     yes (a running producer or replay holds it)" "$(grep '^locked:' <<<"$insp")" "(a) inspect: lock"
assert_eq "$((NS + NA)) records" "$(grep '^waiting:' <<<"$insp" | awk '{ print $2, $3 }' | tr -d ,)" "(a) inspect: records waiting"
t0=$(date +%s%N)
redis_restart
wait_for $WAIT grep -q '^drained' "$LA"
replay_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
rc=0
wait "$PA" || rc=$?
assert_eq 0 "$rc" "(a) producer exit status"
assert_eq "closed rc=0" "$(grep '^closed' "$LA")" "(a) auditq_close"
assert_eq $((NS + NA)) "$(kv "$LA" stats: replayed)" "(a) events replayed in the background"
assert_eq "0 96 0 0" "$(kv "$LA" stats: spool_records) $(kv "$LA" stats: spool_bytes) $(kv "$LA" stats: spool_corrupt_records) $(kv "$LA" stats: spool_errors)" \
    "(a) spool_records spool_bytes spool_corrupt_records spool_errors after the replay"
assert_eq 96 "$(fsize "$SP/a.spool")" "(a) spool file cut back to its header"
# Before any worker: the queues hold every event once, in spool order.
assert_eq "$((NS + NA)) order=ok prio=ok" "$(queue_check a)" "(a) replayed jobs in the queues"
worker_start w1
wait_for $WAIT drained
assert_eq $((NS + NA)) "$(tagged a)" "(a) rows"
assert_eq $((NS + NA)) "$(distinct_tagged a)" "(a) distinct events"
assert_eq $((NS + NA)) "$(psql_q "SELECT count(DISTINCT request_id) FROM audit_events WHERE request_id LIKE 'req-a-%'")" \
    "(a) distinct request ids (every sent event)"
echo "(a) $((NS + NA)) events spooled with Redis down (slowest call ${max_ms} ms), replayed in order in ${replay_ms} ms, stored once"
worker_stop w1

# ---- (b) kill -9 with Redis down; auditqctl spool replay ----------------
redis_stop
harness_spawn prod_b "$C" produce --sync $((NB / 2)) --async $((NB / 2)) --tag b --set "spool_path=$SP/b.spool" \
    --set spool_fsync=interval --set spool_fsync_interval_ms=200 --hold
PB=$HARNESS_LAST_PID
LB=$AQ_TMP/prod_b.log
wait_for $WAIT grep -q '^ready' "$LB"
assert_eq "$NB $NB" "$(kv "$LB" 'sent ' ok) $(kv "$LB" stats: spooled)" "(b) events acknowledged and spooled"
rc=0
out=$("$CTL" spool replay "$SP/b.spool" 2>&1) || rc=$?
assert_eq 1 "$rc" "(b) replay of a live producer's spool: exit status"
assert_eq "auditqctl spool replay: $SP/b.spool is locked by a running producer (or another replay); a producer replays its own spool once Redis answers: stop it first to replay by hand" \
    "$out" "(b) replay of a live producer's spool: message"
kill -KILL "$PB"
wait "$PB" 2>/dev/null || true
size_b=$(fsize "$SP/b.spool")
redis_restart
dry=$("$CTL" spool replay --dry-run "$SP/b.spool")
assert_eq "would replay $NB records ($((size_b - 96 - 20 * NB)) bytes) into {auditq}:queue:* (critical $((NB / 4)), high $((NB / 4)), normal $((NB / 4)), low $((NB / 4))); dry run: nothing sent, position unchanged" \
    "$(sed -n 2p <<<"$dry")" "(b) dry run"
assert_eq 0 "$(queued)" "(b) nothing pushed by the dry run"
# --min-replicas 1 against this Redis, which has no replica: the first
# chunk (1,000 records) reaches the master, WAIT sees 0 replicas, and the
# replay stops with the position NOT saved past it -- the chunk stays in
# the spool for a run that can get it replicated. (The chunk's copy on the
# master is dropped here, as a fail-over would lose it.)
rc=0
out=$("$CTL" --set redis_timeout_ms=500 spool replay --min-replicas 1 "$SP/b.spool" 2>&1 >/dev/null) || rc=$?
assert_eq "1 auditqctl spool replay: Redis failed after 0 records: only 0 of the 1 replicas redis_min_replicas asks for acknowledged the write within 250 ms: it is on the master only and a fail-over may lose it; check the replicas (INFO replication on the master) or lower redis_min_replicas; the position is saved: run the same command again to continue" \
    "$rc $out" "(b) replay --min-replicas 1 without replicas"
assert_eq 1000 "$(queued)" "(b) the first chunk reached the master only"
redis-cli -p "$REDIS_PORT" DEL "{auditq}:queue:critical" "{auditq}:queue:high" "{auditq}:queue:normal" \
    "{auditq}:queue:low" >/dev/null
out=$("$CTL" spool replay "$SP/b.spool")
assert_eq "spool $SP/b.spool: namespace auditq, $NB records to replay from offset 96 of $size_b bytes
replayed $NB records ($((size_b - 96 - 20 * NB)) bytes) into {auditq}:queue:* (critical $((NB / 4)), high $((NB / 4)), normal $((NB / 4)), low $((NB / 4)))" \
    "$out" "(b) auditqctl spool replay output"
assert_eq "$NB order=ok prio=ok" "$(queue_check b)" "(b) replayed jobs in the queues"
worker_start w2
wait_for $WAIT drained
assert_eq "$NB" "$(tagged b)" "(b) rows after auditqctl spool replay"
assert_eq "$NB" "$(distinct_tagged b)" "(b) distinct events"
worker_stop w2
out=$("$CTL" spool replay "$SP/b.spool")
assert_eq "spool $SP/b.spool: namespace auditq, 0 records to replay from offset $size_b of $size_b bytes
replayed 0 records (0 bytes) into {auditq}:queue:* (critical 0, high 0, normal 0, low 0)" "$out" "(b) rerun output"
assert_eq 0 "$(queued)" "(b) nothing pushed by the rerun"
assert_eq "$NB" "$(tagged b)" "(b) rows unchanged after the rerun"
echo "(b) kill -9 left $NB spooled events; auditqctl spool replay stored them once; the rerun replayed nothing"

# ---- (c) torn tail, corrupt middle record -------------------------------
redis_stop
for t in c1 c2; do
    "$C" produce --sync 200 --tag $t --set "spool_path=$SP/$t.spool" --set spool_fsync=never >"$AQ_TMP/prod_$t.log"
    assert_eq "closed rc=0" "$(grep '^closed' "$AQ_TMP/prod_$t.log")" "($t) close with Redis down keeps the spool"
done
mapfile -t o1 < <(offsets "$SP/c1.spool")
mapfile -t o2 < <(offsets "$SP/c2.spool")
assert_eq "200 200" "${#o1[@]} ${#o2[@]}" "(c) records in each spool"
# c1: cut the last record 10 bytes into its payload.
last=${o1[199]}
last_len=$(( $(fsize "$SP/c1.spool") - last - 20 ))
truncate -s $((last + 30)) "$SP/c1.spool"
# c2: flip one payload byte of record 100.
mid=${o2[100]}
mid_len=$(( o2[101] - mid ))
"$PY" - "$SP/c2.spool" $((mid + 25)) <<'PYEOF'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(int(sys.argv[2])); b = f.read(1); f.seek(int(sys.argv[2])); f.write(bytes([b[0] ^ 0x5A]))
PYEOF
redis_restart
worker_start w3
rc=0
"$CTL" spool replay "$SP/c1.spool" >"$AQ_TMP/c1.out" 2>"$AQ_TMP/c1.err" || rc=$?
assert_eq 1 "$rc" "(c1) replay of a spool with a torn tail: exit status"
assert_eq "auditqctl spool replay: $SP/c1.spool: torn record at offset $last (30 bytes): incomplete record: $last_len payload bytes declared, 10 present; not replayed" \
    "$(cat "$AQ_TMP/c1.err")" "(c1) torn record report"
assert_eq "replayed 199 records" "$(sed -n 2p "$AQ_TMP/c1.out" | cut -d' ' -f1-3)" "(c1) good records replayed"
assert_eq "1 bad record skipped (30 bytes), listed on stderr; $SP/c1.spool keeps them: 'auditqctl spool inspect $SP/c1.spool' shows them again" \
    "$(sed -n 3p "$AQ_TMP/c1.out")" "(c1) summary"
rc=0
"$CTL" spool replay "$SP/c2.spool" >"$AQ_TMP/c2.out" 2>"$AQ_TMP/c2.err" || rc=$?
assert_eq 1 "$rc" "(c2) replay of a spool with a corrupt record: exit status"
grep -Eq "^auditqctl spool replay: $SP/c2.spool: corrupt record at offset $mid \\($mid_len bytes\\): payload checksum mismatch \\(stored [0-9a-f]{8}, computed [0-9a-f]{8}\\); the $((mid_len - 20))-byte record is skipped; not replayed\$" \
    "$AQ_TMP/c2.err" || { echo "FAIL: (c2) corrupt record report: $(cat "$AQ_TMP/c2.err")"; exit 1; }
assert_eq 1 "$(wc -l <"$AQ_TMP/c2.err")" "(c2) one bad record reported"
assert_eq "replayed 199 records" "$(sed -n 2p "$AQ_TMP/c2.out" | cut -d' ' -f1-3)" "(c2) good records replayed (those after it too)"
wait_for $WAIT drained
assert_eq "199 199" "$(tagged c1) $(tagged c2)" "(c) rows"
assert_eq "req-c1-000199" "$(psql_q "SELECT 'req-c1-' || to_char(g, 'FM000000') FROM generate_series(0, 199) g
    EXCEPT SELECT request_id FROM audit_events WHERE request_id LIKE 'req-c1-%'")" "(c1) the missing event is the torn one"
assert_eq "req-c2-000100" "$(psql_q "SELECT 'req-c2-' || to_char(g, 'FM000000') FROM generate_series(0, 199) g
    EXCEPT SELECT request_id FROM audit_events WHERE request_id LIKE 'req-c2-%'")" "(c2) the missing event is the corrupt one"
echo "(c) torn tail at offset $last and corrupt record at offset $mid reported and skipped; 199 + 199 good records stored"
worker_stop w3

# Usage and file errors name the cause.
rc=0; out=$("$CTL" spool replay 2>&1) || rc=$?
assert_eq "2 auditqctl spool replay: name the spool FILE; see 'auditqctl spool --help'" "$rc $out" "spool replay without FILE"
rc=0; out=$("$CTL" spool replay "$SP/none.spool" 2>&1) || rc=$?
assert_eq "1 auditqctl spool replay: cannot open spool $SP/none.spool: No such file or directory" "$rc $out" "spool replay of a missing file"
rc=0; out=$("$CTL" spool inspect "$LB" 2>&1) || rc=$?
assert_eq "1 auditqctl spool inspect: $LB is not a usable auditq spool: no spool header (the file does not start with \"AUDITQSP\"); move it away or choose another path" \
    "$rc $out" "spool inspect of a file that is not a spool"

# ---- (d) the cap, spool_full_policy=error -------------------------------
redis_stop
# Measure: where record 25 starts is the size of a spool holding 25.
"$C" produce --sync 40 --tag d1 --set "spool_path=$SP/d1.spool" >/dev/null
mapfile -t od < <(offsets "$SP/d1.spool")
cap=${od[25]}
harness_spawn prod_d "$C" produce --sync 40 --tag d2 --set "spool_path=$SP/d2.spool" --set "spool_max_bytes=$cap" \
    --set spool_full_policy=error --wait-replayed 120
PD=$HARNESS_LAST_PID
LD=$AQ_TMP/prod_d.log
wait_for 60 grep -q '^sent ' "$LD"
assert_eq "25 15" "$(kv "$LD" 'sent ' ok) $(kv "$LD" 'sent ' spool_full)" "(d) calls OK / AUDITQ_ERR_SPOOL_FULL"
assert_eq "25 15 15 $cap" "$(kv "$LD" stats: spooled) $(kv "$LD" stats: spool_rejected_full) $(kv "$LD" stats: errors) $(kv "$LD" stats: spool_bytes)" \
    "(d) spooled spool_rejected_full errors spool_bytes"
assert_eq "first spool_full: event 25: spool $SP/d2.spool is full: $cap bytes, spool_max_bytes=$cap; Redis: cannot connect to Redis at 127.0.0.1:$REDIS_PORT: Connection refused" \
    "$(grep '^first spool_full' "$LD")" "(d) the error the 26th call got"
redis_restart
worker_start w4
rc=0
wait "$PD" || rc=$?
assert_eq 0 "$rc" "(d) producer exit status"
assert_eq 25 "$(kv "$LD" stats: replayed)" "(d) events replayed"
wait_for $WAIT drained
assert_eq 25 "$(tagged d2)" "(d) rows: exactly the spooled events"
assert_eq "req-d2-000024" "$(psql_q "SELECT max(request_id) FROM audit_events WHERE request_id LIKE 'req-d2-%'")" "(d) the last stored event"
echo "(d) spool_max_bytes=$cap: 25 events spooled and stored, 15 refused with AUDITQ_ERR_SPOOL_FULL and counted"
worker_stop w4

# ---- (e) redis_min_replicas: the spool keeps what no replica has --------
# Redis comes back without a replica: the replay's chunk reaches the
# master, WAIT sees 0 of 1, and the chunk stays in the spool (its position
# is not saved past it) -- before, the spool gave it up once the master
# alone had it, so a fail-over could lose it.
redis_stop
harness_spawn prod_e "$C" produce --sync 100 --tag e --set "spool_path=$SP/e.spool" --set redis_min_replicas=1 \
    --set timeout_ms=400 --wait-replayed 3
PE=$HARNESS_LAST_PID
LE=$AQ_TMP/prod_e.log
wait_for 60 grep -q '^sent ' "$LE"
assert_eq "100 100" "$(kv "$LE" 'sent ' ok) $(kv "$LE" stats: spooled)" "(e) events acknowledged and spooled"
redis_restart
rc=0
wait "$PE" || rc=$?
assert_eq "1 not drained" "$rc $(grep -o '^not drained' "$LE")" "(e) the spool does not drain without a replica"
assert_eq 0 "$(kv "$LE" stats: replayed)" "(e) events counted replayed"
assert_eq "100 records" "$("$CTL" spool inspect "$SP/e.spool" | grep '^waiting:' | awk '{ print $2, $3 }' | tr -d ,)" \
    "(e) records still waiting in the spool"
redis-cli -p "$REDIS_PORT" FLUSHALL >/dev/null
echo "(e) redis_min_replicas=1, no replica: 100 spooled events stayed in the spool (replayed 0)"

events=$((NS + NA + NB))
stored=$(psql_q "SELECT count(*) FROM audit_events WHERE request_id LIKE 'req-a-%' OR request_id LIKE 'req-b-%'")
distinct=$(psql_q "SELECT count(DISTINCT request_id) FROM audit_events WHERE request_id LIKE 'req-a-%' OR request_id LIKE 'req-b-%'")
echo "figure: scenario=producer_spool events=$events stored=$stored duplicates=$((stored - distinct)) lost=$((events - distinct)) replay_s=$(awk -v ms="$replay_ms" 'BEGIN { printf "%.2f", ms / 1000 }')"
assert_eq "$events $events" "$stored $distinct" "events acknowledged in (a) and (b) vs rows and distinct rows"
it_pass "producer spool: Redis down -> spooled, replayed in order; kill -9 + auditqctl spool replay; torn/corrupt records reported; cap counted; nothing leaves the spool unreplicated with redis_min_replicas"
