#!/usr/bin/env bash
# bench-shards.sh -- the Redis side of auditq over 1, 2 and 4 shards, each
# shard on its own redis-server (appendonly everysec, as tests/lib/harness.sh
# starts them), PostgreSQL taken out (issue 16; BENCHMARKS.md "Redis
# shards"):
#
#   bash scripts/bench-shards.sh            (BUILD=build-x: another build)
#
# For each round (ROUNDS, default 3) and each layout N in SHARDS (default
# "1 2 4"), on emptied servers:
#   auditq-bench shards --events EVENTS --threads THREADS MODE
#       --set redis_shards=N --set redis_shard_urls=<the first N servers>
# MODES (default "sync async"): sync = THREADS producer threads calling
# auditq_send (a connection pool per shard); async = auditq_send_async
# through the one flusher of the handle. The drain runs the worker's own
# fetch and settle scripts from THREADS threads over every shard, without
# PostgreSQL. Prints one line per run and, per mode, the median events/s
# and its ratio to the 1-shard median of the same run (the reference).
# Also prints the machine's cores and load, which bound what more servers
# can give: on 2 cores four redis-servers and the client share 2 CPUs.
# So it also reads each redis-server's CPU time (INFO cpu) around each
# phase: events divided by the busiest server's CPU seconds is the
# Redis-side ceiling with one core per server, the figure that scales with
# the shards whatever the test machine's core count.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/lib/harness.sh
BIN=${BUILD:-build}/bin
EVENTS=${EVENTS:-200000}
THREADS=${THREADS:-8}
ROUNDS=${ROUNDS:-3}
SHARDS=${SHARDS:-"1 2 4"}
MODES=${MODES:-"sync async"}

harness_init
PORTS=()
for i in 0 1 2 3; do
    redis_start "s$i"
    PORTS+=("$REDIS_PORT")
done
export AUDITQ_REDIS_URL="redis://127.0.0.1:${PORTS[0]}"
urls() { local n=$1 i out=""; for ((i = 0; i < n; i++)); do out+="${out:+,}redis://127.0.0.1:${PORTS[$i]}"; done; echo "$out"; }

echo "machine: $(nproc) cores, $(uname -m), load $(cut -d' ' -f1-3 /proc/loadavg), $(redis-server --version | cut -d' ' -f3)"
echo "events=$EVENTS threads=$THREADS rounds=$ROUNDS"
declare -A RES
for ((r = 1; r <= ROUNDS; r++)); do
    for mode in $MODES; do
        for n in $SHARDS; do
            for p in "${PORTS[@]}"; do redis-cli -p "$p" FLUSHALL >/dev/null; done
            flag=""
            [[ $mode == async ]] && flag=--async
            out=$("$BIN/auditq-bench" shards --events "$EVENTS" --threads "$THREADS" $flag --json \
                --buffer-events "$EVENTS" --set "redis_shards=$n" --set "redis_shard_urls=$(urls "$n")" \
                --set sync_connections=8)
            read -r pr dr pc dc < <(python3 -c '
import json, sys
j = json.loads(sys.argv[1])
e = j["events"]
# the Redis-side ceiling: events per busiest-server CPU second
print(round(j["produce_events_per_s"]), round(j["drain_events_per_s"]),
      round(e / max(j["produce_redis_cpu_s"]["busiest"], 1e-9)), round(e / max(j["drain_redis_cpu_s"]["busiest"], 1e-9)))' "$out")
            echo "round=$r mode=$mode shards=$n produce_per_s=$pr drain_per_s=$dr produce_ceiling=$pc drain_ceiling=$dc load=$(cut -d' ' -f1 /proc/loadavg)"
            RES[$mode,$n,p]+="$pr "
            RES[$mode,$n,d]+="$dr "
            RES[$mode,$n,pc]+="$pc "
            RES[$mode,$n,dc]+="$dc "
        done
    done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo
declare -A LABEL=([p]="produce events/s" [d]="drain events/s" [pc]="produce ceiling (events per busiest-Redis CPU s)" [dc]="drain ceiling (events per busiest-Redis CPU s)")
for mode in $MODES; do
    for what in p d pc dc; do
        ref=$(echo "${RES[$mode,1,$what]}" | median)
        line="$mode ${LABEL[$what]}:"
        for n in $SHARDS; do
            m=$(echo "${RES[$mode,$n,$what]}" | median)
            line+=" ${n}sh=$m ($(awk -v a="$m" -v b="$ref" 'BEGIN { printf "%.2fx", a / b }'))"
        done
        echo "$line"
    done
done
