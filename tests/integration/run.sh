#!/usr/bin/env bash
# run.sh -- run the integration tests: tests/integration/it_*.sh, sorted
# (plus a legacy test_harness_selfcheck.sh first, if one exists).
#
#   bash tests/integration/run.sh [PATTERN...]
#
# PATTERN selects tests whose name (without .sh) contains it; globs work
# ("pg_*", "harness").  Each test is a standalone bash script that sources
# tests/lib/harness.sh and exits 0 on pass.  It runs with stdin from
# /dev/null under `timeout -k 10 AQ_IT_TIMEOUT` (default 300 s).
#
# After each test we reap whatever it registered in $AQ_REGISTRY and did not
# stop (a test killed by the timeout cannot run its own cleanup, and the
# postmaster is outside timeout's process group) -- so no run leaves servers
# behind.
#
# AQ_IT_SKIP: space-separated patterns (same matching as PATTERN) of tests
# not to run; each is listed as SKIP with the reason, and counts as neither
# passed nor failed. .ci/run uses it to keep the fault and fail-over suites
# out of the sanitizer passes (the CI budget); they run in the plain pass,
# and under a sanitizer with e.g.
#   make test-faults BUILD=build-tsan SANITIZE=thread OPT=-O1
#
# Last line: "N passed, M failed".  Exit 1 if any failed (or none matched a
# given PATTERN).  AQ_SUMMARY_FILE, if set, receives "N M" for run-all.sh.

set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

timeout_s=${AQ_IT_TIMEOUT:-300}

# True if PID runs and is not a zombie (PID 1 in a container may reap late).
alive() {
    kill -0 "$1" 2>/dev/null &&
        [[ "$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)" != Z ]]
}

# Kill anything the finished test registered and left running, by pid,
# after checking the pid still runs what we started (pids get reused).
reap_registry() {
    local reg=$1 kind pid extra cmd
    [[ -s "$reg" ]] || return 0
    while read -r kind pid extra; do
        [[ "$kind" == dir ]] && continue
        [[ "$pid" =~ ^[0-9]+$ ]] || continue
        alive "$pid" || continue
        cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || continue
        case $kind in
            redis) [[ "$cmd" == *redis-server* ]] || continue ;;
            pg)    [[ "$cmd" == *postgres* ]] || continue ;;
        esac
        echo "run.sh: reaping leftover $kind pid $pid ($cmd)"
        if [[ "$kind" == pg ]]; then
            # SIGQUIT = immediate shutdown: the postmaster kills its backends.
            kill -QUIT "$pid" 2>/dev/null || true
        else
            kill -TERM "$pid" 2>/dev/null || true
        fi
        for _ in $(seq 50); do
            alive "$pid" || break
            sleep 0.1
        done
        if alive "$pid"; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done <"$reg"
    if [[ "${AQ_KEEP:-0}" != 1 ]]; then
        while read -r kind pid extra; do
            if [[ "$kind" == dir && "$extra" == /tmp/auditq-* && -d "$extra" ]]; then
                rm -rf "$extra"
            fi
        done <"$reg"
    fi
}

tests=()
[[ -f "$here/test_harness_selfcheck.sh" ]] && tests+=("$here/test_harness_selfcheck.sh")
while IFS= read -r f; do
    tests+=("$f")
done < <(LC_ALL=C find "$here" -maxdepth 1 -name 'it_*.sh' -type f | LC_ALL=C sort)

if (($# > 0)); then
    selected=()
    for t in "${tests[@]}"; do
        name=$(basename "$t" .sh)
        for pat in "$@"; do
            # shellcheck disable=SC2053  # pattern on purpose
            if [[ "$name" == *$pat* ]]; then
                selected+=("$t")
                break
            fi
        done
    done
    tests=("${selected[@]+"${selected[@]}"}")
    if ((${#tests[@]} == 0)); then
        echo "run.sh: no integration test matches: $*"
        echo "0 passed, 0 failed"
        [[ -n "${AQ_SUMMARY_FILE:-}" ]] && echo "0 0" >"$AQ_SUMMARY_FILE"
        exit 1
    fi
fi

skipped=()
if [[ -n "${AQ_IT_SKIP:-}" ]]; then
    kept=()
    read -ra skip_pats <<<"$AQ_IT_SKIP"   # split on blanks, no pathname expansion
    for t in "${tests[@]+"${tests[@]}"}"; do
        name=$(basename "$t" .sh)
        skip=0
        for pat in "${skip_pats[@]}"; do
            # shellcheck disable=SC2053  # pattern on purpose
            if [[ "$name" == *$pat* ]]; then
                skip=1
                break
            fi
        done
        if ((skip)); then
            skipped+=("$name")
        else
            kept+=("$t")
        fi
    done
    tests=("${kept[@]+"${kept[@]}"}")
    for name in "${skipped[@]+"${skipped[@]}"}"; do
        echo "-- $name: SKIP (AQ_IT_SKIP=\"$AQ_IT_SKIP\")"
    done
fi

reg=$(mktemp "${TMPDIR:-/tmp}/auditq-registry.XXXXXX")
trap 'reap_registry "$reg"; rm -f "$reg"' EXIT
# The test runs under `timeout`, which puts itself in its own process group:
# a Ctrl-C reaches us, not the test.  So we run it in the background and
# `wait` (interruptible, unlike a foreground command), and on INT/TERM pass
# a TERM to timeout, which relays it to the test's whole group; the test's
# EXIT trap stops its servers, the registry catches the rest.
cur_pid=""
on_signal() {
    if [[ -n "$cur_pid" ]]; then
        echo "run.sh: interrupted; stopping the running test"
        kill -TERM "$cur_pid" 2>/dev/null || true
        wait "$cur_pid" 2>/dev/null || true
    fi
    exit "$1"
}
trap 'on_signal 130' INT
trap 'on_signal 143' TERM

passed=0
failed=0
failed_names=()
for t in "${tests[@]+"${tests[@]}"}"; do
    name=$(basename "$t" .sh)
    echo "== $name"
    : >"$reg"
    start=$SECONDS
    rc=0
    AQ_REGISTRY=$reg timeout -k 10 "$timeout_s" bash "$t" </dev/null 2>&1 &
    cur_pid=$!
    wait "$cur_pid" || rc=$?
    cur_pid=""
    secs=$((SECONDS - start))
    reap_registry "$reg"
    if ((rc == 0)); then
        passed=$((passed + 1))
        echo "-- $name: PASS (${secs}s)"
    else
        failed=$((failed + 1))
        failed_names+=("$name")
        # 124: timeout sent TERM; 137 after the full time: it had to KILL.
        if ((rc == 124 || (rc == 137 && secs >= timeout_s))); then
            echo "-- $name: FAIL (timed out after ${timeout_s}s)"
        else
            echo "-- $name: FAIL (exit $rc, ${secs}s)"
        fi
    fi
done

if ((failed > 0)); then
    echo "failed: ${failed_names[*]}"
fi
if ((${#skipped[@]} > 0)); then
    echo "skipped (AQ_IT_SKIP): ${skipped[*]}"
fi
echo "$passed passed, $failed failed"
if [[ -n "${AQ_SUMMARY_FILE:-}" ]]; then
    echo "$passed $failed" >"$AQ_SUMMARY_FILE"
fi
((failed == 0))
