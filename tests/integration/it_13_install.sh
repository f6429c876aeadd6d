#!/usr/bin/env bash
# make install / make uninstall, staged with DESTDIR (nothing system-wide):
#   1. install puts exactly the expected files under DESTDIR/usr/local: the
#      binaries, libauditq.a, libauditq.so.0.1.0 (SONAME libauditq.so.0)
#      with its links libauditq.so.0 and libauditq.so, auditq.h, auditq.pc,
#      the example config, the alert rules, the systemd unit, every man page;
#      and says that ldconfig is left to the target;
#   2. the README's app.c, built with `pkg-config --cflags --libs auditq`
#      against that tree, loads the staged libauditq.so.0 and queues an event
#      in a real Redis;
#   3. uninstall with the same DESTDIR leaves no file behind.
set -euo pipefail
source "$(dirname "$0")/lib_it.sh"
command -v pkg-config >/dev/null || { echo "FAIL: pkg-config is not installed; run 'make deps'"; exit 1; }
harness_init
redis_start
D=$AQ_TMP/root
P=$D/usr/local
# A make of its own: not the jobserver of a `make test` that runs us.
mk() { env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make --no-print-directory -C "$AQ_ROOT" BUILD="${BUILD:-build}" "$@"; }

# ---- 1. install ---------------------------------------------------------------
mk install DESTDIR="$D" PREFIX=/usr/local >"$AQ_TMP/install.out" 2>&1 ||
    { cat "$AQ_TMP/install.out"; echo "FAIL: make install DESTDIR=$D"; exit 1; }
assert_eq "make install: staged in DESTDIR; run ldconfig on the target once the files are in /usr/local/lib" \
    "$(tail -n 1 "$AQ_TMP/install.out")" "make install's last line"
expected=$(
    {
        printf '%s\n' bin/auditq-bench bin/auditq-worker bin/auditqctl include/auditq.h \
            lib/libauditq.a lib/libauditq.so lib/libauditq.so.0 lib/libauditq.so.0.1.0 \
            lib/pkgconfig/auditq.pc lib/systemd/system/auditq-worker.service \
            share/auditq/auditq-alerts.yml share/auditq/auditq.conf.example
        for m in "$AQ_ROOT"/docs/man/*.[138]; do
            printf 'share/man/man%s/%s\n' "${m##*.}" "${m##*/}"
        done
    } | LC_ALL=C sort
)
assert_eq "$expected" "$(cd "$P" && find . ! -type d | sed 's|^\./||' | LC_ALL=C sort)" "installed files"
assert_eq "" "$(cd "$D" && find . ! -type d ! -path './usr/local/*')" "files outside PREFIX"
assert_eq libauditq.so.0.1.0 "$(readlink "$P/lib/libauditq.so.0")" "libauditq.so.0 link"
assert_eq libauditq.so.0 "$(readlink "$P/lib/libauditq.so")" "libauditq.so link"
[[ -f "$P/lib/libauditq.so.0.1.0" && ! -L "$P/lib/libauditq.so.0.1.0" ]] ||
    { echo "FAIL: libauditq.so.0.1.0 is not a regular file"; exit 1; }
soname=$(readelf -d "$P/lib/libauditq.so.0.1.0" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
assert_eq libauditq.so.0 "$soname" "SONAME"
assert_eq "prefix=/usr/local|Version: 0.1.0" \
    "$(grep -E '^(prefix=|Version:)' "$P/lib/pkgconfig/auditq.pc" | paste -sd '|')" "auditq.pc prefix and version"

# ---- 2. a program built with pkg-config against the staged tree runs --------
export PKG_CONFIG_PATH=$P/lib/pkgconfig PKG_CONFIG_SYSROOT_DIR=$D
assert_eq "-L$P/lib -lauditq" "$(pkg-config --libs auditq | sed 's/ *$//')" "pkg-config --libs auditq"
cflags=$(pkg-config --cflags auditq)
[[ "$cflags" == "-I$P/include "* ]] || { echo "FAIL: pkg-config --cflags auditq: $cflags"; exit 1; }
mkdir -p "$AQ_TMP/app"
cd "$AQ_TMP/app"
# shellcheck disable=SC2094  # app.c is the example's name in the README, not a file read
"$PY" "$AQ_ROOT/tests/integration/extract_example.py" "$AQ_ROOT/README.md" app.c >app.c
# The README's line for an installed auditq, as printed.
# shellcheck disable=SC2016  # the README's text, $(...) included
line='cc app.c $(pkg-config --cflags --libs auditq) -o app && ./app'
grep -qxF -- "$line" "$AQ_ROOT/README.md" || { echo "FAIL: README lacks the build line: $line"; exit 1; }
san=()   # make asan / make tsan: the library needs the sanitizer's runtime
[[ -n "${SANITIZE:-}" ]] && san=(-fsanitize="$SANITIZE")
eval "${line%% && *} ${san[*]}" || { echo "FAIL: $line: does not build against $P"; exit 1; }
assert_eq "$P/lib/libauditq.so.0" "$(LD_LIBRARY_PATH=$P/lib ldd ./app | awk '$1 == "libauditq.so.0" { print $3 }')" \
    "libauditq.so.0 the program loads"
rc=0
out=$(LD_LIBRARY_PATH=$P/lib timeout 30 ./app "$AUDITQ_REDIS_URL" 2>&1) || rc=$?
assert_eq 0 "$rc" "app exit status (output: $out)"
[[ "$out" =~ ^queued\ [0-9a-f-]{36}$ ]] || { echo "FAIL: app output: $out"; exit 1; }
assert_eq 1 "$(redis-cli -p "$REDIS_PORT" llen '{auditq}:queue:high')" "events queued in Redis"

# ---- 3. uninstall leaves nothing -------------------------------------------
mk uninstall DESTDIR="$D" PREFIX=/usr/local >"$AQ_TMP/uninstall.out" 2>&1 ||
    { cat "$AQ_TMP/uninstall.out"; echo "FAIL: make uninstall DESTDIR=$D"; exit 1; }
assert_eq "" "$(cd "$D" && find . ! -type d)" "files left after make uninstall"
[[ ! -e "$P/share/auditq" ]] || { echo "FAIL: $P/share/auditq is left"; exit 1; }
it_pass "make install DESTDIR: $(wc -l <<<"$expected") files, .so.0.1.0 + links, pkg-config build runs; make uninstall leaves none"
