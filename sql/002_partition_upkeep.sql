-- 002_partition_upkeep.sql -- monthly partitions are attached, not created
-- in place, and rows stranded in the DEFAULT partition are moved into them.
--
-- Why: 001's auditq_ensure_partitions runs CREATE TABLE ... PARTITION OF,
-- which takes an ACCESS EXCLUSIVE lock on audit_events itself (every insert
-- and every query waits), and it gives up on a month whose rows already sit
-- in DEFAULT (PostgreSQL refuses a partition whose range has rows in
-- DEFAULT). Such rows arrive from producers with a skewed clock, backfills
-- of old data, or a worker that ran before next month's partition existed;
-- until they are moved, that month can never get its partition and DEFAULT
-- keeps growing. Here a month is made the way pg_partman does it:
--
--   1. CREATE TABLE audit_events_YYYY_MM (LIKE audit_events ...), standalone.
--   2. If DEFAULT holds rows of that month: lock DEFAULT, move them
--      (DELETE ... RETURNING feeding an INSERT, one statement) with the
--      append-only trigger of DEFAULT disabled for this transaction only.
--   3. ALTER TABLE audit_events ATTACH PARTITION ... FOR VALUES FROM/TO.
--
-- all in one transaction: a failure anywhere rolls everything back,
-- including the trigger switch, so no state with rows in two places, rows
-- lost, or the trigger off is ever visible.
--
-- Locks (PostgreSQL 13+):
--   audit_events          SHARE UPDATE EXCLUSIVE (ATTACH): inserts and
--                         queries go on; only other DDL on it waits.
--   audit_events_default  ACCESS EXCLUSIVE, until commit: ATTACH must scan
--                         DEFAULT to prove it holds no row of the new range,
--                         and the move must not race an insert into DEFAULT.
--                         Writers whose rows route to DEFAULT and queries
--                         that scan DEFAULT (those not pruned to months that
--                         have partitions) wait for that moment. It is short
--                         when DEFAULT is small, which is what this keeps it.
--   the new month         ACCESS EXCLUSIVE; invisible to others until commit.
-- lock_timeout = 5s: rather than queue behind a long query (and make every
-- reader of DEFAULT queue behind us), fail and let the caller retry.
--
-- Why disabling the trigger is no hole: ALTER TABLE ... DISABLE TRIGGER
-- needs ownership of the table, so a writer role cannot do it; it is
-- transactional, and is undone before commit (or by the rollback), so no
-- other session ever sees the trigger disabled -- they could not touch
-- DEFAULT meanwhile anyway, we hold its ACCESS EXCLUSIVE lock. The function
-- that does it is SECURITY INVOKER and not executable by PUBLIC; the only
-- SECURITY DEFINER entry point, auditq_ensure_partitions, moves exactly the
-- rows of the months it creates, chosen by the clock, never by the caller.
--
-- Objects are created in the connection's current schema, like 001.

-- Months (UTC) that have rows in the DEFAULT partition, with exact counts.
-- DEFAULT is meant to stay (nearly) empty, so the full scan is cheap; if it
-- is not, that is exactly what the operator needs to see.
CREATE FUNCTION auditq_default_months()
RETURNS TABLE (month_start timestamptz, row_count bigint)
LANGUAGE plpgsql
STABLE
SET TimeZone = 'UTC'
AS $$
DECLARE
    def oid;
BEGIN
    SELECT p.partdefid INTO def
      FROM pg_partitioned_table p
     WHERE p.partrelid = 'audit_events'::regclass;
    IF def IS NULL OR def = 0 THEN
        RETURN;
    END IF;
    -- regclass prints as a correctly quoted (and, if needed, qualified) name.
    RETURN QUERY EXECUTE format(
        'SELECT date_trunc(''month'', occurred_at), count(*) FROM %s GROUP BY 1 ORDER BY 1',
        def::regclass);
END;
$$;

-- Makes the partition audit_events_YYYY_MM for the UTC month starting at
-- m_from, moving the rows of that month out of DEFAULT first (see the
-- header). Returns how many rows were moved (0: an empty month was made), or
-- NULL when the partition already exists. Raises duplicate_table when a
-- table of that name exists but is not a partition of audit_events, and
-- invalid_object_definition (from ATTACH) when another partition already
-- covers part of the month.
--
-- Owner only (see the header): no grant to PUBLIC, and SECURITY INVOKER, so
-- even a role granted EXECUTE fails on the first DDL statement.
CREATE FUNCTION auditq_partition_month(m_from timestamptz)
RETURNS bigint
LANGUAGE plpgsql
SET TimeZone = 'UTC'
SET lock_timeout = '5s'
AS $$
DECLARE
    parent  regclass := 'audit_events'::regclass;
    m_to    timestamptz;
    part    text;
    existing regclass;
    def     oid;
    cols    text;
    moved   bigint := 0;
    has_rows boolean;
    trig    record;
    off     text[] := '{}';
    states  "char"[] := '{}';
BEGIN
    IF m_from IS NULL OR m_from <> date_trunc('month', m_from) THEN
        RAISE EXCEPTION 'auditq_partition_month: % is not the first instant of a month (UTC)', m_from
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    m_to := m_from + interval '1 month';
    part := 'audit_events_' || to_char(m_from, 'YYYY_MM');

    -- The same key as auditq_ensure_partitions: partition DDL never runs
    -- twice at once, and a loser sees what the winner made.
    PERFORM pg_advisory_xact_lock(97113112097114116);

    existing := to_regclass(quote_ident(part));
    IF existing IS NOT NULL THEN
        IF EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = existing AND inhparent = parent) THEN
            RETURN NULL;
        END IF;
        RAISE EXCEPTION 'table % exists but is not a partition of audit_events', part
            USING ERRCODE = 'duplicate_table',
                  HINT = 'Attach it (ALTER TABLE audit_events ATTACH PARTITION ...) or rename it.';
    END IF;

    -- Standalone first: indexes are left to ATTACH, which builds the ones
    -- declared on audit_events after the rows are in (faster than index
    -- maintenance row by row) and clones the row triggers.
    EXECUTE format(
        'CREATE TABLE %I (LIKE audit_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS '
        'INCLUDING STORAGE) '
        'WITH (autovacuum_vacuum_insert_scale_factor = 0.02, '
        'autovacuum_analyze_scale_factor = 0.02, autovacuum_freeze_min_age = 0)',
        part);
    -- Statement triggers are not cloned by ATTACH (see 001).
    EXECUTE format(
        'CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON %I '
        'FOR EACH STATEMENT EXECUTE FUNCTION auditq_refuse_modification()', part);

    SELECT p.partdefid INTO def FROM pg_partitioned_table p WHERE p.partrelid = parent;
    IF def IS NOT NULL AND def <> 0 THEN
        -- ATTACH takes this lock anyway; taking it now, before looking,
        -- means no insert can add a row of this month after we moved them.
        EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', def::regclass);
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s WHERE occurred_at >= $1 AND occurred_at < $2)',
                       def::regclass)
           INTO has_rows USING m_from, m_to;
        IF has_rows THEN
            SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) INTO cols
              FROM pg_attribute
             WHERE attrelid = parent AND attnum > 0 AND NOT attisdropped;
            -- Our append-only row triggers on DEFAULT (the clone of
            -- audit_events_append_only, whatever it is called): disable the
            -- enabled ones, remember their state to restore it exactly.
            FOR trig IN
                SELECT t.tgname, t.tgenabled
                  FROM pg_trigger t
                 WHERE t.tgrelid = def
                   AND t.tgfoid = 'auditq_refuse_modification'::regproc
                   AND (t.tgtype & 8) <> 0          -- TRIGGER_TYPE_DELETE
                   AND t.tgenabled <> 'D'
            LOOP
                EXECUTE format('ALTER TABLE %s DISABLE TRIGGER %I', def::regclass, trig.tgname);
                off := off || trig.tgname::text;
                states := states || trig.tgenabled;
            END LOOP;
            EXECUTE format(
                'WITH moved AS (DELETE FROM %s WHERE occurred_at >= $1 AND occurred_at < $2 RETURNING %s) '
                'INSERT INTO %I (%s) SELECT %s FROM moved',
                def::regclass, cols, part, cols, cols)
               USING m_from, m_to;
            GET DIAGNOSTICS moved = ROW_COUNT;
            FOR i IN 1 .. coalesce(array_length(off, 1), 0) LOOP
                EXECUTE format('ALTER TABLE %s ENABLE %s TRIGGER %I', def::regclass,
                               CASE states[i] WHEN 'A' THEN 'ALWAYS' WHEN 'R' THEN 'REPLICA' ELSE '' END,
                               off[i]);
            END LOOP;
        END IF;
    END IF;

    EXECUTE format('ALTER TABLE audit_events ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                   part, m_from, m_to);
    RETURN moved;
END;
$$;

REVOKE EXECUTE ON FUNCTION auditq_partition_month(timestamptz) FROM PUBLIC;

-- What `auditqctl partitions ensure` will do: one row per month that needs
-- a partition, oldest first -- the current month (UTC) through months_ahead
-- later when missing, and every month that has rows in DEFAULT, with how
-- many. Changes nothing; the caller then runs auditq_partition_month for
-- each row, one transaction per month.
CREATE FUNCTION auditq_partition_plan(months_ahead int)
RETURNS TABLE (month_start timestamptz, partition_name text, default_rows bigint)
LANGUAGE plpgsql
STABLE
SET TimeZone = 'UTC'
AS $$
DECLARE
    first_month timestamptz := date_trunc('month', now());
BEGIN
    IF months_ahead IS NULL OR months_ahead < 0 OR months_ahead > 120 THEN
        RAISE EXCEPTION 'auditq_partition_plan: months_ahead=%: must be 0..120', months_ahead
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
    WITH wanted AS (
        SELECT first_month + make_interval(months => i) AS m, 0::bigint AS n
          FROM generate_series(0, months_ahead) AS i
        UNION ALL
        SELECT d.month_start, d.row_count FROM auditq_default_months() AS d
    ), merged AS (
        SELECT w.m, sum(w.n)::bigint AS n FROM wanted w GROUP BY w.m
    )
    SELECT g.m, 'audit_events_' || to_char(g.m, 'YYYY_MM'), g.n
      FROM merged g
     WHERE g.n > 0
        OR NOT EXISTS (SELECT 1 FROM pg_inherits i
                        WHERE i.inhparent = 'audit_events'::regclass
                          AND i.inhrelid = to_regclass(quote_ident('audit_events_' || to_char(g.m, 'YYYY_MM'))))
     ORDER BY g.m;
END;
$$;

-- 001's function, upgraded: months are attached (lighter lock, see the
-- header) and a month whose rows sit in DEFAULT gets its partition with
-- those rows moved in, instead of being skipped forever with a warning.
-- Only the current month through months_ahead later: rows of other months
-- in DEFAULT (backfills, far-off clocks) can be many, and moving them holds
-- DEFAULT locked; that is for an operator to start (`auditqctl partitions
-- ensure`), not a worker's timer. Same signature, result, SECURITY DEFINER
-- and settings as in 001 (CREATE OR REPLACE resets them, so all restated).
CREATE OR REPLACE FUNCTION auditq_ensure_partitions(months_ahead int) RETURNS int
LANGUAGE plpgsql
SECURITY DEFINER
SET TimeZone = 'UTC'
SET lock_timeout = '5s'
AS $$
DECLARE
    first_month timestamptz := date_trunc('month', now());
    m_from      timestamptz;
    moved       bigint;
    created     int := 0;
BEGIN
    IF months_ahead IS NULL OR months_ahead < 0 OR months_ahead > 120 THEN
        RAISE EXCEPTION 'auditq_ensure_partitions: months_ahead=%: must be 0..120', months_ahead
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pg_advisory_xact_lock(97113112097114116);

    FOR i IN 0 .. months_ahead LOOP
        m_from := first_month + make_interval(months => i);
        BEGIN
            moved := auditq_partition_month(m_from);
            IF moved IS NOT NULL THEN
                created := created + 1;
                IF moved > 0 THEN
                    RAISE NOTICE 'auditq: moved % rows from the DEFAULT partition into audit_events_%',
                        moved, to_char(m_from, 'YYYY_MM');
                END IF;
            END IF;
        EXCEPTION
            -- Not ours to fix, and inserts still have a home: a partition
            -- made by hand covers part of the month, or a table of our name
            -- is in the way.
            WHEN invalid_object_definition OR duplicate_table THEN
                RAISE WARNING 'auditq: partition audit_events_% not created: %',
                    to_char(m_from, 'YYYY_MM'), SQLERRM;
        END;
    END LOOP;
    RETURN created;
END;
$$;

-- Pin every function's search_path to this schema, pg_temp last (see 001):
-- they resolve audit_events and each other by unqualified name.
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION auditq_ensure_partitions(int) SET search_path = %I, pg_temp',
                   current_schema());
    EXECUTE format('ALTER FUNCTION auditq_partition_month(timestamptz) SET search_path = %I, pg_temp',
                   current_schema());
    EXECUTE format('ALTER FUNCTION auditq_partition_plan(int) SET search_path = %I, pg_temp',
                   current_schema());
    EXECUTE format('ALTER FUNCTION auditq_default_months() SET search_path = %I, pg_temp',
                   current_schema());
END;
$$;
