-- bench-retention-probe.sql -- the cost of retention's received_at probe
-- (common/retention.c, ret_probe_one) on one big month, against a full scan.
--
--   psql -X -v rows=20000000 -f scripts/bench-retention-probe.sql    (a migrated database)
--
-- Builds a standalone table shaped like a month of audit_events (rows
-- received in arrival order, 10 per second), with the BRIN index of
-- sql/004_clock.sql, then times:
--   1. the probe of a month whose rows all arrived before the period: none
--      matches (the common case, one per old month and run);
--   2. the same query forced to a sequential scan (what LIMIT 1 costs
--      without the index when nothing matches);
--   3. after one late row (a misdated event moved into the month): the
--      probe and the count retention then runs to report it.
-- Drops the table at the end. Results: BENCHMARKS.md.
\set ON_ERROR_STOP 1
\if :{?rows}
\else
\set rows 20000000
\endif
\timing on
DROP TABLE IF EXISTS auditq_bench_month;
CREATE TABLE auditq_bench_month (LIKE audit_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
INSERT INTO auditq_bench_month (event_id, occurred_at, received_at, priority, tenant_id, actor_id,
                                action, metadata)
SELECT gen_random_uuid(), '2026-11-01+00'::timestamptz + i * interval '100 ms',
       '2026-11-01+00'::timestamptz + i * interval '100 ms' + interval '2 s',
       'normal', 'tenant-' || (i % 50), 'user-' || (i % 1000), 'document.update', '{"k": 1}'
  FROM generate_series(1, :rows) AS i;
CREATE INDEX ON auditq_bench_month USING brin (received_at) WITH (autosummarize = on);
VACUUM ANALYZE auditq_bench_month;
SELECT pg_size_pretty(pg_relation_size('auditq_bench_month')) AS heap,
       pg_size_pretty(pg_relation_size('auditq_bench_month_received_at_idx')) AS brin;

BEGIN;
SET LOCAL enable_seqscan = off;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT 1 FROM auditq_bench_month WHERE received_at >= '2026-12-01 00:00:00+00'::timestamptz LIMIT 1;
COMMIT;

BEGIN;
SET LOCAL enable_bitmapscan = off;
SET LOCAL enable_indexscan = off;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT 1 FROM auditq_bench_month WHERE received_at >= '2026-12-01 00:00:00+00'::timestamptz LIMIT 1;
COMMIT;

INSERT INTO auditq_bench_month (event_id, occurred_at, received_at, priority, action)
VALUES (gen_random_uuid(), '2026-11-15+00', '2026-12-04 17:00+00', 'normal', 'late');
BEGIN;
SET LOCAL enable_seqscan = off;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT 1 FROM auditq_bench_month WHERE received_at >= '2026-12-01 00:00:00+00'::timestamptz LIMIT 1;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT count(*), max(received_at) FROM auditq_bench_month
 WHERE received_at >= '2026-12-01 00:00:00+00'::timestamptz;
COMMIT;
DROP TABLE auditq_bench_month;
