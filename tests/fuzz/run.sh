#!/usr/bin/env bash
# run.sh -- `make fuzz`: every libFuzzer target tests/fuzz/fuzz_X.c, built
# with clang -fsanitize=fuzzer,address,undefined into build-fuzz/, run for
# FUZZ_SECONDS from its seed corpus tests/fuzz/corpus/X/.
#
#   bash tests/fuzz/run.sh [X...]        default: every tests/fuzz/fuzz_*.c
#
#   FUZZ_SECONDS   seconds per target (default 60)
#   FUZZ_BUILD     build dir (default build-fuzz)
#
# The code under test (common/, producer/, worker/ minus worker/main.c) is
# compiled by the Makefile's own rules into FUZZ_BUILD/obj with
# -fsanitize=fuzzer-no-link,address,undefined, so the flags are the
# Makefile's; each target is linked with -fsanitize=fuzzer.
#
# New inputs libFuzzer finds go to FUZZ_BUILD/corpus/X (kept across runs, not
# committed); a crash, leak, sanitizer report, timeout or broken invariant
# (the targets abort()) is written to FUZZ_BUILD/crashes/X/ and fails the run
# with its path. Fix the bug, then copy the file into tests/fuzz/corpus/X/ so
# `make test` replays it from then on.
#
# To keep what a run found in the committed seeds (only inputs that add
# coverage; files named found-<sha1>):
#   d=$(mktemp -d); build-fuzz/fuzz_X -merge=1 -max_len=1024 "$d" \
#       tests/fuzz/corpus/X build-fuzz/corpus/X
#   then copy the files of $d missing from tests/fuzz/corpus/X as found-*.
#
# A target's input size limit is read from a "fuzz-max-len: N" line in its
# source (default 4096). Prints one line per target: executions, coverage at
# start and end, new corpus inputs. Exit 1 if any target failed.

set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
secs=${FUZZ_SECONDS:-60}
out=${FUZZ_BUILD:-build-fuzz}
[[ "$secs" =~ ^[1-9][0-9]*$ ]] || { echo "fuzz: FUZZ_SECONDS=$secs: must be a positive integer" >&2; exit 2; }

if ! command -v clang >/dev/null 2>&1 ||
   [[ -z "$(find /usr/lib/llvm-*/lib/clang -name 'libclang_rt.fuzzer-*.a' 2>/dev/null | head -n 1)" ]]; then
    echo "fuzz: clang with libFuzzer not found: installing (scripts/deps.sh --fuzz)"
    sh scripts/deps.sh --fuzz
fi

targets=()
if (($# > 0)); then
    for t in "$@"; do
        [[ -f tests/fuzz/fuzz_$t.c ]] || { echo "fuzz: no target tests/fuzz/fuzz_$t.c" >&2; exit 2; }
        targets+=("$t")
    done
else
    for f in tests/fuzz/fuzz_*.c; do
        t=${f#tests/fuzz/fuzz_}
        targets+=("${t%.c}")
    done
fi
((${#targets[@]} > 0)) || { echo "fuzz: no tests/fuzz/fuzz_*.c targets" >&2; exit 2; }

# ---- build
san=fuzzer-no-link,address,undefined
mk=(make --no-print-directory BUILD="$out" CC=clang OPT=-O1 SANITIZE=$san
    CFLAGS="-O1 -g -fno-sanitize-recover=undefined")
srcs=$(ls common/*.c producer/*.c worker/*.c | grep -v '^worker/main\.c$')
objs=()
for s in $srcs; do objs+=("$out/obj/${s%.c}.o"); done
mkdir -p "$out"
echo "fuzz: building ${#objs[@]} objects with clang -fsanitize=$san into $out/obj"
"${mk[@]}" -j2 "${objs[@]}" >"$out/build.log" 2>&1 || { cat "$out/build.log"; echo "fuzz: build failed" >&2; exit 1; }
# The Makefile's compile flags and libraries, read from the Makefile itself.
vars=$(printf 'fuzz-print-vars:\n\t@echo "$(ALL_CFLAGS)"\n\t@echo "$(LIBS_ALL)"\n' |
       "${mk[@]}" -s -f Makefile -f - fuzz-print-vars)
cflags=$(sed -n 1p <<<"$vars")
libs=$(sed -n 2p <<<"$vars")
cflags=${cflags//fuzzer-no-link/fuzzer}

# ---- run
failed=0
summary=()
for t in "${targets[@]}"; do
    bin=$out/fuzz_$t
    # shellcheck disable=SC2086  # cflags/libs are word lists
    clang $cflags -o "$bin" "tests/fuzz/fuzz_$t.c" "${objs[@]}" $libs 2>"$out/fuzz_$t.link.log" ||
        { cat "$out/fuzz_$t.link.log"; echo "fuzz: linking fuzz_$t failed" >&2; exit 1; }
    maxlen=$(sed -n 's/.*fuzz-max-len: *\([0-9][0-9]*\).*/\1/p' "tests/fuzz/fuzz_$t.c" | head -n 1)
    maxlen=${maxlen:-4096}
    seed=tests/fuzz/corpus/$t
    work=$out/corpus/$t
    crashes=$out/crashes/$t
    mkdir -p "$work" "$crashes"
    [[ -d "$seed" ]] || { echo "fuzz: $t: no seed corpus $seed" >&2; exit 1; }
    before=$(find "$work" -type f | wc -l)
    log=$out/fuzz_$t.log
    echo "fuzz: $t: ${secs}s, -max_len=$maxlen, seeds $seed ($(find "$seed" -type f | wc -l) files), corpus $work ($before)"
    rc=0
    # The first corpus dir receives new inputs; the seed dir is only read.
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
        "$bin" -max_total_time="$secs" -max_len="$maxlen" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$crashes/" "$work" "$seed" >"$log" 2>&1 || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    cov0=$(grep -E '^#[0-9]+[[:space:]]+INITED' "$log" | sed -n 's/.* cov: \([0-9]*\).*/\1/p' | tail -n 1)
    cov1=$(grep -E '^#[0-9]+[[:space:]]+' "$log" | sed -n 's/.* cov: \([0-9]*\).*/\1/p' | tail -n 1)
    ft1=$(grep -E '^#[0-9]+[[:space:]]+' "$log" | sed -n 's/.* ft: \([0-9]*\).*/\1/p' | tail -n 1)
    after=$(find "$work" -type f | wc -l)
    line="fuzz_$t: ${execs:-?} execs in ${secs}s ($(( ${execs:-0} / secs ))/s), coverage ${cov0:-?} -> ${cov1:-?} edges (${ft1:-?} features), corpus +$((after - before)) new inputs ($after in $work)"
    if ((rc != 0)); then
        art=$(grep -o "Test unit written to [^ ]*" "$log" | tail -n 1 | sed 's/Test unit written to //')
        line="FAIL $line: exit $rc, input ${art:-(none written, see $log)}; log $log"
        failed=1
        grep -E "ERROR: |SUMMARY: |runtime error:|==[0-9]+==" "$log" | head -n 5 || true
    fi
    echo "$line"
    summary+=("$line")
done

echo "=== fuzz summary (${secs}s per target)"
printf '%s\n' "${summary[@]}"
if ((failed)); then
    echo "fuzz: a target failed. Reproduce with: $out/fuzz_X FILE (ASan report and the broken CHECK);"
    echo "fuzz: after the fix, copy FILE into tests/fuzz/corpus/X/ so make test replays it."
fi
exit $failed
