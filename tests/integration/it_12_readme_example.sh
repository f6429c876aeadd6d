#!/usr/bin/env bash
# The C examples of the docs are the programs users copy: the README's app.c
# and auditq(3)'s audit-demo.c, extracted between their markers
# (extract_example.py), so the test runs exactly what a reader sees.
#   1. app.c builds warning-free (-Wall -Wextra -pedantic -Werror);
#   2. the README's own command lines, as printed (build/ = this build dir):
#      -lauditq against build/lib (the .so, found through libauditq.so.0)
#      and libauditq.a, each then runs ./app against a real Redis (the one
#      in $AUDITQ_REDIS_URL): "queued <id>", exit 0, and the event lands in
#      PostgreSQL with every field the example sets;
#   3. with a wrong URL: exit 1 within 2 s, the library's message (the one
#      the README prints) on stderr, nothing on stdout -- no "queued";
#   4. audit-demo.c builds warning-free and does what auditq(3) says: two
#      ids and the counters, exit 0; with a wrong URL each failure, exit 1.
set -euo pipefail
source "$(dirname "$0")/lib_it.sh"
it_setup
LIBDIR=$AQ_ROOT/${BUILD:-build}/lib
README=$AQ_ROOT/README.md
X=$AQ_ROOT/tests/integration/extract_example.py
W=$AQ_TMP/ex
mkdir -p "$W"
cd "$W"

# shellcheck disable=SC2094  # app.c is the example's name in the README, not a file read
"$PY" "$X" "$README" app.c >app.c
# shellcheck disable=SC2094
"$PY" "$X" "$AQ_ROOT/docs/man/auditq.3" audit-demo.c >audit-demo.c
# make asan / make tsan build the library with SANITIZE: programs linked
# with it need the same runtime.
san=()
[[ -n "${SANITIZE:-}" ]] && san=(-fsanitize="$SANITIZE")
strict=(-std=c11 -Wall -Wextra -Wshadow -Wstrict-prototypes -Werror -pedantic -I"$AQ_ROOT/include" "${san[@]}")

# ---- 1. builds with strict flags -------------------------------------------
cc "${strict[@]}" app.c -L"$LIBDIR" -lauditq -o app-strict ||
    { echo "FAIL: README app.c does not build with ${strict[*]}"; exit 1; }

# ---- 2. the README's lines as printed: build, run against Redis, row lands --
worker_start w1 --set threads=1
so_line='cc -Iinclude app.c -Lbuild/lib -lauditq -o app && LD_LIBRARY_PATH=build/lib ./app'
a_line='cc -Iinclude app.c build/lib/libauditq.a -lhiredis -lmsgpackc -lcrypto -lpthread -o app && ./app'
# shellcheck disable=SC2016  # the README's text, $(...) included
for l in "$so_line" "$a_line" 'cc app.c $(pkg-config --cflags --libs auditq) -o app && ./app'; do
    grep -qxF -- "$l" "$README" || { echo "FAIL: README lacks the build line: $l"; exit 1; }
done
# as_readme LINE NAME: runs the README's LINE (build, then ./app, which
# reads $AUDITQ_REDIS_URL: the harness' Redis) in directory NAME, with
# include/ and build/lib pointing at this tree; the program is then ./NAME,
# its stdout NAME.out, stderr NAME.err, exit status LINE_RC[NAME].
declare -A LINE_RC
as_readme() {
    local cmd=$1 name=$2
    cmd=${cmd//-Iinclude/-I$AQ_ROOT/include}
    cmd=${cmd//build\/lib/$LIBDIR}
    cmd="${cmd%% && *} ${san[*]} && ${cmd#* && }"   # bash 5.2: & in ${x/a/b} is the match
    mkdir -p "$name.d"
    cp app.c "$name.d/"
    LINE_RC[$name]=0
    (cd "$name.d" && eval "$cmd") >"$name.out" 2>"$name.err" || LINE_RC[$name]=$?
    [[ ! -x "$name.d/app" ]] || cp "$name.d/app" "$name"
}
# run NAME ARGS...: runs ./NAME with LD_LIBRARY_PATH=$LIBDIR, stdout in
# NAME.out, stderr in NAME.err, exit status in RC, milliseconds in MS.
run() {
    local name=$1 t0
    shift
    t0=$(date +%s%N)
    RC=0
    LD_LIBRARY_PATH=$LIBDIR timeout 60 "./$name" "$@" >"$name.out" 2>"$name.err" || RC=$?
    MS=$((($(date +%s%N) - t0) / 1000000))
}
# landed WHERE N: true when N rows match WHERE
landed() { [[ "$(rows "WHERE $1")" == "$2" ]]; }
row='SELECT action, tenant_id, actor_id, actor_type, entity_type, entity_id, outcome,
            source_ip, changes::text, priority FROM audit_events WHERE event_id = '
expect='page.update|acme|user-42|user|page|page-7|success|192.0.2.10|{"title": ["Old", "New"]}|high'
as_readme "$so_line" app-so
as_readme "$a_line" app-a
for app in app-so app-a; do
    assert_eq 0 "${LINE_RC[$app]}" "$app: the README's line, exit status (stderr: $(cat "$app.err"))"
    assert_eq "" "$(cat "$app.err")" "$app stderr"
    id=$(sed -n 's/^queued \([0-9a-f-]\{36\}\)$/\1/p' "$app.out")
    [[ -n "$id" && $(wc -l <"$app.out") -eq 1 ]] ||
        { echo "FAIL: $app stdout is not one 'queued <id>' line: $(cat "$app.out")"; exit 1; }
    wait_for 20 landed "event_id = '$id'" 1 ||
        { echo "FAIL: event $id from $app did not land in PostgreSQL"; exit 1; }
    assert_eq "$expect" "$(psql_q "$row '$id'")" "row of $app's event"
done
assert_eq 2 "$(rows)" "rows after the two runs"
so=$(LD_LIBRARY_PATH=$LIBDIR ldd ./app-so | awk '$1 == "libauditq.so.0" { print $3 }')
assert_eq "$LIBDIR/libauditq.so.0" "$so" "libauditq.so.0 as app-so loads it"
deps_a=$(ldd ./app-a)
if grep -q libauditq <<<"$deps_a"; then
    echo "FAIL: app-a (libauditq.a) loads a shared libauditq: $deps_a"; exit 1
fi

# ---- 3. a wrong URL: the library's message, exit 1, fast, no "queued" -----
bad=$(free_port)
limit_ms=$(awk -v k="${AQ_TIME_SCALE:-1}" 'BEGIN { if (k < 1) k = 1; print 2000 * k }')
for app in app-so app-a; do
    run "$app" "redis://127.0.0.1:$bad"
    assert_eq 1 "$RC" "$app exit status with a wrong URL"
    assert_eq "" "$(cat "$app.out")" "$app stdout with a wrong URL"
    assert_eq "auditq_ping: cannot connect to Redis: cannot connect to Redis at 127.0.0.1:$bad: Connection refused" \
        "$(cat "$app.err")" "$app stderr with a wrong URL"
    ((MS <= limit_ms)) || { echo "FAIL: $app took $MS ms to fail (limit $limit_ms)"; exit 1; }
    echo "$app with a wrong URL: exit 1 after $MS ms"
done
# The README shows that very message (for its port 6390).
grep -qxF 'auditq_ping: cannot connect to Redis: cannot connect to Redis at 127.0.0.1:6390: Connection refused' "$README" ||
    { echo "FAIL: README does not show the wrong-URL message app.c prints"; exit 1; }
assert_eq 2 "$(rows)" "rows after the wrong-URL runs"

# ---- 4. auditq(3)'s example ------------------------------------------------
cc "${strict[@]}" audit-demo.c -L"$LIBDIR" -lauditq -o audit-demo ||
    { echo "FAIL: auditq(3) example does not build with ${strict[*]}"; exit 1; }
run audit-demo "$AUDITQ_REDIS_URL"
assert_eq 0 "$RC" "audit-demo exit status (stderr: $(cat audit-demo.err))"
assert_eq "" "$(cat audit-demo.err)" "audit-demo stderr"
uuid='[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}'
if ! grep -qxE "in Redis: $uuid" audit-demo.out || ! grep -qxE "buffered: $uuid" audit-demo.out ||
    ! grep -qx 'sent_sync=1 sent_async=1 buffered=0' audit-demo.out || (($(wc -l <audit-demo.out) != 3)); then
    echo "FAIL: audit-demo output: $(cat audit-demo.out)"
    exit 1
fi
wait_for 20 landed true 4 ||
    { echo "FAIL: audit-demo's two events did not land: $(rows) rows"; exit 1; }
assert_eq "page.update|page.update|page.update|user.login" \
    "$(psql_q "SELECT string_agg(action, '|' ORDER BY action) FROM audit_events")" "actions of the 4 events"
run audit-demo "redis://127.0.0.1:$bad"
assert_eq 1 "$RC" "audit-demo exit status with a wrong URL"
grep -qxF "auditq_ping: cannot connect to Redis: cannot connect to Redis at 127.0.0.1:$bad: Connection refused" audit-demo.err ||
    { echo "FAIL: audit-demo with a wrong URL does not report the ping: $(cat audit-demo.err)"; exit 1; }
grep -q '^auditq_send: ' audit-demo.err ||
    { echo "FAIL: audit-demo with a wrong URL does not report the send: $(cat audit-demo.err)"; exit 1; }
worker_stop w1
it_pass "README app.c (.so and .a) and auditq(3) audit-demo.c: built from the docs, events land; a wrong URL fails at once with the library's message"
