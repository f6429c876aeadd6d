#!/usr/bin/env bash
# run-all.sh -- the test part of `make test` (the Makefile builds first):
# every unit test binary $BUILD/tests/test_* that has a tests/unit/test_*.c
# source (cmocka prints its own summary), every fuzz target's replay binary
# $BUILD/tests/fuzz_X over its seed corpus tests/fuzz/corpus/X/ (a crash or
# broken invariant on a committed input fails), then tests/integration/run.sh.
#
# Last line: "N passed, M failed", counting unit binaries, fuzz replays and
# integration scripts.  Exit 1 if anything failed.  Zero unit tests is fine.
#
#   AQ_UNIT_TIMEOUT   seconds per unit binary (default 120)
#   BUILD             build dir (default build), as in the Makefile

set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
build=${BUILD:-build}
unit_timeout=${AQ_UNIT_TIMEOUT:-120}

passed=0
failed=0
failed_names=()

# run_unit NAME [ARGS...]: run $build/tests/NAME with ARGS, count it.
run_unit() {
    local name=$1 bin=$build/tests/$1 rc=0
    shift
    units=$((units + 1))
    if [[ ! -x "$bin" ]]; then
        # The Makefile builds every unit test before us; a missing binary
        # means it did not compile, which is a failure, not a skip.
        echo "-- $name: FAIL (binary $bin not built)"
        failed=$((failed + 1))
        failed_names+=("$name")
        return
    fi
    # --foreground: a Ctrl-C reaches the binary (no own process group).
    timeout --foreground -k 10 "$unit_timeout" "$bin" "$@" </dev/null 2>&1 || rc=$?
    if ((rc == 0)); then
        passed=$((passed + 1))
    else
        echo "-- $name: FAIL (exit $rc)"
        failed=$((failed + 1))
        failed_names+=("$name")
    fi
}

echo "=== unit tests"
shopt -s nullglob
units=0
for src in tests/unit/test_*.c; do
    name=$(basename "$src" .c)
    echo "== $name"
    run_unit "$name"
done
for src in tests/fuzz/fuzz_*.c; do
    name=$(basename "$src" .c)
    corpus=tests/fuzz/corpus/${name#fuzz_}
    echo "== $name (replay of $corpus)"
    run_unit "$name" "$corpus"
done
shopt -u nullglob
((units > 0)) || echo "(no unit tests)"

echo "=== integration tests"
summary=$(mktemp "${TMPDIR:-/tmp}/auditq-summary.XXXXXX")
trap 'rm -f "$summary"' EXIT
it_rc=0
AQ_SUMMARY_FILE=$summary bash tests/integration/run.sh || it_rc=$?
read -r it_pass it_fail <"$summary" || { it_pass=0; it_fail=1; }
if ((it_rc != 0 && it_fail == 0)); then
    # run.sh failed without counting a test failure (crashed, no tests matched).
    it_fail=1
    failed_names+=("integration/run.sh(exit $it_rc)")
fi
passed=$((passed + it_pass))
failed=$((failed + it_fail))

echo "=== total"
if ((${#failed_names[@]} > 0)); then
    echo "failed (unit): ${failed_names[*]}"
fi
echo "$passed passed, $failed failed"
((failed == 0))
