# shellcheck shell=bash
# bench-servers.sh -- sourced by scripts/bench.sh and bench-scaling.sh:
# private durable Redis and PostgreSQL (tests/lib/harness.sh, stopped when
# the script exits), AUDITQ_REDIS_URL pointing at them, BIN, and
#   fresh_db    an empty migrated database `bench` (AUDITQ_DATABASE_URL)
#               and an empty Redis, so each measurement starts alike.
source "$(dirname "${BASH_SOURCE[0]}")/../tests/lib/harness.sh"
BIN=${BUILD:-build}/bin
harness_init
redis_start
pg_start
export AUDITQ_REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
fresh_db() {
    PGOPTIONS="-c client_min_messages=warning" psql_q "DROP DATABASE IF EXISTS bench" >/dev/null
    psql_q "CREATE DATABASE bench" >/dev/null
    export AUDITQ_DATABASE_URL="postgresql://postgres@127.0.0.1:$PG_PORT/bench"
    "$BIN/auditqctl" migrate >/dev/null
    redis-cli -p "$REDIS_PORT" FLUSHALL >/dev/null
}
