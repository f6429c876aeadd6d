#!/bin/sh
# deps.sh -- make sure the Debian packages auditq builds and tests with are
# installed.  Called by `make deps` (and so by `make test` / `make demo`).
#
# POSIX sh on purpose: the Makefile runs it with `sh` (dash on Debian).
#
#   sh scripts/deps.sh              check, install what is missing if we can
#   sh scripts/deps.sh --check      check only; exit 1 if something is missing
#   sh scripts/deps.sh --fuzz       also clang and its libFuzzer runtime, for
#                                   `make fuzz` only (not needed by `make test`)
#   sh scripts/deps.sh --pg-bindir  print PostgreSQL's server bin dir and exit
#
# The fast path (everything present) is one dpkg-query call, well under 1 s,
# because every `make test` goes through here.
#
# Installing as root: `apt-get update` only when the package lists are
# missing or older than 24 h (a fresh CI container has none), then a
# non-interactive, no-recommends install.  As a non-root user we use
# `sudo -n` if it works without a password, otherwise we print the exact
# command and fail -- never prompt, CI has no stdin.
#
# Installing `postgresql` may create and try to start the distribution's own
# "main" cluster (port 5432).  That is harmless: tests never use it, they run
# private clusters on free ports (tests/lib/harness.sh).  The same goes for
# `prometheus` (port 9090): the tests need its promtool (rule checks and rule
# unit tests) and its server binary, which tests/integration/it_80_metrics.sh
# starts privately on a free port to scrape a worker.
# zlib1g-dev and libssl-dev: `retention run` with archive_mode=csv writes
# gzip CSV (zlib) and a manifest with its SHA-256 (libcrypto) -- libraries
# instead of hand-written compression and hashing.  systemd: only for
# `systemd-analyze verify` of config/auditq-worker.service (it_86); nothing
# is started.  stunnel4 and openssl: it_88 runs auditq through a TLS
# tunnel to a TLS-only Redis port (docs/SECURITY.md), with test certificates.
# libsodium-dev: Ed25519 signatures of the checkpoints (common/checkpoint.c).
# python3-nacl: Ed25519 for tools/auditq_verify.py, the independent verifier
# the integrity tests run (docs/INTEGRITY.md).
# python3-dev, python3-setuptools, python3-wheel, python3-pip, python3-venv,
# python3-pytest:
# the Python binding (bindings/python): built by `make bindings`, installed
# offline with `pip install ./bindings/python` (README "Python"), tested
# under pytest by tests/integration/it_17_python.sh.

set -eu

PKGS="build-essential pkg-config libhiredis-dev libpq-dev libev-dev libmsgpack-dev
libcmocka-dev redis-server redis-tools postgresql postgresql-contrib python3
python3-msgpack valgrind util-linux procps curl prometheus zlib1g-dev libssl-dev
systemd stunnel4 openssl libsodium-dev python3-nacl
python3-dev python3-pytest python3-setuptools python3-wheel python3-pip python3-venv"
# nodejs: the Node.js binding (bindings/node, `make bindings`) and its tests
# (it_62). Its Node-API headers (node_api.h) ship inside NodeSource's nodejs
# package; Debian's own nodejs keeps them in libnode-dev, which is asked for
# only when they are missing, so an installed NodeSource node is left alone.
PKGS="$PKGS nodejs"
[ -f /usr/include/node/node_api.h ] || PKGS="$PKGS libnode-dev"

say() { printf 'deps: %s\n' "$*"; }

# Highest-versioned /usr/lib/postgresql/<ver>/bin holding initdb; the
# server binaries are not on PATH on Debian.  AQ_PG_BINDIR overrides.
pg_bindir() {
    if [ -n "${AQ_PG_BINDIR:-}" ]; then
        printf '%s\n' "$AQ_PG_BINDIR"
        return 0
    fi
    best=""
    bestver=0
    for d in /usr/lib/postgresql/*/bin; do
        [ -x "$d/initdb" ] || continue
        ver=${d#/usr/lib/postgresql/}
        ver=${ver%/bin}
        # Versions are integers since PG 10; skip anything else (9.6 etc.).
        case $ver in *[!0-9]*|'') continue ;; esac
        if [ "$ver" -gt "$bestver" ]; then
            bestver=$ver
            best=$d
        fi
    done
    [ -n "$best" ] || return 1
    printf '%s\n' "$best"
}

# Prints the missing packages, space separated (empty if none).
missing_pkgs() {
    # One call for all packages.  Unknown packages go to stderr and are
    # simply absent from the output, so they count as missing.
    # shellcheck disable=SC2086
    installed=$(dpkg-query -W -f='${Package} ${Status}\n' $PKGS 2>/dev/null |
                awk '$NF == "installed" && $(NF-1) == "ok" { print $1 }') || true
    # Flatten newlines to spaces so the case pattern below can match words.
    flat=" $(printf '%s' "$installed" | tr '\n' ' ') "
    out=""
    for p in $PKGS; do
        case $flat in
            *" $p "*) ;;
            *) out="$out $p" ;;
        esac
    done
    printf '%s\n' "${out# }"
}

lists_fresh() {
    # "Fresh" = at least one *_Packages* list modified in the last 24 h.
    [ -d /var/lib/apt/lists ] || return 1
    [ -n "$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mmin -1440 2>/dev/null | head -n 1)" ]
}

install_pkgs() {
    # $1: command prefix ("" as root, "sudo -n" otherwise); rest: packages.
    pfx=$1
    shift
    if ! lists_fresh; then
        say "apt package lists missing or older than 24 h: apt-get update"
        $pfx env DEBIAN_FRONTEND=noninteractive apt-get update </dev/null
    fi
    say "installing: $*"
    # confdef/confold: never stop at a conffile question (no stdin in CI).
    $pfx env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        "$@" </dev/null
}

main() {
    mode=${1:-install}
    case $mode in
        --pg-bindir)
            if ! pg_bindir; then
                echo "deps: no PostgreSQL server found under /usr/lib/postgresql/*/bin (install postgresql)" >&2
                exit 1
            fi
            exit 0 ;;
        --check|install) ;;
        --fuzz)
            # libclang-rt-dev is only a Recommends of clang, and we install
            # without recommends; it holds libclang_rt.fuzzer.
            PKGS="$PKGS clang libclang-rt-dev"
            mode=install ;;
        -h|--help)
            sed -n '2,20p' "$0"
            exit 0 ;;
        *)
            echo "deps: unknown option '$mode' (try --help)" >&2
            exit 2 ;;
    esac

    missing=$(missing_pkgs)
    if [ -z "$missing" ]; then
        bindir=$(pg_bindir) || bindir=""
        if [ -z "$bindir" ]; then
            echo "deps: packages present but no /usr/lib/postgresql/<ver>/bin/initdb found" >&2
            exit 1
        fi
        say "all present (postgresql bin: $bindir)"
        exit 0
    fi

    say "missing: $missing"
    if [ "$mode" = "--check" ]; then
        exit 1
    fi

    # shellcheck disable=SC2086
    if [ "$(id -u)" -eq 0 ]; then
        install_pkgs "" $missing
    elif command -v sudo >/dev/null 2>&1 && sudo -n true </dev/null >/dev/null 2>&1; then
        say "not root; using sudo -n"
        install_pkgs "sudo -n" $missing
    else
        echo "deps: cannot install packages (not root, and sudo -n is not available)." >&2
        echo "deps: run as root: apt-get update && apt-get install -y --no-install-recommends $missing" >&2
        exit 1
    fi

    missing=$(missing_pkgs)
    if [ -n "$missing" ]; then
        echo "deps: still missing after install: $missing" >&2
        exit 1
    fi
    bindir=$(pg_bindir) || {
        echo "deps: postgresql installed but no /usr/lib/postgresql/<ver>/bin/initdb found" >&2
        exit 1
    }
    say "all present (postgresql bin: $bindir)"
}

main "$@"
