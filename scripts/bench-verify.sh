#!/usr/bin/env bash
# bench-verify.sh -- `auditqctl verify` rows/s and max RSS (issue 12), on
# private durable servers (scripts/bench-servers.sh):
#
#   ROWS=1000000 bash scripts/bench-verify.sh        (BUILD=build-x: another build)
#
# Builds a database of its own: ROWS/1000 INSERT statements of 1,000 rows
# each, written by SQL (so 1,000-row evidence batches, the worker's batch
# shape), with emoji and nested JSON in every row, spread over 12 months;
# a worker with seal_key_file seals them (checkpoints of at most 200,000
# leaves). Then runs `auditqctl verify` RUNS (default 2) times under
# /usr/bin/time and prints wall, rows/s and max RSS of each.
# VERIFY_BIN=dir also times that build's auditqctl in the same run (the
# reference: the old binary against the same database, alternating).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-servers.sh
ROWS=${ROWS:-1000000}
RUNS=${RUNS:-2}
KEY=$AQ_TMP/seal.key
echo "== machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr); $(date -u +%FT%TZ); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$BIN/auditqctl" keygen "$KEY" >/dev/null
fresh_db
export PGDATABASE=bench
t0=$(date +%s)
psql_q "DO \$\$
BEGIN
    FOR b IN 0 .. $ROWS / 1000 - 1 LOOP
        INSERT INTO audit_events (event_id, occurred_at, priority, tenant_id, actor_id, actor_type, action,
                                  entity_type, entity_id, outcome, source_ip, user_agent, request_id,
                                  session_id, changes, metadata)
        SELECT gen_random_uuid(), timestamptz '2026-01-01 00:00:00+00' + (b % 12) * interval '1 month'
                   + (i * interval '1 second'),
               'normal', 'tenant-' || (i % 50), 'Zoë 😀 ' || i, 'user', 'invoice.paid', 'invoice',
               'inv-' || b || '-' || i, 'success', '10.0.0.' || (i % 250), 'Mozilla/5.0 (X11; Linux x86_64)',
               'req-' || i, 'sess-' || (i % 97),
               jsonb_build_object('amount', i * 1.5, 'currency', 'EUR', 'lines',
                                  jsonb_build_array(jsonb_build_object('sku', 'ключ-' || i, 'qty', i % 7))),
               jsonb_build_object('emoji', '🎉', 'nested', jsonb_build_object('deep', jsonb_build_array('x', i)))
          FROM generate_series(1, 1000) AS i;
        COMMIT;
    END LOOP;
END
\$\$" >/dev/null
echo "== $ROWS rows written in $(($(date +%s) - t0)) s"
mkdir -p "$AQ_TMP/anchors"
harness_spawn sealer "$BIN/auditq-worker" --set "seal_key_file=$KEY" --set "anchor_dir=$AQ_TMP/anchors" \
    --set checkpoint_interval_ms=200
unsealed() { psql_q "SELECT count(*) FROM auditq_evidence_batch b WHERE NOT EXISTS (SELECT 1 FROM auditq_seal_assignment a WHERE a.item_id = b.batch_id)"; }
sealed() { [[ "$(unsealed)" == 0 ]]; }
wait_for 3600 sealed || { echo "not sealed in time"; exit 1; }
kill -TERM "$HARNESS_LAST_PID"
psql_q "VACUUM ANALYZE" >/dev/null
echo "== sealed: $(psql_q "SELECT count(*) FROM auditq_checkpoint") checkpoints, tree size $(psql_q "SELECT max(tree_size) FROM auditq_checkpoint"); $(psql_q "SELECT pg_size_pretty(pg_database_size('bench'))")"
run() {  # LABEL BINDIR
    /usr/bin/time -f "%e %M %U %S" -o "$AQ_TMP/verify.time" \
        "$2/auditqctl" verify --key "$KEY.pub" --anchors "$AQ_TMP/anchors" >"$AQ_TMP/verify.out" ||
        { cat "$AQ_TMP/verify.out"; exit 1; }
    read -r secs rss usr sys <"$AQ_TMP/verify.time"
    echo "$1: $ROWS rows in $secs s = $(awk -v r="$ROWS" -v s="$secs" 'BEGIN { printf "%.0f", r / s }') rows/s, max RSS $((rss / 1024)) MB, auditqctl CPU $usr + $sys s, load $(cut -d' ' -f1 /proc/loadavg): $(cut -c1-40 "$AQ_TMP/verify.out")"
}
for ((r = 1; r <= RUNS; r++)); do
    [[ -z ${VERIFY_BIN:-} ]] || run "run $r reference ($VERIFY_BIN)" "$VERIFY_BIN"
    run "run $r ($BIN)" "$BIN"
done
[[ -z ${BENCH_KEEP:-} ]] || { harness_detach; echo "servers kept: PGPORT=$PG_PORT AQ_TMP=$AQ_TMP"; }
echo "== load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
