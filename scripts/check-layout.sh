#!/usr/bin/env bash
# check-layout.sh -- the layout rules of docs/HACKING.md that a script can
# check. `make check-layout` runs it, and `make test` runs that first.
#
#   1. No C file #includes a .c file: a test or a tool links the module
#      (build/lib/libauditqctl.a for the tools, see the Makefile), so make
#      tracks what it depends on.
#   2. No C source or header is over MAX_LINES (1,000) lines: a file that
#      long holds more than one concern; split it along its sections (as
#      tools/ctl_query*.c, tools/ctl_dlq*.c, common/spool*.c). KNOWN_LARGE
#      below lists the exceptions, each with its reason (none since the
#      splits of issue 11); the list may only shrink.
#   3. One PostgreSQL connector: no C file but common/pgconn.c calls
#      libpq's PQconnect* (tests/ excepted: they connect as a user would),
#      so every component keeps the precedence rule and the multi-host
#      connect of common/pgconn.h.
#   4. The exported symbols of libauditq.so are exactly the auditq_*
#      functions of include/auditq.h: that needs the built library, so it is
#      tests/integration/it_05_abi.sh, not this script.
#
# Usage: scripts/check-layout.sh [ROOT]   (default: this checkout). In a git
# checkout the files are the tracked ones; elsewhere (an unpacked tarball)
# every *.c and *.h below ROOT outside build*/.
# Exit 0 when every rule holds, 1 with each offender on stderr.
set -euo pipefail

MAX_LINES=1000
# path  reason (one line each; a file here that has come under MAX_LINES is
# reported so the entry can go).
KNOWN_LARGE='
'

root=${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
cd "$root"

if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    mapfile -t files < <(git ls-files -- '*.c' '*.h')
else
    mapfile -t files < <(find . -path './build*' -prune -o -type f \( -name '*.c' -o -name '*.h' \) -print |
                         sed 's|^\./||' | sort)
fi

fail=0

# 1. #include "x.c" (or <x.c>), with any spacing after '#'.
c_includes=$(grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*["<][^">]*\.c[">]' \
             -- "${files[@]}" 2>/dev/null || true)
if [[ -n "$c_includes" ]]; then
    echo "check-layout: a .c file is #included; link its module instead (see docs/HACKING.md, \"Adding a test\"):" >&2
    printf '%s\n' "$c_includes" | sed 's/^/  /' >&2
    fail=1
fi

# 3. One connector (checked before the sizes, reported with them).
connectors=$(grep -nE '\bPQconnect(db|dbParams|Start|StartParams)[[:space:]]*\(' -- "${files[@]}" 2>/dev/null |
             grep -vE '^(common/pgconn\.c|tests/)' || true)
if [[ -n "$connectors" ]]; then
    echo "check-layout: PostgreSQL connected outside common/pgconn.c; use pgconn_open / pgconn_connect (docs/HACKING.md):" >&2
    printf '%s\n' "$connectors" | sed 's/^/  /' >&2
    fail=1
fi

# 2. File size.
known() { printf '%s\n' "$KNOWN_LARGE" | awk -v f="$1" '$1 == f { found = 1 } END { exit !found }'; }
over=()
known_over=()
for f in "${files[@]}"; do
    [[ -f "$f" ]] || continue
    n=$(wc -l <"$f")
    if ((n > MAX_LINES)); then
        if known "$f"; then
            known_over+=("$f ($n lines)")
        else
            over+=("$n $f")
        fi
    fi
done
if ((${#over[@]} > 0)); then
    echo "check-layout: over $MAX_LINES lines; split these along their sections (one concern a file, docs/HACKING.md):" >&2
    printf '%s\n' "${over[@]}" | sort -rn | awk '{ printf "  %s: %d lines\n", $2, $1 }' >&2
    fail=1
fi
stale=()
while read -r f _; do
    [[ -n "$f" ]] || continue
    if [[ ! -f "$f" ]] || (($(wc -l <"$f") <= MAX_LINES)); then
        stale+=("$f")
    fi
done <<<"$KNOWN_LARGE"

if ((fail)); then
    exit 1
fi
msg="check-layout: ok (${#files[@]} C files: no .c #included, one PostgreSQL connector, none over $MAX_LINES lines"
if ((${#known_over[@]} > 0)); then
    msg+=" but the known exceptions $(printf '%s, ' "${known_over[@]}")"
    msg=${msg%, }
fi
echo "$msg)"
if ((${#stale[@]} > 0)); then
    echo "check-layout: now under $MAX_LINES lines, remove from KNOWN_LARGE in scripts/check-layout.sh: ${stale[*]}"
fi
