-- 004_clock.sql -- the producer's clock no longer decides what retention
-- removes, and events whose occurred_at is far from their arrival are
-- marked.
--
-- Why: audit_events is partitioned by occurred_at, which the producer sets.
-- An event that arrives today stamped 2020 (a host whose clock is wrong, a
-- backfill, or a forged event) lands in a 2020 month, and retention drops
-- whole months by their occurred_at bound: the event could vanish minutes
-- after it arrived, with no export. received_at is set by PostgreSQL's own
-- clock (clock_timestamp() at insert), so retention now also asks "was any
-- row of this month received within the period?" (common/retention.c) and
-- keeps the month while one was. That question must be cheap on a month of
-- 100M rows, hence the BRIN index below.
--
-- Applied by `auditqctl migrate` in one transaction, like every migration;
-- never edit this file once released (migrate checksums it).
--
-- Locks and cost: ADD COLUMN with a CHECK reads every partition once to
-- verify it (the column is new, so it holds only NULLs; measured 0.2 s per
-- 3M rows) under ACCESS EXCLUSIVE; the BRIN builds read each partition
-- once more under SHARE. Writers wait meanwhile; a worker treats that as a
-- transient error and retries, nothing is lost.

-- Set by the worker (worker/clockskew.c, clock_skew_policy = flag) when
-- occurred_at was more than clock_skew_future_ms ahead of the worker's
-- clock ('future') or more than backfill_max_age_ms behind it
-- ('backfill'); NULL for every other row. The name and the values are a
-- contract with the worker's writer and with anything that hashes rows
-- column by column: change them only together.
ALTER TABLE audit_events ADD COLUMN clock_flag text
    CONSTRAINT audit_events_clock_flag_check CHECK (clock_flag IN ('future', 'backfill'));

-- BRIN on received_at: rows are appended in arrival order, so each block
-- range covers a narrow span of received_at and the index is a few pages
-- even for 100M rows. Retention's probe
--   SELECT 1 FROM <month> WHERE received_at >= <start of the period> LIMIT 1
-- then reads only the block ranges that can match -- none for a month whose
-- rows all arrived long ago. Declared on the parent, so every partition
-- (DEFAULT and the months made later by auditq_partition_month's ATTACH)
-- gets one. autosummarize: autovacuum summarizes each block range once it
-- fills, so new rows are covered without a manual brin_summarize_new_values;
-- ranges not summarized yet are simply read (the answer stays exact).
CREATE INDEX audit_events_received_at_brin ON audit_events
    USING brin (received_at) WITH (autosummarize = on);

-- Months archived by retention before this migration (archive_mode =
-- schema, or a csv export not yet done) are detached tables: the ALTER and
-- the index above do not reach them. Retention merges late rows into them
-- with the column list of audit_events, and probes them before dropping,
-- so they get both too. They are found by the comment retention puts on
-- every table it archives ("auditq: month YYYY-MM of SCHEMA.audit_events,
-- archived by retention"), in any schema.
DO $$
DECLARE
    t record;
BEGIN
    FOR t IN
        SELECT c.oid::regclass AS rel
          FROM pg_class c
          JOIN pg_description d ON d.objoid = c.oid AND d.classoid = 'pg_class'::regclass
                               AND d.objsubid = 0
         WHERE c.relkind = 'r' AND NOT c.relispartition
           AND c.relname ~ '^audit_events_[0-9]{4}_(0[1-9]|1[0-2])$'
           AND d.description = format('auditq: month %s of %s.audit_events, archived by retention',
                                      substr(c.relname, 14, 4) || '-' || substr(c.relname, 19, 2),
                                      current_schema())
           AND NOT EXISTS (SELECT 1 FROM pg_attribute a
                            WHERE a.attrelid = c.oid AND a.attname = 'clock_flag'
                              AND NOT a.attisdropped)
    LOOP
        EXECUTE format('ALTER TABLE %s ADD COLUMN clock_flag text '
                       'CONSTRAINT audit_events_clock_flag_check '
                       'CHECK (clock_flag IN (''future'', ''backfill''))', t.rel);
        EXECUTE format('CREATE INDEX ON %s USING brin (received_at) WITH (autosummarize = on)',
                       t.rel);
    END LOOP;
END;
$$;
