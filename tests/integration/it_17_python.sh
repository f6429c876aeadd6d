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
PYBUILD=$AQ_ROOT/${BUILD:-build}/python
[[ -f "$PYBUILD/auditq/__init__.py" ]] || { echo "FAIL: $PYBUILD not built: make BUILD=${BUILD:-build} bindings"; exit 1; }
it_setup
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
