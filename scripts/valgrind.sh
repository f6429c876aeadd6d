#!/usr/bin/env bash
# valgrind.sh -- `make valgrind`: the test suites with every auditq binary
# run under valgrind memcheck.  The Makefile has built everything into
# $BUILD (build-valgrind, -O1 -g, no sanitizers) before this runs.
#
#   1. every unit test binary, and every fuzz target over its seed corpus;
#   2. the integration tests in AQ_VG_TESTS (default: the ones whose
#      timings tolerate a 20-50x slower worker, see below) with
#      auditq-worker, auditqctl, auditq-bench and the test clients replaced
#      by wrappers that exec valgrind (AQ_BIN / AQ_TBIN in lib_it.sh).
#
# AQ_VG_UNITS=0 skips the unit tests and fuzz corpora.
# A run fails on any memcheck error (invalid read/write, uninitialised
# value, bad free) or definite/possible leak, in any process -- including a
# worker that the test then kills, since its log is checked here, not only
# its exit status.  Logs: $BUILD/valgrind/logs/<pid>.log; the failing ones
# are printed.
#
# Integration tests left out by default, and why: it_78 (210k-row query
# export: ~40 min under memcheck), it_9* fault storms (their bounds on
# recovery time assume native speed), it_80/it_85 (they wait for metric and
# reload changes within native-speed deadlines).  AQ_VG_TESTS="it_78" runs
# any of them anyway.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
build=${BUILD:-build-valgrind}
vgdir=$root/$build/valgrind
logs=$vgdir/logs
rm -rf "$vgdir"
mkdir -p "$logs" "$vgdir/bin" "$vgdir/tests"

command -v valgrind >/dev/null || {
    echo "valgrind.sh: valgrind is not installed (apt-get install valgrind, or make deps)" >&2
    exit 1
}

VG=(valgrind --tool=memcheck --error-exitcode=99 --leak-check=full
    --errors-for-leak-kinds=definite,possible --show-leak-kinds=definite,possible
    --track-origins=yes --num-callers=30 --suppressions="$root/scripts/valgrind.supp")

# A wrapper per binary: exec keeps the pid, so kill -9 and `wait` in the
# tests see valgrind's process exactly as they saw the binary's.
wrap() {
    local real=$1 out=$2
    cat >"$out" <<EOF
#!/bin/sh
exec ${VG[*]} --log-file=$logs/%p.log "$real" "\$@"
EOF
    chmod +x "$out"
}
for b in "$build"/bin/*; do wrap "$root/$b" "$vgdir/bin/$(basename "$b")"; done
for b in "$build"/tests/*; do
    [[ -x "$b" && ! -d "$b" ]] && wrap "$root/$b" "$vgdir/tests/$(basename "$b")"
done

# Tests with time bounds (test_pgw, test_spool, ...) widen them by this
# factor: memcheck runs code 20-50x slower.
export AQ_TIME_SCALE=${AQ_TIME_SCALE:-10}

passed=0
failed=0
failed_names=()
check_logs() {   # name: fail if any log written since the marker has errors
    local name=$1 bad=()
    local f
    while IFS= read -r f; do
        if grep -q '^==[0-9]*== Command: .*crash_after_commit=[1-9]' "$f"; then
            # The crash_after_commit hook kills the worker on purpose (it
            # SIGKILLs itself; valgrind still prints a leak report for it):
            # its memory errors count, its unfreed memory does not.
            grep -qE 'Invalid (read|write|free)|uninitialised|Mismatched free|overlap|Syscall param' "$f" &&
                bad+=("$f")
        elif grep -qE 'ERROR SUMMARY: [1-9]|definitely lost: [1-9]|possibly lost: [1-9]' "$f"; then
            bad+=("$f")
        fi
    done < <(find "$logs" -name '*.log' -newer "$vgdir/marker" 2>/dev/null)
    if ((${#bad[@]})); then
        echo "-- $name: memcheck errors in ${#bad[@]} process(es):"
        for f in "${bad[@]}"; do echo "---- $f"; sed -n '1,60p' "$f"; done
        return 1
    fi
}
run_one() {   # name cmd...
    local name=$1 rc=0
    shift
    touch "$vgdir/marker"
    sleep 0.01
    echo "== $name"
    "$@" </dev/null || rc=$?
    if ((rc == 0)) && check_logs "$name"; then
        passed=$((passed + 1))
    else
        ((rc == 0)) || echo "-- $name: FAIL (exit $rc)"
        failed=$((failed + 1))
        failed_names+=("$name")
    fi
}

units=${AQ_VG_UNITS:-1}   # AQ_VG_UNITS=0: integration tests only
((units)) && echo "=== unit tests under memcheck"
((units)) && for src in tests/unit/test_*.c; do
    name=$(basename "$src" .c)
    run_one "$name" timeout -k 10 1200 "$vgdir/tests/$name"
done
((units)) && for src in tests/fuzz/fuzz_*.c; do
    [[ -e "$src" ]] || continue
    name=$(basename "$src" .c)
    corpus=tests/fuzz/corpus/${name#fuzz_}
    [[ -d "$corpus" ]] || continue
    run_one "$name corpus" timeout -k 10 1200 "$vgdir/tests/$name" "$corpus"
done

echo "=== integration tests under memcheck"
tests=${AQ_VG_TESTS:-"it_00 it_10 it_20 it_30 it_35 it_40 it_50 it_60 it_70 it_71 it_75 it_76 it_77 it_86 it_88 it_90 it_96"}
for t in $tests; do
    compgen -G "tests/integration/${t}*.sh" >/dev/null || continue
    run_one "$t" env AQ_BIN="$vgdir/bin" AQ_TBIN="$vgdir/tests" AQ_VALGRIND=1 \
        AQ_IT_TIMEOUT=${AQ_IT_TIMEOUT:-1500} BUILD="$build" bash tests/integration/run.sh "$t"
done

echo "=== valgrind total"
((${#failed_names[@]} == 0)) || echo "failed: ${failed_names[*]}"
echo "$passed passed, $failed failed"
((failed == 0))
