#!/usr/bin/env bash
# it_05_abi.sh -- libauditq.so exports its API and nothing else.
#
#   1. `nm -D --defined-only` of $BUILD/lib/libauditq.so lists exactly the
#      functions include/auditq.h declares: an export the header does not
#      declare (codec_*, spool_*, redis_connect, ...) fails, and so does a
#      function the header declares that the .so does not export (one left
#      without AUDITQ_API). Every export carries the version node AUDITQ_0
#      (producer/libauditq.map).
#   2. A host program that defines its own keys_init() and redis_url_parse()
#      (names libauditq uses inside) and links the .so dynamically: the
#      library still validates with its own functions. Were the internals
#      exported, the dynamic linker would bind the library's calls to the
#      host's definitions (symbol interposition) and a bad namespace and a
#      bad URL would be accepted.
# No servers: this checks the build, so it runs first among the it_ tests.
set -euo pipefail
source "$(dirname "$0")/../lib/harness.sh"
harness_init

so="$AQ_ROOT/${BUILD:-build}/lib/libauditq.so"
hdr="$AQ_ROOT/include/auditq.h"
[[ -f "$so" ]] || { echo "FAIL: $so not built (make BUILD=${BUILD:-build} all)"; exit 1; }

# ---- 1. exports == header
# Header: function names declared in it, comments removed by the
# preprocessor (without expanding macros), so prose mentioning auditq_x()
# does not count.
declared=$(cc -w -fpreprocessed -dD -E -P "$hdr" |
    grep -oE '\bauditq_[a-z0-9_]+[[:space:]]*\(' | sed -E 's/[[:space:]]*\($//' | LC_ALL=C sort -u)
unmarked=$(cc -w -fpreprocessed -dD -E -P "$hdr" |
    grep -E '\bauditq_[a-z0-9_]+[[:space:]]*\(' | grep -v '^AUDITQ_API ' || true)
assert_eq "" "$unmarked" "header declarations without AUDITQ_API"
assert_eq 22 "$(printf '%s\n' "$declared" | wc -l)" "functions declared in auditq.h"

# .so: defined dynamic symbols, minus the version node's own absolute symbol.
nm -D --defined-only "$so" | awk '$2 != "A" { print $3 }' >"$AQ_TMP/exports"
unversioned=$(grep -v '@@AUDITQ_0$' "$AQ_TMP/exports" || true)
assert_eq "" "$unversioned" "exports without the version AUDITQ_0"
exported=$(sed 's/@.*//' "$AQ_TMP/exports" | LC_ALL=C sort -u)

extra=$(LC_ALL=C comm -13 <(printf '%s\n' "$declared") <(printf '%s\n' "$exported") | tr '\n' ' ')
missing=$(LC_ALL=C comm -23 <(printf '%s\n' "$declared") <(printf '%s\n' "$exported") | tr '\n' ' ')
assert_eq "" "$extra" "exported by libauditq.so but not declared in include/auditq.h"
assert_eq "" "$missing" "declared in include/auditq.h but not exported by libauditq.so"
it_pass "libauditq.so exports exactly the 22 functions of auditq.h, version AUDITQ_0"

# ---- 2. a host's same-named functions do not capture the library's calls
cat >"$AQ_TMP/host.c" <<'EOF'
#include <stdio.h>
#include <string.h>
#include "auditq.h"

/* The host's own functions that happen to share libauditq's internal
 * names: each accepts everything and counts its calls. */
static int host_calls;
int keys_init(void *k, const char *ns);
int keys_init(void *k, const char *ns) { (void)k; (void)ns; host_calls++; return 0; }
int redis_url_parse(const char *url, void *t, char *err, size_t len);
int redis_url_parse(const char *url, void *t, char *err, size_t len)
{ (void)url; (void)t; (void)err; (void)len; host_calls++; return 0; }

int main(void)
{
    auditq_config *cfg = auditq_config_new();
    int ns = auditq_config_set(cfg, "namespace", "no spaces allowed");
    printf("namespace rc=%d %s\n", ns, auditq_last_error());
    int url = auditq_config_set(cfg, "redis_url", "http://example.com");
    printf("redis_url rc=%d %s\n", url, auditq_last_error());
    printf("host functions called: %d\n", host_calls);
    auditq_config_free(cfg);
    return 0;
}
EOF
# A sanitizer build's .so needs the same runtime in the program.
# The loader looks the library up by its SONAME: give it a directory
# holding the .so under that name.
soname=$(objdump -p "$so" | awk '$1 == "SONAME" { print $2 }')
assert_eq libauditq.so.0 "$soname" "SONAME"
mkdir "$AQ_TMP/lib"
cp "$so" "$AQ_TMP/lib/$soname"
ln -s "$soname" "$AQ_TMP/lib/libauditq.so"
cc -std=c11 -Wall -Wextra -Werror ${SANITIZE:+-fsanitize=$SANITIZE} -I"$AQ_ROOT/include" \
    -o "$AQ_TMP/host" "$AQ_TMP/host.c" -L"$AQ_TMP/lib" -lauditq
out=$(LD_LIBRARY_PATH="$AQ_TMP/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$AQ_TMP/host")
assert_eq "namespace rc=3 namespace = 'no spaces allowed': must be 1..64 characters of A-Z a-z 0-9 _ . -" \
    "$(sed -n 1p <<<"$out")" "bad namespace refused by the library's own keys_init"
assert_eq "redis_url rc=3" "$(sed -n 2p <<<"$out" | cut -d' ' -f1-2)" \
    "bad URL refused by the library's own redis_url_parse"
assert_eq "host functions called: 0" "$(sed -n 3p <<<"$out")" "library calls bound to the host's functions"
it_pass "a host's keys_init/redis_url_parse do not capture libauditq's calls"

# ---- 3. inside the library, calls flow one way (producer/auditq.c's layer
# list): a producer module includes the headers of modules below it only,
# so none can call back up (the spooler knows nothing of the async ring,
# the ring nothing of the handle).
layers=(error protect settings event pool spooler async auditq)
rank() { local i; for i in "${!layers[@]}"; do [[ "${layers[$i]}" == "$1" ]] && { echo "$i"; return; }; done; echo -1; }
upward=""
for src in "$AQ_ROOT"/producer/*.c; do
    mod=$(basename "$src" .c)
    r=$(rank "$mod")
    [[ "$r" -ge 0 ]] || { upward+="$mod.c (not in the layer list) "; continue; }
    for inc in $(sed -n 's/^#include "\([a-z_]*\)\.h"$/\1/p' "$src"); do
        [[ -f "$AQ_ROOT/producer/$inc.h" ]] || continue   # common/ and public headers
        ri=$(rank "$inc")
        if [[ "$ri" -lt 0 || ( "$ri" -ge "$r" && "$inc" != "$mod" ) ]]; then
            upward+="$mod.c includes $inc.h; "
        fi
    done
done
assert_eq "" "$upward" "producer modules calling up or sideways"
it_pass "producer modules call one way: ${layers[*]}"
