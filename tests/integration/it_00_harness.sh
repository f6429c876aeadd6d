#!/usr/bin/env bash
# shellcheck disable=SC2119 # optional NAME arguments are left at their defaults
# it_00_harness.sh -- self-check of tests/lib/harness.sh, run first so a
# broken environment (no redis-server, initdb refusing to run, ports) fails
# here with a clear message instead of inside every other test.
#
# Checks: Redis SET/GET; AOF-persisted key survives redis_restart; SELECT 1;
# a table survives pg_stop/pg_start_again and pg_kill/pg_start_again (crash
# recovery); free_port never repeats; after stopping, nothing listens on our
# ports and no redis-server/postgres process of ours remains.

set -euo pipefail
# shellcheck source=tests/lib/harness.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/harness.sh"

harness_init
export AQ_PG_FAST=0   # durability on: the restart checks must not depend on fsync=off

# free_port: distinct values, also across $(...) subshells.
p1=$(free_port)
p2=$(free_port)
if [[ "$p1" == "$p2" ]]; then
    assert_eq "two different ports" "$p1 twice" "free_port repeats"
fi
it_pass "free_port gives distinct ports ($p1, $p2)"

# ---- Redis
redis_start
assert_eq "redis://127.0.0.1:$REDIS_PORT" "$AUDITQ_REDIS_URL" "AUDITQ_REDIS_URL"
rport=$REDIS_PORT
rcli() { redis-cli -h 127.0.0.1 -p "$rport" "$@" </dev/null; }
assert_eq "OK" "$(rcli set aq:selfcheck hello)" "redis SET"
assert_eq "hello" "$(rcli get aq:selfcheck)" "redis GET"
assert_eq "yes" "$(rcli config get appendonly | sed -n 2p)" "redis appendonly"
assert_eq "" "$(rcli config get save | sed -n 2p)" "redis save (RDB off)"
it_pass "redis SET/GET on port $rport"

rcli rpush aq:list a b c >/dev/null
redis_restart
assert_eq "$rport" "$REDIS_PORT" "redis_restart keeps the port"
assert_eq "hello" "$(rcli get aq:selfcheck)" "key after redis_restart (AOF)"
assert_eq "3" "$(rcli llen aq:list)" "list after redis_restart (AOF)"
it_pass "redis data survives restart via AOF"

# ---- PostgreSQL
pg_start
assert_eq "postgresql://postgres@127.0.0.1:$PG_PORT/auditq" "$AUDITQ_DATABASE_URL" "AUDITQ_DATABASE_URL"
assert_eq "1" "$(psql_q 'SELECT 1')" "SELECT 1"
assert_eq "auditq" "$(psql_q 'SELECT current_database()')" "database name"
assert_eq "UTF8" "$(psql_q 'SHOW server_encoding')" "server encoding"
assert_eq "on" "$(psql_q 'SHOW fsync')" "fsync stays on without AQ_PG_FAST"
if [[ "$(id -u)" -eq 0 ]]; then
    owner=$(ps -o user= -p "$(head -n 1 "$AQ_PGDATA/postmaster.pid")")
    assert_eq "nobody" "$owner" "postmaster runs as nobody when we are root"
fi
it_pass "postgres SELECT 1 on port $PG_PORT"

psql_q "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'x' || g FROM generate_series(1, 100) g"
pport=$PG_PORT
pg_stop
if port_open "$pport"; then
    assert_eq "closed" "open" "port $pport after pg_stop"
fi
pg_start_again
assert_eq "100" "$(psql_q 'SELECT count(*) FROM t')" "table after pg_stop/pg_start_again"
it_pass "postgres data survives restart"

psql_q "INSERT INTO t VALUES (101, 'committed before kill')"
pg_kill
pg_start_again
assert_eq "101" "$(psql_q 'SELECT count(*) FROM t')" "table after pg_kill/pg_start_again"
it_pass "postgres recovers after SIGKILL"

# ---- stop and verify nothing of ours is left
rpid=$(cat "$AQ_TMP/redis-main/pid")
ppid_=$(head -n 1 "$AQ_PGDATA/postmaster.pid")
pkids=$(pgrep -P "$ppid_" | tr '\n' ' ') || true
redis_stop
pg_stop
left=""
for pid in $rpid $ppid_ $pkids; do
    if kill -0 "$pid" 2>/dev/null && [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]]; then
        left="$left $pid"
    fi
done
assert_eq "" "$left" "processes left after stop"
assert_eq "" "$(pgrep -f "redis-server 127.0.0.1:$rport" || true)" "redis-server on our port"
assert_eq "" "$(pgrep -f -- "$AQ_PGDATA" || true)" "postgres on our data dir"
for p in $rport $pport; do
    if port_open "$p"; then
        assert_eq "closed" "open" "port $p after stop"
    fi
done
it_pass "no redis-server/postgres left on ports $rport/$pport"
