#!/usr/bin/env bash
# it_17_python.sh -- the Python binding (bindings/python) under pytest, against
# a private Redis, PostgreSQL and an auditq-worker started here:
#   test_roundtrip      10,000 events sync + async, hostile text and nested
#                       JSON: exactly 10,000 rows, every field byte-exact
#   test_spool          Redis stopped mid-run with a spool: every
#                       acknowledged event lands once Redis is back
#   test_errors         error -> exception class of its code + message,
#                       nothing sent
#   test_threads_fork   16 threads at once; os.fork and multiprocessing
#                       (fork) children send while the parent keeps working
#   test_middleware     the WSGI and ASGI examples: one event per request
#   test_readme         README.md's "Python" example runs as printed
# The module is the one `make bindings` built into $BUILD/python (Debian's
# /usr/bin/python3 and python3-pytest). Skipped under SANITIZE: an ASan or
# TSan runtime cannot be loaded into a stock python3 (Makefile, bindings).
set -euo pipefail
if [[ -n "${SANITIZE:-}" ]]; then
    echo "ok - skipped: SANITIZE=$SANITIZE (a sanitizer runtime does not load into /usr/bin/python3)"
    exit 0
fi
source "$(dirname "$0")/lib_it.sh"
harness_init
PYBUILD=$AQ_ROOT/${BUILD:-build}/python
[[ -f "$PYBUILD/auditq/__init__.py" ]] || { echo "FAIL: $PYBUILD not built: make BUILD=${BUILD:-build} bindings"; exit 1; }

# The README's install path, offline: pip builds a wheel with Debian's
# setuptools/wheel (--no-build-isolation) and no index; the wheel holds the
# module, its type hints and the middleware, and the module needs no
# libauditq.so (libauditq.a is linked in) -- it imports from the unpacked
# wheel alone.
/usr/bin/python3 -m pip wheel --no-build-isolation --no-index --no-deps -q -w "$AQ_TMP/wheel" \
    "$AQ_ROOT/bindings/python" </dev/null
whl=$(echo "$AQ_TMP"/wheel/auditq-*.whl)
files=$(/usr/bin/python3 -m zipfile -l "$whl" | awk 'NR > 1 && $1 ~ /^auditq\// { sub(/\.cpython.*\.so$/, ".so", $1); print $1 }' | LC_ALL=C sort | tr '\n' ' ')
assert_eq "auditq/__init__.py auditq/__init__.pyi auditq/_auditq.so auditq/middleware.py auditq/py.typed " \
    "$files" "files in the wheel pip built offline"
/usr/bin/python3 -m zipfile -e "$whl" "$AQ_TMP/site"
if ldd "$AQ_TMP"/site/auditq/_auditq*.so | grep -q libauditq; then
    echo "FAIL: the module links libauditq.so; it should carry libauditq.a"; exit 1
fi
(cd "$AQ_TMP" && PYTHONPATH=$AQ_TMP/site /usr/bin/python3 -P -c \
    "import auditq; assert auditq.__file__.startswith('$AQ_TMP/site/'), auditq.__file__; assert issubclass(auditq.BufferFullError, auditq.AuditqError)")
it_pass "pip wheel --no-build-isolation --no-index: offline build, module + .pyi + py.typed + middleware, self-contained"

# it_setup without its harness_init (done above, for the wheel's temp dir)
redis_start
AQ_PG_FAST=${AQ_PG_FAST:-1} pg_start
"$BIN/auditqctl" migrate >/dev/null
worker_start w1 --set batch_size=500

export AQ_REDIS_DIR AQ_TMP AQ_PSQL
AQ_REDIS_DIR=$(_aq_redis_dir main)
AQ_PSQL=${PG_BINDIR:+$PG_BINDIR/}psql
[[ -x "$AQ_PSQL" ]] || AQ_PSQL=psql
cd "$AQ_ROOT/bindings/python/tests"
PYTHONPATH=$PYBUILD PYTHONDONTWRITEBYTECODE=1 /usr/bin/python3 -m pytest -p no:cacheprovider -q \
    --basetemp="$AQ_TMP/pytest" ${AQ_PYTEST_ARGS:-} .
worker_stop w1
it_pass "Python binding: pytest passed"
