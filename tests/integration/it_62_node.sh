#!/usr/bin/env bash
# The Node.js binding (bindings/node): installed with `npm install --offline`
# into an app, the README's app.js run there, then `node --test`, against a real
# Redis, PostgreSQL and auditq-worker: 10,000 hostile events sync+async
# byte-exact, Redis stopped mid-run with a spool, AuditqError codes with
# nothing sent, 100k send() against a 10 ms timer, clean exit after close(),
# the Express middleware and the NestJS interceptor
# (bindings/node/test/*.test.js; the servers come from tests/lib/harness.sh).
#
# The tests stop and start Redis through a FIFO this script serves
# (AQ_REDIS_CTL: "SEQ stop|start" in, "SEQ RC" written to AQ_REDIS_CTL.ack),
# since only the shell that started it can run harness's redis_stop/restart.
#
# Skipped (passes, says so) under SANITIZE: a sanitized libauditq.a cannot be
# loaded into an uninstrumented node. Skipped likewise when node is missing.
set -euo pipefail
source "$(dirname "$0")/lib_it.sh"

if [[ -n "${SANITIZE:-}" ]]; then
    it_pass "node binding: skipped under SANITIZE=$SANITIZE (node is not instrumented)"
    exit 0
fi
NODE=${NODE:-node}
if ! command -v "$NODE" >/dev/null; then
    echo "FAIL: node not found: make deps installs nodejs and libnode-dev" >&2
    exit 1
fi

it_setup

# The README's install: `npm install` of the folder into an application,
# offline (npm runs build.js: cc against Node's headers, this build's
# libauditq.a), then require('auditq') from there.
app=$AQ_TMP/app
mkdir -p "$app"
(cd "$app" && npm init -y >/dev/null &&
    BUILD=${BUILD:-build} WERROR=1 npm install --offline --no-audit --no-fund "$AQ_ROOT/bindings/node" \
        >"$AQ_TMP/npm-install.log" 2>&1) || { cat "$AQ_TMP/npm-install.log"; echo "FAIL: npm install of bindings/node"; exit 1; }
assert_eq "0.1.0 function AuditqError" \
    "$(cd "$app" && "$NODE" -e "const a = require('auditq'); const m = require('auditq/middleware');
        console.log(a.version, typeof m.expressAudit, new a.AuditqError('x', 'AUDITQ_ERR_CLOSED', 13).name)")" \
    "require('auditq') in an app after npm install --offline"

# The README's app.js, as printed, in that app: exit 0, both events stored.
"$PY" "$AQ_ROOT/tests/integration/extract_example.py" "$AQ_ROOT/README.md" app.js >"$app/app.js"
(cd "$app" && "$NODE" app.js) >"$AQ_TMP/app.out" 2>"$AQ_TMP/app.err" || {
    cat "$AQ_TMP/app.err"; echo "FAIL: the README's app.js exited non-zero"; exit 1; }
assert_eq "" "$(cat "$AQ_TMP/app.err")" "README app.js stderr"
assert_eq "acknowledged <uuid>
{ queuedAsync: 1, sentAsync: 1, sentSync: 1, errors: 0 }" \
    "$(sed -E 's/[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}/<uuid>/' "$AQ_TMP/app.out")" "README app.js output"
worker_start w1 --set threads=2
export AQ_TMP REDIS_PORT AUDITQ_REDIS_URL PGHOST PGPORT PGUSER PGDATABASE
export AQ_REDIS_CTL=$AQ_TMP/redisctl
mkfifo "$AQ_REDIS_CTL"

files=("$AQ_ROOT"/bindings/node/test/*.test.js)
[[ -n "${AQ_NODE_TESTS:-}" ]] && files=("$AQ_ROOT"/bindings/node/test/${AQ_NODE_TESTS}.test.js)
# One file at a time: the tests share one Redis, and the outage test stops it.
"$NODE" --test --test-concurrency=1 "${files[@]}" >"$AQ_TMP/node-test.log" 2>&1 &
node_pid=$!

exec 3<>"$AQ_REDIS_CTL"
while alive_node=$(kill -0 "$node_pid" 2>/dev/null && echo 1 || echo 0); ((alive_node)); do
    if read -r -t 0.2 seq cmd <&3; then
        rc=0
        case $cmd in
        stop) redis_stop || rc=$? ;;
        start) _aq_redis_launch main || rc=$? ;;
        *) rc=2 ;;
        esac
        echo "$seq $rc" >"$AQ_REDIS_CTL.ack.tmp" && mv "$AQ_REDIS_CTL.ack.tmp" "$AQ_REDIS_CTL.ack"
    fi
done
rc=0
wait "$node_pid" || rc=$?
exec 3<&-
grep -E '^# (tests|pass|fail|duration_ms) |send\(\): ' "$AQ_TMP/node-test.log" || true
if ((rc != 0)); then
    cat "$AQ_TMP/node-test.log"
    echo "FAIL: node --test exited $rc"
    exit 1
fi
assert_eq "page.update high,user.login normal" \
    "$(psql_q "SELECT string_agg(action || ' ' || priority, ',' ORDER BY action) FROM audit_events WHERE tenant_id = 'acme'")" \
    "the README app.js events stored"
wait_for 20 drained
assert_eq 0 "$(stat dead)" "dead letters"
worker_stop w1
it_pass "node binding: $(grep -c '^ok ' "$AQ_TMP/node-test.log") node --test tests pass"
