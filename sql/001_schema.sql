-- 001_schema.sql -- the audit_events table, its partitions and protections.
--
-- Applied by `auditqctl migrate` inside one transaction together with the
-- row that records it in auditq_schema_migrations, so a failure leaves
-- nothing half-created. Do not put BEGIN/COMMIT in here. Never edit this
-- file once released: migrate stores a checksum and refuses a changed
-- migration; add sql/NNN_*.sql instead.
--
-- Objects are created in the connection's current schema (normally public).

-- Monthly RANGE partitions on occurred_at: retention is "DROP (or DETACH)
-- the oldest partition", which is instant and writes no WAL per row, where a
-- DELETE of hundreds of millions of rows would bloat and be refused by the
-- append-only trigger anyway. Queries nearly always bound occurred_at, so
-- they prune to a few partitions.
--
-- The column names and types are a contract with the worker's writer
-- (worker/pgw.c); change them only together with it.
CREATE TABLE audit_events (
    event_id     uuid        NOT NULL,
    occurred_at  timestamptz NOT NULL,
    -- clock_timestamp(), not now(): now() is the transaction start, so
    -- every row of a batch would share it and it would hide how long the
    -- write itself took.
    received_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    priority     text        NOT NULL
                 CHECK (priority IN ('critical', 'high', 'normal', 'low')),
    tenant_id    text,
    actor_id     text,
    actor_type   text CHECK (actor_type IN ('user', 'service', 'ai', 'system')),
    action       text        NOT NULL,
    entity_type  text,
    entity_id    text,
    outcome      text CHECK (outcome IN ('success', 'failure', 'denied')),
    source_ip    text,
    user_agent   text,
    request_id   text,
    session_id   text,
    changes      jsonb,
    metadata     jsonb,
    -- A unique constraint on a partitioned table must contain the partition
    -- key, hence (event_id, occurred_at) rather than event_id alone. The
    -- producer fixes occurred_at when the event is created, so a job
    -- delivered twice carries the same pair and the writer's
    -- ON CONFLICT (event_id, occurred_at) DO NOTHING stores it once.
    PRIMARY KEY (event_id, occurred_at)
) PARTITION BY RANGE (occurred_at);

-- Catches rows whose month has no partition (clock skew on a producer, a
-- backfill of old data, a worker that has not created next month yet), so an
-- insert never fails for a missing partition and no event is dead-lettered
-- for it. It should stay (nearly) empty: creating a monthly partition must
-- scan it under an exclusive lock, see auditq_ensure_partitions.
CREATE TABLE audit_events_default PARTITION OF audit_events DEFAULT;

-- Indexes are declared on the parent, so PostgreSQL creates a matching index
-- on every existing and future partition (including the DEFAULT one). Each
-- ends in occurred_at because the questions people ask are "what did X do in
-- this time window", newest first.
CREATE INDEX audit_events_occurred_at_idx ON audit_events (occurred_at);
CREATE INDEX audit_events_tenant_idx      ON audit_events (tenant_id, occurred_at);
CREATE INDEX audit_events_actor_idx       ON audit_events (actor_id, occurred_at);
CREATE INDEX audit_events_entity_idx      ON audit_events (entity_type, entity_id, occurred_at);
CREATE INDEX audit_events_action_idx      ON audit_events (action, occurred_at);
-- jsonb_path_ops: smaller and faster than the default jsonb_ops for the
-- containment queries (metadata @> '{"k": "v"}') that are the common case;
-- it does not support key-existence (?) operators, which we accept.
CREATE INDEX audit_events_metadata_idx    ON audit_events USING gin (metadata jsonb_path_ops);

-- Append-only protection. An audit log that can be edited proves nothing, and
-- the worker only ever INSERTs, so any UPDATE, DELETE or TRUNCATE is either a
-- mistake or tampering. This guards against mistakes and application roles;
-- it is not a defence against a superuser or the table owner (they can drop
-- the trigger or set session_replication_role = replica): give the writer
-- role INSERT (and SELECT) only, and ship the WAL elsewhere, for that.
-- DETACH PARTITION and DROP TABLE of a partition fire no trigger, so
-- retention by whole months keeps working.
CREATE FUNCTION auditq_refuse_modification() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              DETAIL  = format('Table %s.', TG_TABLE_NAME),
              HINT    = 'Audit events are never changed; remove old data by '
                        'detaching or dropping whole monthly partitions.';
END;
$$;

-- A row trigger on a partitioned table is cloned onto every partition, now
-- and future, so it also covers UPDATE/DELETE aimed at a partition directly.
CREATE TRIGGER audit_events_append_only
    BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION auditq_refuse_modification();

-- Statement triggers are NOT cloned onto partitions, so TRUNCATE of a
-- partition by name would slip past the parent's trigger: every partition
-- gets its own (here for DEFAULT, in auditq_ensure_partitions for the
-- monthly ones).
CREATE TRIGGER audit_events_no_truncate
    BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION auditq_refuse_modification();
CREATE TRIGGER audit_events_no_truncate
    BEFORE TRUNCATE ON audit_events_default
    FOR EACH STATEMENT EXECUTE FUNCTION auditq_refuse_modification();

-- Autovacuum for an insert-only table. Rows are never updated or deleted, so
-- vacuum has no dead tuples to reclaim; it is still needed to set the
-- visibility map (index-only scans) and to freeze rows. With the defaults an
-- insert-driven vacuum waits for 20% new rows and freezes nothing young, so
-- a big month is later frozen all at once by an anti-wraparound vacuum that
-- rewrites every page. Instead: vacuum after ~2% new rows and freeze
-- everything it visits (the rows will never change again). Analyze often so
-- the planner knows the newest occurred_at values, which are the ones
-- queried most. Storage parameters cannot be set on a partitioned table, only
-- on its leaf partitions, hence here for DEFAULT and in
-- auditq_ensure_partitions for each new month.
ALTER TABLE audit_events_default SET (
    autovacuum_vacuum_insert_scale_factor = 0.02,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_freeze_min_age = 0
);

-- Creates the monthly partitions audit_events_YYYY_MM for the current month
-- (UTC) through months_ahead months later, those that do not exist yet.
-- Returns how many it created. Called by the worker at start and
-- periodically, and by `auditqctl migrate`.
--
-- SECURITY DEFINER so the low-privilege writer role can call it without
-- owning audit_events (only the owner may create partitions); it runs as the
-- migration role. Its search_path is pinned (see the ALTER below) so a caller
-- cannot make it resolve audit_events or a function to an object of its own.
-- months_ahead is bounded so a caller cannot make it create thousands of
-- tables.
--
-- lock_timeout: creating a partition takes an ACCESS EXCLUSIVE lock on the
-- parent. Waiting behind a long query for it would queue every insert behind
-- us too, stalling all writers; better to fail fast and let the caller retry
-- later (months are created well ahead of need).
CREATE FUNCTION auditq_ensure_partitions(months_ahead int) RETURNS int
LANGUAGE plpgsql
SECURITY DEFINER
SET TimeZone = 'UTC'
SET lock_timeout = '5s'
AS $$
DECLARE
    -- TimeZone is UTC inside this function, so date_trunc cuts months at UTC
    -- midnight and timestamptz literals below print as +00.
    first_month timestamptz := date_trunc('month', now());
    m_from      timestamptz;
    m_to        timestamptz;
    part        text;
    created     int := 0;
BEGIN
    IF months_ahead IS NULL OR months_ahead < 0 OR months_ahead > 120 THEN
        RAISE EXCEPTION 'auditq_ensure_partitions: months_ahead=%: must be 0..120', months_ahead
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- Serialise concurrent callers (several workers starting at once) for
    -- the rest of the transaction: the loser then sees the partitions the
    -- winner created instead of failing on them. The key is arbitrary but
    -- fixed ("aqpart" in ASCII).
    PERFORM pg_advisory_xact_lock(97113112097114116);

    FOR i IN 0 .. months_ahead LOOP
        m_from := first_month + make_interval(months => i);
        m_to   := first_month + make_interval(months => i + 1);
        part   := 'audit_events_' || to_char(m_from, 'YYYY_MM');

        CONTINUE WHEN to_regclass(quote_ident(part)) IS NOT NULL;

        BEGIN
            EXECUTE format(
                'CREATE TABLE %I PARTITION OF audit_events '
                'FOR VALUES FROM (%L) TO (%L) '
                'WITH (autovacuum_vacuum_insert_scale_factor = 0.02, '
                'autovacuum_analyze_scale_factor = 0.02, '
                'autovacuum_freeze_min_age = 0)',
                part, m_from, m_to);
            EXECUTE format(
                'CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON %I '
                'FOR EACH STATEMENT EXECUTE FUNCTION auditq_refuse_modification()',
                part);
            created := created + 1;
        EXCEPTION
            -- PostgreSQL refuses a new partition whose range already has
            -- rows in the DEFAULT partition (they would be in the wrong
            -- place). Skipping that month keeps the other months coming and
            -- keeps inserts working (they keep landing in DEFAULT); the rows
            -- must be moved first, which only an operator should decide.
            WHEN check_violation THEN
                RAISE WARNING 'auditq: partition % not created: audit_events_default already holds rows of % (run `auditqctl partitions ensure` to move them into a new partition)',
                    part, to_char(m_from, 'YYYY-MM');
            -- Some other partition already covers part of this month (one
            -- made by hand with another name or other bounds). Not ours to
            -- fix; inserts still have a home.
            WHEN invalid_object_definition THEN
                RAISE WARNING 'auditq: partition % not created: %', part, SQLERRM;
        END;
    END LOOP;
    RETURN created;
END;
$$;

-- Pin the function's search_path to the schema it was just created in (the
-- schema is only known at run time, hence dynamic SQL), with pg_temp last so
-- a caller's temporary tables can never shadow ours.
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION auditq_ensure_partitions(int) SET search_path = %I, pg_temp',
                   current_schema());
END;
$$;

SELECT auditq_ensure_partitions(3);
