#!/usr/bin/env bash
# The demo as a new user meets it: scripts/demo.sh (what `make demo` runs)
# with 2,000 events in a temp DEMO_DIR, then
#   1. the README's demo commands (extracted between their markers), run as
#      printed in a clean environment (PATH=/usr/bin:/bin): `source
#      .run/demo.env` must put auditqctl and auditq-bench on PATH and point
#      them and psql at the demo; $DEMO_METRICS_URL is the worker's /metrics
#      (HTTP on), with exact counts;
#   2. the commands the demo itself prints at the end, run as printed;
#   3. the README's C example, built and run with its own command line: its
#      event reaches the demo's worker and PostgreSQL;
#   4. the README's other commands that a demo can answer, verbatim;
#   5. `demo.sh stop` stops the worker, PostgreSQL and Redis.
set -euo pipefail
source "$(dirname "$0")/lib_it.sh"
command -v curl >/dev/null || { echo "FAIL: curl is not installed; run 'make deps'"; exit 1; }
harness_init
DEMO=$AQ_TMP/demo
export DEMO_DIR=$DEMO BUILD=${BUILD:-build}
# Whatever happens, the demo's servers go (run.sh's registry is the backstop).
trap 'rc=$?; bash "$AQ_ROOT/scripts/demo.sh" stop >/dev/null 2>&1 || true; harness_cleanup; exit $rc' EXIT

rc=0
DEMO_EVENTS=2000 bash "$AQ_ROOT/scripts/demo.sh" >"$AQ_TMP/demo.out" 2>&1 || rc=$?
((rc == 0)) || { cat "$AQ_TMP/demo.out"; echo "FAIL: demo.sh exited $rc"; exit 1; }
grep -qxF "  source $DEMO/demo.env" "$AQ_TMP/demo.out" ||
    { tail -n 25 "$AQ_TMP/demo.out"; echo "FAIL: the demo does not print the 'source demo.env' step"; exit 1; }
url=$(sed -n 's|^Prometheus metrics: \(http://127\.0\.0\.1:[0-9]*/metrics\) .*|\1|p' "$AQ_TMP/demo.out")
[[ -n "$url" ]] || { echo "FAIL: the demo does not print the worker's metrics URL"; exit 1; }

# in_clean_shell SCRIPT: runs SCRIPT with bash from the repository root, with
# nothing of this test's environment (no AUDITQ_*, PG*, no build dir on PATH).
in_clean_shell() {
    (cd "$AQ_ROOT" && env -i HOME="$HOME" PATH=/usr/bin:/bin LANG=C.UTF-8 bash -euo pipefail -c "$1")
}
# The demo runs the real auditqctl, so its migrate and every query are
# recorded in the trail (self-audit, docs/SECURITY.md section 6): each is
# one more event processed and stored. sa: how many are stored now.
sa() { in_clean_shell "source $DEMO/demo.env; psql -XAtc \"SELECT count(*) FROM audit_events WHERE action LIKE 'auditq.%'\""; }

# ---- 1. the README's demo commands ------------------------------------------
block=$(awk '/^<!-- demo-commands:/ { on = 1; next } /^<!-- end demo-commands -->/ { on = 0 } on' "$AQ_ROOT/README.md")
[[ "$(head -n 1 <<<"$block")" == '```sh' && "$(tail -n 1 <<<"$block")" == '```' ]] ||
    { echo "FAIL: README has no demo-commands block: $block"; exit 1; }
cmds=$(sed -e '1d' -e '$d' <<<"$block")
assert_eq "source .run/demo.env" "$(head -n 1 <<<"$cmds")" "the README's first demo command"
# The README's .run is this test's DEMO_DIR; everything else runs as printed.
out=$(in_clean_shell "set -x; ${cmds//.run\/demo.env/$DEMO/demo.env}" 2>"$AQ_TMP/readme.err") ||
    { cat "$AQ_TMP/readme.err"; echo "FAIL: the README's demo commands fail"; exit 1; }
grep -q '^+ auditqctl stats' "$AQ_TMP/readme.err" || { echo "FAIL: auditqctl stats did not run"; exit 1; }
# 2,000 events, the demo's auditq.migrate and the worker's auditq.worker.start
# (worker_self_audit); the query's own event comes after.
grep -qE '^processed 2,002 +failed 0' <<<"$out" || { echo "FAIL: auditqctl stats: $out"; exit 1; }
grep -qx '1 worker: 1 live, 0 dead (not yet recovered)' <<<"$out" || { echo "FAIL: auditqctl workers: $out"; exit 1; }
assert_eq 5 "$(grep -c '"tenant_id":"acme"' <<<"$out")" "acme rows from auditqctl query --limit 5"
# The query's auditq.query event was pushed just before: processed or not yet.
grep -qxE 'auditq_processed_total 200[23]' <<<"$out" || { echo "FAIL: curl \$DEMO_METRICS_URL: $out"; exit 1; }
assert_eq "$url" "$(in_clean_shell "source $DEMO/demo.env; echo \$DEMO_METRICS_URL")" "DEMO_METRICS_URL"
assert_eq "$AQ_ROOT/$BUILD/bin/auditqctl" "$(in_clean_shell "source $DEMO/demo.env; command -v auditqctl")" \
    "auditqctl on PATH after source demo.env"
# The bench's 10,000 events drain through the same worker.
drained12k() { [[ "$(in_clean_shell "source $DEMO/demo.env; auditqctl stats --json" |
    "$PY" -c 'import json,sys; print(json.load(sys.stdin)["processed"])')" == $((12000 + $(sa))) ]]; }
wait_for 60 drained12k || { echo "FAIL: the bench's 10,000 events were not processed"; exit 1; }
assert_eq 12000 "$(in_clean_shell "source $DEMO/demo.env; psql -XAtc \"SELECT count(*) FROM audit_events WHERE action NOT LIKE 'auditq.%'\"")" \
    "rows after the README's commands"
assert_eq "auditq.migrate auditq.query auditq.worker.start" "$(in_clean_shell "source $DEMO/demo.env; psql -XAtc \"SELECT string_agg(action, ' ' ORDER BY action) FROM audit_events WHERE action LIKE 'auditq.%'\"")" \
    "the demo's self-audit events"

# ---- 2. what the demo prints at the end, as printed -------------------------
# The lines between "source ..." and "Stop it all", minus the interactive ones
# (tail -f, redis-cli without a command: it gets PING).
# Only the first such block: later steps may print other examples.
printed=$(awk '/^  source / && !done { on = 1 } /^Stop it all/ { if (on) done = 1; on = 0 } on && /^  [a-z]/' "$AQ_TMP/demo.out" |
    grep -v '^  tail -f ' | sed -E 's/^(  redis-cli -p [0-9]+)( .*)?$/\1 ping/')
assert_eq 8 "$(wc -l <<<"$printed")" "commands the demo prints"
sa_before=$(sa)
out=$(in_clean_shell "$printed" 2>"$AQ_TMP/printed.err") ||
    { cat "$AQ_TMP/printed.err"; echo "FAIL: the demo's own commands fail: $printed"; exit 1; }
grep -qx PONG <<<"$out" || { echo "FAIL: redis-cli as printed: $out"; exit 1; }
grep -qE "^processed $("$PY" -c "print(f'{12000 + $sa_before:,}')") " <<<"$out" || { echo "FAIL: auditqctl stats as printed: $out"; exit 1; }
processed_is() {  # processed_is N: the worker's total is N events plus the self-audit ones
    [[ "$(curl -s "$url" | awk '$1 == "auditq_processed_total" { print $2 }')" == $(($1 + $(sa))) ]]
}
wait_for 60 processed_is 22000 ||
    { echo "FAIL: the printed bench's events did not reach the worker's metrics"; exit 1; }

# ---- 3. the README's C example, built and run as printed ----------------------
# In a directory laid out like the repository (include/, build/ -> this build).
mkdir -p "$AQ_TMP/walk"
ln -s "$AQ_ROOT/include" "$AQ_TMP/walk/include"
ln -s "$AQ_ROOT/$BUILD" "$AQ_TMP/walk/build"
"$PY" "$AQ_ROOT/tests/integration/extract_example.py" "$AQ_ROOT/README.md" app.c >"$AQ_TMP/walk/app.c"
cline='cc -Iinclude app.c -Lbuild/lib -lauditq -o app && LD_LIBRARY_PATH=build/lib ./app'
grep -qxF -- "$cline" "$AQ_ROOT/README.md" || { echo "FAIL: README lacks the line: $cline"; exit 1; }
san=()   # make asan / make tsan: the library needs the sanitizer's runtime
[[ -n "${SANITIZE:-}" ]] && san=(-fsanitize="$SANITIZE")
out=$(in_clean_shell "source $DEMO/demo.env; cd $AQ_TMP/walk; ${cline%% && *} ${san[*]} && ${cline#* && }" 2>&1) ||
    { echo "FAIL: the README's C example after source demo.env: $out"; exit 1; }
id=$(sed -n 's/^queued \([0-9a-f-]\{36\}\)$/\1/p' <<<"$out")
[[ -n "$id" ]] || { echo "FAIL: the README's C example printed: $out"; exit 1; }
wait_for 20 processed_is 22001 ||
    { echo "FAIL: the C example's event did not reach the demo's worker"; exit 1; }
assert_eq "page.update|acme" "$(in_clean_shell "source $DEMO/demo.env; psql -XAtc \"SELECT action || '|' || tenant_id FROM audit_events WHERE event_id = '$id'\"")" \
    "the C example's row in the demo's PostgreSQL"

# ---- 4. the README's other commands a demo can run, verbatim ----------------
# Each line must be in the README as it is here (leading blanks aside) and
# exit 0 after `source .run/demo.env`; build/ is this test's build dir.
readme_lines=(
    'build/bin/auditqctl -c config/auditq.conf migrate        # once, and after upgrades'
    'auditqctl stats --json             # one object, for scripts (--watch N --json: one line per refresh)'
    'auditqctl dlq list                                   # newest first: index, when, priority, attempts, event id, reason'
    'auditqctl dlq list --sqlstate 23514 --older-than 1h  # filters: --reason --sqlstate --priority'
    'auditqctl dlq requeue --sqlstate 23514 --dry-run'
    'auditqctl partitions ensure --dry-run   # what it would create or move'
    'auditqctl retention run --dry-run       # the plan'
    'auditqctl query --actor usr_00017 --since 7d --format ndjson'
    'auditqctl query --entity role:owner --desc'
    'auditqctl query --tenant acme --since 2026-10-01 --explain'
    'auditqctl migrate                                        # as the owner'
    "psql -c \"CREATE ROLE auditq_writer LOGIN PASSWORD 'change-me'\"   # once, as a superuser"
    "psql -c \"CREATE ROLE auditq_reader LOGIN PASSWORD 'change-me'\""
    'auditqctl grants --writer auditq_writer --reader auditq_reader'
)
# (grep -q reads a file: at the end of a pipe it could SIGPIPE the writer,
# which pipefail turns into a failure.)
sed 's/^ *//' "$AQ_ROOT/README.md" >"$AQ_TMP/readme.txt"
for l in "${readme_lines[@]}"; do
    grep -qxF -- "$l" "$AQ_TMP/readme.txt" || { echo "FAIL: README lacks the line: $l"; exit 1; }
    if ! in_clean_shell "source $DEMO/demo.env; ${l//build\/bin/$BUILD/bin}" >"$AQ_TMP/line.out" 2>&1; then
        cat "$AQ_TMP/line.out"
        echo "FAIL: the README's command fails after source demo.env: $l"
        exit 1
    fi
done
grep -q '^reader auditq_reader: ' "$AQ_TMP/line.out" || { cat "$AQ_TMP/line.out"; echo "FAIL: grants output"; exit 1; }

# ---- 5. stop ----------------------------------------------------------------
source "$DEMO/demo.env"
pm=$(head -n 1 "$DEMO_PGDATA/postmaster.pid")
bash "$AQ_ROOT/scripts/demo.sh" stop >"$AQ_TMP/stop.out" 2>&1
grep -q 'Stopped\. No demo process is left\.' "$AQ_TMP/stop.out" || { cat "$AQ_TMP/stop.out"; echo "FAIL: demo.sh stop"; exit 1; }
for pid in "$DEMO_WORKER_PID" "$DEMO_REDIS_PID" "$pm"; do
    ! _aq_alive "$pid" || { echo "FAIL: pid $pid still runs after demo.sh stop"; exit 1; }
done
it_pass "demo: README's commands and the demo's own run as printed after source demo.env; /metrics on; stop leaves nothing"
