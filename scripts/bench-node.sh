#!/usr/bin/env bash
# bench-node.sh -- the Node.js numbers of BENCHMARKS.md ("Node.js"), all in
# one run against one private Redis (tests/lib/harness.sh):
#   1. the C library: bindings/node/bench/send_c.c, the same event as
#                     bench.js, auditq_send_async timed per call: prebuilt,
#                     and built per call (what the binding does)
#   2. the binding:   bindings/node/bench/bench.js auditq (send() per call)
#   3. the binding:   bench.js acked (sendAcked, 64 in flight)
#   4. BullMQ:        bench.js bullmq (Queue.add, 1,000 in flight), bullmq
#                     installed from the npm registry into BULLMQ_DIR (default
#                     a temp dir, removed after) -- never a dependency of
#                     auditq, its build or its tests.
#
#   bash scripts/bench-node.sh [N]      (default N=200000; BullMQ gets N/4)
#
# Run `make all bindings` first. Prints each result as one JSON line.
# Repeat it: on a shared machine single runs vary by 2x or more.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$root/tests/lib/harness.sh"
N=${1:-200000}
build=${BUILD:-build}

harness_init
redis_start
export REDIS_URL=$AUDITQ_REDIS_URL
echo "# $(date -u +%FT%TZ) $(uname -m) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), node $(node --version), redis $(redis-server --version | awk '{print $3}')"

sendc=$AQ_TMP/send_c
cc -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -I"$root/include" "$root/bindings/node/bench/send_c.c" \
    "$root/$build/lib/libauditq.a" -lhiredis -lmsgpackc -lcrypto -lpthread -o "$sendc"
for m in prebuilt build; do
    echo "# C library: send_c $m $N"
    "$sendc" "$m" "$N" "$REDIS_URL"
    redis-cli -p "$REDIS_PORT" flushall >/dev/null
done

echo "# Node send(): node bindings/node/bench/bench.js auditq $N"
node "$root/bindings/node/bench/bench.js" auditq "$N"
redis-cli -p "$REDIS_PORT" flushall >/dev/null

echo "# Node sendAcked(): node bindings/node/bench/bench.js acked $((N / 4))"
node "$root/bindings/node/bench/bench.js" acked $((N / 4))
redis-cli -p "$REDIS_PORT" flushall >/dev/null

if [[ -z "${BULLMQ_DIR:-}" ]]; then
    BULLMQ_DIR=$(mktemp -d /tmp/auditq-bullmq.XXXXXX)
    trap 'rm -rf "$BULLMQ_DIR"; _aq_on_exit' EXIT   # keeps harness's cleanup
fi
export BULLMQ_DIR
if [[ ! -d $BULLMQ_DIR/node_modules/bullmq ]]; then
    # bullmq 5.x loads ioredis as an optional peer: install both.
    (cd "$BULLMQ_DIR" && npm init -y >/dev/null && npm install --no-audit --no-fund bullmq ioredis >/dev/null 2>&1)
fi
echo "# BullMQ $(node -p "require('$BULLMQ_DIR/node_modules/bullmq/package.json').version"): node bindings/node/bench/bench.js bullmq $((N / 4))"
node "$root/bindings/node/bench/bench.js" bullmq $((N / 4))
